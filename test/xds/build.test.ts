/**
 * control/xds/build.ts: every resource validates against Envoy's protos, each of our settings lands
 * in the Envoy field the README says, output is deterministic, and bad snapshots are refused.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  buildCluster,
  buildXdsSnapshot,
  canonicalAddress,
  duration,
  edsHealthStatus,
  OVERPROVISIONING_FACTOR,
  TYPE_URL,
  type EnvoyCluster,
  type EnvoyClusterLoadAssignment,
  type EnvoyLbEndpoint,
  type XdsSnapshot,
} from "../../control/xds/build.js";
import { XdsSnapshotInput, type XdsSnapshotInputRaw } from "../../control/xds/contract.js";
import { formatIssue, validateAnyResource, validateMessage } from "../../envoy/validate/index.js";
import { fullSnapshot } from "./fixtures.js";

const show = (r: { errors: { path: string; message: string }[] }): string => r.errors.map(formatIssue).join("\n");
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

function build(input: XdsSnapshotInputRaw = fullSnapshot()): XdsSnapshot {
  const r = buildXdsSnapshot(input);
  assert.ok(r.ok, r.ok ? "" : JSON.stringify(r.issues, null, 2));
  return r.snapshot;
}
const cluster = (s: XdsSnapshot, name: string): EnvoyCluster => {
  const c = s.clusters.find((x) => x.name === name);
  assert.ok(c, `no cluster ${name}`);
  return c;
};
const cla = (s: XdsSnapshot, name: string): EnvoyClusterLoadAssignment => {
  const e = s.endpointsByName.get(name);
  assert.ok(e, `no ClusterLoadAssignment ${name}`);
  return e;
};
/** instance id → { endpoint, priority, region } */
function endpointsOf(e: EnvoyClusterLoadAssignment): Map<string, { ep: EnvoyLbEndpoint; priority: number; region: string | undefined }> {
  const out = new Map<string, { ep: EnvoyLbEndpoint; priority: number; region: string | undefined }>();
  for (const loc of e.endpoints) for (const ep of loc.lb_endpoints) out.set(ep.metadata.filter_metadata["model-gateway"]!.instance!, { ep, priority: loc.priority, region: loc.locality?.region });
  return out;
}

describe("xds build: Envoy validity", () => {
  const s = build();

  test("one Cluster and one ClusterLoadAssignment per deployment, sorted by cluster name", () => {
    const names = ["gw.empty", "gw.llama-rr", "gw.mixtral-wrr", "gw.phi-failover2", "gw.qwen-failover"];
    assert.deepEqual(s.clusters.map((c) => c.name), names);
    assert.deepEqual(s.endpoints.map((e) => e.cluster_name), names);
    assert.equal(s.version_info, "42");
  });

  test("every CDS and EDS resource validates against Envoy's v3 protos (no warnings)", () => {
    for (const r of [...s.clusters, ...s.endpoints]) {
      const v = validateAnyResource(r);
      assert.ok(v.ok, `${r["@type"]} ${"name" in r ? r.name : r.cluster_name}:\n${show(v)}`);
      assert.deepEqual(v.warnings, []);
    }
  });

  test("the validator catches a broken resource (the check can fail)", () => {
    const breakages: [string, (c: any) => void][] = [
      ["unknown field", (c) => (c.health_checks[0].intervall = "5s")],
      ["missing health-check timeout", (c) => delete c.health_checks[0].timeout],
      ["bad duration", (c) => (c.connect_timeout = "2 seconds")],
      ["bad enum", (c) => (c.type = "EDSS")],
    ];
    for (const [what, mutate] of breakages) {
      const c = clone(s.clusters[1]!);
      mutate(c);
      assert.equal(validateAnyResource(c).ok, false, what);
    }
    const e = clone(cla(s, "gw.qwen-failover")) as any;
    e.endpoints[0].lb_endpoints[0].load_balancing_weight = 0; // pgv: gte 1
    assert.equal(validateAnyResource(e).ok, false, "weight 0");
    const p = clone(cla(s, "gw.qwen-failover")) as any;
    p.endpoints[0].priority = 200; // pgv: lte 128
    assert.equal(validateAnyResource(p).ok, false, "priority 200");
    const h = clone(cla(s, "gw.qwen-failover")) as any;
    h.endpoints[0].lb_endpoints[0].health_status = "SICK";
    assert.equal(validateAnyResource(h).ok, false, "bad health_status");
  });

  test("the route retry_policy validates as an Envoy RetryPolicy", async () => {
    const { routeRetryPolicy } = await import("../../control/xds/build.js");
    const v = validateMessage("envoy.config.route.v3.RetryPolicy", routeRetryPolicy());
    assert.ok(v.ok, show(v));
    assert.equal(validateMessage("envoy.config.route.v3.RetryPolicy", { ...routeRetryPolicy(), retry_on: 5 }).ok, false);
  });
});

