// Issue 16, items 9 and 10 through the API. Blocked addresses must never be reached from a test, so the
// body runs only inside a loopback-only network namespace (`unshare -n`): the file re-runs itself there,
// and skips (with a message) where unshare is not permitted.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { RedisServer } from "../support/redis.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { registerModel, startReplica, withRedis, type Replica } from "./harness.js";

const FLAG = "GATEWAY_TEST_LOOPBACK_NETNS";
const self = fileURLToPath(import.meta.url);

/** The child is a test run of its own (NODE_TEST_CONTEXT would make node skip it as a recursive run). */
function childEnv(): NodeJS.ProcessEnv {
  const { NODE_TEST_CONTEXT: _ctx, ...env } = process.env;
  return { ...env, [FLAG]: "1" };
}

if (process.env[FLAG] !== "1") {
  test("addresses through the API (in a loopback-only network namespace)", (t) => {
    const unshare = [["-n"], ["-rn"]].find((args) => spawnSync("unshare", [...args, "sh", "-c", "ip link set lo up"], { stdio: "ignore" }).status === 0);
    if (!unshare) {
      t.skip("unshare -n is not permitted here: the API-level address tests did not run");
      return;
    }
    const inner = `ip link set lo up && exec "$0" --import tsx --test "$1"`;
    const r = spawnSync("unshare", [...unshare, "sh", "-c", inner, process.execPath, self], { env: childEnv(), encoding: "utf8", timeout: 120_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /# pass [1-9]/, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /# fail 0/);
  });
} else {
  describe("addresses through the API", () => {
    let redis: RedisServer;
    let c: Replica;
    let mock: MockOpenAI;
    let port: string;

    before(async () => {
      // Only loopback exists here: nothing can leave the machine whatever the policy says.
      const ifaces = spawnSync("ip", ["-o", "link"], { encoding: "utf8" }).stdout.trim().split("\n");
      assert.deepEqual(ifaces.map((l) => l.split(":")[1]!.trim()), ["lo"], "runs in a loopback-only network namespace");
      redis = await withRedis();
      mock = await startMockOpenAI({ model: "m1", host: "127.0.0.1" });
      port = new URL(mock.url).port;
      c = await startReplica(redis.url);
      await registerModel(c.api, "m1");
      await registerModel(c.api, "m2");
      const r = await c.api("POST", "/v1/deployments", { body: { id: "d1", model: "m1", instances: [{ id: "a", url: `http://127.0.0.1:${port}/v1` }] } });
      assert.equal(r.status, 201, r.text);
    });
    after(async () => {
      await c?.stop();
      await mock?.close();
      await redis?.close();
    });

    const SPELLINGS = ["[64:ff9b::a9fe:a9fe]", "[::a9fe:a9fe]", "[2002:a9fe:a9fe::1]", "[::ffff:0:a9fe:a9fe]", "100.100.100.200", "[2001:0:a9fe:a9fe::1]"];

    test("every spelling of a metadata address fails its test as blocked_address; nothing is stored", async () => {
      const r = await c.api("POST", "/v1/deployments", { body: { id: "d2", model: "m2", instances: SPELLINGS.map((h, i) => ({ id: `x${i}`, url: `http://${h}/v1` })) } });
      assert.notEqual(r.status, 201, r.text);
      assert.equal(r.status, 422, r.text);
      assert.equal(r.body.error.code, "blocked_address", r.text);
      assert.deepEqual(r.body.error.issues.map((i: { path: string }) => i.path), SPELLINGS.map((_, k) => `instances.${k}.url`), r.text);
      assert.equal((await c.api("GET", "/v1/deployments/d2")).status, 404);
    });

    test("[::ffff:127.0.0.1]:P is the server 127.0.0.1:P already serves: refused as duplicate_address", async () => {
      const r = await c.api("POST", "/v1/deployments/d1/instances", { body: { id: "b", url: `http://[::ffff:127.0.0.1]:${port}/v1` } });
      assert.equal(r.status, 409, r.text);
      assert.equal(r.body.error.code, "duplicate_address", r.text);
      const d = (await c.api("GET", "/v1/deployments/d1")).body;
      assert.deepEqual(d.instances.filter((i: { state: string }) => i.state === "active").map((i: { id: string }) => i.id), ["a"]);
      assert.equal(d.instances[0].address, `127.0.0.1:${port}`);
    });

    test("a blocked address is refused at write time with 422 blocked_address naming the field, even with allow_unreachable", async () => {
      const r = await c.api("POST", "/v1/deployments", { body: { id: "d3", model: "m2", allow_unreachable: true, instances: [{ id: "x", url: "http://[64:ff9b::a9fe:a9fe]/v1" }] } });
      assert.equal(r.status, 422, r.text);
      assert.equal(r.body.error.code, "blocked_address");
      assert.deepEqual(r.body.error.issues.map((i: { path: string }) => i.path), ["instances.0.url"]);
    });

    test("the same server twice answers 409 duplicate_address, allow_unreachable or not; nothing is stored", async () => {
      for (const allow of [false, true]) {
        const r = await c.api("POST", "/v1/deployments/d1/instances", { body: { id: "c", url: `http://[::ffff:127.0.0.1]:${port}/v1`, allow_unreachable: allow } });
        assert.equal(r.status, 409, r.text);
        assert.equal(r.body.error.code, "duplicate_address");
        assert.deepEqual(r.body.error.issues.map((i: { path: string }) => i.path), ["url"]);
      }
      // Within one create: the second spelling of the same server (a model the mock serves under its name).
      await registerModel(c.api, "m3", { served_name: "m1" });
      const d = await c.api("POST", "/v1/deployments", { body: { id: "d4", model: "m3", allow_unreachable: true, instances: [{ id: "x", url: `http://127.0.0.1:${port}/v1` }, { id: "y", url: `http://[::ffff:7f00:1]:${port}/v1` }] } });
      assert.equal(d.status, 409, d.text);
      assert.deepEqual(d.body.error.issues.map((i: { path: string }) => i.path), ["instances.1.url"]);
      assert.equal((await c.api("GET", "/v1/deployments/d4")).status, 404);
      assert.deepEqual((await c.api("GET", "/v1/deployments/d1")).body.instances.map((i: { id: string }) => i.id), ["a"]);
    });
  });
}
