import assert from "node:assert/strict";
import { before, test } from "node:test";
import { header, startFixture } from "./build-fixture.js";
import { parsePairs, serializePairs, Status, type ProxyWasmHost } from "../../envoy/local/host/index.js";

let host: ProxyWasmHost;
before(async () => {
  host = await startFixture("probe");
});

const base: [string, string][] = [[":method", "GET"], [":path", "/v1/models?x=1"], [":authority", "gw"]];

test("serialized maps follow the spec layout (count, length pairs, NUL-terminated bytes)", () => {
  const bytes = serializePairs([["a", "1"], ["b", "22"]]);
  // Spec example: {{"a": "1"}, {"b": "22"}}.
  assert.deepEqual([...bytes], [2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0x61, 0, 0x31, 0, 0x62, 0, 0x32, 0x32, 0]);
  assert.deepEqual(parsePairs(bytes), [["a", "1"], ["b", "22"]]);
  assert.deepEqual(parsePairs(new Uint8Array(0)), []);
});

test("header pairs survive a round trip through the plugin: get_pairs, parse, re-serialize, set_pairs", () => {
  const r = host.request({
    headers: [...base, ["X-Op", "echo-pairs"], ["x-dup", "first"], ["x-dup", "second"], ["x-utf8", "ünïcödé ✓"], ["x-empty", ""]],
  });
  assert.equal(r.outcome, "upstream");
  assert.deepEqual(r.upstreamHeaders, [
    ...base,
    // regular headers reversed by the plugin; keys arrived lower-cased, repeats and empty values intact
    ["x-empty", ""],
    ["x-utf8", "ünïcödé ✓"],
    ["x-dup", "second"],
    ["x-dup", "first"],
    ["x-op", "echo-pairs"],
    ["x-pair-count", "8"],
    ["x-map-bytes", String(sumBytes([...base, ["x-op", "echo-pairs"], ["x-dup", "first"], ["x-dup", "second"], ["x-utf8", "ünïcödé ✓"], ["x-empty", ""]]))],
    ["x-header-count", "8"],
  ]);
  assert.deepEqual(host.refusals, []);
});

test("add, replace and remove behave like Envoy's header map (lower-case keys, first value, NotFound, bad map type)", () => {
  const before = host.refusals.length;
  const r = host.request({
    headers: [...base, ["x-op", "edit"], ["x-replace", "old1"], ["x-replace", "old2"], ["x-remove", "gone"], ["x-dup", "one"], ["x-dup", "two"]],
  });
  const h = r.upstreamHeaders!;
  assert.deepEqual(h.filter(([k]) => k === "x-added"), [["x-added", "a1"], ["x-added", "a2"]]);
  assert.deepEqual(h.filter(([k]) => k === "x-replace"), [["x-replace", "new"]]);
  assert.equal(header(h, "x-remove"), undefined);
  assert.equal(header(h, "x-dup-first"), "one");
  assert.equal(header(h, "x-absent-status"), String(Status.NotFound));
  assert.equal(header(h, "x-bad-map-status"), String(Status.BadArgument));
  const refused = host.refusals.slice(before);
  assert.equal(refused.length, 1);
  assert.equal(refused[0]!.call, "proxy_get_header_map_value");
  assert.equal(refused[0]!.statusName, "BadArgument");
});

function sumBytes(pairs: [string, string][]): number {
  return pairs.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
}
