/**
 * The builder and the Envoy documents we ship say the same thing: the per-deployment example is
 * what the builder produces for that deployment, the EDS config source is the bootstrap's ADS (as the
 * ADS server rewrites it) or the REST fallback's CDS one (as the builder writes it),
 * and every copy of the route retry_policy equals routeRetryPolicy() (one definition, kept by this
 * test).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PluginConfig } from "../../control/contracts/plugin-config.js";
import { adsCluster } from "../../control/xds/ads.js";
import { buildXdsSnapshot, routeRetryPolicy } from "../../control/xds/build.js";
import { bootstrap, docs, get, WASM } from "../envoy/support.js";
import { exampleDeployment } from "./fixtures.js";

/** Every path/value of `expected` is in `actual` (arrays element-wise, same length). */
function assertContains(actual: unknown, expected: unknown, path = ""): void {
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${path}: expected an array`);
    assert.equal(actual.length, expected.length, `${path}: length`);
    expected.forEach((e, i) => assertContains(actual[i], e, `${path}[${i}]`));
  } else if (expected !== null && typeof expected === "object") {
    assert.ok(actual !== null && typeof actual === "object" && !Array.isArray(actual), `${path}: expected an object`);
    for (const [k, v] of Object.entries(expected)) assertContains((actual as Record<string, unknown>)[k], v, path ? `${path}.${k}` : k);
  } else {
    assert.deepEqual(actual, expected, path);
  }
}

/** All values under a key named `key`, anywhere in `v`. */
function findAll(v: unknown, key: string, out: unknown[] = []): unknown[] {
  if (Array.isArray(v)) v.forEach((x) => findAll(x, key, out));
  else if (v && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) {
      if (k === key) out.push(x);
      findAll(x, key, out);
    }
  }
  return out;
}

describe("xds builder vs the shipped Envoy documents", () => {
  const built = buildXdsSnapshot(exampleDeployment());
  assert.ok(built.ok);
  const [exampleCluster, exampleCla] = docs("envoy/per-deployment-cluster.example.yaml");

  test("the example Cluster is contained in what the builder makes for that deployment", () => {
    assertContains(built.snapshot.clusters[0], exampleCluster);
  });

  test("the example ClusterLoadAssignment is contained in what the builder makes", () => {
    assertContains(built.snapshot.endpoints[0], exampleCla);
  });

  test("the containment check can fail", () => {
    assert.throws(() => assertContains(built.snapshot.clusters[0], { ...exampleCluster, connect_timeout: "9s" }));
    assert.throws(() => assertContains(built.snapshot.endpoints[0], { endpoints: [] }));
  });

  test("EDS config source: over ADS the bootstrap's (the same stream); over REST the fallback's CDS source (same control cluster, same polling)", () => {
    const cds = get(bootstrap(), "dynamic_resources.cds_config");
    const overAds = adsCluster(built.snapshot.clusters[0]!).eds_cluster_config as { eds_config: Record<string, unknown> };
    assert.deepEqual(overAds.eds_config, { resource_api_version: cds.resource_api_version, ads: cds.ads });
    const rest = docs("envoy/snippets/xds-rest.yaml")[0]!.cds_config;
    const eds = built.snapshot.clusters[0]!.eds_cluster_config.eds_config;
    assert.deepEqual(eds.api_config_source, rest.api_config_source);
    assert.equal(eds.resource_api_version, rest.resource_api_version);
  });

  test("every retry_policy in envoy/ equals routeRetryPolicy(max_fallbacks)", () => {
    const maxFallbacks = PluginConfig.parse(JSON.parse(get(bootstrap(), `${WASM}.config.configuration.value`))).max_fallbacks;
    const expected = routeRetryPolicy({ maxFallbacks });
    assert.deepEqual(expected, { retry_on: "connect-failure,reset,refused-stream", num_retries: 2, per_try_idle_timeout: "300s" });
    let copies = 0;
    for (const file of ["envoy/bootstrap.yaml", "envoy/snippets/envoy-ingress.yaml", "envoy/snippets/istio.yaml", "envoy/snippets/envoy-gateway.yaml"]) {
      for (const rp of findAll(docs(file), "retry_policy")) {
        assert.deepEqual(rp, expected, `${file}: retry_policy differs from routeRetryPolicy()`);
        copies++;
      }
    }
    assert.ok(copies >= 4, `found only ${copies} copies`);
  });
});
