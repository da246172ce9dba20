/**
 * A primary that Sentinel replaced but could not demote (issue 20's fault test found it: a second failover
 * 0.5 s after the first left the first promoted replica a primary for 10 s). Made deterministic here: the
 * first primary runs with REPLICAOF/SLAVEOF renamed away, so after `SENTINEL FAILOVER` it stays a primary
 * forever, with no replicas, never answering READONLY. A client still connected to it must not have writes
 * acknowledged there (Sentinel would wipe them), must move to the sentinels' primary by itself, and reads
 * and the long-poll must follow (redis/primary.ts).
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import type { Socket } from "node:net";
import { createCommandClient } from "../../control/src/redis/client.js";
import { createDurability } from "../../control/src/redis/durability.js";
import { createPrimaryCheck, judge, newest, parseView, type SentinelView } from "../../control/src/redis/primary.js";
import { createLogger } from "../../control/src/log.js";
import { createKeys } from "../../control/src/redis/keys.js";
import { createIdempotencyStore } from "../../control/src/http/idempotency-store.js";
import { startSentinelSet, type SentinelSet } from "../support/redis-sentinel.js";
import { PLUGIN, startReplica, waitFor, type Replica } from "./harness.js";

const UNDEMOTABLE = ["--rename-command", "REPLICAOF", "", "--rename-command", "SLAVEOF", ""];

const view = (v: Partial<SentinelView>): SentinelView => ({ epoch: 1, failingOver: false, runId: "", ip: "10.0.0.1", port: 6379, replicaRunIds: [], promotable: 0, ...v });
const node = (runId: string | null, address = "10.0.0.1", port = 6379) => ({ runId, peer: { address, port } });

describe("judging a node against the sentinels' view", () => {
  test("run_id decides; an announced IP decides when the run_id differs or is not known yet; a hostname needs a known run_id", () => {
    assert.equal(judge(view({ runId: "a" }), node("a")), "primary");
    assert.equal(judge(view({ runId: "b", ip: "10.0.0.2" }), node("a")), "superseded");
    // Restarted in place (new run_id, sentinel has the old one for up to 10 s): same address, same node.
    assert.equal(judge(view({ runId: "old" }), node("new")), "primary");
    assert.equal(judge(view({ runId: "", ip: "10.0.0.2" }), node("a")), "superseded");
    assert.equal(judge(view({ runId: "" }), node("a", "::ffff:10.0.0.1")), "primary");
    assert.equal(judge(view({ runId: "", port: 6380 }), node("a")), "superseded");
    assert.equal(judge(view({ runId: "b", ip: "redis-1.redis" }), node("a")), "superseded");
    assert.equal(judge(view({ runId: "", ip: "redis-1.redis", replicaRunIds: ["a"] }), node("a")), "superseded");
    assert.equal(judge(view({ runId: "", ip: "redis-1.redis" }), node("a")), "unknown");
    assert.equal(judge(null, node("a")), "unknown");
    assert.equal(judge(view({ runId: "a" }), node(null)), "unknown");
    // Mid-failover nothing is the primary for sure, not even the node the leader still names.
    assert.equal(judge(view({ runId: "a", failingOver: true }), node("a")), "failing_over");
  });

  test("the highest config epoch wins; a sentinel that does not know the master is no answer", () => {
    const a = parseView(["name", "mymaster", "ip", "127.0.0.1", "port", "7001", "runid", "r1", "config-epoch", "1"], [
      ["runid", "r2", "flags", "slave"],
      ["runid", "", "flags", "slave"],
      ["runid", "r3", "flags", "s_down,slave"],
      ["runid", "r4", "flags", "slave,disconnected"],
      ["runid", "r5", "flags", "slave", "slave-priority", "0"],
      ["runid", "r6", "flags", "slave", "role-reported", "master"],
      ["runid", "r7", "flags", "slave", "role-reported", "slave", "master-link-status", "err"],
    ]);
    // Promotable: not down, not disconnected, priority > 0. A replica still copying counts, and so does a
    // superseded primary not yet converted (Sentinel promotes such a node too).
    assert.deepEqual(a, { epoch: 1, failingOver: false, runId: "r1", ip: "127.0.0.1", port: 7001, replicaRunIds: ["r2", "r3", "r4", "r5", "r6", "r7"], promotable: 4 });
    const b = parseView(["ip", "127.0.0.1", "port", "7002", "runid", "r2", "config-epoch", "2"], []);
    assert.equal(newest([a, null, b])?.port, 7002);
    assert.equal(newest([b, a])?.port, 7002);
    // A failover led by a sentinel at the newest epoch (or later) marks the view, whichever view it is:
    // before the promotion the leader still has the old epoch, after it the others already name the new primary.
    const leading = (epoch: number) => parseView(["ip", "127.0.0.1", "port", "7002", "runid", "r2", "flags", "master,failover_in_progress", "config-epoch", String(epoch)], []);
    const switched = parseView(["ip", "127.0.0.1", "port", "7003", "runid", "", "flags", "master", "config-epoch", "3"], []);
    assert.equal(leading(3)?.failingOver, true);
    assert.deepEqual([newest([leading(3), switched])?.port, newest([leading(3), switched])?.failingOver], [7002, true]);
    assert.equal(newest([switched, leading(3)])?.failingOver, true);
    assert.equal(newest([switched, leading(2)])?.failingOver, false, "a leader behind the newest epoch lost its election");
    assert.equal(newest([b, leading(2)])?.failingOver, true);
    assert.equal(newest([b])?.failingOver, false);
    assert.equal(parseView("ERR No such master with that name", null), null);
    assert.equal(parseView(["ip", "127.0.0.1", "port", "x", "config-epoch", "1"], []), null);
    assert.equal(newest([null, null]), null);
  });
});

describe("a superseded primary that was never demoted", { timeout: 120_000 }, () => {
  let set: SentinelSet | null = null;
  const stops: (() => Promise<unknown> | void)[] = [];
  after(async () => {
    for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => undefined);
    await set?.close();
  });

  /** Force a failover; wait until every sentinel names the new primary and the old one is still a primary. */
  const failOver = async (s: SentinelSet): Promise<number> => {
    const old = s.primary.port;
    assert.equal(await s.call(s.sentinels[0]!.port, "SENTINEL", "FAILOVER", s.masterName), "OK");
    let promoted = 0;
    await waitFor(
      async () => {
        const ports = await Promise.all(s.sentinels.map(async (x) => ((await s.call(x.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.masterName)) as string[] | null)?.[1]));
        if (ports.some((p) => p === undefined || Number(p) === old || p !== ports[0])) return false;
        // …and the failover is over everywhere (its leader refuses acknowledgements until then).
        const flags = await Promise.all(s.sentinels.map(async (x) => String(((await s.call(x.port, "SENTINEL", "MASTER", s.masterName)) as string[] | null) ?? "")));
        if (flags.some((f) => f === "" || f.includes("failover_in_progress"))) return false;
        promoted = Number(ports[0]);
        return ((await s.call(promoted, "ROLE")) as unknown[] | null)?.[0] === "master";
      },
      30_000,
      "every sentinel to name the promoted replica",
      50,
    );
    assert.equal(((await s.call(old, "ROLE")) as unknown[] | null)?.[0], "master", "the old primary could not be demoted");
    // The other replica has copied the promoted one: until then a write there is rightly not acknowledged
    // (a replica Sentinel could promote lacks it), and the checks below are about the superseded node.
    await waitFor(async () => /^slave\d+:.*state=online/m.test(String((await s.call(promoted, "INFO", "replication")) ?? "")), 30_000, "a replica in sync with the promoted one", 50);
    return promoted;
  };

  test("a write there is not acknowledged (superseded), and the connection moves to the sentinels' primary", async () => {
    set = await startSentinelSet({ replicas: 2, sentinels: 3, downAfterMs: 1_000, failoverTimeoutMs: 5_000, primaryArgs: UNDEMOTABLE });
    const target = { kind: "sentinel" as const, sentinels: set.sentinelList.split(",").map((hp) => ({ host: "127.0.0.1", port: Number(hp.split(":")[1]) })), masterName: set.masterName };
    const logs: string[] = [];
    const log = createLogger({ level: "info", sink: (l) => logs.push(l) });
    const redis = createCommandClient(target, { commandTimeoutMs: 1_000, log, name: "stale-test" });
    stops.push(() => redis.disconnect());
    // Only the acknowledgement checks: the once-a-second check would move the connection before the write.
    const primary = createPrimaryCheck(redis, null, target, { timeoutMs: 300, log, intervalMs: 3_600_000 });
    const durability = createDurability(redis, { replicas: "auto", timeoutMs: 300, log, refreshMs: 100, primary });
    stops.push(() => durability.stop());
    await waitFor(() => redis.status === "ready" && durability.needed() === 1, 10_000, "connected, waiting for 1 replica");
    await redis.set("before", "1");
    const first = await durability.acknowledged(redis.stream);
    assert.ok(first.ok && first.needed === 1 && first.acked >= 1, JSON.stringify(first)); // WAIT counts every replica that has it

    const promoted = await failOver(set);

    // A kept answer found on the superseded node is not replayed: the change it reports is not on the
    // primary (another connection straight to the old node, as a replica of ours that had not moved yet).
    const direct = createCommandClient(`redis://127.0.0.1:${set.primary.port}`, { commandTimeoutMs: 1_000, log, name: "stale-direct" });
    stops.push(() => direct.disconnect());
    const directCheck = createPrimaryCheck(direct, null, target, { timeoutMs: 300, intervalMs: 3_600_000 });
    const directDurability = createDurability(direct, { replicas: "auto", timeoutMs: 300, refreshMs: 100, primary: directCheck });
    stops.push(() => directDurability.stop());
    await waitFor(() => direct.status === "ready", 5_000, "direct connection");
    const keys = createKeys("gw:");
    const idem = createIdempotencyStore({ redis: direct, keys, ttlSeconds: 60, inProgressSeconds: 60, durability: directDurability });
    const naive = createIdempotencyStore({ redis: direct, keys, ttlSeconds: 60, inProgressSeconds: 60 });
    assert.deepEqual(await idem.claim("scope", "fp", "a1"), { kind: "run" });
    assert.equal(await idem.complete("scope", "a1", { fingerprint: "fp", state: "done", status: 201, body: { id: "m1" } }, false), "kept");
    // Without the check the retry gets the 201 for a change the primary never had.
    assert.equal((await naive.claim("scope", "fp", "a2")).kind, "done");
    await assert.rejects(idem.claim("scope", "fp", "a3"), (err: Error & { code?: string }) => err.code === "outcome_unknown");

    const socket = redis.stream as Socket;
    assert.equal(socket.remotePort, set.primary.port, "still connected to the old primary (it never answered READONLY)");
    // The old primary has no replica left: `auto` alone would acknowledge without waiting for any.
    await waitFor(() => durability.needed() === 0, 10_000, "auto to see no replica on the old primary");
    await redis.set("on-the-superseded-node", "1");
    const ack = await durability.acknowledged(socket);
    assert.equal(ack.ok, false, "a write on the superseded primary must not be acknowledged");
    assert.equal(ack.ok === false && ack.why, "superseded");
    assert.ok(logs.some((l) => l.includes("no longer the sentinels' primary")), "the reconnect is logged");

    await waitFor(() => redis.status === "ready" && (redis.stream as Socket).remotePort === promoted, 10_000, "the connection to move to the promoted replica");
    await redis.set("after", "1");
    const again = await durability.acknowledged(redis.stream);
    assert.equal(again.ok, true, JSON.stringify(again));
    assert.equal(await redis.get("before"), "1");
    // What was written on the superseded node is not on the primary: it was rightly never acknowledged.
    assert.equal(await redis.get("on-the-superseded-node"), null);
    // A socket that was replaced since the write: never acknowledged (WAIT would count the new connection).
    const replaced = await durability.acknowledged(socket);
    assert.equal(replaced.ok === false && replaced.why, "reconnected");
  });

  test("control replicas: writes through one left on the old primary reach the new one, and its reads and long-poll follow", async () => {
    await set?.close();
    set = await startSentinelSet({ replicas: 2, sentinels: 3, downAfterMs: 1_000, failoverTimeoutMs: 5_000, primaryArgs: UNDEMOTABLE });
    const env = { REDIS_SENTINELS: set.sentinelList, REDIS_MASTER_NAME: set.masterName, REDIS_COMMAND_TIMEOUT_MS: "1000", TABLE_REFRESH_MS: "600000", PROBE_TICK_MS: "0" };
    const a: Replica = await startReplica("redis://127.0.0.1:1", env);
    stops.push(() => a.control.crash());
    assert.equal((await a.api("POST", "/v1/models", { body: { name: "m-before" } })).status, 201);

    await failOver(set);
    const b: Replica = await startReplica("redis://127.0.0.1:1", env);
    stops.push(() => b.control.crash());
    // Reads through `a` come from the sentinels' primary again, without any write through `a`.
    assert.equal((await b.api("POST", "/v1/models", { body: { name: "m-via-b" } })).status, 201);
    await waitFor(async () => ((await a.api("GET", "/v1/models")).body?.models ?? []).some((m: { name: string }) => m.name === "m-via-b"), 15_000, "a to read what b wrote");
    assert.ok(a.logs.some((l) => l.includes("no longer the sentinels' primary")), "a reconnected because its node was superseded");

    // A write through `a` (retried with its key on 503) is on the primary `b` reads from.
    let created: { id: string } | null = null;
    await waitFor(
      async () => {
        const r = await a.api("POST", "/v1/models", { body: { name: "m-via-a" }, headers: { "idempotency-key": "k-m-via-a" } });
        if (r.status === 201) created = r.body;
        else assert.ok(r.status === 503 || r.status === 409, r.text);
        return r.status === 201 || (r.status === 409 && r.body?.error?.code === "idempotency_applied");
      },
      15_000,
      "a write through a",
      50,
    );
    const names = new Set<string>(((await b.api("GET", "/v1/models")).body.models as { name: string }[]).map((m) => m.name));
    assert.ok(names.has("m-via-a") && names.has("m-before"), `b lists ${[...names].join(", ")}`);
    if (created) assert.equal((await b.api("GET", `/v1/models/${encodeURIComponent((created as { id: string }).id)}`)).status, 200);

    // a's subscriber is on the primary too: a long-poll on `a` wakes for a change made through `b`.
    const t0 = await a.api("GET", "/v1/routing-table", { token: PLUGIN });
    assert.equal(t0.status, 200, t0.text);
    const poll = a.api("GET", "/v1/routing-table?wait=20", { token: PLUGIN, headers: { "if-none-match": `"${t0.body.version}"` } });
    assert.equal((await b.api("POST", "/v1/deployments", { body: { id: "after-stale", model: "m-via-b", instances: [] } })).status, 201);
    const woke = await poll;
    assert.equal(woke.status, 200, woke.text);
    assert.ok(woke.text.includes("after-stale"), "the long-poll on a got b's change");
  });
});
