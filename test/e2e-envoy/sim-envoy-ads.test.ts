/**
 * The simulated Envoy's ADS client (test/e2e-envoy/support/sim-envoy.ts) against the control service's
 * ADS server (control/xds/ads.ts) and its node store (control/xds/nodes.ts), no Redis, no Envoy — runs
 * everywhere. It keeps the simulation's protocol honest to what its header cites from Envoy: the stream
 * starts with the node and a wildcard CDS request, every response is ACKed (same nonce, its version) or
 * NACKed (same nonce, the version kept, error_detail code INTERNAL) — a NACKed snapshot changes nothing
 * —, EDS follows the clusters learned, a new cluster's CDS ACK waits until it is warm (its EDS ACK comes
 * first), and a stream the server ends is reopened (backoff from 0.5 s) with the versions it has.
 * Evidence about the simulation only: a real Envoy is what test/e2e-envoy/ads.e2e.test.ts runs.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { createAdsServer, type AdsServer } from "../../control/xds/ads.js";
import { buildXdsSnapshot, TYPE_URL, type XdsSnapshot } from "../../control/xds/build.js";
import { createXdsNodes, type XdsNodes } from "../../control/xds/nodes.js";
import { freePort } from "../support/redis.js";
import { REPO, e2eBootstrap } from "./support/bootstrap.js";
import { until } from "./support/client.js";
import { startEnvoy, type RunningEnvoy } from "./support/envoy.js";

const SIM = `${REPO}test/e2e-envoy/support/sim-envoy`;
const NODE = `sim-ads-test-${process.pid}`;

describe("sim-envoy's ADS client against the control service's ADS server (SIMULATED, not Envoy)", () => {
  let upstream: Server;
  let upstreamPort: number;
  let adsPort: number;
  let server: AdsServer | null = null;
  let nodes: XdsNodes;
  let current: XdsSnapshot;
  let envoy: RunningEnvoy | undefined;
  const acks: { type: string; version: string }[] = [];

  /** A snapshot of `deployments` deployments (one instance each, the local upstream), as the builder makes it. */
  const snap = (version: number, deployments: number, mutate?: (s: XdsSnapshot) => XdsSnapshot): XdsSnapshot => {
    const r = buildXdsSnapshot({
      version,
      deployments: Array.from({ length: deployments }, (_, i) => ({
        id: `d${i}`,
        cluster: `gw.d${i}`,
        strategy: "round_robin" as const,
        on_unavailable: "fail" as const,
        health_check: { interval_seconds: 5, timeout_seconds: 1, unhealthy_threshold: 3, healthy_threshold: 1, path: "/health" },
        instances: [{ id: "i0", address: `127.0.0.1:${upstreamPort}`, base_path: "/v1", weight: 1, priority: 0, region: "", state: "active" as const }],
      })),
    });
    assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
    return mutate ? mutate(r.snapshot) : r.snapshot;
  };
  const startServer = async (): Promise<void> => {
    server = createAdsServer({ snapshot: () => current, nodes, pollMs: 10 });
    await server.listen("127.0.0.1", adsPort);
  };
  const types = () => Object.fromEntries((nodes.get(NODE)?.types ?? []).map((t) => [t.resource, t]));
  const E = () => envoy!;

  before(async () => {
    upstream = createServer((_req, res) => res.writeHead(200).end());
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", () => r()));
    upstreamPort = (upstream.address() as AddressInfo).port;
    adsPort = await freePort();
    nodes = createXdsNodes();
    nodes.onAck((e) => void (e.node === NODE && acks.push({ type: e.type_url, version: e.version })));
    current = snap(2, 1);
    await startServer();
    const [adminPort, listenerPort, controlPort, saasPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const { bootstrap } = e2eBootstrap({ nodeId: NODE, adminPort, listenerPort, controlPort, adsPort, saasPort, pluginToken: "plugin-token-0123456789abcdef" });
    envoy = await startEnvoy({ bin: SIM, bootstrap, adminPort, listenerPort, readyTimeoutMs: 20_000 });
  });

  after(async () => {
    await envoy?.stop();
    await server?.stop(0);
    await new Promise<void>((r) => upstream.close(() => r()));
  });

  test("the stream: node on the first request, CDS and EDS ACKed at the snapshot's version, the cluster in /clusters", async () => {
    await until(() => nodes.ackedVersion(NODE) === 2, 5_000, "CDS and EDS ACKed at 2", () => JSON.stringify(nodes.get(NODE)));
    const st = nodes.get(NODE)!;
    assert.equal(st.transport, "ads");
    assert.equal(st.cluster, "model-gateway");
    assert.equal(types().clusters!.acked?.version, "2");
    assert.equal(types().endpoints!.acked?.version, "2");
    assert.deepEqual(types().clusters!.subscribed, { wildcard: true, names: 0 });
    const cs = await E().clusters();
    assert.deepEqual(cs.get("gw.d0")?.hosts.map((h) => h.address), [`127.0.0.1:${upstreamPort}`]);
    assert.equal((await E().stats("control_plane")).get("control_plane.connected_state"), 1);
  });

  test("a new cluster: EDS subscribed and ACKed first, the CDS ACK only once the cluster is warm", async () => {
    acks.length = 0;
    current = snap(4, 2);
    server!.notify();
    await until(() => nodes.ackedVersion(NODE) === 4, 5_000, "ACKed at 4", () => JSON.stringify(acks));
    const at4 = acks.filter((a) => a.version === "4").map((a) => (a.type === TYPE_URL.cluster ? "cds" : "eds"));
    // EDS at 4 is ACKed once for the push with the old names and once for the answer naming gw.d1.
    assert.equal(at4.filter((t) => t === "cds").length, 1, at4.join(","));
    assert.equal(at4.at(-1), "cds", `CDS is paused while a cluster warms (its EDS answers and first health check come first): ${at4.join(",")}`);
    assert.equal(types().endpoints!.subscribed?.names, 2);
    assert.ok((await E().clusters()).has("gw.d1"));
  });

  test("a snapshot Envoy would refuse: NACK with the previous version and error_detail (INTERNAL); nothing changes; the next version is ACKed", async () => {
    const before = JSON.stringify([...(await E().clusters()).keys()].sort());
    // connect_timeout must be > 0 (a PGV rule Envoy checks; protobuf encodes it fine).
    current = snap(6, 3, (s) => ({ ...s, clusters: s.clusters.map((c, i) => (i === 0 ? { ...c, connect_timeout: "0s" } : c)) }));
    server!.notify();
    await until(() => types().clusters?.state === "nacked", 5_000, "a CDS NACK", () => JSON.stringify(types()));
    const nack = types().clusters!.nacked!;
    assert.equal(nack.version, "6");
    assert.equal(nack.accepted_version, "4");
    assert.equal(nack.code, 13);
    assert.match(nack.message, /connect_timeout/);
    assert.equal(JSON.stringify([...(await E().clusters()).keys()].sort()), before, "a NACKed snapshot changes nothing (gw.d2 not added)");
    assert.equal((await E().stats("update_rejected")).get("cluster_manager.cds.update_rejected"), 1);
    current = snap(8, 3);
    server!.notify();
    await until(() => nodes.ackedVersion(NODE) === 8, 5_000, "ACKed at 8 after the NACK");
    assert.ok((await E().clusters()).has("gw.d2"));
  });

  test("the server goes away and comes back on the same port: the stream is reopened with the versions held, and gets the new state", async () => {
    await server!.stop(0);
    await until(async () => (await E().stats("control_plane")).get("control_plane.connected_state") === 0, 5_000, "the stream seen closed");
    nodes = createXdsNodes(); // a fresh replica: knows nothing of the node
    current = snap(10, 1);
    await startServer();
    await until(() => nodes.ackedVersion(NODE) === 10, 10_000, "ACKed at 10 on the new stream", () => JSON.stringify(nodes.get(NODE) ?? null));
    assert.equal((await E().stats("ads")).get("cluster_manager.ads.streams_opened"), 2);
    await until(async () => !(await E().clusters()).has("gw.d1"), 5_000, "gw.d1 and gw.d2 removed (CDS is state of the world)");
    assert.equal((await E().stats("control_plane")).get("control_plane.connected_state"), 1);
  });
});
