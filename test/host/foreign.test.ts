import assert from "node:assert/strict";
import { test } from "node:test";
import { header, startFixture } from "./build-fixture.js";
import { Status } from "../../envoy/local/host/index.js";

test("clear_route_cache is Envoy's foreign function and is recorded on the stream; unknown names are NotFound", async () => {
  const host = await startFixture("probe");
  const r = host.request({ headers: [[":method", "GET"], [":path", "/"], [":authority", "gw"], ["x-op", "ffi"]] });
  assert.equal(header(r.upstreamHeaders, "x-ffi-status"), String(Status.Ok));
  assert.equal(header(r.upstreamHeaders, "x-ffi-unknown"), String(Status.NotFound));
  assert.deepEqual(r.foreignCalls.map((c) => [c.name, c.contextId, c.args.length]), [["clear_route_cache", r.contextId, 0]]);
  assert.equal(host.refusals.length, 1);
  assert.match(host.refusals[0]!.detail, /no_such_function/);
});

test("a test can register its own foreign function", async () => {
  const calls: number[] = [];
  const host = await startFixture("probe", { foreignFunctions: { no_such_function: (_args, at) => void calls.push(at.contextId) } });
  const r = host.request({ headers: [[":method", "GET"], [":path", "/"], [":authority", "gw"], ["x-op", "ffi"]] });
  assert.equal(header(r.upstreamHeaders, "x-ffi-unknown"), String(Status.Ok));
  assert.deepEqual(calls, [r.contextId]);
});
