// Upstream API keys (contract 1 `authorization` per instance): the pick's value replaces the client's
// header, fallbacks share the pick's value, invalid values refuse the table, the value is never logged.
// Client credentials are removed on routed requests unless the deployment forwards them
// (`forward_client_credentials`); the key tests below use forwarding deployments, so that "no key"
// shows the client's header going through, and the first test checks the default.
import { test } from "node:test";
import assert from "node:assert/strict";
import { deliver, gateway, header, metric, picked, request, table, waitFor, type Headers } from "./support.js";
import { FLAG, send } from "./upstream.js";

const K1 = "Bearer sk-k1-7f3a9c";
const K2 = "Bearer sk-k2-b81e44";

/** Every `authorization` entry the upstream request carries. */
function authorizations(h: Headers | null | undefined): string[] {
  return (h ?? []).filter(([k]) => k === "authorization").map(([, v]) => v);
}

const ADDR: Record<string, string> = { a: "10.40.0.1:8000", b: "10.40.0.2:8000", c: "10.40.0.3:8000", d: "10.40.0.4:8000" };
const KEY: Record<string, string | undefined> = { a: K1, b: K1, c: K2, d: undefined };

function mixed(version: number, strategy: "round_robin" | "weighted_round_robin" = "round_robin") {
  return table(version, [
    {
      id: "mix",
      strategy,
      forward_client_credentials: true,
      instances: ["a", "b", "c", "d"].map((id) => ({ id, address: ADDR[id]!, ...(KEY[id] ? { authorization: KEY[id] } : {}) })),
    },
    { id: "open", forward_client_credentials: true, instances: [{ id: "o", address: "10.40.1.1:8000" }] },
  ]);
}

test("default: client credentials never reach a self-hosted instance; its key when it has one; passthrough keeps them", async () => {
  const host = await gateway({
    table: table(1, [
      { id: "keyed", instances: [{ id: "k", address: "10.44.0.1:1", authorization: K1 }] },
      { id: "bare", instances: [{ id: "b", address: "10.44.0.2:1" }] },
      { id: "fwd", forward_client_credentials: true, instances: [{ id: "f", address: "10.44.0.3:1", authorization: K2 }] },
    ]),
  });
  const client: Headers = [["authorization", "Bearer sk-openai-client"], ["x-api-key", "sk-ant-client"]];
  const up = (r: ReturnType<typeof request>) => ({ auth: authorizations(r.upstreamHeaders), key: header(r.upstreamHeaders, "x-api-key") });
  assert.deepEqual(up(request(host, { model: "bare", headers: client })), { auth: [], key: undefined }, "removed, nothing added");
  assert.deepEqual(up(request(host, { model: "keyed", headers: client })), { auth: [K1], key: undefined }, "the instance's key only");
  assert.deepEqual(up(request(host, { body: JSON.stringify({ model: "bare" }), headers: client })), { auth: [], key: undefined }, "body-routed too");
  assert.deepEqual(up(request(host, { model: "fwd", headers: client })), { auth: [K2], key: "sk-ant-client" }, "forwarding: the instance key still replaces authorization; x-api-key kept");
  // Not ours: untouched.
  assert.deepEqual(up(request(host, { model: "gpt-4o", headers: client })), { auth: ["Bearer sk-openai-client"], key: "sk-ant-client" });
  assert.deepEqual(up(request(host, { path: "/v1/files", headers: client })), { auth: ["Bearer sk-openai-client"], key: "sk-ant-client" });
  assert.deepEqual(host.refusals, []);
});

test("a pick with a key: the upstream request carries exactly that authorization; without (forwarding): the client's header untouched", async () => {
  const host = await gateway({ table: mixed(1), config: { max_fallbacks: 0 } });
  const seen = new Set<string>();
  for (let i = 0; i < 16; i++) {
    const client: Headers = i % 4 === 0 ? [] : i % 4 === 1 ? [["authorization", "Bearer client-token"]]
      : i % 4 === 2 ? [["authorization", "Bearer one"], ["authorization", "Bearer two"]] : [["Authorization", "Basic Y2xpZW50"]];
    const r = request(host, { model: "mix", headers: client });
    assert.equal(r.outcome, "upstream");
    const inst = picked(r)!;
    seen.add(inst);
    const expected = KEY[inst];
    if (expected !== undefined) {
      assert.deepEqual(authorizations(r.upstreamHeaders), [expected], `pick ${inst}, client ${JSON.stringify(client)}`);
    } else {
      // No key: the client's header(s) go upstream as they were (the host lower-cases names).
      assert.deepEqual(authorizations(r.upstreamHeaders), client.map(([, v]) => v), `pick ${inst}, client ${JSON.stringify(client)}`);
    }
  }
  assert.deepEqual([...seen].sort(), ["a", "b", "c", "d"]);

  // A deployment without any key: nothing added, the client's value kept.
  assert.deepEqual(authorizations(request(host, { model: "open" }).upstreamHeaders), []);
  assert.deepEqual(authorizations(request(host, { model: "open", headers: [["authorization", "Bearer mine"]] }).upstreamHeaders), ["Bearer mine"]);
  // Body-routed requests too.
  for (let i = 0; i < 4; i++) {
    const r = request(host, { body: JSON.stringify({ model: "mix" }), headers: [["authorization", "Bearer client-token"]] });
    const inst = picked(r)!;
    assert.deepEqual(authorizations(r.upstreamHeaders), [KEY[inst] ?? "Bearer client-token"]);
  }
  assert.deepEqual(host.refusals, [], "no host call Envoy would refuse");
});

