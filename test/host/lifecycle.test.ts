import assert from "node:assert/strict";
import { test } from "node:test";
import { startFixture } from "./build-fixture.js";
import { WasmTrap } from "../../envoy/local/host/index.js";

const get: [string, string][] = [[":method", "GET"], [":path", "/"], [":authority", "gw"]];

test("a stream ends with on_log, then on_done, then on_delete (Envoy logs before destroying filters)", async () => {
  const host = await startFixture("probe");
  const r = host.request({ headers: get, response: { status: 204 } });
  assert.deepEqual(r.callbacks, ["proxy_on_context_create", "proxy_on_request_headers", "proxy_on_response_headers", "proxy_on_log", "proxy_on_done", "proxy_on_delete"]);
  assert.deepEqual(
    host.logs.filter((l) => l.contextId === r.contextId).map((l) => l.message),
    [`on_log ${r.contextId}`, `on_done ${r.contextId}`, `on_delete ${r.contextId}`],
  );
  assert.equal(r.contextId, host.worker(0).rootContextId + 1);
});

test("shutdown: on_done true → on_delete at once", async () => {
  const host = await startFixture("probe");
  host.shutdown();
  assert.deepEqual(host.logs.slice(-2).map((l) => l.message), ["on_done 1", "on_delete 1"]);
  assert.throws(() => host.request({ headers: get }), /shut down/);
});

test("shutdown: on_done false → the root keeps ticking until proxy_done; on_delete runs after that callback", async () => {
  const host = await startFixture("probe", { configuration: "defer-done tick=10" });
  host.shutdown();
  assert.equal(host.worker(0).roots[0]?.pendingDone, true);
  assert.equal(host.logs.at(-1)!.message, "on_done 1");
  host.advance(10);
  assert.deepEqual(host.logs.slice(-3).map((l) => l.message), ["tick seq=0 at=1700000000010", "proxy_done=0", "on_delete 1"]);
  assert.deepEqual(host.worker(0).roots, [], "the root is gone");
  assert.equal(host.worker(0).nextTickAt, null);
  host.advance(100);
  assert.equal(host.logs.at(-1)!.message, "on_delete 1");
});

test("proxy_done from a context that is not pending is NotFound and recorded", async () => {
  const host = await startFixture("probe", { configuration: "defer-done tick=10" });
  host.advance(10);
  assert.equal(host.logs.at(-1)!.message, "proxy_done=1");
  assert.equal(host.refusals.at(-1)?.call, "proxy_done");
});

test("a trap is reported as WasmTrap naming the callback, and the VM stays failed", async () => {
  const host = await startFixture("probe", { workers: 2 });
  assert.throws(
    () => host.request({ worker: 1, headers: [...get, ["x-op", "trap"]] }),
    (err: unknown) => err instanceof WasmTrap && err.callback === "proxy_on_request_headers" && err.worker === 1 && /unreachable/.test(err.message),
  );
  assert.match(host.worker(1).failure!, /proxy_on_request_headers/);
  assert.throws(() => host.request({ worker: 1, headers: get }), WasmTrap);
  // The other worker's VM is unaffected.
  assert.equal(host.request({ worker: 0, headers: get }).outcome, "upstream");
});

test("an AssemblyScript assertion reaches the logs through the abort hook before the trap", async () => {
  const host = await startFixture("probe");
  assert.throws(
    () => host.request({ headers: [...get, ["x-op", "assert"]] }),
    (err: unknown) => err instanceof WasmTrap && /abort: fixture assertion at test\/host\/fixtures\/probe\.ts/.test(err.message),
  );
});

test("fast path runRequest: create, headers, log, done, delete with fresh context ids", async () => {
  const host = await startFixture("probe");
  const w = host.worker(0);
  assert.equal(w.runRequest(get), 0);
  assert.equal(w.runRequest([...get, ["x-op", "pause"]]), 1);
  assert.deepEqual(
    host.logs.filter((l) => l.contextId > 1).map((l) => l.message),
    ["on_log 2", "on_done 2", "on_delete 2", "on_log 3", "on_done 3", "on_delete 3"],
  );
  assert.equal(w.contexts.size, 1); // only the root context is left
  // Only the found "x-op" value was returned through the module's allocator (a miss allocates nothing).
  assert.equal(w.mallocCalls, 1);
});

test("fast path runRequest with an upstream: response headers before on_log, upstream.address and response.code", async () => {
  const host = await startFixture("probe");
  const w = host.worker(0);
  const up = { status: 503, headers: [["x-up", "1"]] as [string, string][], addressHeader: "x-endpoints" };
  assert.equal(w.runRequest([...get, ["x-op", "props"], ["x-endpoints", "10.0.0.9:80,10.0.0.8:80"]], up), 0);
  const id = w.rootContextId + 1;
  const mine = host.logs.filter((l) => l.contextId === id).map((l) => l.message);
  assert.ok(mine.includes("response.code=503 size=8"), mine.join("\n"));
  assert.ok(mine.includes("response.code_details=via_upstream"), mine.join("\n"));
  assert.ok(mine.includes("upstream.address=10.0.0.9:80"), mine.join("\n"));
  // Without an upstream there is no upstream.address; a local reply does not go upstream either.
  w.runRequest([...get, ["x-op", "props"]]);
  assert.ok(host.logs.filter((l) => l.contextId === id + 1).some((l) => l.message === "upstream.address=missing"));
  w.runRequest([...get, ["x-op", "deny"]], up);
  const denied = host.logs.filter((l) => l.contextId === id + 2).map((l) => l.message);
  assert.ok(denied.includes("response.code=403 size=8") && denied.includes("upstream.address=missing"), denied.join("\n"));
});
