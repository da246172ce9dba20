// Models and deployments CRUD in Redis; the routing table they produce; Idempotency-Key replays.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { RoutingTable } from "../../control/contracts/routing-table.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { PLUGIN, VIEWER, registerModel, startReplica, table, waitFor, withRedis, type Replica } from "./harness.js";

describe("deployments: happy paths", () => {
  let redis: RedisServer;
  let mock: MockOpenAI;
  let slow: MockOpenAI;
  let c: Replica;
  let slowControl: Replica;

  before(async () => {
    redis = await withRedis();
    mock = await startMockOpenAI({ model: "llama-3.1-8b" });
    slow = await startMockOpenAI({ model: "qwen2.5-7b", latencyMs: 300 });
    // Generous per-request timeouts: under load a 300 ms mock must still pass (either replica may test it).
    c = await startReplica(redis.url, { CONNECTIVITY_TIMEOUT_MS: "3000" });
    slowControl = await startReplica(redis.url, { CREATE_WAIT_MS: "50", CONNECTIVITY_TIMEOUT_MS: "3000" });
  });
  after(async () => {
    await c.stop();
    await slowControl.stop();
    await mock.close();
    await slow.close();
    await redis.close();
  });

  test("model registry: create, read, list, patch with If-Match, names resolve", async () => {
    const m = await registerModel(c.api, "mistral-7b", { aliases: ["mistral"], display_name: "Mistral 7B", family: "mistral", context_length: 32768 });
    assert.equal(m.name, "mistral-7b");
    assert.deepEqual(m.aliases, ["mistral"]);
    const got = await c.api("GET", `/v1/models/${m.id}`, { token: VIEWER });
    assert.equal(got.status, 200);
    assert.equal(got.headers.get("etag"), `"1"`);
    const list = await c.api("GET", "/v1/models", { token: VIEWER });
    assert.ok(list.body.models.some((x: { id: string }) => x.id === m.id));
    const patched = await c.api("PATCH", `/v1/models/${m.id}`, { body: { aliases: ["mistral", "mistral-instruct"] }, headers: { "if-match": `"1"` } });
    assert.equal(patched.status, 200);
    assert.equal(patched.headers.get("etag"), `"2"`);
    assert.deepEqual(patched.body.aliases, ["mistral", "mistral-instruct"]);
    const del = await c.api("DELETE", `/v1/models/${m.id}`);
    assert.equal(del.status, 204);
    assert.equal((await c.api("GET", `/v1/models/${m.id}`)).status, 404);
    // Its names are free again.
    await registerModel(c.api, "mistral-instruct");
  });

  test("create: the connectivity test runs, the instance joins the pool, the table serves it", async () => {
    const model = await registerModel(c.api, "llama-3.1-8b", { aliases: ["llama3"] });
    const r = await c.api("POST", "/v1/deployments", {
      body: { id: "llama-prod", model: "llama3", strategy: "weighted_round_robin", instances: [{ id: "a", url: mock.url, weight: 3, region: "us-east", gpu_count: 1, gpu_memory_gb: 80 }] },
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers.get("location"), "/v1/deployments/llama-prod");
    assert.equal(r.body.model_id, model.id);
    const inst = r.body.instances[0];
    assert.equal(inst.state, "active");
    assert.equal(inst.last_check.ok, true);
    assert.equal(inst.last_check.engine, "vllm");
    assert.equal(typeof inst.last_check.latency_ms.total, "number");
    assert.equal(inst.address, `127.0.0.1:${mock.port}`);
    // The test really asked for a 1-token completion of the registered model.
    const completion = mock.requests.find((q) => q.path === "/v1/chat/completions");
    assert.ok(completion);
    assert.equal(JSON.parse(completion.body).max_tokens, 1);
    assert.equal(JSON.parse(completion.body).model, "llama-3.1-8b");

    const t = await table(c.api);
    assert.ok(RoutingTable.safeParse(t).success);
    assert.equal(t.models["llama3"], "llama-prod");
    assert.equal(t.models["llama-3.1-8b"], "llama-prod");
    const d = t.deployments.find((x: { id: string }) => x.id === "llama-prod");
    assert.deepEqual(d, {
      id: "llama-prod",
      cluster: "gw.llama-prod",
      strategy: "weighted_round_robin",
      on_unavailable: "fail",
      served_name: "llama-3.1-8b", // the model's served_name: the plugin rewrites requests named llama3
      instances: [{ id: "a", address: `127.0.0.1:${mock.port}`, base_path: "/v1", weight: 3, priority: 0, region: "us-east", state: "active" }],
    });
  });

  test("read and update a deployment with ETag / If-Match; the table follows", async () => {
    const got = await c.api("GET", "/v1/deployments/llama-prod", { token: VIEWER });
    assert.equal(got.status, 200);
    const etag = got.headers.get("etag")!;
    const before = (await table(c.api)).version;
    const upd = await c.api("PATCH", "/v1/deployments/llama-prod", { body: { strategy: "failover", on_unavailable: "panic", health_check: { interval_seconds: 5 } }, headers: { "if-match": etag } });
    assert.equal(upd.status, 200, upd.text);
    assert.notEqual(upd.headers.get("etag"), etag);
    assert.equal(upd.body.health_check.interval_seconds, 5);
    assert.equal(upd.body.health_check.unhealthy_threshold, 3);
    await waitFor(async () => (await table(c.api)).version > before, 2000, "new table version");
    const d = (await table(c.api)).deployments.find((x: { id: string }) => x.id === "llama-prod");
    assert.equal(d.strategy, "failover");
    assert.equal(d.on_unavailable, "panic");
    const list = await c.api("GET", "/v1/deployments", { token: VIEWER });
    assert.ok(list.body.deployments.some((x: { id: string }) => x.id === "llama-prod"));
  });

  test("routing table: ETag is the version, If-None-Match → 304", async () => {
    const r = await c.api("GET", "/v1/routing-table", { token: PLUGIN });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("etag"), `"${r.body.version}"`);
    assert.equal(r.headers.get("content-type")?.startsWith("application/json"), true);
    const nm = await c.api("GET", "/v1/routing-table", { token: PLUGIN, headers: { "if-none-match": `"${r.body.version}"` } });
    assert.equal(nm.status, 304);
    const old = await c.api("GET", "/v1/routing-table", { token: PLUGIN, headers: { "if-none-match": `"${r.body.version - 1}"` } });
    assert.equal(old.status, 200);
    // A long-poll with nothing changing answers 304 after the wait.
    const lp = await c.api("GET", "/v1/routing-table?wait=1", { token: PLUGIN, headers: { "if-none-match": `"${r.body.version}"` } });
    assert.equal(lp.status, 304);
    assert.ok(lp.ms >= 900, `waited ${lp.ms} ms`);
  });

  test("Idempotency-Key: the same key and body replay the first response", async () => {
    await registerModel(c.api, "phi-3");
    const body = { id: "phi", model: "phi-3", instances: [] };
    const first = await c.api("POST", "/v1/deployments", { body, headers: { "idempotency-key": "create-phi-1" } });
    assert.equal(first.status, 201, first.text);
    const again = await c.api("POST", "/v1/deployments", { body, headers: { "idempotency-key": "create-phi-1" } });
    assert.equal(again.status, 201);
    assert.equal(again.headers.get("idempotent-replayed"), "true");
    assert.deepEqual(again.body, first.body);
    assert.equal(again.headers.get("etag"), first.headers.get("etag"));
    // Without the key the same body conflicts (the deployment exists).
    const dup = await c.api("POST", "/v1/deployments", { body });
    assert.equal(dup.status, 409);
  });

  test("create answers 202 with pending instances when the test outlasts the bound (allow_unreachable), and finishes in the background", async () => {
    await registerModel(slowControl.api, "qwen2.5-7b");
    // Without allow_unreachable and with nothing passed yet, a create waits for the verdict (connectivity.create.test.ts).
    const r = await slowControl.api("POST", "/v1/deployments", { body: { id: "qwen-eu", model: "qwen2.5-7b", allow_unreachable: true, instances: [{ id: "eu-1", url: slow.url }] } });
    assert.equal(r.status, 202, r.text);
    assert.equal(r.body.instances[0].state, "pending");
    // Pending instances are not in the table; the deployment is (with no instances).
    const t = await table(slowControl.api);
    assert.deepEqual(t.deployments.find((x: { id: string }) => x.id === "qwen-eu").instances, []);
    await waitFor(async () => (await c.api("GET", "/v1/deployments/qwen-eu")).body.instances[0].state === "active", 5000, "instance active");
    await waitFor(async () => (await table(c.api)).deployments.find((x: { id: string }) => x.id === "qwen-eu").instances.length === 1, 2000, "instance in table");
  });

  test("delete a deployment: gone from the API and the table", async () => {
    const r = await c.api("DELETE", "/v1/deployments/phi");
    assert.equal(r.status, 204);
    assert.equal((await c.api("GET", "/v1/deployments/phi")).status, 404);
    await waitFor(async () => !(await table(c.api)).deployments.some((x: { id: string }) => x.id === "phi"), 2000, "phi gone from table");
    assert.equal((await table(c.api)).models["phi-3"], undefined);
  });

  test("OpenAPI document is generated from the schemas", async () => {
    const r = await c.api("GET", "/openapi.json", { token: null });
    assert.equal(r.status, 200);
    assert.equal(r.body.openapi, "3.1.0");
    const create = r.body.components.schemas.DeploymentCreate;
    assert.ok(create.properties.instances);
    assert.deepEqual(create.required, ["model"]);
    assert.ok(r.body.paths["/v1/routing-table"].get);
    assert.ok(r.body.components.schemas.InstanceCreate.properties.api_key);
    assert.equal(r.body.components.schemas.Instance.properties.api_key, undefined);
  });
});
