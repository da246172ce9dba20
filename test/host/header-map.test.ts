import assert from "node:assert/strict";
import { test } from "node:test";
import { HeaderMap } from "../../envoy/local/host/index.js";
import type { HeaderPairs } from "../../envoy/local/host/types.js";

/** Module memory stand-in: `text` as UTF-8 (or raw bytes) at `at`. */
function memory(parts: (string | Uint8Array)[]): { buf: Buffer; dv: DataView; spans: [number, number][] } {
  const buf = Buffer.alloc(8192);
  const spans: [number, number][] = [];
  let at = 3; // unaligned on purpose
  for (const p of parts) {
    const bytes = typeof p === "string" ? Buffer.from(p) : p;
    buf.set(bytes, at);
    spans.push([at, bytes.length]);
    at += bytes.length + 5;
  }
  return { buf, dv: new DataView(buf.buffer, buf.byteOffset, buf.length), spans };
}

const base = (): HeaderPairs => [[":method", "GET"], [":path", "/"], ["x-a", "1"], ["x-dup", "d1"], ["x-dup", "d2"]];

test("values set as bytes read back like eagerly decoded ones, in both kinds of map", () => {
  const values = ["10.0.0.1:8000,10.0.0.2:8000", "", "ünïcødé", new Uint8Array([0x61, 0xff, 0x62]), "x".repeat(5000)];
  const { buf, dv, spans } = memory(values);
  const eager = new HeaderMap(base());
  const lazy = HeaderMap.reusable(4096);
  lazy.reset(base());
  spans.forEach(([p, n], i) => {
    eager.replaceBytes(`x-v${i}`, buf, dv, p, n);
    lazy.replaceBytes(`x-v${i}`, buf, dv, p, n);
  });
  eager.addBytes(":authority", buf, dv, spans[0]![0], spans[0]![1]);
  lazy.addBytes(":authority", buf, dv, spans[0]![0], spans[0]![1]);
  // Module memory changes after the calls: the maps copied the bytes.
  buf.fill(0x7a);
  assert.equal(lazy.get("x-v2"), "ünïcødé");
  assert.equal(lazy.get("x-v3"), "a\ufffdb");
  assert.equal(lazy.byteSize(), eager.byteSize());
  assert.deepEqual(lazy.entries(), eager.entries());
  assert.deepEqual(lazy.snapshot(), eager.snapshot());
  assert.deepEqual(lazy.entries().map(([k]) => k).slice(0, 3), [":method", ":path", ":authority"]);
  assert.equal(lazy.get("x-v1"), "");
  assert.equal(lazy.get("x-v4"), "x".repeat(5000));
});

test("a reusable map never changes the caller's pairs and starts clean on reset", () => {
  const { buf, dv, spans } = memory(["v1", "v2"]);
  const m = HeaderMap.reusable(64);
  const first = base();
  m.reset(first);
  m.replaceBytes("x-dup", buf, dv, spans[0]![0], spans[0]![1]);
  m.remove("x-a");
  assert.deepEqual(first, base());
  assert.deepEqual(m.entries(), [[":method", "GET"], [":path", "/"], ["x-dup", "v1"]]);
  const second: HeaderPairs = [[":method", "POST"], ["x-b", "2"]];
  m.reset(second);
  assert.deepEqual(m.entries(), second);
  assert.equal(m.get("x-dup"), undefined);
  m.addBytes("x-c", buf, dv, spans[1]![0], spans[1]![1]);
  assert.deepEqual(second, [[":method", "POST"], ["x-b", "2"]]);
  assert.deepEqual(m.entries(), [[":method", "POST"], ["x-b", "2"], ["x-c", "v2"]]);
});

test("a reusable map whose arena fills up decodes what it holds and goes on", () => {
  const parts = Array.from({ length: 40 }, (_, i) => `value-${i}-${"y".repeat(i)}`);
  const { buf, dv, spans } = memory(parts);
  const m = HeaderMap.reusable(128);
  m.reset([]);
  spans.forEach(([p, n], i) => m.addBytes(`x-${i % 7}`, buf, dv, p, n));
  // Removing raw and decoded entries alike keeps the map consistent.
  m.remove("x-3");
  buf.fill(0);
  const expected = parts.map((v, i) => [`x-${i % 7}`, v] as [string, string]).filter(([k]) => k !== "x-3");
  assert.deepEqual(m.entries(), expected);
  assert.equal(m.size, expected.length);
  assert.equal(m.get("x-0"), parts[0]);
});

test("firstListEntry: a list's first entry, from bytes or from text alike", () => {
  const { buf, dv, spans } = memory(["10.0.0.1:80,10.0.0.2:80", "ü1:80,x", "solo", ",x", ""]);
  const lazy = HeaderMap.reusable(256);
  lazy.reset([["x-text", "a:1,b:2"]]);
  const eager = new HeaderMap([["x-text", "a:1,b:2"]]);
  for (const m of [lazy, eager]) spans.forEach(([p, n], i) => m.addBytes(`x-${i}`, buf, dv, p, n));
  for (const m of [lazy, eager]) {
    assert.deepEqual(["x-text", "x-0", "x-1", "x-2", "x-3", "x-4", "x-none"].map((k) => m.firstListEntry(k)), ["a:1", "10.0.0.1:80", "ü1:80", "solo", "", undefined, undefined]);
  }
  // Reading the first entry leaves the rest intact.
  assert.equal(lazy.get("x-0"), "10.0.0.1:80,10.0.0.2:80");
});
