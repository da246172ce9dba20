import assert from "node:assert/strict";
import { test } from "node:test";
import { header, startFixture } from "./build-fixture.js";
import { Errno, Status } from "../../envoy/local/host/index.js";

const get = (op: string): [string, string][] => [[":method", "GET"], [":path", "/"], [":authority", "gw"], ["x-op", op]];

test("fd_write: stdout → info, stderr → error, trailing newline dropped, other fds EBADF; log level filters; bad level refused", async () => {
  const host = await startFixture("probe", { logLevel: "info" });
  const r = host.request({ headers: get("stdout") });
  const h = r.upstreamHeaders;
  assert.equal(header(h, "x-stdout-errno"), String(Errno.Success));
  assert.equal(header(h, "x-stdout-written"), "10");
  assert.equal(header(h, "x-stderr-errno"), String(Errno.Success));
  assert.equal(header(h, "x-fd9-errno"), String(Errno.Badf));
  assert.equal(header(h, "x-bad-level"), String(Status.BadArgument));
  const lines = host.logs.filter((l) => l.contextId === r.contextId && !l.message.startsWith("on_"));
  assert.deepEqual(lines.map((l) => [l.level, l.message]), [["info", "to stdout"], ["error", "to stdout"], ["warn", "warn line"]]);
  assert.deepEqual(host.refusals.map((x) => [x.call, x.statusName]), [["proxy_log", "BadArgument"]]);
});

test("set_effective_context: unknown id → BadArgument; switching to the root context changes what host calls see", async () => {
  const host = await startFixture("probe");
  const r = host.request({ headers: get("bad-effective") });
  assert.equal(header(r.upstreamHeaders, "x-effective-status"), String(Status.BadArgument));
  assert.ok(host.logs.some((l) => l.message === `as root: effective=${Status.Ok} get :path status=${Status.BadArgument}` && l.contextId === 1));
  assert.deepEqual(host.refusals.map((x) => [x.call, x.statusName, x.contextId]), [
    ["proxy_set_effective_context", "BadArgument", r.contextId],
    ["proxy_get_header_map_value", "BadArgument", 1],
  ]);
});
