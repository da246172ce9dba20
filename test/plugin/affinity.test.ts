// Session affinity (plugin/strategy/affinity.ts) through the wasm: the same key → the same instance;
// removing an instance remaps only its keys, adding one takes about its share; weights honoured;
// ejected / draining / passively ejected instances skipped (their keys only move); over the load bound →
// the next instance in the key's hash order; no key → the base strategy; the body's "user" as the key.
import { test } from "node:test";
import assert from "node:assert/strict";
import { deliver, gateway, header, type DeploymentSpec, type Host, type InstanceSpec, picked, request, table } from "./support.js";
import { FLAG, send } from "./upstream.js";

const KEYS = Array.from({ length: 2000 }, (_, i) => `session-${i}-${(i * 2654435761) >>> 0}`);
const AFF = { source: "header", header: "x-session-id" } as const;

/** Stable addresses per instance id, so table versions keep an instance's identity (and stats). */
function inst(id: string, more: Partial<InstanceSpec> = {}): InstanceSpec {
  return { id, address: `10.99.0.${id.charCodeAt(0)}:${8000 + id.length}`, ...more };
}

function dep(instances: InstanceSpec[], more: Partial<DeploymentSpec> = {}): DeploymentSpec {
  return { id: "d", strategy: "round_robin", affinity: AFF, instances, ...more };
}

function keyed(host: Host, key: string | undefined): string | undefined {
  return picked(request(host, { model: "d", headers: key === undefined ? [] : [["x-session-id", key]] }));
}

function mapKeys(host: Host, keys = KEYS): Map<string, string> {
  const out = new Map<string, string>();
  for (const k of keys) out.set(k, keyed(host, k) ?? "none");
  return out;
}

function counts(xs: Iterable<string | undefined>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[String(x)] = (out[String(x)] ?? 0) + 1;
  return out;
}

/** A stream opened with `key` and left in flight. */
function open(host: Host, key: string) {
  const s = host.worker(0).stream();
  s.requestHeaders([[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "gw"], [":scheme", "http"], ["x-model", "d"], ["x-session-id", key]], true);
  return { s, pick: header(s.result().upstreamHeaders, "x-model-instance") };
}

test("affinity: the same key always reaches the same instance, and keys spread over every instance", async () => {
  const host = await gateway({ table: table(1, [dep(["a", "b", "c", "e"].map((id) => inst(id)))]) });
  const first = mapKeys(host, KEYS.slice(0, 400));
  // Interleaved with keyless requests (which rotate the base round robin): keys keep their instance.
  for (let round = 0; round < 3; round++) {
    for (const k of KEYS.slice(0, 400)) {
      keyed(host, undefined);
      assert.equal(keyed(host, k), first.get(k), `key ${k} moved (round ${round})`);
    }
  }
  const c = counts(first.values());
  // 400 keys over 4 equal instances: 100 each, σ ≈ 8.7.
  for (const id of ["a", "b", "c", "e"]) assert.ok((c[id] ?? 0) > 60 && (c[id] ?? 0) < 140, JSON.stringify(c));
  // Another worker (another VM, another RNG seed) maps every key the same way.
  const other = await gateway({ workers: 1, table: table(1, [dep(["a", "b", "c", "e"].map((id) => inst(id)))]) });
  for (const k of KEYS.slice(0, 200)) assert.equal(keyed(other, k), first.get(k));
});

test("affinity: removing an instance remaps only its keys; adding one takes about its share, only from the others", async () => {
  const five = ["a", "b", "c", "e", "f"];
  const host = await gateway({ table: table(1, [dep(five.map((id) => inst(id)))]) });
  const before = mapKeys(host);
  deliver(host, table(2, [dep(five.filter((id) => id !== "c").map((id) => inst(id)))]));
  const after = mapKeys(host);
  let moved = 0;
  for (const k of KEYS) {
    const was = before.get(k)!;
    const now = after.get(k)!;
    assert.notEqual(now, "c");
    if (was !== "c") assert.equal(now, was, `key ${k} was on ${was}, not on the removed instance, yet moved to ${now}`);
    else moved++;
  }
  // c's keys spread over the remaining four (each about a quarter of them).
  const dest = counts(KEYS.filter((k) => before.get(k) === "c").map((k) => after.get(k)));
  assert.ok(moved > 300 && moved < 500, `c held ${moved} of 2000`);
  for (const id of ["a", "b", "e", "f"]) assert.ok((dest[id] ?? 0) > moved / 4 - 50, JSON.stringify(dest));
  // Adding "g" (and "c" back): every key that moves, moves to a new instance; each takes ≈ 1/6.
  deliver(host, table(3, [dep([...five, "g"].map((id) => inst(id)))]));
  const grown = mapKeys(host);
  const to = counts(KEYS.filter((k) => grown.get(k) !== after.get(k)).map((k) => grown.get(k)));
  assert.deepEqual(Object.keys(to).sort(), ["c", "g"], JSON.stringify(to));
  // 2000 / 6 ≈ 333 each, σ ≈ 17.
  assert.ok(to.g! > 260 && to.g! < 410, JSON.stringify(to));
  // c's return restores exactly its old keys (minus those g now wins).
  for (const k of KEYS) if (grown.get(k) === "c") assert.equal(before.get(k), "c");
});

