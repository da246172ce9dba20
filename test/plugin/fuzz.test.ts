// Fuzz (seeded, reproducible): random and mutated headers, bodies, tables and configurations must
// never trap the wasm. Any trap throws WasmTrap out of the host and fails the test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ProxyWasmHost } from "../../envoy/local/host/index.js";
import { contractFixtures } from "../support/fixtures.js";
import { answerPoll, CONTROL, gateway, PLUGIN_WASM, prng, table, type Headers } from "./support.js";
import { send } from "./upstream.js";
import { TelemetryBatch } from "../../control/contracts/telemetry.js";

const SEED = Number(process.env.FUZZ_SEED ?? 1127);
const enc = new TextEncoder();

function randomBytes(rnd: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

function pick<T>(rnd: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rnd() * xs.length)]!;
}

/** Upstream authorization values for random tables: valid ones (incl. the 4200 limit) and invalid ones. */
const AUTHORIZATIONS: unknown[] = ["Bearer k0", "Bearer k1", "x", "Bearer " + "k".repeat(4193), "Bearer " + "k".repeat(4194), "", " x", "x ", "a  b", "a\u0001", "é", 7, null];

const JSON_PIECES = ['{', '}', '[', ']', ':', ',', '"model"', '"llama3"', '"m\\u006fdel"', '"\\ud800"', '"\\"', "1e999", "-0.5e-3", "true", "nul", " ", "\n", '"\u0001"', "\\", '"é"', "01", "-", "[[[[[[[[", "]]]]"];

