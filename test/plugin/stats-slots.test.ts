// The per-instance counters live in a flat block of records that the plugin reuses once nothing can
// count into them any more (plugin/telemetry/stats.ts, "Slot lifetime"). These tests pin what that must
// not change: a request in flight across table versions is counted for the instance it was sent to,
// even when the new version drops that instance and adds others; counts never leak between instances
// when records are reused over many versions; passive ejection state stays with its instance.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TelemetryBatch, type InstanceTelemetry } from "../../control/contracts/telemetry.js";
import { deliver, gateway, header, metric, table, type Host } from "./support.js";
import { send } from "./upstream.js";

const TELEMETRY_PATH = "/v1/telemetry";

/** Answers every pending batch (200) and sums their counts per deployment/instance/address. */
function takeCounts(host: Host, into: Record<string, InstanceTelemetry[]> = {}): Record<string, InstanceTelemetry[]> {
  for (const call of host.httpCalls.filter((c) => header(c.headers, ":path") === TELEMETRY_PATH)) {
    const parsed = TelemetryBatch.safeParse(JSON.parse(call.bodyText));
    assert.ok(parsed.success, "batch matches contract 3");
    for (const i of parsed.data.instances) (into[`${i.deployment}/${i.instance}/${i.address}`] ??= []).push(i);
    call.respond({ status: 200 });
  }
  return into;
}

function total(counts: Record<string, InstanceTelemetry[]>, key: string, field: "requests" | "upstream_5xx" | "connect_failures" = "requests"): number {
  return (counts[key] ?? []).reduce((n, i) => n + i[field], 0);
}

/** Starts a routed request and returns what finishes it later (upstream.address = the pick, a status). */
function inFlight(host: Host, model: string) {
  const s = host.worker(0).stream();
  s.requestHeaders([[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "gw"], [":scheme", "http"], ["x-model", model]], true);
  const sent = s.result().upstreamHeaders;
  const address = header(sent, "x-gateway-destination-endpoint")!.split(",")[0]!;
  const instance = header(sent, "x-model-instance")!;
  return {
    address,
    instance,
    finish(status: number) {
      (s as unknown as { setProperty(p: string, v: Uint8Array): void }).setProperty("upstream.address", new TextEncoder().encode(address));
      s.respond({ status, body: "x" });
      s.finish();
    },
  };
}

test("a request in flight across versions is counted for its instance, not for the one that replaced it", async () => {
  const host = await gateway({ config: { telemetry_interval_ms: 5000 }, table: table(1, [{ id: "d", instances: [{ id: "old", address: "10.30.0.1:8000" }] }]) });
  const pending = inFlight(host, "d");
  assert.equal(pending.instance, "old");
  // v2 drops "old" and adds two instances (records are allocated for them while "old" is still in flight).
  deliver(host, table(2, [{ id: "d", instances: [{ id: "new1", address: "10.30.0.2:8000" }, { id: "new2", address: "10.30.0.3:8000" }] }]));
  send(host, "d", { status: 200 });
  send(host, "d", { status: 503 });
  // v3 again: in-flight counting must survive a second replacement too.
  deliver(host, table(3, [{ id: "d", instances: [{ id: "new1", address: "10.30.0.2:8000" }, { id: "new3", address: "10.30.0.4:8000" }] }]));
  pending.finish(503);
  send(host, "d", { status: 200 });
  send(host, "d", { status: 200 });
  host.advance(5000);
  const counts = takeCounts(host);
  assert.equal(total(counts, "d/old/10.30.0.1:8000"), 1);
  assert.equal(total(counts, "d/old/10.30.0.1:8000", "upstream_5xx"), 1);
  assert.equal(total(counts, "d/new1/10.30.0.2:8000") + total(counts, "d/new2/10.30.0.3:8000") + total(counts, "d/new3/10.30.0.4:8000"), 4);
  assert.equal(total(counts, "d/new1/10.30.0.2:8000", "upstream_5xx") + total(counts, "d/new2/10.30.0.3:8000", "upstream_5xx"), 1);
  assert.equal(total(counts, "d/new3/10.30.0.4:8000", "upstream_5xx"), 0);
  assert.deepEqual(host.refusals, []);
  host.shutdown();
});

test("records reused over many versions: every count lands on its own instance", async () => {
  const host = await gateway({ config: { telemetry_interval_ms: 1000, poll_interval_ms: 100 }, table: table(1, [{ id: "d", instances: [{ id: "keep", address: "10.31.0.1:8000" }] }]) });
  const expected: Record<string, number> = {};
  const counts: Record<string, InstanceTelemetry[]> = {};
  let held = inFlight(host, "d");
  let heldKey = "d/keep/10.31.0.1:8000";
  for (let v = 2; v <= 40; v++) {
    // Each version keeps "keep" and brings a fresh instance (a new address: new stats, maybe a reused record).
    const fresh = { id: `f${v}`, address: `10.31.${v}.1:8000` };
    deliver(host, table(v, [{ id: "d", instances: [{ id: "keep", address: "10.31.0.1:8000" }, fresh] }]));
    for (let k = 0; k < 3; k++) {
      const r = send(host, "d", { status: 200 });
      const key = `d/${r.instance}/${r.endpoints[0]}`;
      expected[key] = (expected[key] ?? 0) + 1;
    }
    // One request stays in flight over each version change, then completes.
    held.finish(200);
    expected[heldKey] = (expected[heldKey] ?? 0) + 1;
    held = inFlight(host, "d");
    heldKey = `d/${held.instance}/${held.address}`;
    if (v % 5 === 0) {
      host.advance(1000);
      takeCounts(host, counts);
    }
  }
  held.finish(200);
  expected[heldKey] = (expected[heldKey] ?? 0) + 1;
  for (let i = 0; i < 3; i++) {
    host.advance(1000);
    takeCounts(host, counts);
  }
  const got = Object.fromEntries(Object.keys(counts).map((k) => [k, total(counts, k)]));
  assert.deepEqual(got, expected);
  assert.deepEqual(host.refusals, []);
  host.shutdown();
});

test("a passive ejection stays with its instance while other instances come and go", async () => {
  const host = await gateway({ config: { telemetry_interval_ms: 0, passive_failures: 2, passive_cooldown_ms: 60_000 }, table: table(1, [{ id: "d", instances: [{ id: "a", address: "10.32.0.1:8000" }, { id: "b", address: "10.32.0.2:8000" }] }]) });
  // a fails twice (round robin: a, b, a, b) → ejected on this worker.
  for (let i = 0; i < 4; i++) send(host, "d", (pick) => ({ status: pick === "a" ? 503 : 200 }));
  assert.equal(metric(host, "gateway.passive.ejections"), 1);
  // Versions that drop b and bring others: a stays ejected (its streak and state are its own).
  for (let v = 2; v <= 6; v++) {
    deliver(host, table(v, [{ id: "d", instances: [{ id: "a", address: "10.32.0.1:8000" }, { id: `n${v}`, address: `10.32.${v}.1:8000` }] }]));
    for (let i = 0; i < 4; i++) assert.equal(send(host, "d", { status: 200 }).instance, `n${v}`);
  }
  // A fresh instance fails once: its streak starts at 0 (not a's), so no second ejection yet.
  send(host, "d", { status: 503 });
  assert.equal(metric(host, "gateway.passive.ejections"), 1);
  send(host, "d", { status: 503 });
  assert.equal(metric(host, "gateway.passive.ejections"), 2);
  assert.deepEqual(host.refusals, []);
  host.shutdown();
});