test("fallbacks list only instances with the pick's authorization (both absent counts as equal), round robin", async () => {
  for (const strategy of ["round_robin", "weighted_round_robin"] as const) {
    const host = await gateway({ table: mixed(1, strategy), config: { max_fallbacks: 8 } });
    const expected: Record<string, string[]> = { a: ["a", "b"], b: ["b", "a"], c: ["c"], d: ["d"] };
    const seen = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const r = request(host, { model: "mix", headers: [["authorization", "Bearer client"]] });
      const inst = picked(r)!;
      seen.set(inst, (seen.get(inst) ?? 0) + 1);
      const ep = header(r.upstreamHeaders, "x-gateway-destination-endpoint")!.split(",");
      assert.deepEqual(ep, expected[inst]!.map((id) => ADDR[id]), `${strategy}: endpoint list for ${inst}`);
      assert.deepEqual(authorizations(r.upstreamHeaders), [KEY[inst] ?? "Bearer client"]);
    }
    assert.deepEqual([...seen.keys()].sort(), ["a", "b", "c", "d"], `${strategy}: every instance picked`);
    for (const n of seen.values()) assert.equal(n, 50, `${strategy}: even spread`);
  }
  // Default max_fallbacks (2): A's list still holds only B.
  const host = await gateway({ table: mixed(2) });
  for (let i = 0; i < 8; i++) {
    const r = request(host, { model: "mix" });
    const ep = header(r.upstreamHeaders, "x-gateway-destination-endpoint")!;
    if (picked(r) === "a") assert.equal(ep, `${ADDR.a},${ADDR.b}`);
    if (picked(r) === "d") assert.equal(ep, ADDR.d);
  }
});

test("failover and panic keep their order among same-key fallbacks", async () => {
  const host = await gateway({
    config: { max_fallbacks: 8 },
    table: table(1, [
      {
        id: "fo", strategy: "failover", instances: [
          { id: "p", address: "10.41.0.1:1", priority: 0, authorization: K1 },
          { id: "q", address: "10.41.0.2:1", priority: 1, authorization: K2 },
          { id: "r", address: "10.41.0.3:1", priority: 1, authorization: K1 },
          { id: "s", address: "10.41.0.4:1", priority: 2, authorization: K1 },
        ],
      },
      {
        id: "pan", on_unavailable: "panic", forward_client_credentials: true, instances: [
          { id: "x", address: "10.42.0.1:1", state: "ejected", authorization: K1 },
          { id: "y", address: "10.42.0.2:1", state: "ejected" },
          { id: "z", address: "10.42.0.3:1", state: "ejected", authorization: K1 },
        ],
      },
    ]),
  });
  const fo = request(host, { model: "fo" });
  assert.equal(picked(fo), "p");
  assert.equal(header(fo.upstreamHeaders, "x-gateway-destination-endpoint"), "10.41.0.1:1,10.41.0.3:1,10.41.0.4:1");
  assert.deepEqual(authorizations(fo.upstreamHeaders), [K1]);
  for (let i = 0; i < 6; i++) {
    const r = request(host, { model: "pan", headers: [["authorization", "Bearer c"]] });
    const ep = header(r.upstreamHeaders, "x-gateway-destination-endpoint")!;
    if (picked(r) === "y") {
      assert.equal(ep, "10.42.0.2:1");
      assert.deepEqual(authorizations(r.upstreamHeaders), ["Bearer c"]);
    } else {
      assert.equal(ep.split(",").length, 2);
      assert.ok(!ep.includes("10.42.0.2:1"), ep);
      assert.deepEqual(authorizations(r.upstreamHeaders), [K1]);
    }
  }
  host.advance(1000);
  assert.ok(metric(host, "gateway.deployment.pan.panic") >= 6);
});

