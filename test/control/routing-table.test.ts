// The routing table: a pure function of stored state, validated before publishing; DNS re-resolution.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { RoutingTable } from "../../control/contracts/routing-table.js";
import { buildRoutingTable, buildValidTable, sameInTable, withoutSecrets } from "../../control/src/routing-table/builder.js";
import { dep, inst, model } from "./documents.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { ADMIN, PLUGIN, VIEWER, registerModel, startReplica, table, waitFor, withRedis, type Replica } from "./harness.js";

describe("routing table builder (pure)", () => {
  test("only active/draining/ejected instances with an address appear; names map to deployments; sorted", () => {
    const t = buildRoutingTable(
      9,
      [model("m1", "llama", ["llama3"]), model("m2", "qwen")],
      [
        dep("z-dep", "m2", [inst("a", "active")]),
        dep("a-dep", "m1", [inst("p", "pending"), inst("u", "unreachable"), inst("act", "active"), inst("dr", "draining", "10.0.0.2:8000"), inst("ej", "ejected", "10.0.0.3:8000"), inst("noaddr", "active", null)]),
      ],
    );
    assert.ok(RoutingTable.safeParse(t).success);
    assert.equal(t.version, 9);
    assert.deepEqual(t.models, { llama: "a-dep", llama3: "a-dep", qwen: "z-dep" });
    assert.deepEqual(t.deployments.map((d) => d.id), ["a-dep", "z-dep"]);
    assert.deepEqual(t.deployments[0]!.instances.map((i) => `${i.id}:${i.state}`), ["act:active", "dr:draining", "ej:ejected"]);
    assert.equal(t.deployments[0]!.cluster, "gw.a-dep");
  });

  test("deterministic: same state, same document", () => {
    const ms = [model("m1", "llama")];
    const ds = [dep("d", "m1", [inst("a", "active")])];
    assert.equal(JSON.stringify(buildRoutingTable(3, ms, ds)), JSON.stringify(buildRoutingTable(3, [...ms].reverse(), [...ds].reverse())));
  });

  test("an invalid table is refused, never published", () => {
    const bad = buildValidTable(1, [model("m1", "llama")], [dep("d", "m1", [inst("a", "active"), inst("a", "active", "10.0.0.2:8000")])]);
    assert.equal(bad.ok, false);
    assert.ok(!bad.ok && bad.issues.some((i) => i.includes("duplicate instance")));
    assert.equal(buildValidTable(0, [], []).ok, false, "version 0 is not a valid table");
  });

  test("an instance's API key becomes its authorization; the view without secrets drops it", () => {
    const t = buildRoutingTable(2, [model("m1", "llama")], [dep("d", "m1", [inst("a", "active"), inst("b", "active", "10.0.0.2:8000")])], { "d/a": "sk-a", "x/b": "sk-other" });
    assert.equal(RoutingTable.safeParse(t).success, true);
    assert.deepEqual(t.deployments[0]!.instances.map((i) => i.authorization), ["Bearer sk-a", undefined]);
    const open = withoutSecrets(t);
    assert.equal(JSON.stringify(open).includes("sk-a"), false);
    assert.deepEqual({ ...open, deployments: [] }, { ...t, deployments: [] });
    assert.deepEqual(open.deployments[0]!.instances.map((i) => i.id), ["a", "b"]);
  });

  test("sameInTable ignores what the table does not show", () => {
    const a = dep("d", "m1", [inst("a", "active"), inst("p", "pending")]);
    const b = { ...a, revision: 5, instances: [a.instances[0]!, { ...a.instances[1]!, state: "unreachable" as const }] };
    assert.ok(sameInTable(a, b));
    assert.ok(!sameInTable(a, { ...a, instances: [{ ...a.instances[0]!, state: "draining" }, a.instances[1]!] }));
  });
});

