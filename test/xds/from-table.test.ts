/** control/xds/from-table.ts: routing table + stored settings → contract 4 input → valid xDS. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { RoutingTable } from "../../control/contracts/routing-table.js";
import { buildXdsSnapshot } from "../../control/xds/build.js";
import { xdsSnapshotFromTable, type StoredDeploymentLike } from "../../control/xds/from-table.js";
import { validateAnyResource } from "../../envoy/validate/index.js";

const table = RoutingTable.parse({
  schema: 1,
  version: 17,
  models: { "llama-3-8b": "llama" },
  deployments: [
    {
      id: "llama",
      cluster: "gw.llama",
      strategy: "failover",
      on_unavailable: "fail",
      instances: [
        { id: "a", address: "10.0.0.1:8000", base_path: "/v1", weight: 1, priority: 0, region: "eu", state: "active" },
        { id: "b", address: "[2001:db8::2]:443", base_path: "/v1", weight: 1, priority: 1, region: "us", state: "ejected" },
        { id: "c", address: "10.0.0.3:443", base_path: "/v1", weight: 1, priority: 1, region: "us", state: "draining" },
      ],
    },
  ],
});

const stored: StoredDeploymentLike[] = [
  {
    id: "llama",
    health_check: { interval_seconds: 10, timeout_seconds: 2, unhealthy_threshold: 3, healthy_threshold: 2, path: "/health" },
    instances: [
      { id: "a", scheme: "http", host: "10.0.0.1" },
      { id: "b", scheme: "https", host: "2001:db8::2" },
      { id: "c", scheme: "https", host: "LLM-C.internal" },
      { id: "pending-one", scheme: "http", host: "10.0.0.9" }, // not in the table: ignored
    ],
  },
];

test("table + stored deployments → same version, same instances, TLS from https URLs", () => {
  const input = xdsSnapshotFromTable(table, stored);
  assert.equal(input.version, 17);
  const d = input.deployments[0]!;
  assert.deepEqual(d.instances.map((i) => i.id), ["a", "b", "c"]);
  assert.equal(d.instances[0]!.tls, undefined);
  assert.deepEqual(d.instances[1]!.tls, {}, "IP-literal https: TLS without SNI");
  assert.deepEqual(d.instances[2]!.tls, { sni: "llm-c.internal" });
  assert.equal(d.health_check.interval_seconds, 10);

  const r = buildXdsSnapshot(input);
  assert.ok(r.ok, r.ok ? "" : JSON.stringify(r.issues));
  for (const res of [...r.snapshot.clusters, ...r.snapshot.endpoints]) assert.ok(validateAnyResource(res).ok);
  assert.equal(r.snapshot.version_info, "17");
});

test("a table deployment without stored settings refuses the snapshot, naming it", () => {
  const r = buildXdsSnapshot(xdsSnapshotFromTable(table, []));
  assert.equal(r.ok, false);
  assert.ok(!r.ok && r.issues.some((i) => i.path === "deployments[0].health_check"), JSON.stringify(!r.ok && r.issues));
});
