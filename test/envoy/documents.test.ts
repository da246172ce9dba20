/**
 * Every Envoy document we ship validates against Envoy's v3 protos (+ our overlay), the plugin
 * configuration each one embeds satisfies the zod PluginConfig contract, and the snippets still make
 * a valid Envoy when assembled into a bootstrap.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { PluginConfig } from "../../control/contracts/plugin-config.js";
import { readDocuments, validateDocument, validateFile } from "../../envoy/validate/documents.js";
import { formatIssue, loadSchema, validateBootstrap } from "../../envoy/validate/index.js";
import { bootstrap, docs, get, PLUGIN_CONFIG_JSON, REPO, shippedDocuments, WASM } from "./support.js";

const show = (r: { errors: { path: string; message: string }[] }): string => r.errors.map(formatIssue).join("\n");

describe("shipped Envoy documents", () => {
  const files = shippedDocuments();

  test("the ones we promise are there", () => {
    for (const f of ["envoy/bootstrap.yaml", "envoy/per-deployment-cluster.example.yaml", "envoy/snippets/envoy-ingress.yaml", "envoy/snippets/istio.yaml", "envoy/snippets/envoy-gateway.yaml", "envoy/snippets/xds-rest.yaml"]) {
      assert.ok(files.includes(f), `${f} missing`);
    }
  });

  for (const file of files) {
    test(`${file} validates`, () => {
      const { ok, lines, reports } = validateFile(join(REPO, file));
      assert.ok(ok, lines.join("\n"));
      assert.ok(reports.length > 0);
      for (const r of reports) assert.deepEqual(r.result.warnings, [], `${file}#${r.index + 1} warnings:\n${lines.join("\n")}`);
    });
  }

  test("the shipped bootstrap reaches several control replicas: /healthz checks, outlier detection, ADS checked on each replica's HTTP port", () => {
    const b = docs("envoy/bootstrap.yaml")[0]! as { static_resources: { clusters: Array<Record<string, any>> } };
    const cluster = (n: string) => b.static_resources.clusters.find((c) => c.name === n)!;
    const control = cluster("gateway_control");
    const xds = cluster("gateway_xds");
    const hosts = (c: Record<string, any>) => c.load_assignment.endpoints[0].lb_endpoints.map((e: any) => e.endpoint.address.socket_address.port_value);
    assert.ok(hosts(control).length >= 2, "several control replicas");
    assert.equal(hosts(xds).length, hosts(control).length, "one ADS endpoint per replica");
    for (const c of [control, xds]) assert.equal(c.health_checks[0].http_health_check.path, "/healthz");
    assert.equal(xds.health_checks[0].http_health_check.codec_client_type, "HTTP1", "the ADS cluster is HTTP/2; /healthz is HTTP/1.1");
    // Each ADS endpoint is health-checked on the HTTP port of the same replica.
    assert.deepEqual(xds.load_assignment.endpoints[0].lb_endpoints.map((e: any) => e.endpoint.health_check_config.port_value), hosts(control));
    assert.ok(control.outlier_detection.consecutive_gateway_failure >= 1);
  });

  test("the bootstrap is validated as a Bootstrap, the cluster example as a Cluster and a ClusterLoadAssignment", () => {
    const b = validateFile(join(REPO, "envoy/bootstrap.yaml"));
    assert.deepEqual(b.reports.map((r) => r.kind), ["envoy.config.bootstrap.v3.Bootstrap"]);
    const c = validateFile(join(REPO, "envoy/per-deployment-cluster.example.yaml"));
    assert.deepEqual(c.reports.map((r) => r.kind), ["envoy.config.cluster.v3.Cluster", "envoy.config.endpoint.v3.ClusterLoadAssignment"]);
  });

  test("every envoy-ingress snippet names the message it is validated as", () => {
    const parsed = readDocuments(join(REPO, "envoy/snippets/envoy-ingress.yaml"));
    assert.equal(parsed.length, 5);
    for (const d of parsed) assert.ok(d.validateAs, `document ${d.index + 1} has no validate-as directive`);
  });

  test("the overlay supplies the newer fields the documents rely on", () => {
    const { root, additions } = loadSchema();
    assert.deepEqual(additions["envoy.extensions.wasm.v3.PluginConfig"], ["failure_policy", "reload_config", "allow_on_headers_stop_iteration"]);
    assert.ok(root.lookupType("envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost"));
  });
});

describe("plugin configuration embedded in the documents", () => {
  test("bootstrap: StringValue JSON satisfies PluginConfig and matches the routing choices", () => {
    const b = bootstrap();
    assert.equal(get(b, `${WASM}.config.configuration.@type`), "type.googleapis.com/google.protobuf.StringValue");
    const parsed = PluginConfig.safeParse(JSON.parse(get(b, PLUGIN_CONFIG_JSON)));
    assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
    const cfg = parsed.data;
    // The plugin's control cluster is a static cluster of this bootstrap.
    assert.ok(b.static_resources.clusters.some((c: { name: string }) => c.name === cfg.control_cluster));
    // The model route keys on the header the plugin sets.
    const route = get(b, "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0]");
    assert.equal(route.route.cluster_header, cfg.cluster_header);
    assert.equal(route.match.headers[0].name, cfg.cluster_header);
    // Body routing needs the listener to buffer at least max_body_bytes and the stop-iteration flag.
    assert.equal(cfg.body_routing, true);
    assert.equal(get(b, `${WASM}.config.allow_on_headers_stop_iteration`), true);
    assert.ok(b.static_resources.listeners[0].per_connection_buffer_limit_bytes >= cfg.max_body_bytes);
    // The strip filter removes exactly the headers the plugin owns.
    const removed = get(b, "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.mutations.request_mutations").map((m: { remove: string }) => m.remove);
    assert.deepEqual(new Set(removed), new Set([cfg.cluster_header, cfg.endpoint_header, cfg.deployment_header, cfg.instance_header]));
  });

  test("bootstrap: explicit failure policy and Envoy >= 1.35 flag are set", () => {
    const config = get(bootstrap(), `${WASM}.config`);
    assert.equal(config.failure_policy, "FAIL_OPEN");
    assert.equal(config.fail_open, undefined, "deprecated fail_open must not be used");
  });

  test("per-deployment cluster reads the header the plugin writes", () => {
    const defaults = PluginConfig.parse({ control_cluster: "gateway_control" });
    const cluster = docs("envoy/per-deployment-cluster.example.yaml")[0]!;
    const oh = cluster.load_balancing_policy.policies[0].typed_extension_config.typed_config;
    assert.equal(oh.override_host_sources[0].header, defaults.endpoint_header);
    assert.equal(cluster.common_lb_config.healthy_panic_threshold.value, 0);
    assert.equal(cluster.health_checks[0].unhealthy_threshold, 3);
  });

  test("envoy-ingress snippet: plugin configuration is valid", () => {
    const wasm = docs("envoy/snippets/envoy-ingress.yaml")[1]!;
    const parsed = PluginConfig.safeParse(JSON.parse(wasm.typed_config.config.configuration.value));
    assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
  });

  test("Istio WasmPlugin pluginConfig and Envoy Gateway wasm config are valid (body routing off: no stop-iteration switch there)", () => {
    const istio = docs("envoy/snippets/istio.yaml")[0]!;
    const eg = docs("envoy/snippets/envoy-gateway.yaml")[0]!;
    for (const cfg of [istio.spec.pluginConfig, eg.spec.wasm[0].config]) {
      const parsed = PluginConfig.safeParse(cfg);
      assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
      assert.equal(parsed.data.body_routing, false);
    }
    // In Istio the control cluster is Istio's own outbound cluster for the control Service.
    assert.match(istio.spec.pluginConfig.control_cluster, /^outbound\|\d+\|\|[a-z0-9.-]+$/);
  });
});

describe("xDS transport: ADS as shipped, REST as the documented fallback", () => {
  test("the bootstrap takes CDS (and, through the clusters it serves, EDS) over ADS from a static HTTP/2 cluster", () => {
    const b = bootstrap();
    assert.deepEqual(b.dynamic_resources.cds_config.ads, {});
    const ads = b.dynamic_resources.ads_config;
    assert.equal(ads.api_type, "GRPC");
    assert.equal(ads.transport_api_version, "V3");
    const name = ads.grpc_services[0].envoy_grpc.cluster_name;
    const cluster = b.static_resources.clusters.find((c: { name: string }) => c.name === name);
    assert.equal(cluster.type, "STATIC");
    assert.deepEqual(cluster.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].explicit_http_config, { http2_protocol_options: {} });
    // The plugin's control cluster is another one, left at HTTP/1.1 (the control's HTTP API).
    const plugin = PluginConfig.parse(JSON.parse(get(b, PLUGIN_CONFIG_JSON)));
    assert.notEqual(plugin.control_cluster, name);
    assert.equal(b.static_resources.clusters.find((c: { name: string }) => c.name === plugin.control_cluster).typed_extension_protocol_options, undefined);
  });

  test("envoy/snippets/xds-rest.yaml in place of dynamic_resources (ADS cluster dropped) makes a valid bootstrap polling the plugin's control cluster", () => {
    const b = bootstrap();
    const adsCluster = b.dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name;
    const [rest] = docs("envoy/snippets/xds-rest.yaml");
    b.dynamic_resources = rest;
    b.static_resources.clusters = b.static_resources.clusters.filter((c: { name: string }) => c.name !== adsCluster);
    const r = validateBootstrap(b);
    assert.ok(r.ok, show(r));
    assert.deepEqual(r.warnings, []);
    const plugin = PluginConfig.parse(JSON.parse(get(b, PLUGIN_CONFIG_JSON)));
    assert.deepEqual(rest!.cds_config.api_config_source.cluster_names, [plugin.control_cluster]);
    assert.equal(rest!.cds_config.api_config_source.api_type, "REST");
  });
});

describe("snippets assembled into a bootstrap", () => {
  test("the envoy-ingress fragments make a valid Envoy with an existing listener and route", () => {
    const [strip, wasm, route, control, cds] = docs("envoy/snippets/envoy-ingress.yaml");
    const existing = {
      name: "existing_backend",
      type: "STATIC",
      connect_timeout: "1s",
      load_assignment: { cluster_name: "existing_backend", endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: 9000 } } } }] }] },
    };
    const doc = {
      node: { id: "ingress-1", cluster: "ingress" },
      static_resources: {
        listeners: [
          {
            name: "ingress",
            address: { socket_address: { address: "0.0.0.0", port_value: 8443 } },
            filter_chains: [
              {
                filters: [
                  {
                    name: "envoy.filters.network.http_connection_manager",
                    typed_config: {
                      "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                      stat_prefix: "ingress",
                      route_config: {
                        name: "ingress",
                        virtual_hosts: [{ name: "api", domains: ["*"], routes: [route, { match: { prefix: "/" }, route: { cluster: "existing_backend" } }] }],
                      },
                      http_filters: [strip, wasm, { name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }],
                    },
                  },
                ],
              },
            ],
          },
        ],
        clusters: [existing, control],
      },
      dynamic_resources: { cds_config: cds },
    };
    const r = validateBootstrap(doc);
    assert.ok(r.ok, show(r));
  });

  test("a broken fragment fails as the message its directive names", () => {
    const parsed = readDocuments(join(REPO, "envoy/snippets/envoy-ingress.yaml"));
    const wasm = parsed[1]!;
    (wasm.value as any).typed_config.config.failure_policy = "FAIL_OPENN";
    (wasm.value as any).typed_config.config.vm_config.code.local.file_name = "x.wasm";
    const r = validateDocument(wasm);
    assert.equal(r.kind, "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter");
    assert.ok(r.result.errors.some((e) => e.path === "typed_config.config.failure_policy" && /invalid value "FAIL_OPENN"/.test(e.message)), show(r.result));
    assert.ok(r.result.errors.some((e) => e.path === "typed_config.config.vm_config.code.local.file_name" && /did you mean "filename"/.test(e.message)), show(r.result));
  });

  test("the same assembly without the control cluster is refused (config source must be static)", () => {
    const [, , , , cds] = docs("envoy/snippets/envoy-ingress.yaml");
    const r = validateBootstrap({ node: { id: "a", cluster: "b" }, dynamic_resources: { cds_config: cds } });
    assert.ok(!r.ok);
    assert.ok(r.errors.some((e) => e.path === "dynamic_resources.cds_config.api_config_source.cluster_names[0]"), show(r));
  });
});

describe("CLI", () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", "envoy/validate/cli.ts", ...args], { cwd: REPO, encoding: "utf8" });

  test("exit 0 on our documents", () => {
    const r = cli("envoy/bootstrap.yaml", "envoy/per-deployment-cluster.example.yaml", "envoy/snippets/istio.yaml");
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /validated 3 file\(s\): 3 ok, 0 with errors/);
  });

  test("exit 1 with the JSON path on a broken document (--type picks the message) and on unparsable YAML", () => {
    const dir = mkdtempSync(join(tmpdir(), "envoy-validate-"));
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ name: "c", connect_timeout: "1s", load_assignment: { cluster_name: "c", endpoints: [{ lb_endpoints: [{ endpoint: { adress: {} } }] }] } }));
    const unparsable = join(dir, "dup.yaml");
    writeFileSync(unparsable, "node:\n  id: a\n  id: b\n");
    const r = cli("--type", "envoy.config.cluster.v3.Cluster", bad, unparsable);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /load_assignment\.endpoints\[0\]\.lb_endpoints\[0\]\.endpoint\.adress: unknown field "adress" in envoy\.config\.endpoint\.v3\.Endpoint \(did you mean "address"\?\)/);
    assert.match(r.stdout, /dup\.yaml.*Map keys must be unique/);
    assert.match(r.stdout, /validated 2 file\(s\): 0 ok, 2 with errors/);
    assert.equal(cli().status, 2);
  });
});
