import assert from "node:assert/strict";
import { test } from "node:test";
import { header, startFixture } from "./build-fixture.js";
import { SharedData, Status } from "../../envoy/local/host/index.js";

test("CAS: missing → NotFound, cas 0 sets unconditionally, fresh cas sets, stale cas → CasMismatch", async () => {
  const host = await startFixture("probe");
  const r = host.request({ headers: [[":method", "GET"], [":path", "/"], [":authority", "gw"], ["x-op", "cas"]] });
  const h = r.upstreamHeaders;
  assert.equal(header(h, "x-get-missing"), String(Status.NotFound));
  assert.equal(header(h, "x-set-unconditional"), String(Status.Ok));
  assert.equal(header(h, "x-value"), "v1");
  assert.equal(header(h, "x-set-fresh-cas"), String(Status.Ok));
  assert.equal(header(h, "x-set-stale-cas"), String(Status.CasMismatch));
  assert.equal(Buffer.from(host.sharedData.get("cas-key")!.value).toString(), "v2");
  assert.deepEqual(host.refusals.map((r) => r.statusName), ["CasMismatch"]);
});

test("shared data is one store for all workers: 4 workers claim distinct sequence numbers by CAS", async () => {
  const host = await startFixture("probe", { workers: 4 });
  const claimed = host.logs.filter((l) => l.message.startsWith("configured")).map((l) => Number(/worker-seq=(\d+)/.exec(l.message)![1]));
  assert.deepEqual(claimed, [0, 1, 2, 3]);
  assert.equal(Buffer.from(host.sharedData.get("worker-seq")!.value).toString(), "4");
});

test("shared data is namespaced by vm_id and can outlive a host (config reload)", async () => {
  const first = await startFixture("probe", { vmId: "gw" });
  const reloaded = await startFixture("probe", { vmId: "gw", sharedData: first.sharedData });
  assert.match(reloaded.logs.find((l) => l.message.startsWith("configured"))!.message, /worker-seq=1 /);
  assert.equal(first.sharedData.get("worker-seq"), undefined); // default vm_id "" space untouched
  assert.ok(first.sharedData.get("worker-seq", "gw"));
});

test("the store's cas counter is process-wide and a stale cas on an existing key is refused", () => {
  const store = new SharedData();
  assert.equal(store.set("a", "1"), Status.Ok);
  assert.equal(store.set("b", "1"), Status.Ok);
  const a = store.get("a")!;
  const b = store.get("b")!;
  assert.notEqual(a.cas, b.cas);
  assert.equal(store.set("a", "2", b.cas), Status.CasMismatch);
  assert.equal(store.set("new", "x", 12345), Status.Ok); // cas is ignored for a new key
});
