// Issue 17, without Redis: the table a plugin gets follows what its own Envoy ACKed over xDS
// (control/src/routing-table/node-view.ts). The pure filter (holdings of an xDS snapshot → the table
// restricted to them), then the views over the real node store (control/xds/nodes.ts) and real xDS
// snapshots (control/xds/build.ts), on a fake clock: versions (V − 1 for a view), the wake-up on an ACK,
// deletes at once, a NACK kept without bound, the bound for a node that never answers, the fallbacks.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { RoutingTable, tableEtag, type TableDeployment } from "../../control/contracts/routing-table.js";
import { withoutSecrets } from "../../control/src/routing-table/builder.js";
import type { CurrentTable } from "../../control/src/routing-table/cache.js";
import { createTableViews, filterTable, holdingsOf, type NodeView, type TableViews } from "../../control/src/routing-table/node-view.js";
import { TYPE_URL, buildXdsSnapshot, type XdsSnapshot } from "../../control/xds/build.js";
import { createXdsNodes, type XdsNodes } from "../../control/xds/nodes.js";

const CDS = TYPE_URL.cluster;
const EDS = TYPE_URL.clusterLoadAssignment;
const HC = { interval_seconds: 5, timeout_seconds: 1, unhealthy_threshold: 3, healthy_threshold: 2, path: "/health" };

type Inst = TableDeployment["instances"][number];
const inst = (id: string, address: string, extra: Partial<Inst> = {}): Inst => ({ id, address, base_path: "/v1", weight: 1, priority: 0, region: "", state: "active", ...extra });
const dep = (id: string, instances: Inst[]): TableDeployment => ({ id, cluster: `gw.${id}`, strategy: "round_robin", on_unavailable: "fail", instances });

/** A valid routing table: each deployment serves the model named like it, plus an alias. */
function routingTable(version: number, deployments: TableDeployment[]): RoutingTable {
  const models = Object.fromEntries(deployments.flatMap((d) => [[d.id, d.id], [`${d.id}-alias`, d.id]]));
  return RoutingTable.parse({ schema: 1, version, models, deployments });
}
/** The xDS snapshot of the same state (as control.ts publishes it with each table). */
function snapshotOf(t: RoutingTable): XdsSnapshot {
  const r = buildXdsSnapshot({ version: t.version, deployments: withoutSecrets(t).deployments.map((d) => ({ ...d, health_check: HC })) });
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  return r.snapshot;
}
/** What the table cache serves for `t` (t carries secrets: the plugin's JSON). */
function current(t: RoutingTable): CurrentTable {
  const open = withoutSecrets(t);
  return { version: t.version, etag: tableEtag(t.version), json: JSON.stringify(t), publicJson: JSON.stringify(open), table: open };
}