describe("routing table endpoint", () => {
  let redis: RedisServer;
  let c: Replica;
  let mock: MockOpenAI;
  let resolvesTo = "127.0.0.1";

  before(async () => {
    redis = await withRedis();
    mock = await startMockOpenAI({ model: "dns-model" });
    c = await startReplica(redis.url, { DNS_REFRESH_MS: "0" }, { lookup: async (host) => (host === "model.internal" ? resolvesTo : host) });
    await registerModel(c.api, "dns-model");
  });
  after(async () => {
    await c.stop();
    await mock.close();
    await redis.close();
  });

  test("hostnames are resolved to ip:port; a changed address is a new table version", async () => {
    const r = await c.api("POST", "/v1/deployments", { body: { id: "dns", model: "dns-model", instances: [{ id: "h", url: `http://model.internal:${mock.port}/v1` }] } });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.instances[0].host, "model.internal");
    const t1 = await table(c.api);
    assert.equal(t1.deployments[0].instances[0].address, `127.0.0.1:${mock.port}`);
    // Same answer → no new version.
    assert.equal(await c.control.dns.refreshOnce(), 0);
    assert.equal((await table(c.api)).version, t1.version);
    resolvesTo = "127.0.0.2";
    assert.equal(await c.control.dns.refreshOnce(), 1);
    await waitFor(async () => (await table(c.api)).version > t1.version, 2000, "new version");
    assert.equal((await table(c.api)).deployments[0].instances[0].address, `127.0.0.2:${mock.port}`);
    resolvesTo = "::1";
    await c.control.dns.refreshOnce();
    await waitFor(async () => (await table(c.api)).deployments[0].instances[0].address === `[::1]:${mock.port}`, 2000, "ipv6 address");
  });

  test("upstream API keys: in the plugin's table only, new version when a key changes", async () => {
    const keyed = await startMockOpenAI({ model: "dns-model", apiKey: "sk-first" });
    try {
      await registerModel(c.api, "keyed-model", { served_name: "dns-model" });
      const r = await c.api("POST", "/v1/deployments", { body: { id: "keyed", model: "keyed-model", instances: [{ id: "k", url: keyed.url, api_key: "sk-first" }] } });
      assert.equal(r.status, 201, r.text);
      const auth = async (token: string) => {
        const t = await c.api("GET", "/v1/routing-table", { token });
        assert.equal(t.status, 200);
        return { version: t.body.version, text: t.text, value: t.body.deployments.find((d: { id: string }) => d.id === "keyed")?.instances[0]?.authorization };
      };
      await waitFor(async () => (await auth(PLUGIN)).value === "Bearer sk-first", 3000, "the key in the plugin's table");
      for (const token of [ADMIN, VIEWER]) {
        const seen = await auth(token);
        assert.equal(seen.value, undefined);
        assert.equal(seen.text.includes("sk-first"), false, "admins and viewers never get the key");
      }
      const v1 = (await auth(PLUGIN)).version;
      assert.equal((await c.api("PATCH", "/v1/deployments/keyed/instances/k", { body: { api_key: "sk-second" } })).status, 200);
      await waitFor(async () => (await auth(PLUGIN)).value === "Bearer sk-second", 3000, "the new key");
      assert.ok((await auth(PLUGIN)).version > v1, "a key change is a new table version");
      assert.equal((await c.api("PATCH", "/v1/deployments/keyed/instances/k", { body: { api_key: null } })).status, 200);
      await waitFor(async () => (await auth(PLUGIN)).value === undefined, 3000, "no key, no authorization");
    } finally {
      await keyed.close();
    }
  });

  test("a client that is ahead of this replica is never sent an older table", async () => {
    const v = (await table(c.api)).version;
    // A viewer's claim moves nothing: it waits, then 304.
    const viewer = await c.api("GET", "/v1/routing-table?wait=1", { token: VIEWER, headers: { "if-none-match": `"${v + 5}"` } });
    assert.equal(viewer.status, 304);
    assert.equal((await table(c.api)).version, v);
    // A plugin ahead of the store itself (Redis restored from an older snapshot): the store moves past it
    // (hardening.table-limits.test.ts has the restore itself).
    const r = await c.api("GET", "/v1/routing-table?wait=1", { token: PLUGIN, headers: { "if-none-match": `"${v + 5}"` } });
    assert.equal(r.status, 200);
    assert.ok(r.body.version > v + 5, `${r.body.version}`);
  });

  test("a long-poll closed by the client frees its waiter", async () => {
    const v = (await table(c.api)).version;
    const ac = new AbortController();
    const p = c.api("GET", "/v1/routing-table?wait=30", { token: PLUGIN, headers: { "if-none-match": `"${v}"` }, signal: ac.signal }).catch(() => null);
    await waitFor(() => c.control.cache.waiting === 1, 2000, "waiting");
    ac.abort();
    await p;
    await waitFor(() => c.control.cache.waiting === 0, 2000, "waiter released");
  });
});
