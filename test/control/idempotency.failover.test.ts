// Issue 20: a change answered by a primary that then fails over without it must not be replayed as made.
// The idempotency middleware keeps a writing request's answer only while the store's fence says "applied"
// (idempotency-store.ts COMPLETE); when the current primary lacks the change, the client is told it is not
// made (503 store_unavailable, no Location) and the key is freed, so a retry with the same key makes it once.
// Between the commit and the answer record the test does what such a failover leaves behind: the change and
// its applied fence are gone.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import express from "express";
import { Redis } from "ioredis";
import { AppError } from "../../control/src/http/errors.js";
import { idempotency, stable } from "../../control/src/http/idempotency.js";
import { createIdempotencyStore, type IdempotencyStore } from "../../control/src/http/idempotency-store.js";
import { createCas, fences, Txn } from "../../control/src/redis/cas.js";
import { createKeys } from "../../control/src/redis/keys.js";
import { createLogger } from "../../control/src/log.js";
import type { RedisServer } from "../support/redis.js";
import { withRedis } from "./harness.js";

describe("idempotency: no replay of a change the store lost", () => {
  let redis: RedisServer;
  let conn: Redis;
  let server: Server;
  let base: string;
  const keys = createKeys("lost-change:");
  const logs: string[] = [];
  /** What happens to the store between the commit and the answer record, per request. */
  let beforeComplete: (scope: string) => Promise<void> = async () => undefined;
  /** The answer record is sent, but its answer lost (the connection closes): as the store's own retry does, it lands later. */
  let loseAnswer = false;
  let real: IdempotencyStore;

  before(async () => {
    redis = await withRedis();
    conn = new Redis(redis.url);
    real = createIdempotencyStore({ redis: conn, keys, ttlSeconds: 600, inProgressSeconds: 60 });
    const store: IdempotencyStore = {
      ...real,
      complete: async (scope, attempt, record, wrote) => {
        await beforeComplete(scope);
        if (!loseAnswer) return real.complete(scope, attempt, record, wrote);
        loseAnswer = false;
        setTimeout(() => void real.complete(scope, attempt, record, wrote), 50);
        throw new Error("Connection is closed.");
      },
    };
    const commit = createCas(conn, keys.version, keys.channel);
    const app = express();
    app.use(express.json());
    app.post("/v1/things", idempotency(store, createLogger({ sink: (l) => logs.push(l) })), async (req, res) => {
      const id = String((req.body as { id: string }).id);
      await commit(new Txn().op("HSET", keys.models, id, "made").bump());
      res.setHeader("location", `/v1/things/${id}`);
      res.status(201).json({ id });
    });
    app.use((err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      const e = err as AppError;
      res.status(e instanceof AppError ? e.status : 500).json({ error: { code: e instanceof AppError ? e.code : "internal" } });
    });
    server = app.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server?.close();
    conn?.disconnect();
    await redis?.close();
  });

  const create = (id: string, key: string) =>
    fetch(`${base}/v1/things`, { method: "POST", headers: { "content-type": "application/json", "idempotency-key": key }, body: JSON.stringify({ id }) });

  test("lost between commit and answer: 503 store_unavailable without Location; the retry makes it once and is replayed after", async () => {
    beforeComplete = async (scope) => {
      // The promoted replica never got the last writes: the change and its applied fence are not there.
      await conn.hdel(keys.models, "t1");
      await conn.del(real.fenceOf(scope).key);
    };
    const first = await create("t1", "k-1");
    assert.equal(first.status, 503);
    assert.equal(first.headers.get("location"), null, "no Location for a change that is not there");
    assert.equal(first.headers.get("retry-after"), "1");
    assert.equal(((await first.json()) as { error: { code: string } }).error.code, "store_unavailable");
    assert.equal(await conn.hget(keys.models, "t1"), null);
    assert.ok(logs.some((l) => l.includes("change lost by the state store")), "the loss is logged");

    beforeComplete = async () => undefined;
    const retry = await create("t1", "k-1");
    assert.equal(retry.status, 201);
    assert.equal(retry.headers.get("idempotent-replayed"), null, "the retry ran, it was not a replay");
    assert.equal(await conn.hget(keys.models, "t1"), "made");
    const again = await create("t1", "k-1");
    assert.equal(again.status, 201);
    assert.equal(again.headers.get("idempotent-replayed"), "true");
    assert.equal(again.headers.get("location"), "/v1/things/t1");
  });

  test("kept when the change is there: 201, replayed to the retry", async () => {
    beforeComplete = async () => undefined;
    const first = await create("t2", "k-2");
    assert.equal(first.status, 201);
    const again = await create("t2", "k-2");
    assert.equal(again.headers.get("idempotent-replayed"), "true");
    assert.deepEqual(await again.json(), { id: "t2" });
  });

  test("the answer record's fate unknown (connection closed): 503 outcome_unknown, and the retry gets the real answer, made once", async () => {
    beforeComplete = async () => undefined;
    loseAnswer = true;
    const first = await create("t3", "k-3");
    assert.equal(first.status, 503);
    assert.equal(first.headers.get("location"), null);
    assert.equal(((await first.json()) as { error: { code: string } }).error.code, "outcome_unknown");
    assert.equal(await conn.hget(keys.models, "t3"), "made", "the change itself was made");
    let retry: Response;
    for (let i = 0; ; i++) {
      retry = await create("t3", "k-3");
      if (retry.status !== 409 || i > 200) break; // idempotency_in_progress until the record lands
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(retry.status, 201);
    assert.equal(retry.headers.get("idempotent-replayed"), "true", "replayed, never run twice");
    assert.equal(await conn.hlen(keys.models), 3, "t1, t2, t3: each made once");
  });
});

describe("idempotency: the claim lives as long as its replica", () => {
  let redis: RedisServer;
  let conn: Redis;
  before(async () => {
    redis = await withRedis();
    conn = new Redis(redis.url);
  });
  after(async () => {
    conn?.disconnect();
    await redis?.close();
  });

  test("a running request keeps its claim past CLAIM_MS (renewed); a claim nobody renews (its replica died) runs out and the retry runs, once", async () => {
    const keys = createKeys("claim-life:");
    const store = createIdempotencyStore({ redis: conn, keys, ttlSeconds: 600, inProgressSeconds: 60, claimMs: 1_000 });
    const commit = createCas(conn, keys.version, keys.channel);
    let release: () => void = () => undefined;
    /** Commits that applied, per id. */
    const made = new Map<string, number>();
    const held = new Promise<void>((r) => (release = r));
    const app = express();
    app.use(express.json());
    app.post("/v1/things", idempotency(store, createLogger({ sink: () => undefined })), async (req, res) => {
      const id = String((req.body as { id: string }).id);
      // Only the first u1 waits (a retry that wrongly ran would answer, not hang).
      if (id === "u1" && !made.has("u1-held")) {
        made.set("u1-held", 1);
        await held;
      }
      await commit(new Txn().op("HSET", keys.models, id, "made").bump());
      made.set(id, (made.get(id) ?? 0) + 1);
      res.status(201).json({ id });
    });
    app.use((err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(err instanceof AppError ? err.status : 500).json({ error: { code: err instanceof AppError ? err.code : "internal" } });
    });
    const server = app.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const create = async (id: string, key: string) => {
      const r = await fetch(`${base}/v1/things`, { method: "POST", headers: { "content-type": "application/json", "idempotency-key": key }, body: JSON.stringify({ id }) });
      return { status: r.status, body: (await r.json()) as { error?: { code: string } } };
    };
    try {
      // Alive: held for 2.5 claim periods, a retry is still told "in progress".
      const first = create("u1", "k-u1");
      await new Promise((r) => setTimeout(r, 2_500));
      const during = await create("u1", "k-u1");
      assert.equal(during.status, 409);
      assert.equal(during.body.error?.code, "idempotency_in_progress");
      release();
      assert.equal((await first).status, 201);
      assert.equal(made.get("u1"), 1);

      // Dead: the same request claimed by an attempt whose replica is gone (never renewed, never committed).
      const fingerprint = createHash("sha256").update(stable({ id: "u2" })).digest("hex");
      assert.deepEqual(await store.claim(" POST /v1/things k-u2", fingerprint, "dead-attempt"), { kind: "run" });
      assert.equal((await create("u2", "k-u2")).status, 409, "the claim holds at first");
      const t0 = Date.now();
      let r = await create("u2", "k-u2");
      while (r.status === 409 && Date.now() - t0 < 5_000) {
        await new Promise((res) => setTimeout(res, 20));
        r = await create("u2", "k-u2");
      }
      assert.equal(r.status, 201, `the retry ran after the dead claim ran out (${Date.now() - t0} ms)`);
      assert.ok(Date.now() - t0 < 3_000, "within about one claim period");
      // The dead attempt cannot commit any more: the claim moved its fence.
      const late = { ...store.fenceOf(" POST /v1/things k-u2"), attempt: "dead-attempt", active: true, wrote: false, detach: () => false, resolve: async () => null };
      await assert.rejects(fences.run(late, () => commit(new Txn().op("HSET", keys.models, "u2", "late").bump())), (e: unknown) => e instanceof AppError && e.code === "write_conflict");
      assert.equal(await conn.hget(keys.models, "u2"), "made");
      assert.equal(made.get("u2"), 1, "made once");
    } finally {
      release();
      server.close();
    }
  });
});
