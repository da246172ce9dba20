// Create and scale-up when connectivity tests fail (issue 15): the instances are tested before anything is
// stored. None passed → 422 connectivity_failed with what each test saw, nothing stored (no deployment, no
// table version); allow_unreachable → stored anyway (201); some passed → 201 with `warnings`; a test that
// outlasts CREATE_WAIT_MS → 202 only with an instance that passed (or allow_unreachable).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ConnectivityEvidence, DeploymentCreated, InstanceAdded } from "../../control/src/deployments/schemas.js";
import { ErrorBody } from "../../control/src/openapi.js";
import { closedPortUrl, startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { ADMIN, PLUGIN, registerModel, startReplica, table, withRedis, type Replica } from "./harness.js";

const SECRET = "sk-create-test-SECRET-0123456789";

/** An upstream that lists the model but refuses the completion and echoes the credentials it got. */
async function echoingUpstream(model: string): Promise<{ url: string; close(): Promise<void> }> {
  const srv: Server = createServer((req, res) => {
    res.setHeader("content-type", "application/json");
    if (req.url === "/v1/models") return res.end(JSON.stringify({ object: "list", data: [{ id: model, object: "model", owned_by: "vllm" }] }));
    res.statusCode = 403;
    res.end(JSON.stringify({ error: { message: `key ${req.headers.authorization ?? "none"} may not use ${model}; raw ${SECRET} too`, type: "permission_error" } }));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/v1`, close: () => new Promise((r) => srv.close(() => r())) };
}

describe("create and scale-up when connectivity tests fail", () => {
  let redis: RedisServer;
  let c: Replica;
  let slowCtl: Replica;
  let good: MockOpenAI;
  let good2: MockOpenAI;
  let broken: MockOpenAI;
  /** A second failing server (cf-partial already has broken's: the same server twice is 409 duplicate_address). */
  let broken2: MockOpenAI;
  let keyed: MockOpenAI;
  let slow: MockOpenAI;
  let echo: Awaited<ReturnType<typeof echoingUpstream>>;
  let refusedUrl: string;
  const version = async () => (await table(c.api)).version as number;

  before(async () => {
    redis = await withRedis();
    good = await startMockOpenAI({ model: "cf-model" });
    good2 = await startMockOpenAI({ model: "cf-model" });
    broken = await startMockOpenAI({ model: "cf-model", mode: "error_5xx" });
    broken2 = await startMockOpenAI({ model: "cf-model", mode: "error_5xx" });
    keyed = await startMockOpenAI({ model: "cf-model", apiKey: "the-right-key-0123456789" });
    slow = await startMockOpenAI({ model: "cf-slow", latencyMs: 300 });
    echo = await echoingUpstream("cf-model");
    refusedUrl = await closedPortUrl();
    c = await startReplica(redis.url, { CONNECTIVITY_TIMEOUT_MS: "2000" });
    // Tests that outlast the wait: CREATE_WAIT_MS 50 against instances answering after 300 ms per request.
    slowCtl = await startReplica(redis.url, { CREATE_WAIT_MS: "50", CONNECTIVITY_TIMEOUT_MS: "3000" });
    for (const m of ["cf-model", "cf-model-2", "cf-model-3", "cf-model-4", "cf-idem"]) await registerModel(c.api, m, { served_name: "cf-model" });
    for (const m of ["cf-slow", "cf-slow-2", "cf-slow-3"]) await registerModel(c.api, m, { served_name: "cf-slow" });
  });
  after(async () => {
    await c.stop();
    await slowCtl.stop();
    for (const m of [good, good2, broken, broken2, keyed, slow]) await m.close();
    await echo.close();
    await redis.close();
  });

  test("every instance fails: 422 connectivity_failed with each test's evidence; nothing stored, no table version", async () => {
    const v0 = await version();
    const events = await c.api("GET", "/v1/deployments");
    const r = await c.api("POST", "/v1/deployments", {
      body: {
        id: "cf-all-fail",
        model: "cf-model",
        instances: [
          { id: "refused", url: refusedUrl },
          { id: "five-hundred", url: broken.url },
          { id: "wrong-key", url: keyed.url, api_key: SECRET },
          { id: "echo", url: echo.url, api_key: SECRET },
        ],
      },
    });
    assert.equal(r.status, 422, r.text);
    assert.ok(ErrorBody.safeParse(r.body).success, r.text);
    assert.equal(r.body.error.code, "connectivity_failed");
    assert.match(r.body.error.message, /no instance passed its connectivity test/);
    const byId = Object.fromEntries((r.body.error.instances as unknown[]).map((e) => ConnectivityEvidence.parse(e)).map((e) => [e.instance_id, e]));
    assert.deepEqual(Object.keys(byId).sort(), ["echo", "five-hundred", "refused", "wrong-key"]);
    assert.equal(byId.refused!.code, "refused");
    assert.equal(byId.refused!.url, refusedUrl);
    assert.equal(byId.refused!.check.address, new URL(refusedUrl).host);
    assert.equal(byId["five-hundred"]!.code, "http_error");
    assert.equal(byId["five-hundred"]!.check.http_status, 500);
    assert.equal(byId["wrong-key"]!.code, "http_error");
    assert.equal(byId["wrong-key"]!.check.http_status, 401);
    assert.equal(byId["wrong-key"]!.check.detail, "Unauthorized", "the engine's own error text");
    assert.equal(byId.echo!.check.http_status, 403);
    assert.match(byId.echo!.check.detail ?? "", /\[redacted\] may not use cf-model/);
    // Each failure also names its instance's URL field (clients show it there).
    assert.deepEqual(r.body.error.issues.map((i: { path: string }) => i.path), ["instances.0.url", "instances.1.url", "instances.2.url", "instances.3.url"]);
    // Never a secret: not the API key the test sent, not an echo of it.
    assert.ok(!r.text.includes(SECRET), r.text);
    assert.ok(!c.logs.some((l) => l.includes(SECRET)), "no API key in the logs");

    // Nothing stored: no deployment, the model is free, no new table version.
    assert.equal((await c.api("GET", "/v1/deployments/cf-all-fail")).status, 404);
    assert.deepEqual((await c.api("GET", "/v1/deployments")).body, events.body);
    assert.equal(await version(), v0, "no table version for a refused create");
    assert.equal((await table(c.api)).models["cf-model"], undefined);
  });

  test("allow_unreachable: true stores them anyway (201), unreachable, with warnings", async () => {
    const body = { id: "cf-anyway", model: "cf-model", allow_unreachable: true, instances: [{ id: "refused", url: refusedUrl }, { id: "five-hundred", url: broken.url }] };
    const r = await c.api("POST", "/v1/deployments", { body });
    assert.equal(r.status, 201, r.text);
    DeploymentCreated.parse(r.body);
    assert.deepEqual(r.body.instances.map((i: { state: string }) => i.state), ["unreachable", "unreachable"]);
    assert.deepEqual(r.body.warnings.map((w: { instance_id: string; code: string }) => [w.instance_id, w.code]), [["refused", "refused"], ["five-hundred", "http_error"]]);
    const got = await c.api("GET", "/v1/deployments/cf-anyway");
    assert.equal(got.status, 200);
    assert.equal(got.body.warnings, undefined, "warnings are an answer, not stored");
    assert.equal(got.body.allow_unreachable, undefined);
    assert.deepEqual((await table(c.api)).deployments.find((d: { id: string }) => d.id === "cf-anyway").instances, []);
    // Re-testing once fixed works as before.
    broken.set({ mode: "ok" });
    try {
      const rt = await c.api("POST", "/v1/deployments/cf-anyway/instances/five-hundred/test");
      assert.equal(rt.status, 200, rt.text);
      assert.equal(rt.body.instances.find((i: { id: string }) => i.id === "five-hundred").state, "active");
    } finally {
      broken.set({ mode: "error_5xx" });
    }
    assert.equal((await c.api("DELETE", "/v1/deployments/cf-anyway")).status, 204);
  });

  test("some pass: 201, the failed ones stored unreachable and named in warnings with the reason", async () => {
    const r = await c.api("POST", "/v1/deployments", {
      body: { id: "cf-partial", model: "cf-model-2", instances: [{ id: "ok", url: good.url }, { id: "refused", url: refusedUrl }, { id: "five-hundred", url: broken.url }] },
    });
    assert.equal(r.status, 201, r.text);
    DeploymentCreated.parse(r.body);
    assert.deepEqual(r.body.instances.map((i: { id: string; state: string }) => [i.id, i.state]), [["ok", "active"], ["refused", "unreachable"], ["five-hundred", "unreachable"]]);
    assert.deepEqual(r.body.warnings.map((w: { instance_id: string; code: string }) => [w.instance_id, w.code]), [["refused", "refused"], ["five-hundred", "http_error"]]);
    assert.match(r.body.warnings[1].message, /answered 500/);
    const t = await table(c.api);
    assert.deepEqual(t.deployments.find((d: { id: string }) => d.id === "cf-partial").instances.map((i: { id: string }) => i.id), ["ok"]);
    // All passed: an empty warnings list.
    const all = await c.api("POST", "/v1/deployments", { body: { id: "cf-all-ok", model: "cf-model-3", instances: [{ id: "a", url: good.url }, { id: "b", url: good2.url }] } });
    assert.equal(all.status, 201, all.text);
    assert.deepEqual(all.body.warnings, []);
  });

  test("Idempotency-Key: a 422 is not kept — the same request with the same key runs again once the instance answers", async () => {
    const body = { id: "cf-idem", model: "cf-idem", instances: [{ id: "x", url: broken.url }] };
    const headers = { "idempotency-key": "cf-idem-1" };
    const first = await c.api("POST", "/v1/deployments", { body, headers });
    assert.equal(first.status, 422, first.text);
    assert.equal(first.headers.get("idempotent-replayed"), null);
    broken.set({ mode: "ok" });
    try {
      const second = await c.api("POST", "/v1/deployments", { body, headers });
      assert.equal(second.status, 201, second.text);
      assert.equal(second.headers.get("idempotent-replayed"), null);
      const replay = await c.api("POST", "/v1/deployments", { body, headers });
      assert.equal(replay.status, 201);
      assert.equal(replay.headers.get("idempotent-replayed"), "true");
      assert.deepEqual(replay.body, second.body);
      // Another body with the key → 422 idempotency_key_reused, as before.
      const other = await c.api("POST", "/v1/deployments", { body: { ...body, strategy: "failover" }, headers });
      assert.equal(other.body.error.code, "idempotency_key_reused");
    } finally {
      broken.set({ mode: "error_5xx" });
    }
  });

  test("scale-up: a failing instance → 422 and nothing stored; allow_unreachable → 201 with a warning; a passing one → 201", async () => {
    const before = await c.api("GET", "/v1/deployments/cf-partial");
    const v0 = await version();
    const r = await c.api("POST", "/v1/deployments/cf-partial/instances", { body: { id: "added", url: broken2.url }, headers: { "if-match": before.headers.get("etag")! } });
    assert.equal(r.status, 422, r.text);
    assert.equal(r.body.error.code, "connectivity_failed");
    assert.deepEqual(r.body.error.instances.map((e: { instance_id: string; code: string; check: { http_status: number } }) => [e.instance_id, e.code, e.check.http_status]), [["added", "http_error", 500]]);
    assert.deepEqual(r.body.error.issues.map((i: { path: string }) => i.path), ["url"]);
    assert.equal((await c.api("GET", "/v1/deployments/cf-partial/instances/added")).status, 404);
    const after = await c.api("GET", "/v1/deployments/cf-partial");
    assert.equal(after.headers.get("etag"), before.headers.get("etag"), "the deployment did not change");
    assert.equal(await version(), v0, "no table version");

    // A server the deployment already has (here: one it serves) is refused: 409 duplicate_address.
    const dup = await c.api("POST", "/v1/deployments/cf-partial/instances", { body: { id: "dup", url: good.url } });
    assert.equal(dup.status, 409, dup.text);
    assert.equal(dup.body.error.code, "duplicate_address");

    const anyway = await c.api("POST", "/v1/deployments/cf-partial/instances", { body: { id: "added", url: broken2.url, allow_unreachable: true } });
    assert.equal(anyway.status, 201, anyway.text);
    InstanceAdded.parse(anyway.body);
    assert.equal(anyway.body.state, "unreachable");
    assert.deepEqual(anyway.body.warnings.map((w: { instance_id: string; code: string }) => [w.instance_id, w.code]), [["added", "http_error"]]);
    assert.equal(anyway.body.allow_unreachable, undefined);

    const ok = await c.api("POST", "/v1/deployments/cf-partial/instances", { body: { id: "added-ok", url: good2.url, api_key: "unused-key-0123456789" } });
    assert.equal(ok.status, 201, ok.text);
    assert.equal(ok.body.state, "active");
    assert.equal(ok.body.has_api_key, true);
    assert.deepEqual(ok.body.warnings, []);
    assert.equal(ok.headers.get("location"), "/v1/deployments/cf-partial/instances/added-ok");
    assert.equal(ok.headers.get("etag"), (await c.api("GET", "/v1/deployments/cf-partial")).headers.get("etag"));
    assert.ok((await table(c.api)).deployments.find((d: { id: string }) => d.id === "cf-partial").instances.some((i: { id: string }) => i.id === "added-ok"));
  });

  test("checks that need no test answer first: unknown deployment 404, taken id 409, stale If-Match 412 — before any test runs", async () => {
    // A connectivity test starts with GET /v1/models; the health probes of cf-partial's instance on this server
    // (GET /health, on their own schedule) may land in this window too and are not what is counted.
    const tests = () => broken.requests.filter((r) => r.path.endsWith("/models")).length;
    const n = tests();
    assert.equal((await c.api("POST", "/v1/deployments/nope/instances", { body: { url: broken.url } })).status, 404);
    assert.equal((await c.api("POST", "/v1/deployments/cf-partial/instances", { body: { id: "ok", url: broken.url } })).status, 409);
    assert.equal((await c.api("POST", "/v1/deployments/cf-partial/instances", { body: { url: broken.url }, headers: { "if-match": '"999"' } })).status, 412);
    assert.equal((await c.api("POST", "/v1/deployments", { body: { id: "cf-partial", model: "cf-model-4", instances: [{ url: broken.url }] } })).status, 409);
    assert.equal((await c.api("POST", "/v1/deployments", { body: { model: "cf-model-2", instances: [{ url: broken.url }] } })).status, 409, "the model is deployed");
    assert.equal(tests(), n, "no connectivity test ran");
  });

  test("a test outlasting CREATE_WAIT_MS: 202 only when an instance passed or allow_unreachable; else the create waits for the verdict", async () => {
    // Alone and slow, nothing passed at the bound: the create waits for its verdict (201), never a 202 that
    // could turn into "all unreachable" later.
    const t0 = performance.now();
    const alone = await slowCtl.api("POST", "/v1/deployments", { body: { id: "cf-slow", model: "cf-slow", instances: [{ id: "s", url: slow.url }] } });
    assert.equal(alone.status, 201, alone.text);
    assert.equal(alone.body.instances[0].state, "active");
    assert.ok(performance.now() - t0 >= 550, "waited for both requests of the test (2 × 300 ms)");

    // allow_unreachable: the bound applies; the instance stays pending and the worker finishes it.
    const anyway = await slowCtl.api("POST", "/v1/deployments", { body: { id: "cf-slow-2", model: "cf-slow-2", allow_unreachable: true, instances: [{ id: "s", url: slow.url }] } });
    assert.equal(anyway.status, 202, anyway.text);
    assert.equal(anyway.body.instances[0].state, "pending");
    assert.deepEqual((await table(slowCtl.api)).deployments.find((d: { id: string }) => d.id === "cf-slow-2").instances, []);
    for (const until = Date.now() + 5_000; ; ) {
      const g = await slowCtl.api("GET", "/v1/deployments/cf-slow-2");
      if (g.body.instances[0].state === "active") break;
      assert.ok(Date.now() < until, `still ${g.body.instances[0].state}`);
      await new Promise((res) => setTimeout(res, 50));
    }

    // One fast instance passed, a slow one still running at the bound: 202, the slow one pending.
    const fast = await startMockOpenAI({ model: "cf-slow" });
    try {
      const mixed = await slowCtl.api("POST", "/v1/deployments", { body: { id: "cf-slow-3", model: "cf-slow-3", instances: [{ id: "fast", url: fast.url }, { id: "slow", url: slow.url }] } });
      assert.equal(mixed.status, 202, mixed.text);
      assert.deepEqual(mixed.body.instances.map((i: { id: string; state: string }) => [i.id, i.state]), [["fast", "active"], ["slow", "pending"]]);
      assert.deepEqual(mixed.body.warnings, []);
    } finally {
      await fast.close();
    }
  });

  test("an instance that never answers: its test times out and the create is refused (422 timeout) within the test's bound", async () => {
    const hang = await startMockOpenAI({ model: "cf-model", mode: "hang" });
    try {
      const t0 = performance.now();
      const r = await slowCtl.api("POST", "/v1/deployments", { body: { id: "cf-hang", model: "cf-model-4", instances: [{ id: "h", url: hang.url }] } });
      assert.equal(r.status, 422, r.text);
      assert.equal(r.body.error.instances[0].code, "timeout");
      assert.ok(performance.now() - t0 < 7_000 + 2_000, "bounded by 2 × CONNECTIVITY_TIMEOUT_MS + 1 s");
      assert.equal((await slowCtl.api("GET", "/v1/deployments/cf-hang")).status, 404);
    } finally {
      await hang.close();
    }
  });

  test("the OpenAPI document lists 202 and 422 where the routes answer them", async () => {
    const doc = (await c.api("GET", "/openapi.json", { token: null })).body;
    const statuses = (path: string, method: string) => Object.keys(doc.paths[path][method].responses).map(Number).sort((a, b) => a - b);
    for (const s of [201, 202, 409, 422]) assert.ok(statuses("/v1/deployments", "post").includes(s), `create lists ${s}`);
    for (const s of [201, 202, 404, 409, 412, 422]) assert.ok(statuses("/v1/deployments/{id}/instances", "post").includes(s), `scale-up lists ${s}`);
    for (const s of [200, 202]) assert.ok(statuses("/v1/deployments/{id}/instances/{instanceId}/test", "post").includes(s), `re-test lists ${s}`);
    assert.ok(statuses("/v1/routing-table", "get").includes(304));
    for (const path of ["/v1/deployments/{id}", "/v1/models/{id}", "/v1/deployments"]) assert.ok(statuses(path, "get").includes(304), `GET ${path} lists 304`);
    // What that 304 is for (node:http: fetch() would add cache-control: no-cache, which turns it off).
    const star = await new Promise<number>((resolve, reject) =>
      request(`${c.url}/v1/deployments`, { headers: { authorization: `Bearer ${ADMIN}`, "if-none-match": "*" } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on("error", reject).end(),
    );
    assert.equal(star, 304);
    assert.ok(!statuses("/v1/events", "get").includes(304));
    assert.ok(statuses("/v1/deployments/{id}/migrations", "post").includes(202));
    // Every operation lists what any request may get (bad request, auth, body size and type, headers, store).
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, { responses: Record<string, unknown> }>>)) {
      for (const [method, op] of Object.entries(ops)) for (const s of ["400", "401", "403", "413", "415", "431", "503"]) assert.ok(s in op.responses, `${method} ${path} lists ${s}`);
    }
    const created = doc.paths["/v1/deployments"].post.responses;
    assert.deepEqual(created["202"].content["application/json"].schema, { $ref: "#/components/schemas/DeploymentCreated" });
    assert.ok(doc.components.schemas.DeploymentCreated.properties.warnings);
    assert.ok(doc.components.schemas.DeploymentCreate.properties.allow_unreachable);
    assert.ok(doc.components.schemas.InstanceAdd.properties.allow_unreachable);
    assert.ok(doc.components.schemas.Error.properties.error.properties.instances, "the 422's evidence is in the error schema");
    assert.ok(doc.components.schemas.Error.properties.error.properties.code.enum.includes("connectivity_failed"));
  });

  test("GET / leads to the dashboard (a redirect to /ui/, no token needed)", async () => {
    for (const method of ["GET", "HEAD"]) {
      const r = await fetch(`${c.url}/`, { method, redirect: "manual" });
      assert.equal(r.status, 302, method);
      assert.equal(r.headers.get("location"), "/ui/");
    }
    const followed = await fetch(`${c.url}/`);
    assert.equal(followed.status, 200);
    assert.match(await followed.text(), /<title>Deployments · Model gateway<\/title>/);
    // Other unknown paths still need a token.
    assert.equal((await c.api("GET", "/nope", { token: null })).status, 401);
    assert.equal((await c.api("GET", "/v1/routing-table", { token: PLUGIN })).status, 200);
  });
});
