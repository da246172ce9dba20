/**
 * control/xds/nodes.ts, pure: what each Envoy has — ACK / NACK per type, the complete version
 * (`ackedVersion`: clusters ACKed and their endpoints too), REST polls read as ACKs, events,
 * disconnects remembered for a while, the size cap. A fake clock drives time.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { TYPE_URL } from "../../control/xds/build.js";
import { createXdsNodes, type AckEvent, type NackEvent } from "../../control/xds/nodes.js";

const CDS = TYPE_URL.cluster;
const EDS = TYPE_URL.clusterLoadAssignment;

function clock(start = Date.parse("2026-01-01T00:00:00Z")) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

describe("xDS node status", () => {
  test("ADS: sent → pending, ACK, NACK with its message; the complete version needs every cluster's endpoints", () => {
    const c = clock();
    const nodes = createXdsNodes({ now: c.now });
    const acks: AckEvent[] = [];
    const nacks: NackEvent[] = [];
    nodes.onAck((e) => acks.push(e));
    nodes.onNack((e) => nacks.push(e));
    nodes.connect({ id: "e1", cluster: "edge", user_agent: "envoy 1.35.0" });
    nodes.subscribed("e1", CDS, "*");
    nodes.sent("e1", CDS, { version: "7", nonce: "a", names: ["gw.a", "gw.b"] });
    assert.equal(nodes.get("e1")!.types[0]!.state, "pending");
    nodes.ack("e1", CDS, { version: "7", names: ["gw.a", "gw.b"] });
    assert.equal(nodes.ackedVersion("e1"), undefined, "no endpoints yet");
    nodes.subscribed("e1", EDS, ["gw.a"]);
    nodes.sent("e1", EDS, { version: "7", nonce: "b", names: ["gw.a"] });
    nodes.ack("e1", EDS, { version: "7", names: ["gw.a"] });
    assert.equal(nodes.ackedVersion("e1"), undefined, "gw.b's endpoints missing");
    nodes.sent("e1", EDS, { version: "7", nonce: "c", names: ["gw.a", "gw.b"] });
    nodes.ack("e1", EDS, { version: "7", names: ["gw.a", "gw.b"] });
    assert.equal(nodes.ackedVersion("e1"), 7);
    assert.deepEqual(acks.map((a) => [a.type_url, a.version, a.acked_version]), [[CDS, "7", null], [EDS, "7", null], [EDS, "7", 7]]);

    // Version 8 adds gw.c: CDS ACKed, EDS NACKed → still 7.
    nodes.sent("e1", CDS, { version: "8", nonce: "d", names: ["gw.a", "gw.b", "gw.c"] });
    nodes.sent("e1", EDS, { version: "8", nonce: "e", names: ["gw.a", "gw.b"] });
    nodes.ack("e1", CDS, { version: "8", names: ["gw.a", "gw.b", "gw.c"] });
    c.advance(10);
    nodes.nack("e1", EDS, { version: "8", accepted_version: "7", message: "bad endpoint", code: 13 });
    assert.equal(nodes.ackedVersion("e1"), 7);
    const s = nodes.get("e1")!;
    const eds = s.types.find((t) => t.type_url === EDS)!;
    assert.equal(eds.state, "nacked");
    assert.deepEqual(eds.nacked, { version: "8", accepted_version: "7", message: "bad endpoint", code: 13, at: "2026-01-01T00:00:00.010Z" });
    assert.equal(eds.acked?.version, "7");
    assert.deepEqual(nacks, [{ node: "e1", cluster: "edge", transport: "ads", type_url: EDS, version: "8", accepted_version: "7", message: "bad endpoint", code: 13, at: "2026-01-01T00:00:00.010Z" }]);
    assert.equal(s.acked_version, 7);
    assert.equal(s.user_agent, "envoy 1.35.0");
    // Version 9 covers gw.c's endpoints: complete at 8 (CDS) vs 9 (EDS) → the lower, 8.
    nodes.sent("e1", EDS, { version: "9", nonce: "f", names: ["gw.a", "gw.b", "gw.c"] });
    nodes.ack("e1", EDS, { version: "9", names: ["gw.a", "gw.b", "gw.c"] });
    assert.equal(nodes.ackedVersion("e1"), 8);
    // No clusters at all: complete as soon as CDS is.
    nodes.ack("e1", CDS, { version: "10", names: [] });
    assert.equal(nodes.ackedVersion("e1"), 10);
  });

  test("disconnects are remembered for forgetAfterMs; two streams of one node id count once", () => {
    const c = clock();
    const nodes = createXdsNodes({ now: c.now, forgetAfterMs: 60_000 });
    nodes.connect({ id: "e1", cluster: "edge" });
    nodes.connect({ id: "e1", cluster: "edge" });
    assert.deepEqual(nodes.counts(), { ads: 1, rest: 0 });
    assert.equal(nodes.get("e1")!.streams, 2);
    nodes.disconnect("e1");
    assert.equal(nodes.get("e1")!.connected, true);
    c.advance(1000);
    nodes.disconnect("e1");
    const s = nodes.get("e1")!;
    assert.equal(s.connected, false);
    assert.equal(s.disconnected_at, "2026-01-01T00:00:01.000Z");
    assert.equal(s.connected_since, null);
    c.advance(59_000);
    assert.equal(nodes.list().length, 1);
    c.advance(1001);
    assert.equal(nodes.list().length, 0);
    assert.equal(nodes.ackedVersion("e1"), undefined);
  });

  test("REST polls: version_info is what the node has; EDS per cluster, at the lowest version; quiet nodes go", () => {
    const c = clock();
    const nodes = createXdsNodes({ now: c.now, restActiveMs: 30_000, forgetAfterMs: 60_000 });
    const node = { id: "r1", cluster: "edge", user_agent: "envoy 1.34.1" };
    nodes.restPoll({ node, typeUrl: CDS, versionInfo: "", resourceNames: [], served: { version: "5", names: ["gw.a", "gw.b"] } });
    assert.equal(nodes.get("r1")!.types[0]!.state, "pending");
    nodes.restPoll({ node, typeUrl: CDS, versionInfo: "5", resourceNames: [], served: null });
    assert.equal(nodes.get("r1")!.types[0]!.state, "acked");
    nodes.restPoll({ node, typeUrl: EDS, versionInfo: "", resourceNames: ["gw.a"], served: { version: "5", names: ["gw.a"] } });
    nodes.restPoll({ node, typeUrl: EDS, versionInfo: "5", resourceNames: ["gw.a"], served: null });
    assert.equal(nodes.ackedVersion("r1"), undefined, "gw.b has not polled");
    nodes.restPoll({ node, typeUrl: EDS, versionInfo: "4", resourceNames: ["gw.b"], served: { version: "5", names: ["gw.b"] } });
    assert.equal(nodes.ackedVersion("r1"), 4, "gw.b still at 4");
    nodes.restPoll({ node, typeUrl: EDS, versionInfo: "5", resourceNames: ["gw.b"], served: null });
    assert.equal(nodes.ackedVersion("r1"), 5);
    const s = nodes.get("r1")!;
    assert.deepEqual([s.transport, s.connected, s.streams, s.user_agent], ["rest", true, 0, "envoy 1.34.1"]);
    assert.equal(s.types.find((t) => t.type_url === EDS)!.acked?.version, "5");
    assert.deepEqual(nodes.counts(), { ads: 0, rest: 1 });
    // A client repeating error_detail on every poll: one NACK.
    for (let i = 0; i < 3; i++) nodes.restPoll({ node, typeUrl: CDS, versionInfo: "5", resourceNames: [], errorDetail: { code: 3, message: "no" }, served: null });
    assert.equal(nodes.get("r1")!.types.find((t) => t.type_url === CDS)!.nacks_total, 1);
    c.advance(30_001);
    assert.equal(nodes.get("r1")!.connected, false);
    assert.equal(nodes.get("r1")!.disconnected_at, "2026-01-01T00:00:30.000Z");
    c.advance(60_000);
    assert.equal(nodes.list().length, 0);
  });

  test("at most maxNodes: the longest-gone go first, open ADS streams stay", () => {
    const c = clock();
    const nodes = createXdsNodes({ now: c.now, maxNodes: 3 });
    nodes.connect({ id: "ads-1", cluster: "" });
    for (let i = 0; i < 5; i++) {
      c.advance(10);
      nodes.restPoll({ node: { id: `rest-${i}`, cluster: "" }, typeUrl: CDS, versionInfo: "1", resourceNames: [], served: null });
    }
    assert.deepEqual(nodes.list().map((n) => n.id), ["ads-1", "rest-3", "rest-4"]);
  });

  test("a listener that throws does not break recording", () => {
    const warned: string[] = [];
    const nodes = createXdsNodes({ logger: { warn: (m) => void warned.push(m) } });
    nodes.onNack(() => {
      throw new Error("boom");
    });
    nodes.connect({ id: "e", cluster: "" });
    nodes.nack("e", CDS, { version: "2", accepted_version: "1", message: "x", code: 13 });
    assert.equal(nodes.get("e")!.types[0]!.nacks_total, 1);
    assert.deepEqual(warned, ["xds node listener failed"]);
  });
});