describe("filterTable (pure)", () => {
  const a = dep("a", [inst("a1", "10.0.0.1:8000", { authorization: "Bearer sk-a" }), inst("a2", "[2001:db8::2]:8000", { state: "ejected" })]);
  const b = dep("b", [inst("b1", "10.0.0.3:8000")]);
  const t = routingTable(8, [a, b]);

  test("an Envoy holding everything: the very same table (nothing copied)", () => {
    const h = holdingsOf(snapshotOf(t));
    const f = filterTable(t, h);
    assert.equal(f.table, t);
    assert.deepEqual([f.deployments, f.instances], [[], []]);
  });

  test("a cluster it lacks: the deployment and its model names are left out; the rest is the table's own", () => {
    const h = holdingsOf(snapshotOf(routingTable(6, [a])));
    const f = filterTable(t, h);
    assert.deepEqual(f.deployments, ["b"]);
    assert.deepEqual(f.table.models, { a: "a", "a-alias": "a" });
    assert.deepEqual(f.table.deployments, [a], "states, keys and weights untouched");
    assert.equal(f.table.version, 8, "the version is the caller's business");
    assert.ok(RoutingTable.safeParse(f.table).success);
  });

  test("an address it lacks: that instance is left out (IPv6 compared in the table's spelling); a deployment left with none stays", () => {
    const older = routingTable(6, [dep("a", [inst("a1", "10.0.0.1:8000")]), dep("b", [inst("b0", "10.0.0.9:8000")])]);
    const f = filterTable(t, holdingsOf(snapshotOf(older)));
    assert.deepEqual(f.instances, ["a/a2", "b/b1"]);
    assert.deepEqual(f.deployments, []);
    assert.deepEqual(f.table.deployments.map((d) => [d.id, d.instances.map((i) => i.id)]), [["a", ["a1"]], ["b", []]]);
    assert.equal(f.table.deployments[0]!.instances[0]!.authorization, "Bearer sk-a");
    assert.deepEqual(f.table.models, t.models, "no deployment left out: every name stays");
    // The IPv6 instance is matched when the Envoy has it.
    const withV6 = filterTable(t, holdingsOf(snapshotOf(routingTable(6, [dep("a", [inst("x", "[2001:db8::2]:8000")]), b]))));
    assert.deepEqual(withV6.instances, ["a/a1"]);
  });

  test("a model named __proto__ stays an own key of the view", () => {
    const t2 = RoutingTable.parse({ schema: 1, version: 4, models: JSON.parse('{"__proto__":"a","gone":"b"}'), deployments: [a, b] });
    const f = filterTable(t2, holdingsOf(snapshotOf(routingTable(2, [a]))));
    assert.deepEqual(Object.keys(f.table.models), ["__proto__"]);
    assert.ok(RoutingTable.safeParse(JSON.parse(JSON.stringify(f.table))).success);
  });

  test("holdingsOf: clusters with their endpoint addresses; a cluster whose addresses did not change reuses the previous set", () => {
    const h1 = holdingsOf(snapshotOf(t));
    assert.deepEqual([...h1.keys()], ["gw.a", "gw.b"]);
    assert.deepEqual([...h1.get("gw.a")!].sort(), ["10.0.0.1:8000", "[2001:db8::2]:8000"]);
    const t2 = routingTable(10, [a, dep("b", [inst("b1", "10.0.0.3:8000"), inst("b2", "10.0.0.4:8000")])]);
    const h2 = holdingsOf(snapshotOf(t2), h1);
    assert.equal(h2.get("gw.a"), h1.get("gw.a"), "unchanged: shared");
    assert.notEqual(h2.get("gw.b"), h1.get("gw.b"));
    assert.equal(h2.get("gw.b")!.size, 2);
  });
});

/** A fake publisher + clock + the real node store, and helpers that ACK like an ADS Envoy. */
function rig(waitMs = 30_000, history?: number) {
  let t = Date.parse("2026-03-01T00:00:00Z");
  const now = () => t;
  const nodes = createXdsNodes({ now });
  const listeners = new Set<(s: XdsSnapshot) => void>();
  let snap: XdsSnapshot | undefined;
  const warnings: string[] = [];
  const views = createTableViews({
    nodes,
    snapshot: () => snap,
    subscribe: (l) => (listeners.add(l), () => void listeners.delete(l)),
    waitMs,
    now,
    ...(history !== undefined ? { history } : {}),
    log: { info: (m) => warnings.push(m), warn: (m) => warnings.push(m) },
  });
  const snaps = new Map<number, XdsSnapshot>();
  let table: CurrentTable | null = null;
  return {
    nodes,
    views,
    warnings,
    advance: (ms: number) => void (t += ms),
    /** Publish table `tab` and its xDS snapshot, as the cache's onPublish does. */
    publish(tab: RoutingTable): CurrentTable {
      snap = snapshotOf(tab);
      snaps.set(tab.version, snap);
      for (const l of listeners) l(snap);
      return (table = current(tab));
    },
    get table(): CurrentTable {
      return table!;
    },
    /** `id` connects (ADS) and ACKs version `v` (CDS and every cluster's EDS), as Envoy does. */
    ack(id: string, v: number, n: XdsNodes = nodes) {
      const s = snaps.get(v)!;
      if (!n.get(id)?.connected) n.connect({ id, cluster: "edge" });
      const clusters = s.clusters.map((c) => c.name);
      n.sent(id, CDS, { version: String(v), nonce: `c${v}`, names: clusters });
      n.ack(id, CDS, { version: String(v), names: clusters });
      n.sent(id, EDS, { version: String(v), nonce: `e${v}`, names: clusters });
      n.ack(id, EDS, { version: String(v), names: clusters });
    },
    /** `id` is pushed version `v` and rejects its clusters (keeps what it has). */
    nack(id: string, v: number, kept: number) {
      const s = snaps.get(v)!;
      nodes.sent(id, CDS, { version: String(v), nonce: `c${v}`, names: s.clusters.map((c) => c.name) });
      nodes.nack(id, CDS, { version: String(v), accepted_version: String(kept), message: "cluster gw.bad: unknown extension", code: 13 });
    },
  };
}

