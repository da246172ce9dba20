// A deployment's request-handling settings reach the routing table (contract 1): the served name (from
// the model), forward_client_credentials and extra_paths — set at create, changed by PATCH (a new table
// version), refused with a 400 naming the field when invalid.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { RoutingTable } from "../../control/contracts/routing-table.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { registerModel, startReplica, table, withRedis, type Replica } from "./harness.js";

describe("deployment settings in the routing table", () => {
  let redis: RedisServer;
  let c: Replica;
  let mock: MockOpenAI;

  before(async () => {
    redis = await withRedis();
    mock = await startMockOpenAI({ model: "Qwen/Qwen2.5-7B-Instruct" });
    c = await startReplica(redis.url);
    await registerModel(c.api, "chat-small", { aliases: ["qwen"], served_name: "Qwen/Qwen2.5-7B-Instruct" });
  });

  after(async () => {
    await c?.stop();
    await mock?.close();
    await redis?.close();
  });

  const inTable = async () => {
    const t = await table(c.api);
    assert.ok(RoutingTable.safeParse(t).success);
    return { version: t.version as number, d: t.deployments.find((x: { id: string }) => x.id === "small") };
  };

  test("defaults: served name from the model; credentials removed (field absent); no extra paths", async () => {
    const r = await c.api("POST", "/v1/deployments", { body: { id: "small", model: "qwen", instances: [{ id: "a", url: mock.url }] } });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.forward_client_credentials, false);
    assert.deepEqual(r.body.extra_paths, []);
    const { d } = await inTable();
    assert.equal(d.served_name, "Qwen/Qwen2.5-7B-Instruct");
    assert.equal(d.forward_client_credentials, undefined);
    assert.equal(d.extra_paths, undefined);
  });

  test("PATCH forward_client_credentials and extra_paths: a new table version carries them", async () => {
    const before = await inTable();
    const r = await c.api("PATCH", "/v1/deployments/small", { body: { forward_client_credentials: true, extra_paths: ["rerank", "audio/transcriptions"] } });
    assert.equal(r.status, 200, r.text);
    const after = await inTable();
    assert.ok(after.version > before.version);
    assert.equal(after.d.forward_client_credentials, true);
    assert.deepEqual(after.d.extra_paths, ["rerank", "audio/transcriptions"]);
  });

  test("invalid settings: 400 naming the field, nothing changed", async () => {
    const before = await inTable();
    for (const [body, field] of [
      [{ extra_paths: ["/rerank"] }, "extra_paths.0"],
      [{ extra_paths: ["../admin"] }, "extra_paths.0"],
      [{ extra_paths: ["rerank", "rerank"] }, "extra_paths"],
      [{ extra_paths: Array.from({ length: 33 }, (_, i) => `p${i}`) }, "extra_paths"],
      [{ forward_client_credentials: "yes" }, "forward_client_credentials"],
    ] as const) {
      const r = await c.api("PATCH", "/v1/deployments/small", { body });
      assert.equal(r.status, 400, r.text);
      assert.ok(JSON.stringify(r.body).includes(field), `${JSON.stringify(body).slice(0, 40)}: ${r.text.slice(0, 200)}`);
    }
    assert.equal((await inTable()).version, before.version);
  });

  test("affinity: PATCH sets it (the table carries it as given), invalid values 400 naming the field, null removes it", async () => {
    assert.equal((await inTable()).d.affinity, undefined);
    const set = await c.api("PATCH", "/v1/deployments/small", { body: { affinity: { source: "header", header: "x-session-id", load_factor: 1.5 } } });
    assert.equal(set.status, 200, set.text);
    assert.deepEqual(set.body.affinity, { source: "header", header: "x-session-id", load_factor: 1.5 });
    const on = await inTable();
    assert.deepEqual(on.d.affinity, { source: "header", header: "x-session-id", load_factor: 1.5 });
    for (const [body, field] of [
      [{ affinity: { source: "cookie" } }, "affinity"],
      [{ affinity: { source: "header" } }, "affinity.header"],
      [{ affinity: { source: "header", header: "X-Session" } }, "affinity.header"],
      [{ affinity: { source: "user", load_factor: 0.5 } }, "affinity.load_factor"],
      [{ affinity: { source: "user", load_facter: 2 } }, "affinity"],
    ] as const) {
      const r = await c.api("PATCH", "/v1/deployments/small", { body });
      assert.equal(r.status, 400, r.text);
      assert.ok(JSON.stringify(r.body).includes(field), `${JSON.stringify(body)}: ${r.text.slice(0, 300)}`);
    }
    assert.equal((await inTable()).version, on.version);
    const user = await c.api("PATCH", "/v1/deployments/small", { body: { affinity: { source: "user" } } });
    assert.equal(user.status, 200, user.text);
    assert.deepEqual((await inTable()).d.affinity, { source: "user" });
    const off = await c.api("PATCH", "/v1/deployments/small", { body: { affinity: null } });
    assert.equal(off.status, 200, off.text);
    assert.equal(off.body.affinity, undefined);
    assert.equal((await inTable()).d.affinity, undefined);
  });

  test("affinity at create", async () => {
    await registerModel(c.api, "chat-aff", { served_name: "Qwen/Qwen2.5-7B-Instruct" });
    const r = await c.api("POST", "/v1/deployments", { body: { id: "aff", model: "chat-aff", affinity: { source: "user", load_factor: 2 }, instances: [{ id: "a", url: mock.url }], allow_unreachable: true } });
    assert.ok(r.status === 201 || r.status === 202, r.text);
    assert.deepEqual(r.body.affinity, { source: "user", load_factor: 2 });
    const t = await table(c.api);
    assert.deepEqual(t.deployments.find((x: { id: string }) => x.id === "aff").affinity, { source: "user", load_factor: 2 });
  });
});