describe("xds build: strategy mapping", () => {
  const s = build();

  test("every cluster: EDS over REST on gateway_control, override_host on x-gateway-destination-endpoint with round-robin fallback", () => {
    for (const c of s.clusters) {
      assert.equal(c.type, "EDS");
      assert.equal(c.eds_cluster_config.service_name, c.name);
      assert.deepEqual(c.eds_cluster_config.eds_config, {
        resource_api_version: "V3",
        api_config_source: { api_type: "REST", transport_api_version: "V3", cluster_names: ["gateway_control"], refresh_delay: "5s", request_timeout: "3s" },
      });
      assert.equal(c.connect_timeout, "2s");
      const lb = c.load_balancing_policy.policies;
      assert.equal(lb.length, 1);
      assert.equal(lb[0]!.typed_extension_config.name, "envoy.load_balancing_policies.override_host");
      const oh = lb[0]!.typed_extension_config.typed_config as any;
      assert.deepEqual(oh.override_host_sources, [{ header: "x-gateway-destination-endpoint" }]);
      assert.equal(oh.fallback_policy.policies[0].typed_extension_config.name, "envoy.load_balancing_policies.round_robin");
      assert.equal(c.ignore_health_on_host_removal, true);
    }
  });

  test("round_robin: weights ignored (all 1), tiers ignored (all priority 0), localities by region", () => {
    const eps = endpointsOf(cla(s, "gw.llama-rr"));
    assert.deepEqual([...eps.values()].map((x) => x.ep.load_balancing_weight), [1, 1, 1, 1]);
    assert.deepEqual([...eps.values()].map((x) => x.priority), [0, 0, 0, 0]);
    assert.equal(eps.get("a")!.region, "eu-west");
    assert.equal(eps.get("b")!.region, "eu-west");
    assert.equal(eps.get("c")!.region, "us-east");
    assert.equal(eps.get("d")!.region, undefined, "empty region → no locality");
    // Localities: no-locality group first (region "" sorts first), then eu-west, us-east.
    assert.deepEqual(cla(s, "gw.llama-rr").endpoints.map((l) => l.locality?.region), [undefined, "eu-west", "us-east"]);
  });

  test("weighted_round_robin: load_balancing_weight = weight, tiers ignored", () => {
    const eps = endpointsOf(cla(s, "gw.mixtral-wrr"));
    assert.equal(eps.get("w-big")!.ep.load_balancing_weight, 5);
    assert.equal(eps.get("w-small")!.ep.load_balancing_weight, 1);
    assert.equal(eps.get("w-v6")!.ep.load_balancing_weight, 2);
    assert.deepEqual([...eps.values()].map((x) => x.priority), [0, 0, 0], "priority 3 of w-small is not a tier here");
  });

  test("failover (3 tiers): priorities renumbered densely 0/10/20 → 0/1/2, weights kept within a tier", () => {
    const e = cla(s, "gw.qwen-failover");
    const eps = endpointsOf(e);
    assert.equal(eps.get("p0-a")!.priority, 0);
    assert.equal(eps.get("p0-b")!.priority, 0);
    assert.equal(eps.get("p1-a")!.priority, 1);
    assert.equal(eps.get("p1-b")!.priority, 1);
    assert.equal(eps.get("p2-a")!.priority, 2);
    assert.equal(eps.get("p0-a")!.ep.load_balancing_weight, 3);
    assert.equal(eps.get("p1-b")!.ep.load_balancing_weight, 2);
    // One LocalityLbEndpoints per (priority, region), in priority order.
    assert.deepEqual(e.endpoints.map((l) => [l.priority, l.locality?.region]), [[0, "eu-west"], [1, "eu-west"], [1, "us-east"], [2, "ap-south"]]);
  });

  test("failover (2 tiers, priorities 1 and 2) starts at Envoy priority 0", () => {
    const eps = endpointsOf(cla(s, "gw.phi-failover2"));
    assert.equal(eps.get("primary")!.priority, 0);
    assert.equal(eps.get("backup")!.priority, 1);
  });

  test("overprovisioning factor makes one healthy host keep its priority (no early spill-over)", () => {
    for (const e of s.endpoints) assert.deepEqual(e.policy, { overprovisioning_factor: OVERPROVISIONING_FACTOR });
    assert.equal(OVERPROVISIONING_FACTOR, 102_400);
  });

  test("on_unavailable: fail → panic threshold 0, panic → 50", () => {
    assert.deepEqual(cluster(s, "gw.llama-rr").common_lb_config, { healthy_panic_threshold: { value: 0 } });
    assert.deepEqual(cluster(s, "gw.qwen-failover").common_lb_config, { healthy_panic_threshold: { value: 0 } });
    assert.deepEqual(cluster(s, "gw.mixtral-wrr").common_lb_config, { healthy_panic_threshold: { value: 50 } });
    assert.deepEqual(cluster(s, "gw.phi-failover2").common_lb_config, { healthy_panic_threshold: { value: 50 } });
  });

  test("health checks: interval, timeout, thresholds (unhealthy default 3), no_traffic_interval = interval, path + 2xx", () => {
    const rr = cluster(s, "gw.llama-rr").health_checks;
    assert.equal(rr.length, 1);
    assert.deepEqual(
      { ...rr[0]!, event_logger: undefined, always_log_health_check_failures: undefined },
      {
        timeout: "2s",
        interval: "5s",
        interval_jitter: "1s",
        unhealthy_threshold: 3,
        healthy_threshold: 2,
        no_traffic_interval: "5s",
        http_health_check: { path: "/health", expected_statuses: [{ start: 200, end: 300 }] },
        event_logger: undefined,
        always_log_health_check_failures: undefined,
      },
    );
    const w = cluster(s, "gw.mixtral-wrr").health_checks[0]!;
    assert.deepEqual([w.interval, w.timeout, w.unhealthy_threshold, w.healthy_threshold, w.no_traffic_interval, w.http_health_check.path], ["10s", "3s", 5, 1, "10s", "/v1/models"]);
    const q = cluster(s, "gw.qwen-failover").health_checks[0]!;
    assert.deepEqual([q.interval, q.timeout, q.interval_jitter, q.unhealthy_threshold, q.no_traffic_interval, q.http_health_check.path], ["0.500s", "0.250s", "0.100s", 2, "0.500s", "/"]);
  });

  test("health_status: ejected → UNHEALTHY, draining → DRAINING, active → absent (UNKNOWN)", () => {
    assert.equal(edsHealthStatus("ejected"), "UNHEALTHY");
    assert.equal(edsHealthStatus("draining"), "DRAINING");
    assert.equal(edsHealthStatus("active"), undefined);
    const rr = endpointsOf(cla(s, "gw.llama-rr"));
    assert.equal(rr.get("a")!.ep.health_status, undefined);
    assert.ok(!("health_status" in rr.get("a")!.ep), "UNKNOWN is the proto3 default: omitted");
    assert.equal(rr.get("b")!.ep.health_status, "DRAINING");
    assert.equal(rr.get("c")!.ep.health_status, "UNHEALTHY");
    assert.equal(rr.get("d")!.ep.health_status, undefined);
    const q = endpointsOf(cla(s, "gw.qwen-failover"));
    assert.deepEqual(["p0-a", "p0-b", "p1-a", "p1-b", "p2-a"].map((id) => q.get(id)!.ep.health_status), [undefined, "UNHEALTHY", undefined, "DRAINING", undefined]);
  });

  test("IPv6 addresses: socket_address without brackets; IPv4 as is", () => {
    const rr = endpointsOf(cla(s, "gw.llama-rr"));
    assert.deepEqual(rr.get("c")!.ep.endpoint.address, { socket_address: { address: "fd00:10::c", port_value: 8000 } });
    assert.deepEqual(rr.get("a")!.ep.endpoint.address, { socket_address: { address: "10.0.1.11", port_value: 8000 } });
  });

  test("http instances: no TLS; https instances: a transport_socket_match each, SNI + SAN check when a hostname was given", () => {
    assert.equal(cluster(s, "gw.mixtral-wrr").transport_socket_matches, undefined, "all-http cluster has no TLS");
    const rrC = cluster(s, "gw.llama-rr");
    assert.equal(rrC.transport_socket_matches?.length, 1);
    const m = rrC.transport_socket_matches![0]!;
    assert.deepEqual(m.match, { tls: m.name });
    const ctx = m.transport_socket.typed_config as any;
    assert.equal(ctx["@type"], "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext");
    assert.equal(ctx.sni, "llama-d.models.internal");
    assert.deepEqual(ctx.common_tls_context.validation_context, {
      trusted_ca: { filename: "/etc/ssl/certs/ca-certificates.crt" },
      match_typed_subject_alt_names: [{ san_type: "DNS", matcher: { exact: "llama-d.models.internal" } }],
    });
    const rr = endpointsOf(cla(s, "gw.llama-rr"));
    assert.deepEqual(rr.get("d")!.ep.metadata.filter_metadata["envoy.transport_socket_match"], { tls: m.name });
    assert.equal(rr.get("d")!.ep.endpoint.hostname, "llama-d.models.internal");
    assert.deepEqual(rr.get("d")!.ep.endpoint.health_check_config, { hostname: "llama-d.models.internal" });
    assert.equal(rr.get("a")!.ep.metadata.filter_metadata["envoy.transport_socket_match"], undefined, "http instance: default (plaintext) socket");

    // Mixed: an https IP literal (no SNI, IP SAN) and an https hostname with its own CA.
    const q = cluster(s, "gw.qwen-failover").transport_socket_matches!;
    assert.equal(q.length, 2);
    const byName = new Map(q.map((x) => [x.name, x.transport_socket.typed_config as any]));
    const qe = endpointsOf(cla(s, "gw.qwen-failover"));
    const ipCtx = byName.get(qe.get("p1-a")!.ep.metadata.filter_metadata["envoy.transport_socket_match"]!.tls!)!;
    assert.equal(ipCtx.sni, undefined);
    assert.deepEqual(ipCtx.common_tls_context.validation_context.match_typed_subject_alt_names, [{ san_type: "IP_ADDRESS", matcher: { exact: "2001:db8:1::1" } }]);
    const dnsCtx = byName.get(qe.get("p1-b")!.ep.metadata.filter_metadata["envoy.transport_socket_match"]!.tls!)!;
    assert.equal(dnsCtx.sni, "qwen.example.org");
    assert.equal(dnsCtx.common_tls_context.validation_context.trusted_ca.filename, "/etc/gateway/ca.pem");
  });

  test("outlier detection ejects on local-origin failures only (never on HTTP 5xx)", () => {
    const od = cluster(s, "gw.llama-rr").outlier_detection;
    assert.equal(od.split_external_local_origin_errors, true);
    assert.equal(od.consecutive_local_origin_failure, 5);
    assert.equal(od.enforcing_consecutive_5xx, 0);
    assert.equal(od.enforcing_consecutive_gateway_failure, 0);
    assert.equal(od.enforcing_success_rate, 0);
  });

  test("an empty deployment still gets its cluster and an empty assignment", () => {
    assert.deepEqual(cla(s, "gw.empty").endpoints, []);
  });

  test("build options: another control cluster name / endpoint header / no HC event log", () => {
    const parsed = XdsSnapshotInput.parse(fullSnapshot());
    const c = buildCluster(parsed.deployments[0]!, { controlCluster: "ctl", endpointHeader: "x-pick", healthEventLogPath: null });
    assert.deepEqual(c.eds_cluster_config.eds_config.api_config_source.cluster_names, ["ctl"]);
    assert.deepEqual((c.load_balancing_policy.policies[0]!.typed_extension_config.typed_config as any).override_host_sources, [{ header: "x-pick" }]);
    assert.equal(c.health_checks[0]!.event_logger, undefined);
    assert.ok(validateAnyResource(c).ok);
  });
});

