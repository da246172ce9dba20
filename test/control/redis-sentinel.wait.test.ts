/**
 * Replica acknowledgement (redis/durability.ts) and refused commands (READONLY) with a real primary and a
 * real replica (`redis-server --replicaof`): a commit waits for the replica; when it does not acknowledge
 * in time the write is applied on the primary but answered `outcome_unknown` (or, under an Idempotency-Key
 * fence, detached to the background); a command sent to a replica is refused as "not made" and makes the
 * connection reconnect; `auto` follows the replicas the primary reports.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import { AppError } from "../../control/src/http/errors.js";
import { createLogger } from "../../control/src/log.js";
import { createCas, fences, Txn, type Fence } from "../../control/src/redis/cas.js";
import { createCommandClient, isConnectionError, isRefused, mayHaveRun, storeCall } from "../../control/src/redis/client.js";
import { connectedReplicas, createDurability } from "../../control/src/redis/durability.js";
import type { PrimaryCheck } from "../../control/src/redis/primary.js";
import { startRedis, waitFor, type RedisServer } from "../support/redis.js";

const log = createLogger({ level: "error", sink: () => undefined });

describe("WAIT for replicas; READONLY replicas", { timeout: 60_000 }, () => {
  let primary: RedisServer;
  let replica: RedisServer;
  const clients: Redis[] = [];
  const conn = (url: string) => {
    const c = createCommandClient(url, { commandTimeoutMs: 1_000, log, name: "wait-test" });
    clients.push(c);
    return c;
  };
  const ready = (c: Redis) => waitFor(() => c.status === "ready", 5_000, "redis client ready");

  before(async () => {
    primary = await startRedis();
    replica = await startRedis({ args: ["--replicaof", "127.0.0.1", String(primary.port)] });
    const probe = conn(primary.url);
    await ready(probe);
    await waitFor(async () => /^slave0:.*state=online/m.test(await probe.info("replication")), 10_000, "the replica online");
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await replica?.close();
    await primary?.close();
  });

  test("connected replicas from INFO replication", () => {
    const two = "slave0:ip=127.0.0.1,port=7001,state=online,offset=42,lag=0\r\nslave1:ip=127.0.0.1,port=7002,state=online,offset=42,lag=1\r\n";
    assert.equal(connectedReplicas(`# Replication\r\nrole:master\r\nconnected_slaves:2\r\n${two}`), 2);
    // A replica still loading its first copy acknowledges nothing yet: not counted.
    const syncing = "slave0:ip=127.0.0.1,port=7001,state=online,offset=42,lag=0\r\nslave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\n";
    assert.equal(connectedReplicas(`# Replication\r\nrole:master\r\nconnected_slaves:2\r\n${syncing}`), 1);
    assert.equal(connectedReplicas("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"), 0);
    assert.equal(connectedReplicas("# Replication\r\nrole:slave\r\nmaster_host:x\r\n"), null);
  });

  test("auto waits for the replica: an acknowledged commit is on the replica when it answers", async () => {
    const c = conn(primary.url);
    await ready(c);
    // A generous WAIT timeout: an online replica acknowledges in milliseconds, but a loaded CI machine can
    // starve it; the test is about the acknowledgement, not its speed.
    const durability = createDurability(c, { replicas: "auto", timeoutMs: 5_000, refreshMs: 50 });
    try {
      await waitFor(() => durability.needed() === 1, 5_000, "auto to see the replica");
      const commit = createCas(c, "w:version", "w:channel", undefined, { durability });
      const r = await commit(new Txn().op("HSET", "w:h", "f", "v1").bump());
      assert.equal(r.ok, true);
      // The replica acknowledged: it has the write now (read it there directly).
      const onReplica = conn(replica.url);
      await ready(onReplica);
      assert.equal(await onReplica.hget("w:h", "f"), "v1");
    } finally {
      durability.stop();
    }
  });

  test("a write sent to a replica is refused (READONLY): not made, and the connection reconnects", async () => {
    const c = conn(replica.url);
    await ready(c);
    const commit = createCas(c, "w:version", "w:channel");
    let reconnecting = false;
    c.once("reconnecting", () => (reconnecting = true));
    const err = await commit(new Txn().op("HSET", "w:h", "g", "x").bump()).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof Error && /^READONLY/.test(err.message), String(err));
    assert.equal(isRefused(err), true);
    assert.equal(isConnectionError(err), true);
    assert.equal(mayHaveRun(err, true), false, "a refused command never ran");
    await assert.rejects(storeCall(() => Promise.reject(err)), (e: unknown) => e instanceof AppError && e.code === "store_unavailable");
    await waitFor(() => reconnecting, 5_000, "the client to reconnect after READONLY");
    // Nothing was written anywhere.
    const p = conn(primary.url);
    await ready(p);
    assert.equal(await p.hget("w:h", "g"), null);
  });

  test("no acknowledgement in time: applied on the primary, answered outcome_unknown (fenced: detached); auto stops waiting", async () => {
    const c = conn(primary.url);
    await ready(c);
    const fixed = createDurability(c, { replicas: 1, timeoutMs: 200 });
    const auto = createDurability(c, { replicas: "auto", timeoutMs: 200, refreshMs: 50 });
    try {
      await waitFor(() => auto.needed() === 1, 5_000, "auto to see the replica");
      await replica.stop();
      const commit = createCas(c, "w:version", "w:channel", undefined, { durability: fixed });
      await assert.rejects(commit(new Txn().op("HSET", "w:h", "u", "1").bump()), (e: unknown) => e instanceof AppError && e.code === "outcome_unknown");
      assert.equal(await c.hget("w:h", "u"), "1", "the write is applied on the primary");

      // Under an Idempotency-Key fence the request is answered outcome_unknown at once (detach) and the
      // outcome learnt on the primary: the change is there → the handler goes on (the commit returns) …
      let detached = 0;
      let resolves = 0;
      const fenceFor = (attempt: string, outcome: "applied" | "lost"): Fence => ({
        key: `w:fence:${attempt}`,
        attempt,
        ttlSeconds: 60,
        active: true,
        wrote: false,
        detach: () => (detached++, true),
        resolve: async () => (resolves++, outcome === "applied" ? { applied: true, version: 0 } : { applied: false }),
      });
      await c.set("w:fence:a1", JSON.stringify({ a: "a1" }));
      const r = await fences.run(fenceFor("a1", "applied"), () => commit(new Txn().op("HSET", "w:h", "v", "1").bump()));
      assert.equal(r.ok, true);
      assert.deepEqual([detached, resolves], [1, 1]);
      assert.equal(await c.hget("w:h", "v"), "1");
      assert.equal(JSON.parse((await c.get("w:fence:a1"))!).applied, true, "the commit marked its fence applied");
      // … not there (a failover lost it) → not made: store_unavailable, nothing recorded as done.
      await c.set("w:fence:a2", JSON.stringify({ a: "a2" }));
      await assert.rejects(
        fences.run(fenceFor("a2", "lost"), () => commit(new Txn().op("HSET", "w:h", "x", "1").bump())),
        (e: unknown) => e instanceof AppError && e.code === "store_unavailable",
      );
      assert.deepEqual([detached, resolves], [2, 2]);

      // auto: the replica is gone, so nothing is waited for (a lone primary keeps working).
      await waitFor(() => auto.needed() === 0, 5_000, "auto to see no replica");
      const autoCommit = createCas(c, "w:version", "w:channel", undefined, { durability: auto });
      assert.equal((await autoCommit(new Txn().op("HSET", "w:h", "w", "1").bump())).ok, true);
    } finally {
      fixed.stop();
      auto.stop();
      await replica.start();
    }
  });

  test("auto with Sentinel: a replica the sentinels could promote is waited for even while the primary does not count it", async () => {
    const c = conn(primary.url);
    await ready(c);
    // A primary with no replica of its own (the replica is stopped), as right after a failover while the
    // other replica still copies from it: the primary counts none, the sentinels would promote it.
    await replica.stop();
    let promotable = 1;
    const primaryCheck: PrimaryCheck = { verify: async () => ({ verdict: "primary", promotable }), stop: () => undefined };
    const auto = createDurability(c, { replicas: "auto", timeoutMs: 200, refreshMs: 50, primary: primaryCheck });
    try {
      await waitFor(() => auto.needed() === 0, 5_000, "auto to see no replica on the primary");
      await c.set("p:1", "1");
      const ack = await auto.acknowledged(c.stream);
      assert.deepEqual(ack, { ok: false, needed: 1, acked: 0, why: "replicas" }, "a copy a failover may promote must have it first");
      // No replica the sentinels could promote (all down): a lone primary keeps working.
      promotable = 0;
      await c.set("p:2", "1");
      assert.deepEqual(await auto.acknowledged(c.stream), { ok: true, needed: 0, acked: 0 });
    } finally {
      auto.stop();
      await replica.start();
    }
  });
});
