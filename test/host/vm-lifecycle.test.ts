/**
 * Envoy's VM lifecycle in the host (sources in envoy/local/host/API.md, "VM lifecycle"): the canary, the
 * main-thread VM, one VM per worker, a configuration update as a second root context in the same VMs,
 * retiring the old one, and the life of a vm_id's shared data. Plus the smaller Envoy behaviours around
 * it: http_call failing inline, zero-length buffer reads, malformed header pairs, header status 2 and
 * the ABI 0.2.1 route-cache clear.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { header, startFixture } from "./build-fixture.js";
import { CANARY, HostError, MAIN_THREAD, SharedData, Status } from "../../envoy/local/host/index.js";

const get: [string, string][] = [[":method", "GET"], [":path", "/"], [":authority", "gw"]];
const full = { canary: true, mainThread: true, clusters: ["control"] };

test("start: the canary configures and is killed (no tick, no on_done, its call cancelled); main thread and workers run", async () => {
  const host = await startFixture("probe", { ...full, workers: 2, configuration: "tick=10 call-at-configure" });
  assert.equal(host.canaryRuns, 1);
  const configured = host.logs.filter((l) => l.message.startsWith("configured")).map((l) => [l.worker, l.message.split(" ")[1]]);
  // Order: the canary, then the main thread, then the workers (each took the next sequence from shared data).
  assert.deepEqual(configured, [[CANARY, "worker-seq=0"], [MAIN_THREAD, "worker-seq=1"], [0, "worker-seq=2"], [1, "worker-seq=3"]]);
  assert.deepEqual(host.logs.filter((l) => l.message.startsWith("vm start")).map((l) => l.worker), [CANARY, MAIN_THREAD, 0, 1], "on_vm_start per root");
  // The canary's http call was cancelled with it: never pending, never answered.
  assert.deepEqual(host.httpCalls.map((c) => c.worker).sort(), [MAIN_THREAD, 0, 1].sort());
  host.advance(100);
  const tickers = new Set(host.logs.filter((l) => l.message.startsWith("tick")).map((l) => l.worker));
  assert.deepEqual([...tickers].sort(), [MAIN_THREAD, 0, 1].sort(), "the main thread ticks; the canary never does");
  for (const c of [...host.httpCalls]) c.respond({ status: 200, body: "ok" });
  host.advance(10);
  const answered = host.logs.filter((l) => l.message.startsWith("http response")).map((l) => l.worker).sort();
  assert.deepEqual(answered, [MAIN_THREAD, 0, 1].sort());
  // Streams run on workers only.
  assert.equal(host.request({ headers: get }).worker, 0);
  host.shutdown();
  assert.deepEqual(host.logs.filter((l) => l.worker === CANARY && /^on_(done|delete)/.test(l.message)), [], "no on_done/on_delete for the canary");
  assert.deepEqual(host.logs.filter((l) => l.message.startsWith("on_delete 1")).map((l) => l.worker).sort(), [MAIN_THREAD, 0, 1].sort());
});

test("a configuration the canary refuses rejects the whole filter: no worker or main-thread VM starts", async () => {
  await assert.rejects(startFixture("probe", { ...full, workers: 2, configuration: "fail" }), (e: unknown) => e instanceof HostError && /canary/.test(e.message));
});

test("configuration update: a second root in every VM, new streams use it, the old root ticks until retired", async () => {
  const host = await startFixture("probe", { ...full, workers: 2, configuration: "tick=10" });
  const first = host.current;
  const second = host.updateConfiguration("tick=10 v2");
  assert.equal(host.canaryRuns, 2, "a new configuration runs the canary again");
  for (const vm of [host.mainVm!, host.worker(0), host.worker(1)]) {
    assert.deepEqual(vm.roots.map((r) => r.plugin), [first, second]);
    assert.notEqual(vm.roots[0]!.id, vm.roots[1]!.id, "a new root context id in the same VM");
  }
  const newRoot = host.worker(0).rootOf(second)!.id;
  const r = host.request({ worker: 0, headers: get });
  assert.equal(r.contextId > newRoot, true);
  assert.equal(host.worker(0).rootContextId, newRoot, "new streams are created under the new root");
  // Both roots of a worker tick.
  host.logs.length = 0;
  host.advance(100);
  const w0ticks = new Set(host.logs.filter((l) => l.worker === 0 && l.message.startsWith("tick")).map((l) => l.contextId));
  assert.deepEqual([...w0ticks].sort(), [host.worker(0).rootOf(first)!.id, newRoot].sort());
  // The same configuration again is the same plugin: no canary, no new root.
  assert.equal(host.updateConfiguration("tick=10 v2"), second);
  assert.equal(host.canaryRuns, 2);
  // A refused update changes nothing.
  assert.throws(() => host.updateConfiguration("fail"), HostError);
  assert.equal(host.current, second);
  assert.equal(host.worker(0).roots.length, 2);
  // Retiring the old configuration: on_done/on_delete on its roots; they stop ticking.
  const oldId = host.worker(0).rootOf(first)!.id;
  host.retire(first);
  assert.ok(host.logs.some((l) => l.worker === 0 && l.message === `on_delete ${oldId}`));
  host.logs.length = 0;
  host.advance(100);
  assert.deepEqual([...new Set(host.logs.filter((l) => l.worker === 0 && l.message.startsWith("tick")).map((l) => l.contextId))], [newRoot]);
});

test("shared data of a vm_id lives while any VM holding it runs, and is deleted with the last", async () => {
  const a = await startFixture("probe", { ...full, vmId: "gw", configuration: "tick=10" });
  assert.ok(a.sharedData.get("worker-seq", "gw"), "the plugin wrote its sequence");
  const b = await startFixture("probe", { ...full, vmId: "gw", sharedData: a.sharedData, configuration: "tick=10" });
  a.shutdown();
  assert.ok(b.sharedData.get("worker-seq", "gw"), "kept: b's VMs still hold vm_id gw");
  b.shutdown();
  assert.equal(b.sharedData.get("worker-seq", "gw"), undefined, "deleted with the last VM of vm_id gw");
  const alone = new SharedData();
  alone.attach("x");
  alone.set("k", "v", 0, "x");
  assert.equal(alone.detach("x"), true);
  assert.equal(alone.get("k", "x"), undefined);
});

test("a root waiting for proxy_done keeps the vm_id's data until it is deleted", async () => {
  const host = await startFixture("probe", { ...full, vmId: "gw", configuration: "defer-done tick=10" });
  host.shutdown();
  assert.ok(host.sharedData.get("worker-seq", "gw"), "root 1 of worker 0 still waits for proxy_done");
  host.advance(1000);
  assert.equal(host.sharedData.get("worker-seq", "gw"), undefined);
});

test("http_call to a cluster without a healthy host (or over its circuit breaker) fails inline: InternalFailure, no callback", async () => {
  const host = await startFixture("probe", { clusters: ["control"] });
  for (const state of ["no_healthy_upstream", "overflow"] as const) {
    host.setClusterState("control", state);
    const r = host.request({ headers: [...get, ["x-op", "http-call"], ["x-cluster", "control"]] });
    assert.equal(header(r.upstreamHeaders, "x-call-status"), String(Status.InternalFailure));
    assert.equal(header(r.upstreamHeaders, "x-call-token"), "0");
    assert.equal(host.httpCalls.length, 0);
    host.advance(10_000);
    assert.equal(host.logs.filter((l) => l.message.startsWith("http response")).length, 0, "never a callback");
  }
  host.setClusterState("control", "ok");
  const r = host.request({ headers: [...get, ["x-op", "http-call"], ["x-cluster", "control"]] });
  assert.equal(header(r.upstreamHeaders, "x-call-status"), "0");
  assert.equal(host.httpCalls.length, 1);
});

test("a zero-length get_buffer_bytes writes 0/0 to both pointers and answers Ok", async () => {
  const host = await startFixture("probe");
  const r = host.request({ headers: [...get, ["x-op", "empty-read"]] });
  assert.equal(header(r.upstreamHeaders, "x-empty-read"), "0 0 0");
});

test("set_header_map_pairs: empty or malformed pairs remove every header (pseudo-headers too) and answer Ok", async () => {
  const host = await startFixture("probe");
  for (const kind of ["empty", "no-nul", "trailing"]) {
    const r = host.request({ headers: [...get, ["x-op", "set-pairs"], ["x-pairs", kind], ["x-keep", "1"]] });
    assert.deepEqual(r.upstreamHeaders, [], kind);
    assert.ok(host.logs.some((l) => l.message === `set-pairs ${kind} status=0`));
  }
});

test("headers status 2 (ContinueAndEndStream) is Continue: the body still goes upstream", async () => {
  const host = await startFixture("probe");
  const r = host.request({ headers: [[":method", "POST"], [":path", "/"], [":authority", "gw"], ["x-op", "continue-end"]], body: "payload" });
  assert.equal(r.outcome, "upstream");
  assert.equal(r.upstreamBodyText, "payload");
});

test("ABI 0.2.1: every request-header change clears the route cache; no change, no clear", async () => {
  const host = await startFixture("probe");
  assert.equal(host.request({ headers: get }).routeCacheClears, 0);
  // The fixture's "edit": two adds, a replace, a remove, then three more adds (x-dup-first and two
  // status headers); its read of map 99 changes nothing.
  const r = host.request({ headers: [...get, ["x-op", "edit"], ["x-replace", "old"], ["x-remove", "x"]] });
  assert.equal(r.routeCacheClears, 7);
});