describe("xds build: determinism", () => {
  test("same input → byte-identical output; input order does not matter", () => {
    const a = build();
    const shuffled = fullSnapshot();
    shuffled.deployments.reverse();
    for (const d of shuffled.deployments) d.instances.reverse();
    const b = build(shuffled);
    assert.equal(JSON.stringify(b.clusters), JSON.stringify(a.clusters));
    assert.equal(JSON.stringify(b.endpoints), JSON.stringify(a.endpoints));
    assert.equal(JSON.stringify(build().endpoints), JSON.stringify(a.endpoints));
  });

  test("a change shows: another weight changes the output", () => {
    const changed = fullSnapshot();
    changed.deployments[0]!.instances[0]!.weight = 6;
    assert.notEqual(JSON.stringify(build(changed).endpoints), JSON.stringify(build().endpoints));
  });

  test("the snapshot is frozen", () => {
    const s = build();
    assert.throws(() => {
      (s.clusters as EnvoyCluster[]).push(s.clusters[0]!);
    });
    assert.throws(() => {
      (s.endpoints[1]!.endpoints[0]!.lb_endpoints[0] as any).load_balancing_weight = 9;
    });
  });

  test("durations have 0 or 3 fractional digits", () => {
    assert.deepEqual([duration(5), duration(0.25), duration(0.05), duration(1.5), duration(3600)], ["5s", "0.250s", "0.050s", "1.500s", "3600s"]);
  });
});

