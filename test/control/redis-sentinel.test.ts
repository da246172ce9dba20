/**
 * Redis Sentinel failover with real processes (issue 20): one primary, two replicas, three sentinels;
 * two control replicas that find Redis only through the sentinels. API writes run steadily through both
 * control replicas while the primary is SIGKILLed. Then: Sentinel promotes a replica, writes succeed again
 * through the same control processes, every write answered 201 before (or after) is there (WAIT on by
 * default: `auto` with replicas), reads and GET /v1/routing-table work, and the long-poll of one replica
 * sees a change made through the other after the failover (its subscriber recovered on the new primary:
 * the safety-net re-read is off).
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { startSentinelSet, type SentinelSet } from "../support/redis-sentinel.js";
import { PLUGIN, startReplica, waitFor, type Api, type Replica } from "./harness.js";

const TEST_MS = 60_000;

describe("Redis Sentinel failover", { timeout: TEST_MS + 30_000 }, () => {
  let set: SentinelSet | null = null;
  const controls: Replica[] = [];
  after(async () => {
    for (const c of controls) await c.control.crash().catch(() => undefined);
    await set?.close();
  });

  test("acknowledged writes survive a primary failover; writes, reads and the long-poll recover", { timeout: TEST_MS }, async (ctx) => {
    set = await startSentinelSet({ replicas: 2, sentinels: 3, downAfterMs: 500, failoverTimeoutMs: 2_000 });
    const env = {
      REDIS_SENTINELS: set.sentinelList,
      REDIS_MASTER_NAME: set.masterName,
      REDIS_COMMAND_TIMEOUT_MS: "1000",
      // Only pub/sub (and the re-read on resubscribe) moves a replica's table: the subscriber must recover.
      TABLE_REFRESH_MS: "600000",
      PROBE_TICK_MS: "0",
    };
    // REDIS_URL points nowhere: with REDIS_SENTINELS set it must not be used.
    const a = await startReplica("redis://127.0.0.1:1", env);
    controls.push(a);
    const b = await startReplica("redis://127.0.0.1:1", env);
    controls.push(b);
    const oldPrimary = set.primary.port;
    assert.equal(await set.masterPort(), oldPrimary);
    // `auto`: both control replicas learnt the primary has replicas, so every commit WAITs for one.
    const waitsOn = (r: Replica) => r.logs.some((l) => l.includes("redis replicas acknowledging writes") && l.includes('"replicas":1'));
    await waitFor(() => waitsOn(a) && waitsOn(b), 10_000, "both control replicas to WAIT for 1 replica");

    // Steady writes through both control replicas; each model retried with its Idempotency-Key until 201.
    const acked = new Map<string, { id: string; via: string; at: number }>();
    let phase = 0; // 0 before the kill, 1 after it, 2 after the promotion was seen
    const afterPromotion = { a: 0, b: 0 };
    let stop = false;
    const unexpected: string[] = [];
    const retried = new Map<string, number>();
    const writer = async (api: Api, via: "a" | "b") => {
      for (let i = 0; !stop; i++) {
        const name = `m-${via}-${i}`;
        for (;;) {
          if (stop) return;
          const startedIn = phase;
          const r = await api("POST", "/v1/models", { body: { name }, headers: { "idempotency-key": `k-${name}` } }).catch(() => null);
          if (r?.status === 201) {
            acked.set(name, { id: r.body.id, via, at: phase });
            if (startedIn === 2) afterPromotion[via]++;
            break;
          }
          const code = r?.body?.error?.code;
          // Applied, its answer record lost with the old primary (documented): the model must be there.
          if (r?.status === 409 && code === "idempotency_applied") {
            acked.set(name, { id: "", via, at: phase });
            break;
          }
          const k = `${via}:${r?.status ?? "fetch"}:${code}`;
          retried.set(k, (retried.get(k) ?? 0) + 1);
          // 503 (store_unavailable / outcome_unknown) and 409 idempotency_in_progress are the failover's: retry.
          if (r && !(r.status === 503 || (r.status === 409 && code === "idempotency_in_progress"))) {
            unexpected.push(`${name}: ${r.status} ${r.text}`);
            return;
          }
          await new Promise((res) => setTimeout(res, 25)); // retry backoff
        }
      }
    };
    const writers = [writer(a.api, "a"), writer(b.api, "b")];
    try {
      await waitFor(() => acked.size >= 10 || unexpected.length > 0, 15_000, "10 acknowledged writes");
      assert.deepEqual(unexpected, []);
      const info = String(await set.call(oldPrimary, "INFO", "commandstats"));
      assert.match(info, /cmdstat_wait:calls=[1-9]/, "commits WAIT for a replica");

      await set.kill(set.primary);
      phase = 1;
      await waitFor(
        async () => {
          const p = await set!.masterPort();
          if (p === null || p === oldPrimary) return false;
          const role = (await set!.call(p, "ROLE")) as unknown[] | null;
          return role?.[0] === "master";
        },
        20_000,
        "Sentinel to promote a replica",
        50,
      );
      phase = 2;
      // Writes succeed again through the very same control processes.
      await waitFor(() => (afterPromotion.a >= 3 && afterPromotion.b >= 3) || unexpected.length > 0, 20_000, "writes through both replicas after the failover");
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    assert.deepEqual(unexpected, []);

    // Every acknowledged write is there (read through both replicas, from the new primary).
    for (const c of [a, b]) {
      const list = await c.api("GET", "/v1/models");
      assert.equal(list.status, 200, list.text);
      const names = new Set<string>(list.body.models.map((m: { name: string }) => m.name));
      const lost = [...acked.keys()].filter((n) => !names.has(n));
      assert.deepEqual(lost, [], `acknowledged writes lost (of ${acked.size}, ${[...acked.values()].filter((v) => v.at === 0).length} before the kill)`);
    }
    ctx.diagnostic(`acknowledged writes: ${acked.size} (${[...acked.values()].filter((v) => v.at === 0).length} before the kill, ${afterPromotion.a + afterPromotion.b} after the promotion: a ${afterPromotion.a}, b ${afterPromotion.b}), none lost; retried: ${JSON.stringify(Object.fromEntries(retried))}`);
    const one = await a.api("GET", `/v1/models/${encodeURIComponent([...acked.values()].find((v) => v.id !== "")!.id)}`);
    assert.equal(one.status, 200, one.text);

    // The routing table answers on both replicas.
    const t = await a.api("GET", "/v1/routing-table", { token: PLUGIN });
    assert.equal(t.status, 200, t.text);
    assert.equal((await b.api("GET", "/v1/routing-table", { token: PLUGIN })).status, 200);

    // A long-poll on `a` wakes for a change made through `b`: a's subscriber listens on the new primary.
    await waitFor(async () => (await a.api("GET", "/v1/routing-table", { token: PLUGIN })).body?.version >= ((await b.api("GET", "/v1/routing-table", { token: PLUGIN })).body?.version ?? Infinity), 10_000, "a to have b's table version");
    const v = (await a.api("GET", "/v1/routing-table", { token: PLUGIN })).body.version as number;
    const poll = a.api("GET", "/v1/routing-table?wait=20", { token: PLUGIN, headers: { "if-none-match": `"${v}"` } });
    let dep: number | null = null;
    await waitFor(
      async () => {
        const r = await b.api("POST", "/v1/deployments", { body: { id: "after-failover", model: list0(acked), instances: [] }, headers: { "idempotency-key": "dep-after-failover" } });
        dep = r.status;
        return r.status === 201;
      },
      10_000,
      "a deployment created through b",
      50,
    );
    assert.equal(dep, 201);
    const woke = await poll;
    assert.equal(woke.status, 200, woke.text);
    assert.ok(woke.body.version > v, `long-poll answered version ${woke.body.version} after ${v}`);
    assert.ok(woke.text.includes("after-failover"), "the table the long-poll got holds the new deployment");
  });
});

const list0 = (m: Map<string, unknown>): string => [...m.keys()][0]!;