test("a new table version changes the key; a key removed leaves the client's header alone again (forwarding)", async () => {
  const keyed = (version: number, authorization?: string) =>
    table(version, [{ id: "d", forward_client_credentials: true, instances: [{ id: "i", address: "10.43.0.1:1", ...(authorization ? { authorization } : {}) }] }]);
  const host = await gateway({ table: keyed(1, K1) });
  const auth = () => authorizations(request(host, { model: "d", headers: [["authorization", "Bearer c"]] }).upstreamHeaders);
  assert.deepEqual(auth(), [K1]);
  deliver(host, keyed(2, K2));
  assert.deepEqual(auth(), [K2]);
  deliver(host, keyed(3));
  assert.deepEqual(auth(), ["Bearer c"]);
  // Another worker adopts it from shared data.
  const two = await gateway({ workers: 2, table: keyed(4, K1) });
  waitFor(two, () => authorizations(request(two, { model: "d", worker: 1 }).upstreamHeaders)[0] === K1, "worker 1 adopts the keyed table");
});

test("each invalid authorization form refuses the whole table; the previous table stays", async () => {
  const host = await gateway({ table: mixed(1), config: { max_fallbacks: 0 } });
  const bad: unknown[] = ["", " Bearer k", "Bearer k ", "Bearer  k", "Bearer\tk", "Bearer k\n", "Bearer \u0000k", "Bearer clé",
    "Bearer " + "k".repeat(4194), 42, null, true, ["Bearer k"], { v: "Bearer k" }];
  let version = 2;
  for (const value of bad) {
    const doc = mixed(version++) as { deployments: { instances: Record<string, unknown>[] }[] };
    doc.deployments[1]!.instances[0]!.authorization = value;
    deliver(host, doc);
    assert.equal(metric(host, "gateway.table.version"), 1, JSON.stringify(value).slice(0, 40));
    const r = request(host, { model: "open", headers: [["authorization", "Bearer c"]] });
    assert.deepEqual(authorizations(r.upstreamHeaders), ["Bearer c"], "the previous table (no key on open) still routes");
  }
  assert.equal(metric(host, "gateway.table.rejected"), bad.length);
  // The limit itself is fine.
  const ok = mixed(version) as { deployments: { instances: Record<string, unknown>[] }[] };
  const longest = "Bearer " + "k".repeat(4193);
  assert.equal(longest.length, 4200);
  ok.deployments[1]!.instances[0]!.authorization = longest;
  deliver(host, ok);
  assert.equal(metric(host, "gateway.table.version"), version);
  assert.deepEqual(authorizations(request(host, { model: "open", headers: [["authorization", "Bearer c"]] }).upstreamHeaders), [longest]);
});

test("the value never appears in the logs, at trace level, whatever happens", async () => {
  const SECRET = "sk-never-log-5c1d";
  const host = await gateway({
    logLevel: "trace",
    config: { telemetry_interval_ms: 0, passive_failures: 1, passive_cooldown_ms: 1000 },
    table: table(1, [{ id: "d", instances: [{ id: "a", address: "10.44.0.1:1", authorization: `Bearer ${SECRET}` }, { id: "b", address: "10.44.0.2:1", authorization: `Bearer ${SECRET}` }] }]),
  });
  for (let i = 0; i < 6; i++) {
    const r = send(host, "d", i % 2 === 0 ? { status: 200 } : { status: 503, flags: FLAG.UF });
    assert.ok(["upstream", "local_reply"].includes(r.result.outcome), r.result.outcome); // 503 once both are ejected
  }
  waitFor(host, () => metric(host, "gateway.passive.ejections") > 0, "a passive ejection (logged)");
  // Refused tables holding the secret in an invalid form.
  for (const [v, value] of [[2, `Bearer  ${SECRET}`], [3, `${SECRET} `], [4, `Bearer ${SECRET}\u0001`]] as const) {
    deliver(host, table(v, [{ id: "d", instances: [{ id: "a", address: "10.44.0.1:1", authorization: value }] }]));
  }
  assert.equal(metric(host, "gateway.table.rejected"), 3);
  // A malformed document around the secret.
  deliver(host, `{"schema":1,"version":5,"models":{},"deployments":[{"id":"d","instances":[{"authorization":"Bearer ${SECRET}`);
  host.advance(5000);
  assert.ok(host.logs.length > 0, "something was logged");
  assert.ok(host.logs.some((l) => l.message.includes("authorization")), "the refusal names the field");
  const leaked = host.logs.filter((l) => l.message.includes(SECRET));
  assert.deepEqual(leaked, []);
});
