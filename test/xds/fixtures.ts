/**
 * A snapshot covering every case the xDS builder maps: each strategy (round_robin,
 * weighted_round_robin with unequal weights, failover with 2 and 3 tiers), both on_unavailable
 * policies, instances in every state, several regions (and none), IPv4 and IPv6, http and https (with
 * and without a hostname, own CA), and an empty deployment.
 */
import type { XdsSnapshotInputRaw } from "../../control/xds/contract.js";

const hc = (over: Partial<{ interval_seconds: number; timeout_seconds: number; unhealthy_threshold: number; healthy_threshold: number; path: string }> = {}) => ({
  interval_seconds: 5,
  timeout_seconds: 2,
  healthy_threshold: 2,
  path: "/health",
  ...over,
});

export function fullSnapshot(version = 42): XdsSnapshotInputRaw {
  return {
    version,
    deployments: [
      {
        // Listed first on purpose: output is sorted by cluster name.
        id: "mixtral-wrr",
        cluster: "gw.mixtral-wrr",
        strategy: "weighted_round_robin",
        on_unavailable: "panic",
        health_check: hc({ interval_seconds: 10, timeout_seconds: 3, unhealthy_threshold: 5, healthy_threshold: 1, path: "/v1/models" }),
        instances: [
          { id: "w-big", address: "10.1.0.1:8000", base_path: "/v1", weight: 5, priority: 0, region: "eu-west", state: "active" },
          { id: "w-small", address: "10.1.0.2:8000", base_path: "/v1", weight: 1, priority: 3, region: "eu-west", state: "active" },
          { id: "w-v6", address: "[2001:db8::12]:8000", base_path: "/v1", weight: 2, priority: 0, region: "us-east", state: "ejected" },
        ],
      },
      {
        id: "llama-rr",
        cluster: "gw.llama-rr",
        strategy: "round_robin",
        on_unavailable: "fail",
        health_check: hc(),
        instances: [
          { id: "a", address: "10.0.1.11:8000", base_path: "/v1", weight: 7, priority: 0, region: "eu-west", state: "active" },
          { id: "b", address: "10.0.1.12:8000", base_path: "/v1", weight: 1, priority: 2, region: "eu-west", state: "draining" },
          { id: "c", address: "[fd00:10::c]:8000", base_path: "/v1", weight: 1, priority: 0, region: "us-east", state: "ejected" },
          { id: "d", address: "10.0.1.14:443", base_path: "/openai/v1", weight: 1, priority: 0, region: "", state: "active", tls: { sni: "llama-d.models.internal" } },
        ],
      },
      {
        id: "qwen-failover",
        cluster: "gw.qwen-failover",
        strategy: "failover",
        on_unavailable: "fail",
        health_check: hc({ interval_seconds: 0.5, timeout_seconds: 0.25, unhealthy_threshold: 2, path: "/" }),
        instances: [
          // Tiers 0, 10, 20 → Envoy priorities 0, 1, 2.
          { id: "p0-a", address: "10.2.0.1:11434", base_path: "", weight: 3, priority: 0, region: "eu-west", state: "active" },
          { id: "p0-b", address: "10.2.0.2:11434", base_path: "", weight: 1, priority: 0, region: "eu-west", state: "ejected" },
          { id: "p1-a", address: "[2001:db8:1::1]:11434", base_path: "", weight: 1, priority: 10, region: "us-east", state: "active", tls: {} },
          { id: "p1-b", address: "10.2.1.2:11434", base_path: "", weight: 2, priority: 10, region: "eu-west", state: "draining", tls: { sni: "qwen.example.org", ca_file: "/etc/gateway/ca.pem" } },
          { id: "p2-a", address: "10.2.2.1:11434", base_path: "", weight: 1, priority: 20, region: "ap-south", state: "active" },
        ],
      },
      {
        id: "phi-failover2",
        cluster: "gw.phi-failover2",
        strategy: "failover",
        on_unavailable: "panic",
        health_check: hc({ path: "/healthz" }),
        instances: [
          { id: "primary", address: "192.168.5.1:8080", base_path: "/v1", weight: 1, priority: 1, region: "", state: "active" },
          { id: "backup", address: "[2001:db8::99]:8080", base_path: "/v1", weight: 1, priority: 2, region: "", state: "active" },
        ],
      },
      {
        id: "empty",
        cluster: "gw.empty",
        strategy: "round_robin",
        on_unavailable: "fail",
        health_check: hc(),
        instances: [],
      },
    ],
  };
}

/** The deployment envoy/per-deployment-cluster.example.yaml shows. */
export function exampleDeployment(): XdsSnapshotInputRaw {
  return {
    version: 1,
    deployments: [
      {
        id: "llama-3-8b",
        cluster: "gw-dep-llama-3-8b",
        strategy: "round_robin",
        on_unavailable: "fail",
        health_check: { interval_seconds: 5, timeout_seconds: 2, unhealthy_threshold: 3, healthy_threshold: 2, path: "/health" },
        instances: [
          { id: "llama-3-8b-a", address: "10.0.1.11:8000", base_path: "/v1", weight: 1, priority: 0, region: "", state: "active" },
          { id: "llama-3-8b-b", address: "10.0.1.12:8000", base_path: "/v1", weight: 1, priority: 0, region: "", state: "draining" },
        ],
      },
    ],
  };
}