test("affinity: weights are honoured (weighted rendezvous)", async () => {
  const host = await gateway({ table: table(1, [dep([inst("a", { weight: 3 }), inst("b", { weight: 1 }), inst("c", { weight: 4 })])]) });
  const c = counts(mapKeys(host).values());
  for (const [id, w] of [["a", 3], ["b", 1], ["c", 4]] as const) {
    const share = (c[id] ?? 0) / KEYS.length; // σ ≤ 1.2 points
    assert.ok(Math.abs(share - w / 8) < 0.045, `${id}: ${share} vs ${w / 8} (${JSON.stringify(c)})`);
  }
});

test("affinity: draining, ejected and passively ejected instances are skipped; only their keys move", async () => {
  const ids = ["a", "b", "c", "e"];
  const host = await gateway({ config: { passive_failures: 1, passive_cooldown_ms: 60_000 }, table: table(1, [dep(ids.map((id) => inst(id)))]) });
  const keys = KEYS.slice(0, 600);
  const before = mapKeys(host, keys);
  // b draining, c ejected by the control service.
  deliver(host, table(2, [dep([inst("a"), inst("b", { state: "draining" }), inst("c", { state: "ejected" }), inst("e")])]));
  const mid = mapKeys(host, keys);
  for (const k of keys) {
    assert.ok(mid.get(k) === "a" || mid.get(k) === "e", `${k} → ${mid.get(k)}`);
    if (before.get(k) === "a" || before.get(k) === "e") assert.equal(mid.get(k), before.get(k));
  }
  // All back, then "a" passively ejected by this worker (one connect failure, passive_failures 1).
  deliver(host, table(3, [dep(ids.map((id) => inst(id)))]));
  host.advance(1000);
  assert.deepEqual(mapKeys(host, keys), before, "re-admitted instances get their keys back");
  const onA = keys.find((k) => before.get(k) === "a")!;
  const r = send(host, "d", { headers: [["x-session-id", onA]], flags: FLAG.UF | FLAG.URX });
  assert.equal(r.instance, "a");
  const ejected = mapKeys(host, keys);
  for (const k of keys) {
    assert.notEqual(ejected.get(k), "a");
    if (before.get(k) !== "a") assert.equal(ejected.get(k), before.get(k));
  }
});

test("affinity: over its load bound → the next instance in the key's hash order; back home when load ends", async () => {
  const ids = ["a", "b", "c", "e"];
  const host = await gateway({ table: table(1, [dep(ids.map((id) => inst(id)), { affinity: { ...AFF, load_factor: 1.25 } })]) });
  const key = KEYS[7]!;
  const home = keyed(host, key)!;
  // The key's second choice: where it goes when home is not a candidate (rendezvous order).
  const second = await gateway({ table: table(1, [dep(ids.map((id) => inst(id, id === home ? { state: "ejected" } : {})))]) });
  const next = keyed(second, key)!;
  // 1st stream: L = 0, cap ceil(1.25 × 1 / 4) = 1 → home. 2nd: L = 1, cap ceil(1.25 × 2 / 4) = 1, home
  // holds 1 → the next in hash order.
  const s1 = open(host, key);
  const s2 = open(host, key);
  assert.equal(s1.pick, home);
  assert.equal(s2.pick, next);
  // A burst of one key never puts more than ceil(1.25 × (L + 1) / 4) on one instance.
  const held = [s1, s2];
  for (let i = 2; i < 40; i++) {
    const o = open(host, key);
    const load = counts(held.map((h) => h.pick));
    const cap = Math.ceil((1.25 * (held.length + 1)) / 4);
    assert.ok((load[o.pick!] ?? 0) < cap, `stream ${i} to ${o.pick} holding ${load[o.pick!]} ≥ cap ${cap}`);
    held.push(o);
  }
  const spread = counts(held.map((h) => h.pick));
  assert.ok(Math.max(...Object.values(spread)) <= Math.ceil((1.25 * 40) / 4), JSON.stringify(spread));
  for (const h of held) h.s.finish();
  assert.equal(keyed(host, key), home, "in-flight counts back to 0: home again");
});

