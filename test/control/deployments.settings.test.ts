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
});
