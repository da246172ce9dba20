// Contracts 1 and 2 on the plugin side: the wasm accepts exactly the fixtures the zod schemas accept
// (test/contracts/fixtures.control.test.ts runs the same fixtures through zod).
import { test } from "node:test";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import { ProxyWasmHost } from "../../envoy/local/host/index.js";
import { contractFixtures } from "../support/fixtures.js";
import { RoutingTable } from "../../control/contracts/routing-table.js";
import { PluginConfig } from "../../control/contracts/plugin-config.js";
import { answerPoll, CONTROL, gateway, metric, PLUGIN_WASM, prng } from "./support.js";

function zodAccepts(schema: { safeParse(v: unknown): { success: boolean } }, text: string): boolean {
  try {
    return schema.safeParse(JSON.parse(text)).success;
  } catch {
    return false;
  }
}

let compiled: WebAssembly.Module | undefined;

async function configures(configuration: string, precompiled = false): Promise<{ ok: boolean; logs: string[] }> {
  if (precompiled && !compiled) compiled = new WebAssembly.Module(readFileSync(PLUGIN_WASM));
  try {
    const host = await ProxyWasmHost.start({ wasm: precompiled ? compiled! : PLUGIN_WASM, configuration, clusters: [CONTROL] });
    host.shutdown();
    return { ok: true, logs: host.logs.map((l) => l.message) };
  } catch (e) {
    const err = e as { name?: string; logs?: { message: string }[]; message?: string };
    assert.notEqual(err.name, "WasmTrap", `trap: ${err.message}`);
    return { ok: false, logs: (err.logs ?? []).map((l) => l.message) };
  }
}

for (const f of contractFixtures("routing-table")) {
  test(`routing-table ${f.name} is ${f.valid ? "adopted" : "refused"} by the wasm`, async () => {
    assert.equal(zodAccepts(RoutingTable, f.text), f.valid, "fixture agrees with zod");
    const host = await gateway({});
    answerPoll(host, { status: 200, body: f.text });
    // Every VM (main thread and worker) adopts a valid table; only the poller ever sees an invalid one.
    assert.equal(metric(host, "gateway.table.adopted"), f.valid ? host.liveVms().length : 0);
    assert.equal(metric(host, "gateway.table.rejected"), f.valid ? 0 : 1);
    host.shutdown();
  });
}

for (const f of contractFixtures("plugin-config")) {
  test(`plugin-config ${f.name}: on_configure returns ${f.valid}`, async () => {
    assert.equal(zodAccepts(PluginConfig, f.text), f.valid, "fixture agrees with zod");
    const r = await configures(f.text);
    assert.equal(r.ok, f.valid, r.logs.join("\n"));
    if (!f.valid) {
      const reason = r.logs.find((l) => l.includes("invalid plugin configuration"));
      assert.ok(reason, "a logged reason");
      assert.match(reason!, /expected/);
    }
  });
}

test("the refusal names the field and the expected shape", async () => {
  const r = await configures(JSON.stringify({ control_cluster: "c", max_fallbacks: 99 }));
  assert.equal(r.ok, false);
  const line = r.logs.find((l) => l.includes("invalid plugin configuration"))!;
  assert.match(line, /max_fallbacks/);
  assert.match(line, /0\.\.8/);
  assert.match(line, /"control_cluster": string \(required\)/);
});

test("the configuration token is never logged, even when the configuration is refused", async () => {
  const r = await configures(JSON.stringify({ control_cluster: "c", control_token: "sekr1t-value", bogus: 1 }));
  assert.equal(r.ok, false);
  assert.ok(r.logs.every((l) => !l.includes("sekr1t-value")));
});

