import assert from "node:assert/strict";
import { test } from "node:test";
import { header, startFixture } from "./build-fixture.js";

test("proxy_send_local_response answers the client; the request never goes upstream", async () => {
  const host = await startFixture("probe");
  const r = host.request({ headers: [[":method", "GET"], [":path", "/"], [":authority", "gw"], ["x-op", "deny"]], response: { status: 200, body: "upstream" } });
  assert.equal(r.outcome, "local_reply");
  assert.equal(r.upstreamHeaders, null);
  assert.equal(r.localReply?.status, 403);
  assert.equal(r.localReply?.bodyText, "forbidden");
  assert.equal(r.localReply?.by, "plugin");
  assert.equal(r.localReply?.details, "denied_by_policy"); // Envoy replaces spaces in details
  assert.equal(r.localReply?.grpcStatus, null); // -1 means "no grpc-status"
  assert.equal(header(r.downstreamHeaders, "x-deny-reason"), "test"); // additional headers, key lower-cased
  assert.equal(header(r.downstreamHeaders, "content-length"), "9");
  // The local reply passed through this filter's encoder side, like in Envoy.
  assert.equal(header(r.downstreamHeaders, "x-seen-by-plugin"), "1");
  assert.deepEqual(r.callbacks, ["proxy_on_context_create", "proxy_on_request_headers", "proxy_on_response_headers", "proxy_on_log", "proxy_on_done", "proxy_on_delete"]);
  assert.deepEqual(host.refusals, []);
});