describe("xds build: refused snapshots", () => {
  const issuesOf = (input: unknown): string[] => {
    const r = buildXdsSnapshot(input);
    assert.equal(r.ok, false, "expected the snapshot to be refused");
    return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`);
  };

  test("duplicate cluster names", () => {
    const s = fullSnapshot();
    s.deployments[1]!.cluster = s.deployments[0]!.cluster;
    assert.match(issuesOf(s).join("\n"), /deployments\[1\]\.cluster: duplicate cluster name gw\.mixtral-wrr/);
  });

  test("duplicate deployment ids, instance ids and addresses", () => {
    const s = fullSnapshot();
    s.deployments[1]!.id = s.deployments[0]!.id;
    s.deployments[2]!.instances[1]!.id = "p0-a";
    s.deployments[3]!.instances[1]!.address = "192.168.5.1:8080";
    const text = issuesOf(s).join("\n");
    assert.match(text, /deployments\[1\]\.id: duplicate deployment id/);
    assert.match(text, /deployments\[2\]\.instances\[1\]\.id: duplicate instance id p0-a/);
    assert.match(text, /deployments\[3\]\.instances\[1\]\.address: address 192\.168\.5\.1:8080 used by two instances/);
  });

  test("a cluster named like the control service's static cluster", () => {
    const s = fullSnapshot();
    s.deployments[0]!.cluster = "gateway_control";
    assert.match(issuesOf(s).join("\n"), /deployments\[0\]\.cluster: .*static cluster/);
  });

  test("more failover tiers than Envoy has priorities", () => {
    const s = fullSnapshot();
    s.deployments[2]!.instances = Array.from({ length: 130 }, (_, i) => ({
      id: `t${i}`,
      address: `10.9.${Math.floor(i / 200)}.${(i % 200) + 1}:8000`,
      base_path: "",
      weight: 1,
      priority: i,
      region: "",
      state: "active" as const,
    }));
    assert.match(issuesOf(s).join("\n"), /130 failover tiers/);
    s.deployments[2]!.instances.pop(); // 129 tiers → priorities 0..128: accepted and valid
    const ok = build(s);
    const e = cla(ok, "gw.qwen-failover");
    assert.equal(Math.max(...e.endpoints.map((l) => l.priority)), 128);
    assert.ok(validateAnyResource(e).ok);
  });

  test("contract violations name the field: bad address, missing health check, bad path, bad state", () => {
    const s = fullSnapshot() as any;
    s.deployments[0].instances[0].address = "llm.internal:8000";
    delete s.deployments[1].health_check;
    s.deployments[2].health_check.path = "/health?x=1";
    s.deployments[3].instances[0].state = "pending";
    const text = issuesOf(s).join("\n");
    assert.match(text, /deployments\[0\]\.instances\[0\]\.address: /);
    assert.match(text, /deployments\[1\]\.health_check: /);
    assert.match(text, /deployments\[2\]\.health_check\.path: /);
    assert.match(text, /deployments\[3\]\.instances\[0\]\.state: /);
    assert.match(issuesOf({ version: 0, deployments: [] }).join("\n"), /^version: /);
    assert.match(issuesOf(null).join("\n"), /expected object/);
  });

  test("TLS: an IP literal is not a hostname for SNI", () => {
    const s = fullSnapshot();
    s.deployments[0]!.instances[0]!.tls = { sni: "10.1.0.1" };
    assert.match(issuesOf(s).join("\n"), /deployments\[0\]\.instances\[0\]\.tls\.sni: an IP literal/);
    s.deployments[0]!.instances[0]!.tls = { sni: "llm.internal:443" };
    assert.match(issuesOf(s).join("\n"), /tls\.sni/);
    s.deployments[0]!.instances[0]!.tls = { sni: "LLM.Internal" };
    const e = endpointsOf(cla(build(s), "gw.mixtral-wrr"));
    assert.equal(e.get("w-big")!.ep.endpoint.hostname, "llm.internal", "SNI lower-cased");
  });

  test("warnings (served anyway): non-canonical IPv6, health-check timeout above the interval", () => {
    const s = fullSnapshot();
    s.deployments[0]!.instances[2]!.address = "[2001:DB8:0:0::12]:8000";
    s.deployments[1]!.health_check.timeout_seconds = 9;
    const r = buildXdsSnapshot(s);
    assert.ok(r.ok);
    const text = r.warnings.map((w) => `${w.path}: ${w.message}`).join("\n");
    assert.match(text, /deployments\[0\]\.instances\[2\]\.address: .*\[2001:db8::12\]:8000/);
    assert.match(text, /deployments\[1\]\.health_check\.timeout_seconds: /);
    assert.equal(canonicalAddress("[2001:DB8:0:0::12]:8000"), "[2001:db8::12]:8000");
    assert.equal(canonicalAddress("10.0.0.1:80"), "10.0.0.1:80");
  });

  test("type URLs are Envoy's", () => {
    assert.equal(TYPE_URL.cluster, "type.googleapis.com/envoy.config.cluster.v3.Cluster");
    assert.equal(TYPE_URL.clusterLoadAssignment, "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment");
  });
});