test("affinity: a request without a key uses the base strategy (round robin, least_request)", async () => {
  const host = await gateway({ table: table(1, [dep(["a", "b", "c"].map((id) => inst(id)))]) });
  const seq = Array.from({ length: 9 }, () => keyed(host, undefined));
  assert.deepEqual(counts(seq), { a: 3, b: 3, c: 3 }, JSON.stringify(seq));
  for (let i = 3; i < 9; i++) assert.equal(seq[i], seq[i - 3], `round robin order: ${seq.join(",")}`);
  // An empty header value is no key either.
  assert.deepEqual(counts(Array.from({ length: 9 }, () => keyed(host, ""))), { a: 3, b: 3, c: 3 });
  // least_request base, tiered: keyless requests and keys stay in the lowest tier.
  const lr = await gateway({ table: table(1, [dep([inst("a"), inst("b"), inst("t1", { priority: 1 })], { strategy: "least_request" })]) });
  const k = counts(KEYS.slice(0, 300).map((key) => keyed(lr, key)));
  assert.deepEqual(Object.keys(k).sort(), ["a", "b"], JSON.stringify(k));
  const nk = counts(Array.from({ length: 100 }, () => keyed(lr, undefined)));
  assert.deepEqual(Object.keys(nk).sort(), ["a", "b"], JSON.stringify(nk));
});

test("affinity by the body's \"user\": body-routed requests are stable per user; header-routed ones use the base strategy", async () => {
  const host = await gateway({ table: table(1, [dep(["a", "b", "c", "e"].map((id) => inst(id)), { affinity: { source: "user" } })]) });
  const body = (user: unknown) => JSON.stringify({ messages: [{ role: "user", content: "hi", user: "nested-is-ignored" }], model: "d", ...(user === undefined ? {} : { user }) });
  const viaBody = (user: unknown) => picked(request(host, { body: body(user) }));
  const users = KEYS.slice(0, 200);
  const home = new Map(users.map((u) => [u, viaBody(u)]));
  assert.ok(new Set(home.values()).size === 4, JSON.stringify(counts(home.values())));
  for (let round = 0; round < 2; round++) for (const u of users) {
    viaBody(undefined);
    assert.equal(viaBody(u), home.get(u));
  }
  // A non-string "user", or none: the base round robin.
  for (const u of [undefined, 42, null, ""]) {
    const seq = Array.from({ length: 8 }, () => viaBody(u));
    assert.deepEqual(counts(seq), { a: 2, b: 2, c: 2, e: 2 }, `user ${JSON.stringify(u)}: ${seq}`);
  }
  // Header-routed (model header): the body is not read before routing → the base strategy.
  const hdr = Array.from({ length: 8 }, () => picked(request(host, { model: "d", body: body(users[0]) })));
  assert.deepEqual(counts(hdr), { a: 2, b: 2, c: 2, e: 2 }, hdr.join(","));
  // The header source ignores the body's user.
  deliver(host, table(2, [dep(["a", "b", "c", "e"].map((id) => inst(id)))]));
  const seq = Array.from({ length: 8 }, () => viaBody(users[0]));
  assert.deepEqual(counts(seq), { a: 2, b: 2, c: 2, e: 2 }, seq.join(","));
});

test("affinity: keys of any length up to Envoy's header limits (the scratch block or the heap) map stably, interleaved with other header reads", async () => {
  const host = await gateway({ table: table(1, [dep(["a", "b", "c", "e"].map((id) => inst(id)))]) });
  // 511..513 bytes straddle the plugin's 512-byte scratch block; 8 KiB always takes the heap.
  const keys = [511, 512, 513, 8192].flatMap((n) => ["x", "y", "z"].map((c) => c.repeat(n)));
  const first = new Map(keys.map((k) => [k, keyed(host, k)]));
  for (let round = 0; round < 3; round++) {
    for (const k of keys) {
      assert.equal(keyed(host, k), first.get(k), `key of ${k.length} bytes stays on its instance`);
      assert.ok(picked(request(host, { model: "d" })), "a keyless request in between is routed");
    }
  }
  assert.ok(new Set(first.values()).size >= 2, "keys spread");
  assert.equal(host.worker(0).failure, null);
});
