// Every error class a client can cause: 400 naming fields, 404, 409, 412, 413, 415, 422 — never a 500.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { RedisServer } from "../support/redis.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { ADMIN, registerModel, startReplica, withRedis, type Replica, type Res } from "./harness.js";

function assertError(r: Res, status: number, code: string) {
  assert.equal(r.status, status, r.text);
  assert.equal(r.body.error.code, code, r.text);
  assert.equal(typeof r.body.error.message, "string");
  assert.equal(r.body.error.request_id, r.headers.get("x-request-id"));
}
const issuePaths = (r: Res): string[] => r.body.error.issues.map((i: { path: string }) => i.path);

describe("deployments: errors", () => {
  let redis: RedisServer;
  let c: Replica;
  let mock: MockOpenAI;

  before(async () => {
    redis = await withRedis();
    mock = await startMockOpenAI({ model: "m1" });
    c = await startReplica(redis.url, { BODY_LIMIT_BYTES: "2048" });
    await registerModel(c.api, "m1");
    await registerModel(c.api, "m2");
    const r = await c.api("POST", "/v1/deployments", { body: { id: "d1", model: "m1", instances: [{ id: "a", url: mock.url }] } });
    assert.equal(r.status, 201, r.text);
  });
  after(async () => {
    await c.stop();
    await mock.close();
    await redis.close();
  });

  test("400 names each bad field", async () => {
    const r = await c.api("POST", "/v1/deployments", {
      body: { id: "-bad", model: "m2", strategy: "random", instances: [{ url: "ftp://x/v1", weight: 0 }, { url: "http://h:8000/v1?x=1", priority: 300 }], extra: 1 },
    });
    assertError(r, 400, "validation_failed");
    const paths = issuePaths(r);
    for (const p of ["id", "strategy", "instances.0.url", "instances.0.weight", "instances.1.url", "instances.1.priority", ""]) assert.ok(paths.includes(p), `missing ${p} in ${paths.join(",")}`);
    assert.ok(r.body.error.issues.every((i: { message: string }) => i.message.length > 0));
  });

  test("400: URL rules (scheme, credentials, query, trailing slash is dropped)", async () => {
    for (const url of ["not a url", "http://user:pw@10.0.0.1/v1", "http://10.0.0.1/v1#x", "unix:///tmp/sock"]) {
      const r = await c.api("POST", "/v1/deployments/d1/instances", { body: { url } });
      assertError(r, 400, "validation_failed");
      assert.deepEqual(issuePaths(r), ["url"]);
    }
  });

  test("400: an instance URL is not patched (it changes by migration)", async () => {
    const r = await c.api("PATCH", "/v1/deployments/d1/instances/a", { body: { url: "http://10.0.0.9/v1" } });
    assertError(r, 400, "validation_failed");
    assert.deepEqual(issuePaths(r), ["url"]);
    assert.match(r.body.error.issues[0].message, /migration/);
  });

  test("400: missing body, wrong types, bad query and path parameters", async () => {
    assertError(await c.api("POST", "/v1/models"), 400, "validation_failed");
    assertError(await c.api("POST", "/v1/models", { body: [] }), 400, "validation_failed");
    assertError(await c.api("POST", "/v1/models", { body: { name: "has space" } }), 400, "validation_failed");
    assertError(await c.api("POST", "/v1/models", { body: { name: "x", aliases: ["x"] } }), 400, "validation_failed");
    const w = await c.api("GET", "/v1/routing-table?wait=61");
    assertError(w, 400, "validation_failed");
    assert.deepEqual(issuePaths(w), ["query.wait"]);
    assertError(await c.api("GET", "/v1/routing-table?wait=abc"), 400, "validation_failed");
    assertError(await c.api("GET", "/v1/deployments/has%20space"), 400, "validation_failed");
  });

  test("400 malformed JSON, 415 wrong content type, 413 huge body", async () => {
    assertError(await c.api("POST", "/v1/models", { raw: '{"name": ', headers: { "content-type": "application/json" } }), 400, "malformed_json");
    assertError(await c.api("POST", "/v1/models", { raw: "name=x", headers: { "content-type": "application/x-www-form-urlencoded" } }), 415, "unsupported_media_type");
    assertError(await c.api("POST", "/v1/models", { raw: '{"name":"x"}', headers: { "content-type": "text/plain" } }), 415, "unsupported_media_type");
    assertError(await c.api("POST", "/v1/models", { body: { name: "x", display_name: "y".repeat(5000) } }), 413, "payload_too_large");
  });

  test("404 for unknown ids and routes", async () => {
    assertError(await c.api("GET", "/v1/deployments/nope"), 404, "not_found");
    assertError(await c.api("PATCH", "/v1/deployments/nope", { body: {} }), 404, "not_found");
    assertError(await c.api("DELETE", "/v1/deployments/nope"), 404, "not_found");
    assertError(await c.api("GET", "/v1/models/nope"), 404, "not_found");
    assertError(await c.api("GET", "/v1/deployments/d1/instances/nope"), 404, "not_found");
    assertError(await c.api("DELETE", "/v1/deployments/d1/instances/nope"), 404, "not_found");
    assertError(await c.api("GET", "/v1/deployments/d1/migrations/nope"), 404, "not_found");
    assertError(await c.api("GET", "/v1/nothing-here"), 404, "not_found");
  });

  test("409: duplicate ids and names, model already deployed, model in use, wrong state", async () => {
    assertError(await c.api("POST", "/v1/deployments", { body: { id: "d1", model: "m2" } }), 409, "already_exists");
    assertError(await c.api("POST", "/v1/deployments", { body: { id: "d9", model: "m1" } }), 409, "already_exists");
    assertError(await c.api("POST", "/v1/models", { body: { name: "other", aliases: ["m1"] } }), 409, "already_exists");
    assertError(await c.api("POST", "/v1/deployments/d1/instances", { body: { id: "a", url: mock.url } }), 409, "already_exists");
    const m1 = (await c.api("GET", "/v1/models")).body.models.find((m: { name: string }) => m.name === "m1");
    assertError(await c.api("DELETE", `/v1/models/${m1.id}`), 409, "invalid_state");
    // Re-testing an active instance is a wrong-state request.
    assertError(await c.api("POST", "/v1/deployments/d1/instances/a/test"), 409, "invalid_state");
  });

  test("412 when If-Match does not match", async () => {
    const cur = await c.api("GET", "/v1/deployments/d1");
    const stale = `"${cur.body.revision - 1}"`;
    assertError(await c.api("PATCH", "/v1/deployments/d1", { body: { strategy: "failover" }, headers: { "if-match": stale } }), 412, "precondition_failed");
    assertError(await c.api("DELETE", "/v1/deployments/d1", { headers: { "if-match": stale } }), 412, "precondition_failed");
    assertError(await c.api("DELETE", "/v1/deployments/d1/instances/a", { headers: { "if-match": stale } }), 412, "precondition_failed");
    // Nothing changed.
    const now = await c.api("GET", "/v1/deployments/d1");
    assert.equal(now.body.revision, cur.body.revision);
    assert.equal(now.body.instances.length, 1);
  });

  test("412: two concurrent writers with the same ETag — exactly one wins", async () => {
    const cur = await c.api("GET", "/v1/deployments/d1");
    const etag = cur.headers.get("etag")!;
    const [a, b] = await Promise.all([
      c.api("PATCH", "/v1/deployments/d1", { body: { strategy: "failover" }, headers: { "if-match": etag } }),
      c.api("PATCH", "/v1/deployments/d1", { body: { strategy: "round_robin" }, headers: { "if-match": etag } }),
    ]);
    assert.deepEqual([a.status, b.status].sort(), [200, 412]);
  });

  test("422 unknown model; Idempotency-Key reused with another body", async () => {
    const r = await c.api("POST", "/v1/deployments", { body: { model: "not-registered" } });
    assertError(r, 422, "unknown_model");
    assert.deepEqual(issuePaths(r), ["model"]);
    const first = await c.api("POST", "/v1/models", { body: { name: "idem-1" }, headers: { "idempotency-key": "k-1" } });
    assert.equal(first.status, 201);
    assertError(await c.api("POST", "/v1/models", { body: { name: "idem-2" }, headers: { "idempotency-key": "k-1" } }), 422, "idempotency_key_reused");
    // A 4xx outcome is replayed too.
    const bad1 = await c.api("POST", "/v1/deployments", { body: { model: "nope" }, headers: { "idempotency-key": "k-2" } });
    const bad2 = await c.api("POST", "/v1/deployments", { body: { model: "nope" }, headers: { "idempotency-key": "k-2" } });
    assert.equal(bad2.status, 422);
    assert.deepEqual(bad2.body.error.code, bad1.body.error.code);
  });

  test("junk input never produces a 5xx", async () => {
    const bodies: string[] = ["null", "1", '"s"', "[]", "{}", '{"model":null}', '{"model":{}}', '{"instances":"x","model":"m1"}', '{"id":1e999}', '{"__proto__":{"x":1}}', '{"model":"m2","instances":[null]}', '{"model":"m2","health_check":{"interval_seconds":-1}}', "\u0000", '{"model":"m2","instances":[{"url":"http://[::1"}]}'];
    const paths = ["/v1/models", "/v1/deployments", "/v1/deployments/d1/instances", "/v1/deployments/d1/migrations"];
    for (const p of paths) {
      for (const raw of bodies) {
        const r = await c.api("POST", p, { raw, headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN}` } });
        assert.ok(r.status >= 400 && r.status < 500, `${p} ${raw} → ${r.status} ${r.text}`);
        assert.ok(r.body?.error?.request_id, `${p} ${raw}: no request id`);
      }
    }
    for (const p of ["/v1/deployments/%E0%A4%A", "/v1/models/%", "/v1/deployments/d1/instances/%zz"]) {
      const r = await c.api("GET", p);
      assertError(r, 400, "bad_request");
    }
    const gz = await c.api("POST", "/v1/models", { raw: "\u0001\u0002garbage", headers: { "content-type": "application/json", "content-encoding": "gzip" } });
    assertError(gz, 415, "unsupported_media_type");
    assertError(await c.api("POST", "/v1/models", { body: { name: "k" }, headers: { "idempotency-key": "x".repeat(300) } }), 400, "validation_failed");
    assertError(await c.api("PATCH", "/v1/deployments/d1", { body: {}, headers: { "if-match": "garbage" } }), 412, "precondition_failed");
    // A lone surrogate in free text is refused with a 400 naming the field (issue 16 item 11), never a 500.
    const lone = await c.api("POST", "/v1/models", { raw: '{"name":"lone","display_name":"x\\ud800y"}', headers: { "content-type": "application/json" } });
    assertError(lone, 400, "validation_failed");
    assert.ok(lone.text.includes("display_name"), lone.text);
    assert.ok(!c.logs.some((l) => l.includes('"unhandled error"')), "no request reached the 500 path");
    const patches = ["/v1/deployments/d1", "/v1/deployments/d1/instances/a", "/v1/models/nope"];
    for (const p of patches) {
      for (const raw of bodies) {
        const r = await c.api("PATCH", p, { raw, headers: { "content-type": "application/json" } });
        if (raw === "{}" && !p.endsWith("nope")) assert.equal(r.status, 200); // an empty patch is valid
        else assert.ok(r.status >= 400 && r.status < 500, `${p} ${raw} → ${r.status} ${r.text}`);
      }
    }
  });
});