function randomBody(rnd: () => number): Uint8Array {
  const r = rnd();
  if (r < 0.2) return randomBytes(rnd, Math.floor(rnd() * 300));
  if (r < 0.45) {
    let s = "";
    const n = Math.floor(rnd() * 40);
    for (let i = 0; i < n; i++) s += pick(rnd, JSON_PIECES);
    return enc.encode(s);
  }
  // Mutated valid body.
  const doc = JSON.stringify({ model: pick(rnd, ["llama3", "qwen", "nope", "", "x".repeat(300)]), messages: [{ role: "user", content: "hi" }], n: 1, stream: rnd() < 0.5, nested: { model: [1, 2, { a: null }] } });
  const b = enc.encode(doc);
  const flips = Math.floor(rnd() * 4);
  for (let i = 0; i < flips; i++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
  return rnd() < 0.2 ? b.slice(0, Math.floor(rnd() * b.length)) : b;
}

function chunks(rnd: () => number, b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let i = 0;
  while (i < b.length) {
    const n = 1 + Math.floor(rnd() * 64);
    out.push(b.slice(i, i + n));
    i += n;
  }
  return out.length ? out : [new Uint8Array(0)];
}

function randomHeaderValue(rnd: () => number): string {
  const r = rnd();
  if (r < 0.3) return pick(rnd, ["llama3", "qwen", "d0", "d1", "", " ", "llama3 ", "LLAMA3", "x".repeat(257), "x".repeat(5000)]);
  let s = "";
  const n = Math.floor(rnd() * 40);
  for (let i = 0; i < n; i++) s += String.fromCharCode(0x20 + Math.floor(rnd() * 0x5f));
  return s;
}

test(`fuzz: 7,000 random requests, 2,500 random tables and 1,000 random configurations never trap (seed ${SEED})`, async () => {
  const rnd = prng(SEED);
  const base = table(1, [
    { id: "d0", instances: [{ id: "a", authorization: "Bearer k0" }, { id: "b", base_path: "/x" }, { id: "c", state: "draining", authorization: "Bearer k0" }] },
    { id: "d1", strategy: "weighted_round_robin", on_unavailable: "panic", instances: [{ id: "a", weight: 3, state: "ejected" }, { id: "b" }] },
    { id: "d2", strategy: "failover", instances: [{ id: "p", priority: 0 }, { id: "s", priority: 1 }] },
    { id: "d3", instances: [] },
  ], { llama3: "d0", qwen: "d1", fo: "d2", empty: "d3" });
  const host = await gateway({ workers: 2, table: base, config: { max_body_bytes: 256, unknown_model: "passthrough" }, logLevel: "trace" });
  const reject = await gateway({ table: base, config: { unknown_model: "reject", api_prefix: "" } });
  const fixtures = contractFixtures("routing-table").map((f) => f.text);
  let version = 2;
  let requests = 0;
  let tables = 0;

  for (let round = 0; round < 100; round++) {
    for (let i = 0; i < 70; i++) {
      const h: Headers = [[":method", pick(rnd, ["POST", "GET"])], [":path", pick(rnd, ["/v1/chat/completions", "/v1", "/", "/v1?x", "/v1beta", "/" + "p".repeat(3000), "/v1/" + randomHeaderValue(rnd)])], [":authority", "gw"]];
      if (rnd() < 0.6) h.push(["x-model", randomHeaderValue(rnd)]);
      if (rnd() < 0.7) h.push(["content-type", pick(rnd, ["application/json", "application/JSON; charset=utf-8", "text/plain", "application/vnd.x+json", ";", ""])]);
      for (const name of ["x-gateway-destination-endpoint", "x-gateway-cluster", "x-model-deployment", "x-model-instance"]) {
        if (rnd() < 0.2) h.push([name, randomHeaderValue(rnd)]);
      }
      const withBody = rnd() < 0.7;
      const r = (rnd() < 0.8 ? host : reject).request({
        headers: h,
        ...(withBody ? { body: chunks(rnd, randomBody(rnd)) } : {}),
        ...(rnd() < 0.1 ? { trailers: [["x-t", "1"]] as Headers } : {}),
        response: { status: 200, body: "ok" },
      });
      requests++;
      assert.ok(["upstream", "local_reply"].includes(r.outcome), r.outcome);
      if (r.outcome === "local_reply") assert.ok([400, 404, 413, 503].includes(r.localReply!.status), String(r.localReply!.status));
      if (r.outcome === "upstream") {
        const ep = r.upstreamHeaders!.filter(([k]) => k === "x-gateway-destination-endpoint");
        assert.ok(ep.length <= 1);
      }
    }
    for (let i = 0; i < 25; i++) {
      const kind = rnd();
      let body: string | Uint8Array;
      if (kind < 0.2) body = randomBytes(rnd, Math.floor(rnd() * 500));
      else if (kind < 0.5) {
        const f = enc.encode(pick(rnd, fixtures));
        const flips = 1 + Math.floor(rnd() * 6);
        for (let k = 0; k < flips; k++) f[Math.floor(rnd() * f.length)] = Math.floor(rnd() * 128);
        body = rnd() < 0.3 ? f.slice(0, Math.floor(rnd() * f.length)) : f;
      } else {
        const t = JSON.parse(JSON.stringify(base)) as { version: number; deployments: { instances: unknown[] }[] };
        t.version = rnd() < 0.8 ? ++version : Math.floor(rnd() * version);
        const d = t.deployments[Math.floor(rnd() * t.deployments.length)]!;
        if (rnd() < 0.5) d.instances.push({ id: "z" + Math.floor(rnd() * 5), address: pick(rnd, ["1.2.3.4:5", "[::1]:1", "bad"]), base_path: "", weight: 1, priority: Math.floor(rnd() * 3), region: "", state: pick(rnd, ["active", "ejected", "draining", "x"]),
          ...(rnd() < 0.5 ? { authorization: pick(rnd, AUTHORIZATIONS) } : {}) });
        body = JSON.stringify(t);
      }
      const resp = rnd();
      if (resp < 0.85) answerPoll(host, { status: 200, body: typeof body === "string" ? body : new TextDecoder().decode(body) });
      else if (resp < 0.95) answerPoll(host, { status: pick(rnd, [304, 404, 500, 503]) });
      else { host.advance(1000); host.httpCalls[0]?.fail(); }
      tables++;
    }
    // Corrupt the shared-data keys now and then (another plugin version, a bug, a partial write):
    // workers read them on every tick and must shrug it off.
    if (rnd() < 0.3) {
      const key = pick(rnd, ["gateway.table.version", "gateway.table.bytes", "gateway.control.poll_lease", "gateway.worker.seq"]);
      const value = pick(rnd, [randomBytes(rnd, Math.floor(rnd() * 40)), enc.encode(String(++version + 5)), enc.encode("1 2 3"), enc.encode(""), enc.encode("18446744073709551615 99999999999999999999")]);
      host.sharedData.set(key, value);
    }
    host.advance(1000); // second worker syncs from shared data
  }

  const compiled = new WebAssembly.Module(readFileSync(PLUGIN_WASM));
  const configs = contractFixtures("plugin-config").map((f) => f.text);
  let configsTried = 0;
  for (let i = 0; i < 1000; i++) {
    let configuration: string | Uint8Array;
    const r = rnd();
    if (r < 0.3) configuration = randomBytes(rnd, Math.floor(rnd() * 200));
    else {
      const f = enc.encode(pick(rnd, configs));
      const flips = Math.floor(rnd() * 4);
      for (let k = 0; k < flips; k++) f[Math.floor(rnd() * f.length)] = Math.floor(rnd() * 256);
      configuration = f;
    }
    try {
      const h = await ProxyWasmHost.start({ wasm: compiled, configuration, clusters: [CONTROL] });
      h.shutdown();
    } catch (e) {
      assert.notEqual((e as Error).name, "WasmTrap", (e as Error).message);
    }
    configsTried++;
  }
  host.shutdown();
  reject.shutdown();
  assert.ok(requests + tables + configsTried >= 10_000, `${requests + tables + configsTried} cases`);
});

test(`fuzz: 6,000 random upstream results (codes, flags, addresses, latencies, telemetry answers, table churn) never trap (seed ${SEED})`, async () => {
  const rnd = prng(SEED ^ 0x5eed);
  const addrs = ["10.77.0.1:8000", "10.77.0.2:8000", "[fd00::7]:8080", "10.77.0.4:8000"];
  const doc = (v: number) => table(v, [
    { id: "d0", instances: [{ id: "a", address: addrs[0] }, { id: "b", address: addrs[1], ...(rnd() < 0.5 ? { authorization: "Bearer kb" } : {}) }, { id: "c", address: addrs[2], state: pick(rnd, ["active", "ejected", "draining"] as const), ...(rnd() < 0.3 ? { authorization: "Bearer kc" } : {}) }] },
    { id: "d1", strategy: "failover", on_unavailable: "panic", instances: [{ id: "p", priority: 0, address: addrs[3] }, { id: "s", priority: 1, address: addrs[pick(rnd, [0, 1, 2])] }] },
    { id: "d2", strategy: "weighted_round_robin", instances: rnd() < 0.5 ? [] : [{ id: "w", weight: 3, address: addrs[1] }] },
  ], { m0: "d0", m1: "d1", m2: "d2" });
  const host = await gateway({
    workers: 2,
    table: doc(1),
    config: { telemetry_interval_ms: 1000, passive_failures: 1 + Math.floor(rnd() * 3), passive_cooldown_ms: 1000, max_fallbacks: 2 },
    logLevel: "trace",
  });
  let version = 1;
  const codes = [0, 100, 200, 204, 302, 404, 429, 499, 500, 502, 503, 504, 599, 600, 999, -1, 2 ** 31, 2 ** 40];
  const flagNames = ["-", "UF", "URX", "UC", "UR", "UH", "LR", "UT", "DC", "UO", "UPE", "UMSDR", "NR", "XX", "", ",", "UF,URX", "U", "UFF"];
  const i64 = (v: bigint) => { const b = Buffer.alloc(8); b.writeBigInt64LE(BigInt.asIntN(64, v)); return new Uint8Array(b); };
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(rnd() * 256));
  let n = 0;
  for (let round = 0; round < 200; round++) {
    for (let i = 0; i < 30; i++) {
      const model = pick(rnd, ["m0", "m1", "m2", "nope"]);
      const worker = Math.floor(rnd() * 2);
      const r = send(host, model, (_pick, eps) => {
        const raw: Record<string, Uint8Array> = {};
        const c = rnd();
        if (c < 0.3) raw["response.code"] = i64(BigInt(pick(rnd, codes)));
        else if (c < 0.4) raw["response.code"] = bytes(Math.floor(rnd() * 12));
        const f = rnd();
        if (f < 0.3) raw["response.flags"] = i64(BigInt(Math.floor(rnd() * 2 ** 30)) | (rnd() < 0.1 ? 1n << 63n : 0n));
        else if (f < 0.6) raw["response.flags"] = new TextEncoder().encode(Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => pick(rnd, flagNames)).join(","));
        else if (f < 0.7) raw["response.flags"] = bytes(Math.floor(rnd() * 300));
        if (rnd() < 0.2) raw["response.code_details"] = rnd() < 0.5 ? new TextEncoder().encode("via_upstream") : bytes(Math.floor(rnd() * 30));
        const a = rnd();
        const address = a < 0.5 ? (eps[Math.floor(rnd() * (eps.length + 1))] ?? null) : a < 0.7 ? pick(rnd, addrs) : a < 0.8 ? null : a < 0.9 ? "" : new TextDecoder().decode(bytes(Math.floor(rnd() * 40)));
        return {
          address,
          ...(rnd() < 0.8 ? { status: pick(rnd, [200, 200, 404, 500, 502, 503, 504]) } : {}),
          ...(rnd() < 0.3 ? { latencyMs: Math.floor(rnd() * 3000) } : {}),
          raw,
        };
      }, worker);
      assert.ok(["upstream", "local_reply", "hung", "reset"].includes(r.result.outcome));
      n++;
    }
    // Answer whatever the workers sent: telemetry batches (validated) and polls (sometimes a new table).
    for (const call of [...host.httpCalls]) {
      if (call.bodyText.startsWith("{\"schema\"")) {
        assert.ok(TelemetryBatch.safeParse(JSON.parse(call.bodyText)).success, call.bodyText.slice(0, 300));
        const x = rnd();
        if (x < 0.6) call.respond({ status: 200 });
        else if (x < 0.8) call.respond({ status: pick(rnd, [204, 400, 500, 503]) });
        else if (x < 0.9) call.fail();
      } else if (rnd() < 0.3) {
        call.respond({ status: 200, body: JSON.stringify(doc(++version)) });
      }
    }
    host.advance(Math.floor(rnd() * 1500));
  }
  host.shutdown();
  assert.ok(n >= 6000);
  assert.ok((host.metrics.get("gateway.telemetry.batches")?.value ?? 0) > 0, "batches were sent");
  assert.ok((host.metrics.get("gateway.passive.ejections")?.value ?? 0) > 0, "ejections happened");
});
