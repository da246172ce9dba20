// Issue 16 item 13: a PATCH that changes nothing creates no table version. For PATCH /v1/deployments/{id},
// PATCH …/instances/{iid} and PATCH /v1/models/{id}: the same document (ignoring updated_at/revision) →
// 200 with the current document, nothing written (no INCR, no PUBLISH); a real change still moves the version.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { createKeys } from "../../control/src/redis/keys.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { registerModel, startReplica, table, testConfig, withRedis, type Replica } from "./harness.js";

describe("no-op PATCHes write nothing", () => {
  let redis: RedisServer;
  let c: Replica;
  let mock: MockOpenAI;
  let sub: Redis;
  let model: { id: string };
  const published: string[] = [];

  before(async () => {
    redis = await withRedis();
    mock = await startMockOpenAI({ model: "Qwen/Qwen2.5-7B-Instruct" });
    c = await startReplica(redis.url);
    model = await registerModel(c.api, "chat-small", { aliases: ["qwen"], served_name: "Qwen/Qwen2.5-7B-Instruct", display_name: "Chat small" });
    const r = await c.api("POST", "/v1/deployments", {
      body: { id: "d1", model: "chat-small", extra_paths: ["rerank"], instances: [{ id: "a", url: mock.url, weight: 3, region: "eu" }] },
    });
    assert.equal(r.status, 201, r.text);
    sub = new Redis(redis.url);
    await sub.subscribe(createKeys(testConfig(redis.url).keyPrefix).channel);
    sub.on("message", (_ch, m) => published.push(m));
  });

  after(async () => {
    sub?.disconnect();
    await c?.stop();
    await mock?.close();
    await redis?.close();
  });

  const version = async () => (await table(c.api)).version as number;

  // GET adds a live health view per instance (not part of the stored document): compare without it.
  const doc = (b: any) => (b.instances ? { ...b, instances: b.instances.map(({ health: _h, ...i }: any) => i) } : b);

  const noop = async (path: string, body: unknown, get: string) => {
    const before = await c.api("GET", get);
    const r = await c.api("PATCH", path, { body });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.revision, before.body.revision, `${path} ${JSON.stringify(body)}: revision moved`);
    assert.equal(r.body.updated_at, before.body.updated_at);
    assert.deepEqual(doc(r.body), doc(before.body));
    assert.deepEqual(doc((await c.api("GET", get)).body), doc(before.body));
  };

  test("no-op PATCHes of a deployment, an instance and a model: no new version, no publish", async () => {
    const v0 = await version();
    const seen = published.length;
    const d = (await c.api("GET", "/v1/deployments/d1")).body;
    for (let k = 0; k < 5; k++) {
      await noop("/v1/deployments/d1", { strategy: d.strategy, extra_paths: ["rerank"], forward_client_credentials: false }, "/v1/deployments/d1");
      await noop("/v1/deployments/d1", { health_check: { path: d.health_check.path } }, "/v1/deployments/d1");
      await noop("/v1/deployments/d1", {}, "/v1/deployments/d1");
      await noop("/v1/deployments/d1/instances/a", { weight: 3, region: "eu" }, "/v1/deployments/d1");
      await noop("/v1/deployments/d1/instances/a", { api_key: null }, "/v1/deployments/d1"); // it has none
      await noop("/v1/deployments/d1/instances/a", {}, "/v1/deployments/d1");
      await noop(`/v1/models/${model.id}`, { display_name: "Chat small", aliases: ["qwen"] }, `/v1/models/${model.id}`);
      await noop(`/v1/models/${model.id}`, {}, `/v1/models/${model.id}`);
    }
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(await version(), v0, "a no-op PATCH created a table version");
    assert.equal(published.length, seen, `no-op PATCHes published versions ${published.slice(seen)}`);
  });

  test("If-Match still applies to a no-op PATCH", async () => {
    const r = await c.api("PATCH", "/v1/deployments/d1", { body: {}, headers: { "if-match": '"999"' } });
    assert.equal(r.status, 412, r.text);
  });

  test("real changes still move the version (one each)", async () => {
    for (const [path, body] of [
      ["/v1/deployments/d1", { extra_paths: ["rerank", "audio/speech"] }],
      ["/v1/deployments/d1/instances/a", { weight: 4 }],
      [`/v1/models/${model.id}`, { aliases: ["qwen", "qwen-7b"] }],
    ] as const) {
      const v = await version();
      const before = published.length;
      const r = await c.api("PATCH", path, { body });
      assert.equal(r.status, 200, r.text);
      assert.ok((await version()) > v, `${path}: no new version`);
      assert.ok(published.length > before || (await new Promise((res) => setTimeout(res, 50)), published.length > before), `${path}: nothing published`);
    }
  });

  test("a new API key for an instance that already has one is a change (secret written)", async () => {
    let r = await c.api("PATCH", "/v1/deployments/d1/instances/a", { body: { api_key: "sk-one" } });
    assert.equal(r.status, 200, r.text);
    const rev = r.body.revision;
    r = await c.api("PATCH", "/v1/deployments/d1/instances/a", { body: { api_key: "sk-two" } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.revision, rev + 1);
  });
});
