import assert from "node:assert/strict";
import { test } from "node:test";
import { header, startFixture } from "./build-fixture.js";
import { Status } from "../../envoy/local/host/index.js";

const enqueue: [string, string][] = [[":method", "GET"], [":path", "/"], [":authority", "gw"], ["x-op", "enqueue"]];

test("shared queue: the last VM to register a name gets on_queue_ready, after the enqueuing callback", async () => {
  const host = await startFixture("probe", { workers: 2, configuration: "queue" });
  const r = host.request({ worker: 0, headers: enqueue });
  assert.equal(header(r.upstreamHeaders, "x-resolve-status"), String(Status.Ok));
  assert.equal(header(r.upstreamHeaders, "x-enqueue-status"), String(Status.Ok));
  const ready = host.logs.filter((l) => l.message.startsWith("queue ready"));
  assert.deepEqual(ready.map((l) => [l.worker, l.contextId, l.message]), [[1, 1, `queue ready token=1 item=item from ${r.contextId} then=${Status.Empty}`]]);
});

test("resolving a queue nobody registered is NotFound", async () => {
  const host = await startFixture("probe");
  const r = host.request({ headers: enqueue });
  assert.equal(header(r.upstreamHeaders, "x-resolve-status"), String(Status.NotFound));
  assert.equal(header(r.upstreamHeaders, "x-enqueue-status"), String(Status.NotFound));
});