/** Mutations of the valid fixtures: the wasm and zod must agree on every one. */
test("wasm and zod agree on 1,500 mutated tables and configurations", async () => {
  const rnd = prng(20261127);
  const tables = contractFixtures("routing-table").filter((f) => f.valid).map((f) => JSON.parse(f.text));
  const configs = contractFixtures("plugin-config").filter((f) => f.valid).map((f) => JSON.parse(f.text));
  const host = await gateway({ config: { max_table_bytes: 64 * 1024 } });
  let version = 1;
  const disagreements: string[] = [];
  for (let i = 0; i < 1000; i++) {
    const doc = structuredClone(tables[Math.floor(rnd() * tables.length)]);
    mutate(doc, rnd);
    if (doc && typeof doc === "object" && !Array.isArray(doc) && rnd() < 0.9) (doc as Record<string, unknown>).version = ++version;
    const text = JSON.stringify(doc);
    const before = metric(host, "gateway.table.version");
    const adoptedBefore = metric(host, "gateway.table.adopted");
    answerPoll(host, { status: 200, body: text });
    const adopted = metric(host, "gateway.table.adopted") > adoptedBefore;
    const expected = zodAccepts(RoutingTable, text) && (JSON.parse(text) as { version: number }).version > before;
    if (adopted !== expected) disagreements.push(text);
  }
  for (let i = 0; i < 500; i++) {
    const c = structuredClone(configs[Math.floor(rnd() * configs.length)]);
    mutate(c, rnd);
    const text = JSON.stringify(c);
    const r = await configures(text, true);
    if (r.ok !== zodAccepts(PluginConfig, text)) disagreements.push(text);
  }
  assert.deepEqual(disagreements.slice(0, 5), []);
});


const SAMPLE_VALUES: unknown[] = [
  0, 1, -1, 1.5, 65535, 65536, 255, 256, 10000, 10001, 1e21, "", " ", "a", "A-b_c.9", "-x", "10.0.0.1:80", "10.0.0.256:80",
  "010.0.0.1:80", "[fd00::1]:8080", "[]:80", "1.2.3.4:0", "/v1", "/v1/", "//", "/a b", "active", "ejected", "draining",
  "failover", "round_robin", "weighted_round_robin", "least_request", "latency", "fail", "panic", "passthrough", "reject", true, false, null, [], {},
  "x".repeat(65), "x".repeat(129), "x".repeat(257), "X-Upper", "lower-case", "ü", "/v1?x", "a\u0000b",
  "authorization", "Bearer sk-1", "Bearer  sk-1", " Bearer", "Bearer ", "a\tb", "a b c", "k".repeat(4200), "k".repeat(4201),
];

function mutate(node: unknown, rnd: () => number, depth = 0): void {
  if (node === null || typeof node !== "object" || depth > 6) return;
  const entries: [string | number, unknown][] = Array.isArray(node) ? node.map((v, i) => [i, v]) : Object.entries(node);
  const pick = () => SAMPLE_VALUES[Math.floor(rnd() * SAMPLE_VALUES.length)];
  for (const [k, v] of entries) {
    const r = rnd();
    if (r < 0.06) (node as Record<string | number, unknown>)[k] = structuredClone(pick());
    else if (r < 0.08 && !Array.isArray(node)) delete (node as Record<string, unknown>)[k as string];
    else if (typeof v === "object") mutate(v, rnd, depth + 1);
  }
  if (!Array.isArray(node) && rnd() < 0.05) (node as Record<string, unknown>)[String(pick())] = pick();
  if (Array.isArray(node) && node.length > 0 && rnd() < 0.05) node.push(structuredClone(node[0]));
}

test("number forms JSON allows (1.0, 1e0, -0) are judged like zod's safe-integer rule", async () => {
  const inst = (weight: string, priority: string) =>
    `{"id":"i","address":"10.0.0.1:80","base_path":"","weight":${weight},"priority":${priority},"region":"","state":"active"}`;
  const doc = (version: string, weight: string, priority: string) =>
    `{"schema":1.0,"version":${version},"models":{},"deployments":[{"id":"d","cluster":"c","strategy":"round_robin","on_unavailable":"fail","instances":[${inst(weight, priority)}]}]}`;
  const cases = [
    doc("2.0", "1e0", "-0"), doc("3", "10000.0", "2.55e2"), doc("4", "1.5", "0"), doc("5", "1", "256"),
    doc("9007199254740991", "1", "0"), doc("9007199254740992", "1", "0"), doc("1e400", "1", "0"), doc("6", "1E1", "0.0"),
  ];
  for (const text of cases) {
    const host = await gateway({});
    answerPoll(host, { status: 200, body: text });
    assert.equal(metric(host, "gateway.table.adopted") > 0, zodAccepts(RoutingTable, text), text);
    host.shutdown();
  }
});
