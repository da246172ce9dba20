// Roles and tokens, write-only API keys (never returned, never logged), the SSRF guard, config handling.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { Redis } from "ioredis";
import { loadConfig } from "../../control/src/config.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { freePort, type RedisServer } from "../support/redis.js";
import { ADMIN, PLUGIN, VIEWER, client, registerModel, startReplica, waitFor, withRedis, type Replica } from "./harness.js";

const SECRET = "sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const SECRET2 = "sk-rotated-00112233445566778899aabbccdd";

describe("auth and security", () => {
  let redis: RedisServer;
  let c: Replica;
  let keyed: MockOpenAI;

  before(async () => {
    redis = await withRedis();
    keyed = await startMockOpenAI({ model: "secure-model", apiKey: SECRET });
    c = await startReplica(redis.url, {}, { lookup: async (host) => (host === "metadata.internal" ? "169.254.169.254" : host === "evil.example" ? "::ffff:169.254.1.1" : "127.0.0.1") });
    await registerModel(c.api, "secure-model");
    await registerModel(c.api, "blocked-model");
  });
  after(async () => {
    await c.stop();
    await keyed.close();
    await redis.close();
  });

  test("401 without a valid bearer token", async () => {
    for (const headers of [{} as Record<string, string>, { authorization: "Bearer wrong-token-wrong-token" }, { authorization: `Basic ${ADMIN}` }, { authorization: "Bearer" }, { authorization: `Bearer ${ADMIN}x` }]) {
      const r = await c.api("GET", "/v1/deployments", { token: null, headers });
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.equal(r.body.error.code, "unauthenticated");
      assert.ok(r.body.error.request_id);
    }
    assert.equal((await c.api("GET", "/v1/routing-table", { token: null })).status, 401);
    assert.equal((await c.api("POST", "/v1/models", { token: null, body: { name: "x" } })).status, 401);
  });

  test("403 when the role may not: viewer writes, plugin uses the management API", async () => {
    assert.equal((await c.api("POST", "/v1/models", { token: VIEWER, body: { name: "v" } })).status, 403);
    assert.equal((await c.api("DELETE", "/v1/deployments/x", { token: VIEWER })).status, 403);
    assert.equal((await c.api("GET", "/v1/deployments", { token: PLUGIN })).status, 403);
    assert.equal((await c.api("POST", "/v1/models", { token: PLUGIN, body: { name: "p" } })).status, 403);
    assert.equal((await c.api("GET", "/v1/models", { token: PLUGIN })).status, 403);
    // What each role may do.
    assert.equal((await c.api("GET", "/v1/deployments", { token: VIEWER })).status, 200);
    assert.equal((await c.api("GET", "/v1/routing-table", { token: PLUGIN })).status, 200);
    assert.equal((await c.api("GET", "/v1/routing-table", { token: VIEWER })).status, 200);
  });

  test("the upstream API key is used for the test, reaches only the plugin's table, and is never returned elsewhere, stored in the document, or logged", async () => {
    const r = await c.api("POST", "/v1/deployments", {
      body: { id: "sec", model: "secure-model", instances: [{ id: "k1", url: keyed.url, api_key: SECRET }] },
      headers: { "idempotency-key": "sec-create" },
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.instances[0].state, "active", "the mock requires the key, so the test passing proves it was sent");
    assert.equal(r.body.instances[0].has_api_key, true);
    assert.ok(keyed.requests.some((q) => q.headers.authorization === `Bearer ${SECRET}`));

    // Rotate it, and start a migration that inherits it.
    assert.equal((await c.api("PATCH", "/v1/deployments/sec/instances/k1", { body: { api_key: SECRET2 } })).status, 200);
    keyed.set({ apiKey: SECRET2 });

    const texts = [
      r.text,
      (await c.api("POST", "/v1/deployments", { body: { id: "sec", model: "secure-model", instances: [{ id: "k1", url: keyed.url, api_key: SECRET }] }, headers: { "idempotency-key": "sec-create" } })).text,
      (await c.api("GET", "/v1/deployments/sec")).text,
      (await c.api("GET", "/v1/deployments")).text,
      (await c.api("GET", "/v1/deployments/sec/instances/k1")).text,
      (await c.api("GET", "/v1/routing-table", { token: ADMIN })).text,
      (await c.api("GET", "/v1/routing-table", { token: VIEWER })).text,
      (await c.api("GET", "/openapi.json")).text,
    ];
    // The data plane is the one reader of a key: the plugin's table carries the current one, to send upstream.
    await waitFor(async () => (await c.api("GET", "/v1/routing-table", { token: PLUGIN })).text.includes(`"authorization":"Bearer ${SECRET2}"`), 3000, "the rotated key in the plugin's table");
    assert.ok(!(await c.api("GET", "/v1/routing-table", { token: PLUGIN })).text.includes(SECRET), "the old key is gone");
    for (const t of texts) {
      assert.ok(!t.includes(SECRET) && !t.includes(SECRET2), `secret leaked in: ${t.slice(0, 200)}`);
      assert.ok(!t.includes("sk-live") && !t.includes("sk-rotated"));
    }
    // The stored document has no key either (keys live apart, write-only).
    const raw = new Redis(redis.url);
    try {
      const doc = await raw.hget("gw:deployments", "sec");
      assert.ok(doc && !doc.includes(SECRET) && !doc.includes(SECRET2));
      const idem = await raw.keys("gw:idem:*");
      for (const k of idem) assert.ok(!(await raw.get(k))!.includes(SECRET));
    } finally {
      raw.disconnect();
    }
    const logs = c.logs.join("\n");
    assert.ok(logs.length > 0);
    assert.ok(!logs.includes(SECRET) && !logs.includes(SECRET2), "a secret appeared in the logs");
    assert.ok(!logs.includes(ADMIN) && !logs.includes(PLUGIN) && !logs.includes(VIEWER), "a bearer token appeared in the logs");
  });

  test("link-local and cloud-metadata addresses are refused by the connectivity test", async () => {
    const urls = ["http://169.254.169.254/v1", "http://metadata.internal/v1", "http://[fe80::1]:8000/v1", "http://[fd00:ec2::254]/v1", "http://evil.example:8000/v1"];
    const refused = await c.api("POST", "/v1/deployments", { body: { id: "blocked", model: "blocked-model", instances: urls.map((url, i) => ({ id: `b${i}`, url })) } });
    assert.equal(refused.status, 422, refused.text);
    assert.equal(refused.body.error.code, "blocked_address");
    assert.deepEqual(refused.body.error.issues.map((i: { path: string }) => i.path), urls.map((_, k) => `instances.${k}.url`));
    // Never stored, not even on request (allow_unreachable): a blocked target is refused at write time.
    const r = await c.api("POST", "/v1/deployments", { body: { id: "blocked", model: "blocked-model", allow_unreachable: true, instances: urls.map((url, i) => ({ id: `b${i}`, url })) } });
    assert.equal(r.status, 422, r.text);
    assert.equal(r.body.error.code, "blocked_address");
    assert.equal((await c.api("GET", "/v1/deployments/blocked")).status, 404);
  });

  test("ALLOW_LINK_LOCAL lifts the refusal (the test then tries to connect)", async () => {
    // Its own key prefix: a replica with another policy must not share work with the others.
    const r2 = await startReplica(redis.url, { ALLOW_LINK_LOCAL: "true", CONNECTIVITY_TIMEOUT_MS: "200", REDIS_KEY_PREFIX: "gw-ll:" });
    try {
      await registerModel(r2.api, "ll-model");
      const r = await r2.api("POST", "/v1/deployments", { body: { id: "ll", model: "ll-model", allow_unreachable: true, instances: [{ id: "x", url: "http://[fe80::1]:9/v1" }] } });
      assert.equal(r.status, 201, r.text);
      assert.notEqual(r.body.instances[0].last_check.error.code, "blocked_address");
    } finally {
      await r2.stop();
    }
  });

  test("config: no token → an admin token is generated; bad values → issues", () => {
    const gen = loadConfig({});
    assert.ok(gen.ok);
    assert.ok(gen.config.generatedAdminToken && gen.config.generatedAdminToken.length >= 32);
    assert.deepEqual(gen.config.tokens.admin, [gen.config.generatedAdminToken]);
    assert.ok(Object.isFrozen(gen.config));
    const bad = loadConfig({ CONTROL_PORT: "99999", CONTROL_ADMIN_TOKENS: "short", REDIS_URL: "http://x", XDS_ALLOW_FROM: "10.0.0.0/8,10.0.0.0/33" });
    assert.ok(!bad.ok);
    assert.deepEqual(bad.issues.map((i) => i.path).sort(), ["CONTROL_ADMIN_TOKENS.0", "CONTROL_PORT", "REDIS_URL", "XDS_ALLOW_FROM.1"]);
  });

  test("server entry: invalid config exits 2 with the issues; no token → prints a generated one, never runs open", async () => {
    const run = (env: Record<string, string>) => spawn(process.execPath, ["--import", "tsx", "control/src/server.ts"], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    const bad = run({ CONTROL_PORT: "nope" });
    let badErr = "";
    bad.stderr!.on("data", (d) => (badErr += d));
    const code = await new Promise<number | null>((res) => bad.on("exit", (c) => res(c)));
    assert.equal(code, 2);
    assert.match(badErr, /CONTROL_PORT/);

    const port = await freePort();
    const deadRedis = await freePort();
    const p = run({ CONTROL_PORT: String(port), REDIS_URL: `redis://127.0.0.1:${deadRedis}`, LOG_LEVEL: "error" });
    let err = "";
    p.stderr!.on("data", (d) => (err += d));
    p.stdout!.resume();
    try {
      await waitFor(() => /generated an admin token/.test(err) && err.trim().split("\n").length >= 2, 15_000, "generated token line");
      const token = err.trim().split("\n")[1]!.trim();
      const api = client(`http://127.0.0.1:${port}`);
      await waitFor(async () => (await api("GET", "/v1/deployments", { token: null }).catch(() => null))?.status === 401, 15_000, "server up");
      const r = await api("GET", "/v1/deployments", { token });
      // The token works (not 401); Redis is down → 503 with a clean JSON error, no internals.
      assert.equal(r.status, 503);
      assert.equal(r.body.error.code, "store_unavailable");
      assert.ok(!/ECONNREFUSED|at .*\.ts|ioredis/i.test(r.text), r.text);
    } finally {
      p.kill("SIGTERM");
      await new Promise((res) => p.on("exit", res));
    }
  });
});
