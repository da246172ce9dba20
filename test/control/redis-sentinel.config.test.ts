/** REDIS_SENTINELS & co. and REDIS_WAIT_*: parsed at load, refused with an issue naming the variable. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { loadConfig } from "../../control/src/config.js";

const base = { CONTROL_ADMIN_TOKENS: "admin-token-0123456789abcdef" };
const issuesOf = (env: Record<string, string>) => {
  const r = loadConfig({ ...base, ...env });
  assert.equal(r.ok, false, `accepted: ${JSON.stringify(env)}`);
  return r.ok ? [] : r.issues;
};
const ok = (env: Record<string, string>) => {
  const r = loadConfig({ ...base, ...env });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.config;
};

describe("config: Redis Sentinel and WAIT", () => {
  test("without REDIS_SENTINELS: REDIS_URL, with optional auth overrides; WAIT auto", () => {
    const c = ok({ REDIS_URL: "redis://10.0.0.5:6380" });
    assert.deepEqual(c.redis, { kind: "url", url: "redis://10.0.0.5:6380" });
    assert.deepEqual(c.redisWait, { replicas: "auto", timeoutMs: 500 });
    assert.deepEqual(ok({ REDIS_PASSWORD: "pw", REDIS_USERNAME: "gw", REDIS_SENTINELS: "" }).redis, { kind: "url", url: "redis://127.0.0.1:6379", username: "gw", password: "pw" });
  });

  test("REDIS_SENTINELS replaces REDIS_URL; master name, auth for data nodes and sentinels", () => {
    const c = ok({
      REDIS_SENTINELS: " 10.0.0.1:26379, sentinel-2.redis.svc:26380 ,[fd00::1]:26381",
      REDIS_PASSWORD: "data-pw",
      REDIS_SENTINEL_PASSWORD: "sentinel-pw",
      REDIS_SENTINEL_USERNAME: "sentinel-user",
    });
    assert.deepEqual(c.redis, {
      kind: "sentinel",
      sentinels: [
        { host: "10.0.0.1", port: 26379 },
        { host: "sentinel-2.redis.svc", port: 26380 },
        { host: "fd00::1", port: 26381 },
      ],
      masterName: "mymaster",
      password: "data-pw",
      sentinelUsername: "sentinel-user",
      sentinelPassword: "sentinel-pw",
    });
    assert.equal((ok({ REDIS_SENTINELS: "h:1", REDIS_MASTER_NAME: "gw-redis" }).redis as { masterName: string }).masterName, "gw-redis");
  });

  test("bad sentinel lists are refused, naming REDIS_SENTINELS and the entry", () => {
    for (const bad of ["10.0.0.1", "10.0.0.1:0", "10.0.0.1:70000", "h:26379,,x", "h:26379;h2:26379", "fd00::1:26379", " , "]) {
      const issues = issuesOf({ REDIS_SENTINELS: bad });
      assert.equal(issues.length, 1, `${bad}: ${JSON.stringify(issues)}`);
      assert.equal(issues[0]!.path, "REDIS_SENTINELS");
      assert.match(issues[0]!.message, /host:port/);
    }
    assert.equal(issuesOf({ REDIS_SENTINELS: "h:1", REDIS_MASTER_NAME: "my master" })[0]!.path, "REDIS_MASTER_NAME");
  });

  test("REDIS_WAIT_REPLICAS: auto or 0–16; REDIS_WAIT_TIMEOUT_MS below the command timeout", () => {
    assert.equal(ok({ REDIS_WAIT_REPLICAS: "0" }).redisWait.replicas, 0);
    assert.equal(ok({ REDIS_WAIT_REPLICAS: "2" }).redisWait.replicas, 2);
    for (const bad of ["many", "-1", "17", "1.5"]) {
      const issues = issuesOf({ REDIS_WAIT_REPLICAS: bad });
      assert.equal(issues[0]!.path, "REDIS_WAIT_REPLICAS", bad);
    }
    // Default: 500 ms, at most half the command timeout (WAIT must answer before the command times out).
    assert.equal(ok({ REDIS_COMMAND_TIMEOUT_MS: "400" }).redisWait.timeoutMs, 200);
    assert.equal(ok({ REDIS_WAIT_TIMEOUT_MS: "1500", REDIS_COMMAND_TIMEOUT_MS: "3000" }).redisWait.timeoutMs, 1500);
    const issues = issuesOf({ REDIS_WAIT_TIMEOUT_MS: "2000" });
    assert.equal(issues[0]!.path, "REDIS_WAIT_TIMEOUT_MS");
    assert.match(issues[0]!.message, /REDIS_COMMAND_TIMEOUT_MS/);
    assert.equal(issuesOf({ REDIS_WAIT_TIMEOUT_MS: "0" })[0]!.path, "REDIS_WAIT_TIMEOUT_MS");
  });
});