const body = (v: NodeView) => {
  assert.equal(v.kind, "table");
  return JSON.parse((v as Extract<NodeView, { kind: "table" }>).table.json) as RoutingTable;
};
const ids = (v: NodeView) => body(v).deployments.map((d) => d.id);
const version = (v: NodeView) => (v.kind === "table" ? v.table.version : null);

describe("table views per node", () => {
  const a = dep("a", [inst("a1", "10.0.0.1:8000", { authorization: "Bearer sk-a" })]);
  const b = dep("b", [inst("b1", "10.0.0.3:8000")]);
  const c = dep("c", [inst("c1", "10.0.0.5:8000")]);

  test("a node that has not ACKed the new version gets the table without the new deployment, at V − 1; its ACK wakes the wait and gives V", async () => {
    const r = rig();
    r.publish(routingTable(2, [a]));
    r.ack("e1", 2);
    let v = r.views.view(r.table, "e1");
    assert.deepEqual([version(v), v.kind === "table" && v.filtered, v.kind === "table" && v.table === r.table], [2, false, true]);

    const cur = r.publish(routingTable(4, [a, b]));
    v = r.views.view(cur, "e1");
    assert.deepEqual([version(v), ids(v), v.kind === "table" && v.reason], [3, ["a"], "filtered"]);
    assert.deepEqual(body(v).models, { a: "a", "a-alias": "a" });
    assert.equal(body(v).version, 3, "the document says 3 too");
    assert.equal(v.kind === "table" && v.table.etag, '"3"');
    assert.equal(body(v).deployments[0]!.instances[0]!.authorization, "Bearer sk-a", "the plugin's view keeps its keys");
    const open = JSON.parse(v.kind === "table" ? v.table.publicJson : "{}") as RoutingTable;
    assert.equal(open.deployments[0]!.instances[0]!.authorization, undefined, "admins/viewers get it without");
    assert.ok(RoutingTable.safeParse(body(v)).success);
    assert.equal(r.views.behind(), 1);

    // Other nodes: unknown → complete; no node id → complete.
    assert.equal(version(r.views.view(cur, "stranger")), 4);
    assert.equal(version(r.views.view(cur, null)), 4);

    // The wait resolves on e1's ACK, not before.
    let woke = false;
    const waiting = r.views.changed("e1", 10_000).then(() => (woke = true));
    r.ack("e2", 4); // another node's ACK
    await Promise.resolve();
    assert.equal(woke, false);
    r.ack("e1", 4);
    await waiting;
    v = r.views.view(cur, "e1");
    assert.deepEqual([version(v), ids(v)], [4, ["a", "b"]]);
    assert.equal(r.views.behind(), 0);
  });

  test("an instance is listed once the node's EDS has its address", () => {
    const r = rig();
    r.publish(routingTable(2, [a]));
    r.ack("e1", 2);
    const scaled = dep("a", [...a.instances, inst("a2", "10.0.0.2:8000")]);
    const cur = r.publish(routingTable(4, [scaled]));
    let v = r.views.view(cur, "e1");
    assert.deepEqual([version(v), body(v).deployments[0]!.instances.map((i) => i.id)], [3, ["a1"]]);
    r.ack("e1", 4);
    v = r.views.view(cur, "e1");
    assert.deepEqual([version(v), body(v).deployments[0]!.instances.map((i) => i.id)], [4, ["a1", "a2"]]);
  });

  test("deletes and ejections are not held: a node behind gets them at once (the complete table when nothing else is missing)", () => {
    const r = rig();
    r.publish(routingTable(2, [a, b]));
    r.ack("e1", 2);
    // A delete and an ejection, not ACKed yet: nothing to leave out → V itself.
    let cur = r.publish(routingTable(4, [dep("a", [inst("a1", "10.0.0.1:8000", { state: "ejected", authorization: "Bearer sk-a" })])]));
    let v = r.views.view(cur, "e1");
    assert.deepEqual([version(v), ids(v), body(v).deployments[0]!.instances[0]!.state], [4, ["a"], "ejected"]);
    // An addition the node lacks, then a delete: the view has the delete, not the addition.
    r.publish(routingTable(6, [a, c]));
    cur = r.publish(routingTable(8, [c]));
    v = r.views.view(cur, "e1");
    assert.deepEqual([version(v), ids(v)], [7, []]);
  });

  test("a NACK: the node's plugin keeps the view without what it rejected, past the bound, while deletes reach it", () => {
    const r = rig(1_000);
    r.publish(routingTable(2, [a, b]));
    r.ack("e1", 2);
    const bad = dep("bad", [inst("x1", "10.0.0.9:8000")]);
    let cur = r.publish(routingTable(4, [a, b, bad]));
    r.nack("e1", 4, 2);
    let v = r.views.view(cur, "e1");
    assert.deepEqual([version(v), ids(v), v.kind === "table" && v.reason], [3, ["a", "b"], "filtered_nacked"]);
    assert.equal(v.kind === "table" ? v.recheckInMs : 0, null, "no bound");
    r.advance(60_000);
    v = r.views.view(cur, "e1");
    assert.deepEqual([version(v), ids(v)], [3, ["a", "b"]], "still without it, a minute later");
    // A delete of b: pushed, NACKed again (the snapshot still has the bad cluster); the view has the delete.
    cur = r.publish(routingTable(6, [a, bad]));
    r.nack("e1", 6, 2);
    v = r.views.view(cur, "e1");
    assert.deepEqual([version(v), ids(v)], [5, ["a"]]);
    // Fixed (the bad deployment deleted): ACKed → complete.
    cur = r.publish(routingTable(8, [a]));
    r.ack("e1", 8);
    v = r.views.view(cur, "e1");
    assert.deepEqual([version(v), ids(v), v.kind === "table" && v.filtered], [8, ["a"], false]);
  });

  test("the bound: a node that neither ACKs nor NACKs gets the complete table after waitMs, and keeps getting it until it catches up", () => {
    const r = rig(1_000);
    r.publish(routingTable(2, [a]));
    r.ack("e1", 2);
    let cur = r.publish(routingTable(4, [a, b]));
    let v = r.views.view(cur, "e1");
    assert.deepEqual([version(v), v.kind === "table" ? v.recheckInMs : null], [3, 1_000]);
    r.advance(600);
    v = r.views.view(cur, "e1");
    assert.deepEqual([version(v), v.kind === "table" ? v.recheckInMs : null], [3, 400], "the bound runs from the first time it was found behind");
    r.advance(400);
    v = r.views.view(cur, "e1");
    assert.deepEqual([version(v), v.kind === "table" && v.reason], [4, "bound_elapsed"]);
    assert.ok(r.warnings.some((w) => w.includes("within the bound")));
    // Still behind at the next version: still complete (no flapping back to a view).
    cur = r.publish(routingTable(6, [a, b, c]));
    assert.equal(version(r.views.view(cur, "e1")), 6);
    // Caught up, then behind again: a new bound.
    r.ack("e1", 6);
    assert.equal(version(r.views.view(cur, "e1")), 6);
    cur = r.publish(routingTable(8, [a, dep("d", [inst("d1", "10.0.0.7:8000")])]));
    let again = r.views.view(cur, "e1");
    assert.deepEqual([version(again), again.kind === "table" ? again.recheckInMs : null], [7, 1_000]);
    r.advance(999);
    again = r.views.view(cur, "e1");
    assert.deepEqual([version(again), ids(again)], [7, ["a"]]);
  });

  test("nothing complete yet (a stream just opened): `none` within the bound, the complete table after it", () => {
    const r = rig(1_000);
    const cur = r.publish(routingTable(2, [a]));
    r.nodes.connect({ id: "fresh", cluster: "edge" });
    const v = r.views.view(cur, "fresh");
    assert.deepEqual([v.kind, v.recheckInMs], ["none", 1_000]);
    r.advance(1_000);
    assert.equal(version(r.views.view(cur, "fresh")), 2);
  });

  test("a node that has the newest snapshot while it lacks a cluster of the table (a deployment xDS held back, a snapshot refused) gets the view, without bound", () => {
    const r = rig(1_000);
    const t = routingTable(4, [a, b]);
    // xDS publishes version 4 without b (its build was refused and it had no last good cluster).
    const partial = routingTable(4, [a]);
    const views = r.views;
    r.publish(partial); // snapshot 4 = [a]
    r.ack("e1", 4);
    const v = views.view(current(t), "e1");
    assert.deepEqual([version(v), ids(v), v.kind === "table" && v.reason, v.kind === "table" && v.recheckInMs], [3, ["a"], "filtered_diverged", null]);
    // A snapshot xDS refused whole: the table moves to 6, xDS stays at 4, which the node has.
    r.advance(60_000);
    const v6 = views.view(current(routingTable(6, [a, b, c])), "e1");
    assert.deepEqual([version(v6), ids(v6), v6.kind === "table" && v6.reason], [5, ["a"], "filtered_diverged"]);
  });

  test("fallbacks: ordering off, an odd version, a disconnected node, a version older than every snapshot kept", () => {
    const off = rig(0);
    off.publish(routingTable(2, [a]));
    off.ack("e1", 2);
    assert.equal(version(off.views.view(off.publish(routingTable(4, [a, b])), "e1")), 4);

    const r = rig(30_000, 2);
    r.publish(routingTable(2, [a]));
    r.ack("e1", 2);
    assert.deepEqual([version(r.views.view(current(routingTable(5, [a, b])), "e1"))], [5], "odd: no number below it is free");
    const cur = r.publish(routingTable(4, [a, b]));
    r.nodes.disconnect("e1");
    assert.equal(version(r.views.view(cur, "e1")), 4, "its stream ended: another replica feeds it");
    // A REST node polling with a version this replica evicted (history of 2, nobody sitting at 2 after e1 left).
    r.publish(routingTable(6, [a, b, c]));
    r.publish(routingTable(8, [a, b, c]));
    r.nodes.restPoll({ node: { id: "rest", cluster: "edge" }, typeUrl: CDS, versionInfo: "2", resourceNames: [], served: null });
    r.nodes.restPoll({ node: { id: "rest", cluster: "edge" }, typeUrl: EDS, versionInfo: "2", resourceNames: [], served: null });
    assert.equal(r.nodes.ackedVersion("rest"), 2);
    const v = r.views.view(r.table, "rest");
    assert.deepEqual([version(v), v.kind === "table" && v.reason], [8, "unknown_version"]);
  });

  test("the snapshot a NACKing node sits at is kept past the history size", () => {
    const r = rig(30_000, 2);
    r.publish(routingTable(2, [a]));
    r.ack("e1", 2);
    const bad = dep("bad", [inst("x1", "10.0.0.9:8000")]);
    let cur = r.publish(routingTable(4, [a, bad]));
    r.nack("e1", 4, 2);
    assert.deepEqual(ids(r.views.view(cur, "e1")), ["a"]);
    for (let n = 6; n <= 20; n += 2) {
      cur = r.publish(routingTable(n, n % 4 === 0 ? [a, bad] : [a, b, bad]));
      r.nack("e1", n, 2);
      const v = r.views.view(cur, "e1");
      assert.deepEqual([version(v), ids(v)], [n - 1, ["a"]], `at ${n}`);
    }
  });

  test("the memo: the same document for every node at the same version; a new table version recomputes", () => {
    const r = rig();
    r.publish(routingTable(2, [a]));
    r.ack("e1", 2);
    r.ack("e2", 2);
    const cur = r.publish(routingTable(4, [a, b]));
    const v1 = r.views.view(cur, "e1");
    const v2 = r.views.view(cur, "e2");
    assert.ok(v1.kind === "table" && v2.kind === "table" && v1.table === v2.table);
  });

  test("changed(): resolves after its time, on abort, and on stop()", async () => {
    const r = rig();
    const t0 = performance.now();
    await r.views.changed("x", 20);
    assert.ok(performance.now() - t0 >= 15);
    const ac = new AbortController();
    const p = r.views.changed("x", 60_000, ac.signal);
    ac.abort();
    await p;
    const q = r.views.changed("x", 60_000);
    (r.views as TableViews).stop();
    await q;
  });
});
