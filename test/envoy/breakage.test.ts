/**
 * Deliberately broken variants of the documents we ship must fail validation, with an error at the
 * right JSON path. Each case mutates a fresh copy of envoy/bootstrap.yaml or of the per-deployment
 * cluster example and names the path (exactly) and the message (pattern) it expects.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatIssue, validateAnyResource, validateBootstrap, type ValidationResult } from "../../envoy/validate/index.js";
import { bootstrap, del, deploymentCluster, get, HCM, ROUTES, set, WASM } from "./support.js";

interface Case {
  name: string;
  break: (doc: Record<string, any>) => void;
  path: string;
  message: RegExp;
}

function expectError(r: ValidationResult, path: string, message: RegExp): void {
  const listing = r.errors.map(formatIssue).join("\n") || "(no errors)";
  assert.equal(r.ok, false, `expected failure at ${path}`);
  assert.ok(r.errors.some((e) => e.path === path && message.test(e.message)), `expected ${path}: ${message}, got:\n${listing}`);
}

const SOCKET = "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address";
const FILTER_ANY = `${HCM}.http_filters[1].typed_config`;

const bootstrapCases: Case[] = [
  // Unknown fields, from the top to deep inside nested Any.
  { name: "unknown top-level field (typo)", break: (d) => set(d, "static_resource", {}), path: "static_resource", message: /unknown field "static_resource" in envoy\.config\.bootstrap\.v3\.Bootstrap \(did you mean "static_resources"\?\)/ },
  { name: "unknown field deep in a cluster's endpoint", break: (d) => set(d, `${SOCKET}.prot_value`, 1), path: `${SOCKET}.prot_value`, message: /unknown field "prot_value" in envoy\.config\.core\.v3\.SocketAddress/ },
  { name: "unknown field inside typed_config (HCM)", break: (d) => set(d, `${HCM}.stat_prefixx`, "x"), path: `${HCM}.stat_prefixx`, message: /unknown field "stat_prefixx" in .*\.HttpConnectionManager \(did you mean "stat_prefix"\?\)/ },
  { name: "unknown field inside the wasm typed_config's PluginConfig", break: (d) => set(d, `${WASM}.config.fail_mode`, "open"), path: `${WASM}.config.fail_mode`, message: /unknown field "fail_mode" in envoy\.extensions\.wasm\.v3\.PluginConfig/ },
  { name: "unknown field inside vm_config", break: (d) => set(d, `${WASM}.config.vm_config.runtime_name`, "v8"), path: `${WASM}.config.vm_config.runtime_name`, message: /unknown field "runtime_name" in envoy\.extensions\.wasm\.v3\.VmConfig/ },
  { name: "unknown field inside the router's typed_config", break: (d) => set(d, `${HCM}.http_filters[2].typed_config.bogus`, true), path: `${HCM}.http_filters[2].typed_config.bogus`, message: /unknown field "bogus" in envoy\.extensions\.filters\.http\.router\.v3\.Router/ },
  { name: "unknown field in an upstream TLS context", break: (d) => set(d, "static_resources.clusters[2].transport_socket.typed_config.common_tls_context.verify", true), path: "static_resources.clusters[2].transport_socket.typed_config.common_tls_context.verify", message: /unknown field "verify" in envoy\.extensions\.transport_sockets\.tls\.v3\.CommonTlsContext/ },
  { name: "snake_case and lowerCamelCase of one field together", break: (d) => set(d, "staticResources", {}), path: "staticResources", message: /given twice \(as "static_resources" and "staticResources"\)/ },
  // @type resolution.
  { name: "unknown @type", break: (d) => set(d, `${FILTER_ANY}.@type`, "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasmm"), path: `${FILTER_ANY}.@type`, message: /unknown @type "type\.googleapis\.com\/envoy\.extensions\.filters\.http\.wasm\.v3\.Wasmm"/ },
  { name: "typed_config without @type", break: (d) => del(d, `${HCM}.http_filters[2].typed_config.@type`), path: `${HCM}.http_filters[2].typed_config`, message: /Any without "@type"/ },
  { name: "type URL without a slash", break: (d) => set(d, `${HCM}.http_filters[2].typed_config.@type`, "envoy.extensions.filters.http.router.v3.Router"), path: `${HCM}.http_filters[2].typed_config.@type`, message: /must look like type\.googleapis\.com/ },
  { name: "StringValue configuration given a number", break: (d) => set(d, `${WASM}.config.configuration.value`, 42), path: `${WASM}.config.configuration.value`, message: /expected a string \(string\)/ },
  { name: "StringValue configuration with its JSON as fields instead of value", break: (d) => set(d, `${WASM}.config.configuration`, { "@type": "type.googleapis.com/google.protobuf.StringValue", control_cluster: "gateway_control" }), path: `${WASM}.config.configuration.control_cluster`, message: /unknown field "control_cluster" in Any of google\.protobuf\.StringValue/ },
  // Enums.
  { name: "bad enum name (cluster type)", break: (d) => set(d, "static_resources.clusters[0].type", "STATICC"), path: "static_resources.clusters[0].type", message: /invalid value "STATICC" for enum envoy\.config\.cluster\.v3\.Cluster\.DiscoveryType/ },
  { name: "undefined enum number where defined_only", break: (d) => set(d, "static_resources.clusters[0].type", 42), path: "static_resources.clusters[0].type", message: /42 is not a defined value/ },
  { name: "bad enum in the overlay's failure_policy", break: (d) => set(d, `${WASM}.config.failure_policy`, "FAIL_SOMETIMES"), path: `${WASM}.config.failure_policy`, message: /invalid value "FAIL_SOMETIMES" for enum envoy\.extensions\.wasm\.v3\.FailurePolicy/ },
  { name: "bad enum in ApiConfigSource", break: (d) => set(d, "dynamic_resources.ads_config.api_type", "REST_JSON"), path: "dynamic_resources.ads_config.api_type", message: /invalid value "REST_JSON"/ },
  // Oneofs.
  { name: "two oneof members (cluster and cluster_header)", break: (d) => set(d, `${ROUTES}[0].route.cluster`, "x"), path: `${ROUTES}[0].route`, message: /oneof "cluster_specifier" .* only one of .* got cluster and cluster_header/ },
  { name: "two oneof members across naming styles (prefix and path)", break: (d) => set(d, `${ROUTES}[1].match.path`, "/v1/x"), path: `${ROUTES}[1].match`, message: /oneof "path_specifier"/ },
  { name: "required oneof left empty (route without action)", break: (d) => del(d, `${ROUTES}[1].route`), path: `${ROUTES}[1]`, message: /oneof "action" of envoy\.config\.route\.v3\.Route is required/ },
  { name: "required oneof left empty (DataSource of the CA bundle)", break: (d) => set(d, "static_resources.clusters[2].transport_socket.typed_config.common_tls_context.validation_context.trusted_ca", {}), path: "static_resources.clusters[2].transport_socket.typed_config.common_tls_context.validation_context.trusted_ca", message: /oneof "specifier" of envoy\.config\.core\.v3\.DataSource is required/ },
  // Durations.
  { name: "duration without unit", break: (d) => set(d, "static_resources.clusters[0].connect_timeout", "1"), path: "static_resources.clusters[0].connect_timeout", message: /invalid Duration string "1"/ },
  { name: "duration in minutes (proto3-JSON only knows seconds)", break: (d) => set(d, "dynamic_resources.cds_config.initial_fetch_timeout", "1m"), path: "dynamic_resources.cds_config.initial_fetch_timeout", message: /invalid Duration/ },
  { name: "duration as a number", break: (d) => set(d, `${HCM}.stream_idle_timeout`, 300), path: `${HCM}.stream_idle_timeout`, message: /invalid Duration number 300/ },
  { name: "duration with more than nanosecond precision", break: (d) => set(d, "static_resources.clusters[0].connect_timeout", "0.0000000001s"), path: "static_resources.clusters[0].connect_timeout", message: /invalid Duration/ },
  { name: "duration rule gt 0 (connect_timeout 0s)", break: (d) => set(d, "static_resources.clusters[0].connect_timeout", "0s"), path: "static_resources.clusters[0].connect_timeout", message: /must be > 0s/ },
  // Required fields and PGV rules.
  { name: "missing required string (HCM stat_prefix)", break: (d) => del(d, `${HCM}.stat_prefix`), path: `${HCM}.stat_prefix`, message: /must not be empty/ },
  { name: "empty http filter name", break: (d) => set(d, `${HCM}.http_filters[2].name`, ""), path: `${HCM}.http_filters[2].name`, message: /must not be empty/ },
  { name: "virtual host without domains (min_items)", break: (d) => set(d, `${HCM}.route_config.virtual_hosts[0].domains`, []), path: `${HCM}.route_config.virtual_hosts[0].domains`, message: /needs at least 1 item/ },
  { name: "missing cluster name", break: (d) => del(d, "static_resources.clusters[0].name"), path: "static_resources.clusters[0].name", message: /must not be empty/ },
  { name: "port out of range (lte 65535)", break: (d) => set(d, `${SOCKET}.port_value`, 70000), path: `${SOCKET}.port_value`, message: /must be <= 65535/ },
  { name: "header name with a newline (well_known_regex, non-strict)", break: (d) => set(d, `${ROUTES}[0].match.headers[0].name`, "x-gateway\ncluster"), path: `${ROUTES}[0].match.headers[0].name`, message: /valid HTTP header name/ },
  // Wrong JSON types.
  { name: "string where a list is expected", break: (d) => set(d, `${HCM}.route_config.virtual_hosts[0].domains`, "*"), path: `${HCM}.route_config.virtual_hosts[0].domains`, message: /expected an array/ },
  { name: "port as a word", break: (d) => set(d, `${SOCKET}.port_value`, "eighty"), path: `${SOCKET}.port_value`, message: /expected an integer/ },
  { name: "fractional integer", break: (d) => set(d, `${ROUTES}[0].route.retry_policy.num_retries`, 2.5), path: `${ROUTES}[0].route.retry_policy.num_retries`, message: /expected an integer/ },
  { name: "BoolValue given a string", break: (d) => set(d, `${WASM}.config.allow_on_headers_stop_iteration`, "true"), path: `${WASM}.config.allow_on_headers_stop_iteration`, message: /expected true or false \(bool\)/ },
  { name: "negative uint32 wrapper", break: (d) => set(d, "static_resources.listeners[0].per_connection_buffer_limit_bytes", -1), path: "static_resources.listeners[0].per_connection_buffer_limit_bytes", message: /expected an integer in 0\.\.4294967295/ },
  { name: "message given a scalar", break: (d) => set(d, "admin.address", "127.0.0.1:9901"), path: "admin.address", message: /expected an object \(envoy\.config\.core\.v3\.Address\)/ },
  { name: "list given an object", break: (d) => set(d, "static_resources.clusters", { gateway_control: {} }), path: "static_resources.clusters", message: /expected an array \(repeated envoy\.config\.cluster\.v3\.Cluster\)/ },
  { name: "string given a number", break: (d) => set(d, "node.id", 1), path: "node.id", message: /expected a string/ },
  // Cross-references Envoy checks at startup.
  { name: "xDS config source naming a cluster that is not static", break: (d) => set(d, "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name", "control"), path: "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name", message: /not a static cluster/ },
  { name: "ADS over a cluster left at HTTP/1.1 (gRPC needs HTTP/2)", break: (d) => del(d, "static_resources.clusters[1].typed_extension_protocol_options"), path: "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name", message: /does not speak HTTP\/2/ },
  { name: "ADS pointed at the plugin's HTTP/1.1 control cluster", break: (d) => set(d, "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name", "gateway_control"), path: "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name", message: /"gateway_control" does not speak HTTP\/2/ },
  { name: "CDS over ADS without ads_config", break: (d) => del(d, "dynamic_resources.ads_config"), path: "dynamic_resources.cds_config.ads", message: /ads_config is not set/ },
  { name: "duplicate static cluster names", break: (d) => set(d, "static_resources.clusters[2].name", "gateway_control"), path: "static_resources.clusters[2].name", message: /duplicate static cluster name/ },
];

describe("broken bootstraps fail at the right path", () => {
  test("the unbroken bootstrap passes (baseline)", () => {
    const r = validateBootstrap(bootstrap());
    assert.ok(r.ok, r.errors.map(formatIssue).join("\n"));
  });
  for (const c of bootstrapCases) {
    test(c.name, () => {
      const doc = bootstrap();
      c.break(doc);
      expectError(validateBootstrap(doc), c.path, c.message);
    });
  }
});

const OH = "load_balancing_policy.policies[0].typed_extension_config.typed_config";
const clusterCases: Case[] = [
  { name: "override_host without sources (overlay min_items)", break: (d) => set(d, `${OH}.override_host_sources`, []), path: `${OH}.override_host_sources`, message: /needs at least 1 item/ },
  { name: "override_host without fallback_policy (overlay required)", break: (d) => del(d, `${OH}.fallback_policy`), path: `${OH}.fallback_policy`, message: /missing required field "fallback_policy"/ },
  { name: "unknown field in the override_host source", break: (d) => set(d, `${OH}.override_host_sources[0].headers`, "x"), path: `${OH}.override_host_sources[0].headers`, message: /unknown field "headers" in .*\.OverrideHostSource \(did you mean "header"\?\)/ },
  { name: "unknown field three Any levels deep (fallback round_robin)", break: (d) => set(d, `${OH}.fallback_policy.policies[0].typed_extension_config.typed_config.slow_start`, {}), path: `${OH}.fallback_policy.policies[0].typed_extension_config.typed_config.slow_start`, message: /unknown field "slow_start" in envoy\.extensions\.load_balancing_policies\.round_robin\.v3\.RoundRobin \(did you mean "slow_start_config"\?\)/ },
  { name: "health check without healthy_threshold (required)", break: (d) => del(d, "health_checks[0].healthy_threshold"), path: "health_checks[0].healthy_threshold", message: /missing required field "healthy_threshold"/ },
  { name: "health check without a checker (required oneof)", break: (d) => del(d, "health_checks[0].http_health_check"), path: "health_checks[0]", message: /oneof "health_checker" .* is required/ },
  { name: "health check timeout 0s (gt 0)", break: (d) => set(d, "health_checks[0].timeout", "0s"), path: "health_checks[0].timeout", message: /must be > 0s/ },
  { name: "health check with two checkers", break: (d) => set(d, "health_checks[0].tcp_health_check", {}), path: "health_checks[0]", message: /oneof "health_checker" .* got http_health_check and tcp_health_check/ },
  { name: "panic threshold above 100 % (Percent lte 100)", break: (d) => set(d, "common_lb_config.healthy_panic_threshold.value", 150), path: "common_lb_config.healthy_panic_threshold.value", message: /must be <= 100/ },
  { name: "unhealthy_threshold as a word", break: (d) => set(d, "health_checks[0].unhealthy_threshold", "three"), path: "health_checks[0].unhealthy_threshold", message: /expected an integer/ },
  { name: "EDS config source with an unknown api_type", break: (d) => set(d, "eds_cluster_config.eds_config.api_config_source.api_type", "HTTP"), path: "eds_cluster_config.eds_config.api_config_source.api_type", message: /invalid value "HTTP"/ },
  { name: "expected_statuses range as non-integer strings (int64)", break: (d) => set(d, "health_checks[0].http_health_check.expected_statuses", [{ start: "2xx", end: 300 }]), path: "health_checks[0].http_health_check.expected_statuses[0].start", message: /expected an integer/ },
];

describe("broken per-deployment clusters fail at the right path", () => {
  test("the unbroken cluster passes (baseline), int64 given as string or number", () => {
    const c = deploymentCluster();
    set(c, "health_checks[0].http_health_check.expected_statuses", [{ start: "200", end: 300 }]);
    const r = validateAnyResource(c);
    assert.ok(r.ok, r.errors.map(formatIssue).join("\n"));
  });
  for (const c of clusterCases) {
    test(c.name, () => {
      const doc = deploymentCluster();
      c.break(doc);
      expectError(validateAnyResource(doc), c.path, c.message);
    });
  }
});

test("a deprecated field is a warning, not an error (vendored: Cluster.http2_protocol_options; overlay: PluginConfig.fail_open)", () => {
  const doc = bootstrap();
  set(doc, `${WASM}.config.fail_open`, true);
  set(doc, "static_resources.clusters[0].http2_protocol_options", {});
  const r = validateBootstrap(doc);
  assert.ok(r.ok, r.errors.map(formatIssue).join("\n"));
  assert.ok(r.warnings.some((w) => w.path === `${WASM}.config.fail_open` && /deprecated/.test(w.message)), JSON.stringify(r.warnings));
  assert.ok(r.warnings.some((w) => w.path === "static_resources.clusters[0].http2_protocol_options" && /deprecated/.test(w.message)), JSON.stringify(r.warnings));
});

test("several breakages are all reported", () => {
  const doc = bootstrap();
  set(doc, "static_resource", {});
  set(doc, "static_resources.clusters[0].type", "NOPE");
  set(doc, `${WASM}.config.vm_config.runtimee`, "v8");
  const r = validateBootstrap(doc);
  assert.ok(r.errors.length >= 3, r.errors.map(formatIssue).join("\n"));
  assert.equal(get(bootstrap(), "node.cluster"), "model-gateway"); // fresh copies each time
});
