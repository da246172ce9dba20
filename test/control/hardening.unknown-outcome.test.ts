// Issue 16 item 3: "503: the change was not made — but it was". A write sent to Redis that gets no answer in
// time (Redis paused for writes with CLIENT PAUSE … WRITE, the command timeout passes) may still be applied
// when Redis resumes: it is answered 503 outcome_unknown (never store_unavailable, which says "not made"),
// its Idempotency-Key is kept, and a retry with the same key answers the real result — the first request's
// answer when its change was applied, a normal run (exactly once) when it was not. A fence makes sure a lost
// attempt can never apply after a retry took over.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { AppError } from "../../control/src/http/errors.js";
import { createIdempotencyStore } from "../../control/src/http/idempotency-store.js";
import { createCas, fences, Txn, type Fence } from "../../control/src/redis/cas.js";
import { createKeys } from "../../control/src/redis/keys.js";
import type { RedisServer } from "../support/redis.js";
import { registerModel, startReplica, waitFor, withRedis, type Api, type Replica, type Res } from "./harness.js";

const SERVED = "Qwen/Qwen2.5-7B-Instruct";

/**
 * An instance in front of the mock whose connectivity-test completions are held until `open()`: the creates
 * are then all between their Idempotency-Key claim and their commit, where the test pauses Redis.
 */
interface Gate {
  url: string;
  held(): number;
  open(): void;
  /** Hold completions again from now on. */
  shut(): void;
  close(): Promise<void>;
}

