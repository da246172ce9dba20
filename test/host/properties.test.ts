import assert from "node:assert/strict";
import { test } from "node:test";
import { header, startFixture } from "./build-fixture.js";
import { Status } from "../../envoy/local/host/index.js";

test("properties: strings as bytes, response.code as 8-byte little-endian int64, missing → NotFound", async () => {
  const host = await startFixture("probe", { vmId: "gateway", logLevel: "debug" });
  const r = host.request({
    headers: [[":method", "GET"], [":path", "/v1/models"], [":authority", "gw"], ["x-op", "props"]],
    properties: { "upstream.address": "10.0.0.5:8000" },
    response: { status: 503 },
  });
  const h = r.upstreamHeaders;
  assert.equal(header(h, "x-path"), "/v1/models");
  assert.equal(header(h, "x-upstream"), "10.0.0.5:8000");
  assert.equal(header(h, "x-missing-status"), String(Status.NotFound));
  assert.equal(header(h, "x-set-property"), "r1");
  assert.equal(header(h, "x-vm-id"), "gateway");
  assert.equal(header(h, "x-log-level"), "1"); // debug
  const logged = host.logs.filter((l) => l.contextId === r.contextId).map((l) => l.message);
  assert.ok(logged.includes("response.code=503 size=8"), logged.join("\n"));
  assert.ok(logged.includes("response.code_details=via_upstream"));
  // In on_log the request headers are readable again (access-log view).
  assert.ok(logged.includes("on_log :path=/v1/models"));
  assert.deepEqual(host.refusals, []);
});

test("response.code of a local reply is its status, code_details its details; before any response it is missing", async () => {
  const host = await startFixture("probe");
  const denied = host.request({ headers: [[":method", "GET"], [":path", "/x"], [":authority", "gw"], ["x-op", "deny"]] });
  const deniedLogs = host.logs.filter((l) => l.contextId === denied.contextId).map((l) => l.message);
  assert.ok(deniedLogs.includes("response.code=403 size=8"), deniedLogs.join("\n"));
  assert.ok(deniedLogs.includes("response.code_details=denied_by_policy"));

  const s = host.worker(0).stream();
  s.requestHeaders([[":method", "POST"], [":path", "/x"], [":authority", "gw"], ["x-op", "props"]], false);
  const open = s.finish();
  const openLogs = host.logs.filter((l) => l.contextId === open.contextId).map((l) => l.message);
  assert.ok(openLogs.includes("response.code=missing"), openLogs.join("\n"));
  assert.equal(open.outcome, "hung");
});

test("properties given to the host are readable from every context; stream properties override them", async () => {
  const host = await startFixture("probe", { properties: { "upstream.address": "host-wide" } });
  const r1 = host.request({ headers: [[":method", "GET"], [":path", "/"], [":authority", "gw"], ["x-op", "props"]] });
  const r2 = host.request({ headers: [[":method", "GET"], [":path", "/"], [":authority", "gw"], ["x-op", "props"]], properties: { "upstream.address": "per-stream" } });
  assert.equal(header(r1.upstreamHeaders, "x-upstream"), "host-wide");
  assert.equal(header(r2.upstreamHeaders, "x-upstream"), "per-stream");
});