async function gatedInstance(target: MockOpenAI): Promise<Gate> {
  let opened = false;
  let waiting: (() => void)[] = [];
  const server: Server = createServer((req, res) => {
    const forward = () => {
      const up = httpRequest({ host: target.host, port: target.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on("error", () => res.destroy());
      req.pipe(up);
    };
    if (!opened && req.method === "POST" && (req.url ?? "").endsWith("/chat/completions")) waiting.push(forward);
    else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    held: () => waiting.length,
    shut() {
      opened = false;
    },
    open() {
      opened = true;
      const go = waiting;
      waiting = [];
      for (const f of go) f();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Send the same create again (same key, same body), as a client does, until it is no longer "still in
 * progress" (409) or "store unavailable, retry" (503, e.g. while the replica reconnects).
 */
async function retryUntilSettled(api: Api, path: string, body: unknown, key: string): Promise<Res> {
  let last: Res | undefined;
  await waitFor(
    async () => {
      last = await api("POST", path, { body, headers: { "idempotency-key": key } });
      const code = last.body?.error?.code;
      return !((last.status === 409 && code === "idempotency_in_progress") || (last.status === 503 && code === "store_unavailable"));
    },
    15_000,
    `the retry of ${key} to settle (last: ${last?.status} ${last?.text})`,
    20,
  );
  return last!;
}

const codeOf = (r: Res): string | undefined => r.body?.error?.code;

describe("unknown outcomes: a write sent without an answer is never called 'not made'", () => {
  let redis: RedisServer;
  let mock: MockOpenAI;
  let gate: Gate;
  // Several replicas: each has its own Redis connection, so several commits reach the paused Redis (on one
  // connection, everything after the first paused commit waits behind it — reads too).
  let replicas: Replica[] = [];
  let c: Replica;
  let admin: Redis;

  before(async () => {
    redis = await withRedis();
    mock = await startMockOpenAI({ model: SERVED });
    gate = await gatedInstance(mock);
    replicas = await Promise.all(
      [0, 1, 2].map((i) =>
        startReplica(redis.url, {
          REPLICA_ID: `uo-${i}`,
          // Short command timeout: the paused writes time out; connectivity tests long enough to be held.
          REDIS_COMMAND_TIMEOUT_MS: "250",
          CONNECTIVITY_TIMEOUT_MS: "30000",
          PROBE_TICK_MS: "0",
        }),
      ),
    );
    c = replicas[0]!;
    admin = new Redis(redis.url);
  });

  after(async () => {
    await admin?.call("CLIENT", "UNPAUSE").catch(() => undefined);
    admin?.disconnect();
    await Promise.all(replicas.map((r) => r.stop()));
    await gate?.close();
    await mock?.close();
    await redis?.close();
  });

  /** N creates held at their connectivity test, then Redis paused for writes, then the tests released. */
  async function createsUnderPause(prefix: string, n: number) {
    const models = [];
    for (let k = 0; k < n; k++) models.push(await registerModel(c.api, `${prefix}-m${k}`, { served_name: SERVED }));
    // No id in the body: the service makes one up, so a create run twice would make two deployments.
    const bodies = models.map((m) => ({ model: m.id, instances: [{ id: "a", url: gate.url }] }));
    const keys = models.map((_, k) => `${prefix}-key-${k}`);
    gate.shut();
    const pending = bodies.map((body, k) => on(k).api("POST", "/v1/deployments", { body, headers: { "idempotency-key": keys[k]! } }));
    await waitFor(() => gate.held() === n, 10_000, `${n} connectivity tests held`);
    await admin.call("CLIENT", "PAUSE", "60000", "WRITE");
    gate.open();
    const first = await Promise.all(pending);
    console.log(`# ${prefix}: first answers ${first.map((r) => codeOf(r) ?? r.status).join(", ")}`);
    return { models, bodies, keys, first };
  }

  /** The replica that gets create k; its retries go to the next one. */
  const on = (k: number) => replicas[k % replicas.length]!;
  const retryOn = (k: number) => replicas[(k + 1) % replicas.length]!;
  const modelDeployment = async (modelId: string) => await admin.hget("gw:model-deployment", modelId);

  test("Redis paused for writes: every create answers outcome_unknown or store_unavailable (then truly not made); retries with the same key answer the real result, exactly once", async () => {
    const n = 8;
    const { models, bodies, keys, first } = await createsUnderPause("uo-paused", n);
    try {
      for (const [k, r] of first.entries()) {
        assert.ok(r.status === 201 || r.status === 503, `create ${k}: ${r.status} ${r.text}`);
        if (r.status === 503) {
          assert.ok(codeOf(r) === "outcome_unknown" || codeOf(r) === "store_unavailable", `create ${k}: ${r.text}`);
          assert.equal(r.headers.get("retry-after"), "1", `create ${k}: 503 without Retry-After`);
          if (codeOf(r) === "outcome_unknown") assert.match(r.body.error.message, /may or may not have been applied/);
        }
      }
      const unknown = first.flatMap((r, k) => (codeOf(r) === "outcome_unknown" ? [k] : []));
      const notMade = first.flatMap((r, k) => (codeOf(r) === "store_unavailable" ? [k] : []));
      assert.ok(unknown.length >= 1, `no create's commit reached the paused Redis: ${first.map((r) => r.status + " " + codeOf(r)).join(", ")}`);
      // Nothing can have been written while writes are paused.
      for (const m of models) assert.equal(await modelDeployment(m.id), null);
    } finally {
      await admin.call("CLIENT", "UNPAUSE");
    }

    const unknown = first.flatMap((r, k) => (codeOf(r) === "outcome_unknown" ? [k] : []));
    const notMade = first.flatMap((r, k) => (codeOf(r) === "store_unavailable" ? [k] : []));
    const ids = new Map<number, string>();
    // The paused commits ran when Redis resumed: each retry answers the first request's real result.
    for (const k of unknown) {
      const r = await retryUntilSettled(retryOn(k).api, "/v1/deployments", bodies[k], keys[k]!);
      assert.equal(r.status, 201, `retry ${k}: ${r.text}`);
      assert.equal(r.headers.get("idempotent-replayed"), "true", `retry ${k} ran again instead of answering the first request's result`);
      assert.equal(r.body.model_id, models[k].id);
      assert.equal(r.headers.get("location"), `/v1/deployments/${r.body.id}`);
      assert.equal(await modelDeployment(models[k].id), r.body.id);
      ids.set(k, r.body.id);
    }
    // The paused commands have all run by now (each replica with a paused commit answered a retry's outcome
    // on the same connection, after it): a create answered "not made" really made nothing.
    for (const k of notMade) assert.equal(await modelDeployment(models[k].id), null, `create ${k} answered store_unavailable but was applied`);
    for (const k of notMade) {
      const r = await retryUntilSettled(retryOn(k).api, "/v1/deployments", bodies[k], keys[k]!);
      assert.equal(r.status, 201, `retry ${k}: ${r.text}`);
      assert.equal(r.headers.get("idempotent-replayed"), null);
      ids.set(k, r.body.id);
    }
    // Exactly one deployment per key, the one each retry named; a further retry replays it.
    const list = await c.api("GET", "/v1/deployments");
    const mine = list.body.deployments.filter((d: { model_id: string }) => models.some((m) => m.id === d.model_id));
    assert.equal(mine.length, n, `deployments: ${mine.map((d: { id: string; model_id: string }) => `${d.id}→${d.model_id}`).join(", ")}`);
    for (let k = 0; k < n; k++) {
      assert.equal(mine.filter((d: { model_id: string }) => d.model_id === models[k].id).length, 1);
      const again = await on(k).api("POST", "/v1/deployments", { body: bodies[k], headers: { "idempotency-key": keys[k]! } });
      assert.equal(again.status, 201, again.text);
      assert.equal(again.headers.get("idempotent-replayed"), "true");
      assert.equal(again.body.id, ids.get(k));
    }
  });

  test("a paused commit that never runs (its connection is killed): outcome_unknown, then the retry with the same key applies it exactly once", async () => {
    const n = 4;
    const { models, bodies, keys, first } = await createsUnderPause("uo-lost", n);
    let unknown: number[] = [];
    try {
      unknown = first.flatMap((r, k) => (codeOf(r) === "outcome_unknown" ? [k] : []));
      for (const [k, r] of first.entries()) assert.ok(codeOf(r) === "outcome_unknown" || codeOf(r) === "store_unavailable", `create ${k}: ${r.status} ${r.text}`);
      assert.ok(unknown.length >= 1, `no create's commit reached the paused Redis: ${first.map((r) => r.status + " " + codeOf(r)).join(", ")}`);
      // Kill the replicas' command connections while their commits wait in Redis: Redis drops the commands.
      // (Each create that answered outcome_unknown left its connection blocked on its commit.)
      const blocked = async () =>
        String(await admin.call("CLIENT", "LIST"))
          .split("\n")
          .filter((x) => / name=gw-control-uo-\d+ /.test(x) && / flags=\S*b/.test(x))
          .map((x) => /id=(\d+)/.exec(x)![1]!);
      const expected = new Set(unknown.map((k) => on(k).control.replica)).size;
      await waitFor(async () => (await blocked()).length >= expected, 5_000, `${expected} replica connections blocked on their commits`);
      for (const id of await blocked()) await admin.call("CLIENT", "KILL", "ID", id);
    } finally {
      await admin.call("CLIENT", "UNPAUSE");
    }
    const ids = new Set<string>();
    for (let k = 0; k < n; k++) {
      const r = await retryUntilSettled(retryOn(k).api, "/v1/deployments", bodies[k], keys[k]!);
      assert.equal(r.status, 201, `retry ${k}: ${r.text}`);
      // The first attempt made nothing: the retry ran it (not a replay), once.
      assert.equal(r.headers.get("idempotent-replayed"), null, `retry ${k} replayed a change that was never made`);
      assert.equal(await modelDeployment(models[k].id), r.body.id);
      ids.add(r.body.id);
    }
    assert.equal(ids.size, n);
    const list = await c.api("GET", "/v1/deployments");
    for (const m of models) assert.equal(list.body.deployments.filter((d: { model_id: string }) => d.model_id === m.id).length, 1);
  });

  test("without an Idempotency-Key: outcome_unknown (read the resource), never store_unavailable for a sent write", async () => {
    const m = await registerModel(c.api, "uo-nokey", { served_name: SERVED });
    const body = { model: m.id, instances: [{ id: "a", url: gate.url }] };
    gate.open();
    await admin.call("CLIENT", "PAUSE", "60000", "WRITE");
    let r: Res;
    try {
      r = await c.api("POST", "/v1/deployments", { body });
    } finally {
      await admin.call("CLIENT", "UNPAUSE");
    }
    assert.equal(r.status, 503, r.text);
    // The create passed its test and sent its commit (reads are not paused), which ran once Redis resumed.
    assert.equal(codeOf(r), "outcome_unknown", r.text);
    assert.equal(r.headers.get("retry-after"), "1");
    assert.match(r.body.error.message, /read the resource/);
    await waitFor(async () => (await modelDeployment(m.id)) !== null, 5_000, "the paused create applied once Redis resumed");
  });
});

describe("the fence: an old attempt executing late cannot apply after a retry took over", () => {
  let redis: RedisServer;
  let conn: Redis;
  let late: Redis;

  before(async () => {
    redis = await withRedis();
    conn = new Redis(redis.url);
    late = new Redis(redis.url);
  });
  after(async () => {
    conn?.disconnect();
    late?.disconnect();
    await redis?.close();
  });

  test("commit under a stale attempt does nothing; the current one applies and marks the key applied", async () => {
    const keys = createKeys("uo-fence:");
    const store = createIdempotencyStore({ redis: conn, keys, ttlSeconds: 600, inProgressSeconds: 60 });
    const commit = createCas(conn, keys.version, keys.channel);
    const lateCommit = createCas(late, keys.version, keys.channel);
    const scope = "admin POST /v1/models k-1";
    const fenceOf = (attempt: string): Fence => ({ ...store.fenceOf(scope), attempt, active: true, wrote: false, detach: () => false, resolve: async () => null });
    const txn = (value: string) => new Txn().guard(keys.models, "m", null).op("HSET", keys.models, "m", value).bump();
    const fenced = (e: unknown) => e instanceof AppError && e.code === "write_conflict";
    // Load the script once (a MULTI below queues EVALSHA, which must find it).
    await commit(new Txn().op("SADD", "uo-fence:warm", "x"));

    assert.deepEqual(await store.claim(scope, "fp", "a1"), { kind: "run" });
    // Attempt 1's commit is sent but not run yet: queued in a transaction on another connection.
    await late.multi({ pipeline: false });
    await fences.run(fenceOf("a1"), () => lateCommit(txn("from-a1")));
    // Its outcome is learnt first (not applied: its fence is removed, the key freed); a retry claims the key.
    assert.deepEqual(await store.resolve(scope, "a1"), { applied: false });
    assert.deepEqual(await store.claim(scope, "fp", "a2"), { kind: "run" });
    // Now attempt 1's commit runs, late: it does nothing.
    const ran = (await late.exec()) as [Error | null, unknown][];
    assert.deepEqual(ran, [[null, -2]]);
    assert.equal(await conn.hget(keys.models, "m"), null);
    assert.equal(await conn.get(keys.version), null);
    // Issued late through the API, the same: refused, nothing written.
    await assert.rejects(fences.run(fenceOf("a1"), () => commit(txn("from-a1"))), fenced);
    assert.equal(await conn.hget(keys.models, "m"), null);

    // Attempt 2 commits: applied, and marked so in the same script.
    const a2 = fenceOf("a2");
    const r = await fences.run(a2, () => commit(txn("from-a2")));
    assert.ok(r.ok);
    assert.equal(await conn.hget(keys.models, "m"), "from-a2");
    assert.equal(a2.active, false, "one change per fence");
    assert.deepEqual(await store.resolve(scope, "a2"), { applied: true, version: r.version });
    // While attempt 2 runs, a retry waits; a retry with another body is refused.
    assert.deepEqual(await store.claim(scope, "fp", "a3"), { kind: "running" });
    assert.deepEqual(await store.claim(scope, "other-fp", "a3"), { kind: "reused" });
    // Attempt 2 ends without a kept answer (say a 5xx after its commit): the key is not freed — a retry
    // learns "applied" and never runs the change again; a commit under another attempt is refused.
    assert.deepEqual(await store.release(scope, "a2"), { applied: true, version: r.version });
    assert.deepEqual(await store.claim(scope, "fp", "a3"), { kind: "applied" });
    await assert.rejects(fences.run(fenceOf("a3"), () => commit(txn("from-a3"))), fenced);
    assert.equal(await conn.hget(keys.models, "m"), "from-a2");
  });

  test("a kept answer is replayed; an attempt that wrote nothing frees the key for the next", async () => {
    const keys = createKeys("uo-fence2:");
    const store = createIdempotencyStore({ redis: conn, keys, ttlSeconds: 600, inProgressSeconds: 60 });
    const commit = createCas(conn, keys.version, keys.channel);
    const fenceOf = (scope: string, attempt: string): Fence => ({ ...store.fenceOf(scope), attempt, active: true, wrote: false, detach: () => false, resolve: async () => null });

    // Nothing written (e.g. 422 connectivity_failed): released → the next attempt runs.
    assert.deepEqual(await store.claim("s1", "fp", "b1"), { kind: "run" });
    assert.deepEqual(await store.release("s1", "b1"), { applied: false });
    assert.deepEqual(await store.claim("s1", "fp", "b2"), { kind: "run" });
    await assert.rejects(fences.run(fenceOf("s1", "b1"), () => commit(new Txn().op("HSET", keys.models, "x", "b1"))));
    const b2 = fenceOf("s1", "b2");
    const r = await fences.run(b2, () => commit(new Txn().op("HSET", keys.models, "x", "b2")));
    assert.ok(r.ok);
    assert.equal(b2.wrote, true, "the fenced commit wrote");
    assert.equal(await store.complete("s1", "b2", { fingerprint: "fp", state: "done", status: 201, headers: { location: "/x" }, body: { id: "x" } }, b2.wrote), "kept");
    const done = await store.claim("s1", "fp", "b3");
    assert.equal(done.kind, "done");
    assert.deepEqual(done.kind === "done" && { status: done.record.status, body: done.record.body, headers: done.record.headers }, { status: 201, body: { id: "x" }, headers: { location: "/x" } });
    // A late complete by an attempt that no longer holds the key changes nothing.
    assert.deepEqual(await store.claim("s2", "fp", "c1"), { kind: "run" });
    assert.deepEqual(await store.resolve("s2", "c1"), { applied: false });
    assert.deepEqual(await store.claim("s2", "fp", "c2"), { kind: "run" });
    assert.equal(await store.complete("s2", "c1", { fingerprint: "fp", state: "done", status: 500, body: null }, false), "stale");
    assert.deepEqual(await store.claim("s2", "fp", "c3"), { kind: "running" });
  });
  test("an answer is never kept for a change the store no longer has (a failover lost it after the commit): the key is freed", async () => {
    const keys = createKeys("uo-fence3:");
    const store = createIdempotencyStore({ redis: conn, keys, ttlSeconds: 600, inProgressSeconds: 60 });
    const commit = createCas(conn, keys.version, keys.channel);
    const fenceOf = (scope: string, attempt: string): Fence => ({ ...store.fenceOf(scope), attempt, active: true, wrote: false, detach: () => false, resolve: async () => null });
    const answer = { fingerprint: "fp", state: "done" as const, status: 201, headers: { location: "/y" }, body: { id: "y" } };

    assert.deepEqual(await store.claim("s3", "fp", "d1"), { kind: "run" });
    const d1 = fenceOf("s3", "d1");
    assert.ok((await fences.run(d1, () => commit(new Txn().op("HSET", keys.models, "y", "d1").bump()))).ok);
    // What a primary promoted without the last writes holds: neither the change nor its "applied" fence.
    await conn.del(store.fenceOf("s3").key);
    await conn.hdel(keys.models, "y");
    assert.equal(await store.complete("s3", "d1", answer, d1.wrote), "lost");
    // No answer to replay for a change that is not there: the next attempt runs (and makes it, once).
    assert.deepEqual(await store.claim("s3", "fp", "d2"), { kind: "run" });
    const d2 = fenceOf("s3", "d2");
    assert.ok((await fences.run(d2, () => commit(new Txn().op("HSET", keys.models, "y", "d2").bump()))).ok);
    assert.equal(await store.complete("s3", "d2", answer, d2.wrote), "kept");
    assert.equal((await store.claim("s3", "fp", "d3")).kind, "done");

    // The fence still names the attempt but is not "applied" (the promoted primary had the claim, not the commit).
    assert.deepEqual(await store.claim("s4", "fp", "e1"), { kind: "run" });
    assert.equal(await store.complete("s4", "e1", answer, true), "lost");
    assert.deepEqual(await store.claim("s4", "fp", "e2"), { kind: "run" });
    // An attempt that wrote nothing keeps its answer without an applied fence (a 4xx, a no-op).
    assert.equal(await store.complete("s4", "e2", { ...answer, status: 409 }, false), "kept");
    assert.equal((await store.claim("s4", "fp", "e3")).kind, "done");
  });
});
