/**
 * The validator's rules one by one, on small messages: proto3-JSON scalars and well-known types,
 * naming, oneofs, PGV rules, Any/TypedStruct, DiscoveryResponse checks, the document reader and
 * the Kubernetes shape checks (with the Envoy protos embedded in them).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseDocuments, validateDocument } from "../../envoy/validate/documents.js";
import { checkKubernetesObject } from "../../envoy/validate/k8s.js";
import { formatIssue, loadSchema, TYPE_URLS, validateAnyResource, validateDiscoveryResponse, validateMessage, type ValidationResult } from "../../envoy/validate/index.js";
import { lowerCamel } from "../../envoy/validate/walker.js";
import { docs } from "./support.js";

const listing = (r: ValidationResult): string => r.errors.map(formatIssue).join("\n") || "(no errors)";
const ok = (r: ValidationResult): void => assert.ok(r.ok, listing(r));
function fails(r: ValidationResult, path: string, message: RegExp): void {
  assert.ok(!r.ok && r.errors.some((e) => e.path === path && message.test(e.message)), `expected ${path}: ${message}, got:\n${listing(r)}`);
}

const CLUSTER = "envoy.config.cluster.v3.Cluster";
const minimalCluster = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ name: "c", connect_timeout: "1s", ...extra });

describe("schema loading", () => {
  test("loads once, with few vendored files excluded for missing imports", () => {
    const a = loadSchema();
    const t0 = Date.now();
    assert.equal(loadSchema(), a);
    assert.ok(Date.now() - t0 < 5);
    assert.ok(a.excluded.length < 10, a.excluded.join(", "));
    assert.ok(a.excluded.every((f) => /trace|metrics|open_telemetry/.test(f)), a.excluded.join(", "));
  });

  test("unknown message type", () => {
    fails(validateMessage("envoy.config.cluster.v3.Clusterr", {}), "", /unknown message type/);
  });

  test("protoc's json_name rule", () => {
    assert.equal(lowerCamel("typed_extension_protocol_options"), "typedExtensionProtocolOptions");
    assert.equal(lowerCamel("http2_protocol_options"), "http2ProtocolOptions");
    assert.equal(lowerCamel("foo_3_bar"), "foo3Bar");
  });
});

describe("names and structure", () => {
  test("lowerCamelCase JSON names are accepted at every depth", () => {
    ok(validateMessage(CLUSTER, { name: "c", connectTimeout: "1s", loadAssignment: { clusterName: "c", endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: "10.0.0.1", portValue: 80 } } } }] }] } }));
  });

  test("null means unset", () => {
    ok(validateMessage(CLUSTER, minimalCluster({ load_assignment: null, health_checks: null })));
  });

  test("top-level value must be an object", () => {
    fails(validateMessage(CLUSTER, []), "", /expected an object \(envoy\.config\.cluster\.v3\.Cluster\), got an array/);
  });

  test("oneof members named in different styles still count as two", () => {
    fails(validateMessage("envoy.config.route.v3.RouteAction", { cluster: "a", clusterHeader: "x" }), "", /oneof "cluster_specifier"/);
  });

  test("map fields: values validated, keys of the right type", () => {
    fails(
      validateMessage(CLUSTER, minimalCluster({ typed_extension_protocol_options: { "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": { "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", explicit_http_config: { http2_protocol_options: {} }, bogus: 1 } } })),
      'typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].bogus',
      /unknown field "bogus"/,
    );
    fails(validateMessage("envoy.config.core.v3.Metadata", { filter_metadata: { ns: 5 } }), `filter_metadata["ns"]`, /invalid Struct/);
  });

  test("partial mode (EnvoyFilter MERGE) skips required-ness but not unknown fields", () => {
    ok(validateMessage("envoy.config.core.v3.HealthCheck", { interval: "5s" }, { partial: true }));
    fails(validateMessage("envoy.config.core.v3.HealthCheck", { interval: "5s" }), "timeout", /missing required/);
    fails(validateMessage("envoy.config.core.v3.HealthCheck", { intervall: "5s" }, { partial: true }), "intervall", /unknown field/);
  });
});

describe("scalars", () => {
  const sa = (v: Record<string, unknown>) => validateMessage("envoy.config.core.v3.SocketAddress", { address: "10.0.0.1", ...v });
  test("uint32 as number or decimal string; not fractional, negative, or too big", () => {
    ok(sa({ port_value: 80 }));
    ok(sa({ port_value: "80" }));
    fails(sa({ port_value: 80.5 }), "port_value", /expected an integer/);
    fails(sa({ port_value: -1 }), "port_value", /0\.\.4294967295/);
    fails(sa({ port_value: true }), "port_value", /expected an integer/);
  });
  test("int64 as string or number, range checked; unsafe numbers warned", () => {
    const range = (start: unknown) => validateMessage("envoy.type.v3.Int64Range", { start, end: "300" });
    ok(range("200"));
    ok(range(200));
    fails(range("9223372036854775808"), "start", /in -9223372036854775808\.\.9223372036854775807/);
    const r = range(2 ** 60);
    ok(r);
    assert.ok(r.warnings.some((w) => /exceeds 2\^53/.test(w.message)));
  });
  test("double: numbers and the special strings", () => {
    for (const value of [50, "50", 0.5]) ok(validateMessage("envoy.type.v3.Percent", { value }));
    fails(validateMessage("envoy.type.v3.Percent", { value: "half" }), "value", /expected a number/);
  });
  test("bool is only true/false", () => {
    fails(validateMessage("envoy.extensions.wasm.v3.VmConfig", { runtime: "envoy.wasm.runtime.v8", allow_precompiled: "yes" }), "allow_precompiled", /expected true or false/);
  });
  test("bytes must be base64", () => {
    ok(validateMessage("envoy.config.core.v3.DataSource", { inline_bytes: "aGVsbG8=" }));
    fails(validateMessage("envoy.config.core.v3.DataSource", { inline_bytes: "not base64!" }), "inline_bytes", /base64/);
  });
  test("enums by name or by number; unknown number warns unless defined_only", () => {
    ok(validateMessage(CLUSTER, minimalCluster({ type: 0 })));
    ok(validateMessage(CLUSTER, minimalCluster({ lb_policy: "LEAST_REQUEST" })));
    fails(validateMessage(CLUSTER, minimalCluster({ lb_policy: "least_request" })), "lb_policy", /invalid value "least_request"/);
    fails(validateMessage(CLUSTER, minimalCluster({ type: 99 })), "type", /not a defined value/);
  });
});

describe("well-known types", () => {
  const hc = (v: Record<string, unknown>) => validateMessage("envoy.config.core.v3.HealthCheck", { timeout: "1s", interval: "5s", unhealthy_threshold: 3, healthy_threshold: 1, tcp_health_check: {}, ...v });
  test("Duration: seconds with up to 9 decimals", () => {
    for (const d of ["5s", "0.5s", "0.000000001s", "315576000000s"]) ok(hc({ interval: d }));
    for (const d of ["5", "5ms", "1m", "-s", "5.s", " 5s", "315576000001s"]) fails(hc({ interval: d }), "interval", /invalid Duration/);
  });
  test("Duration PGV bounds (BackoffStrategy.base_interval gte 1ms)", () => {
    ok(validateMessage("envoy.config.core.v3.BackoffStrategy", { base_interval: "0.001s" }));
    fails(validateMessage("envoy.config.core.v3.BackoffStrategy", { base_interval: "0.0005s" }), "base_interval", /must be >= 0\.001s/);
  });
  test("UInt32Value wrapper: plain number or string, not an object", () => {
    ok(hc({ unhealthy_threshold: "3" }));
    fails(hc({ unhealthy_threshold: { value: 3 } }), "unhealthy_threshold", /expected an integer/);
  });
  test("Struct, Value, ListValue", () => {
    ok(validateMessage("envoy.config.core.v3.Metadata", { filter_metadata: { ns: { a: [1, "x", null, { b: true }] } } }));
    ok(validateMessage("google.protobuf.Value", null));
    ok(validateMessage("google.protobuf.ListValue", [1, 2]));
    fails(validateMessage("google.protobuf.ListValue", { a: 1 }), "", /invalid ListValue/);
  });
  test("Timestamp, FieldMask, Empty", () => {
    ok(validateMessage("google.protobuf.Timestamp", "2024-06-01T12:00:00.5Z"));
    fails(validateMessage("google.protobuf.Timestamp", "2024-06-01 12:00"), "", /invalid Timestamp/);
    ok(validateMessage("google.protobuf.FieldMask", "a.b,c"));
    fails(validateMessage("google.protobuf.FieldMask", ["a"]), "", /invalid FieldMask/);
    ok(validateAnyResource({ "@type": "type.googleapis.com/google.protobuf.Empty" }));
    fails(validateAnyResource({ "@type": "type.googleapis.com/google.protobuf.Empty", x: 1 }), "", /invalid Empty/);
  });
  test("Any of a WKT carries it in value; Any of a message carries fields inline", () => {
    ok(validateAnyResource({ "@type": "type.googleapis.com/google.protobuf.Duration", value: "1.5s" }));
    fails(validateAnyResource({ "@type": "type.googleapis.com/google.protobuf.Duration", value: "soon" }), "value", /invalid Duration/);
    fails(validateAnyResource({ "@type": "type.googleapis.com/google.protobuf.UInt32Value" }), "", /needs its content in "value"/);
    ok(validateAnyResource({ "@type": "type.googleapis.com/google.protobuf.Struct", value: { any: "thing" } }));
    // any type URL prefix is accepted, only the part after the last "/" names the type
    ok(validateAnyResource({ "@type": "example.com/envoy.extensions.filters.http.router.v3.Router" }));
  });
  test("TypedStruct is unpacked into the message it names", () => {
    const ts = (value: Record<string, unknown>) => ({ "@type": "type.googleapis.com/xds.type.v3.TypedStruct", type_url: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", value });
    ok(validateAnyResource(ts({ suppress_envoy_headers: true })));
    fails(validateAnyResource(ts({ suppress_envoy_header: true })), "value.suppress_envoy_header", /unknown field/);
  });
});

describe("PGV rules", () => {
  test("string min_len / max_bytes, repeated min_items, message required", () => {
    fails(validateMessage("envoy.config.core.v3.HeaderValue", { key: "" }), "key", /must not be empty/);
    fails(validateMessage("envoy.config.core.v3.HeaderValue", { key: "x".repeat(16385) }), "key", /at most 16384 bytes/);
    fails(validateMessage("envoy.config.route.v3.VirtualHost", { name: "v" }), "domains", /needs at least 1 item/);
    fails(validateMessage("envoy.config.core.v3.TypedExtensionConfig", { name: "x" }), "typed_config", /missing required field "typed_config"/);
  });
  test("numeric bounds on wrappers (RetryBudget min_retry_concurrency) and plain fields", () => {
    ok(validateMessage("envoy.config.core.v3.SocketAddress", { address: "a", port_value: 65535 }));
    fails(validateMessage("envoy.config.core.v3.SocketAddress", { address: "a", port_value: 65536 }), "port_value", /<= 65535/);
    fails(validateMessage("envoy.type.v3.Percent", { value: -1 }), "value", />= 0/);
  });
  test("oneof (validate.required) on an empty message", () => {
    fails(validateMessage("envoy.config.core.v3.DataSource", {}), "", /oneof "specifier" .* is required/);
  });
});

describe("xDS DiscoveryResponse (what the control service will serve)", () => {
  const cluster = docs("envoy/per-deployment-cluster.example.yaml")[0]!;
  const cla = docs("envoy/per-deployment-cluster.example.yaml")[1]!;
  test("a CDS response with our example cluster, and an EDS response with its endpoints", () => {
    ok(validateDiscoveryResponse({ version_info: "7", type_url: TYPE_URLS.cluster, resources: [cluster] }));
    ok(validateDiscoveryResponse({ versionInfo: "7", typeUrl: TYPE_URLS.clusterLoadAssignment, resources: [cla], nonce: "n1" }));
  });
  test("a resource of another type than type_url", () => {
    fails(validateDiscoveryResponse({ version_info: "7", type_url: TYPE_URLS.cluster, resources: [cla] }), "resources[0].@type", /in a response of type_url/);
  });
  test("missing type_url, unknown resource field, unknown @type", () => {
    fails(validateDiscoveryResponse({ version_info: "1", resources: [] }), "type_url", /must name its type_url/);
    fails(validateDiscoveryResponse({ version_info: "1", type_url: TYPE_URLS.cluster, resources: [{ ...cluster, lb_polcy: "RANDOM" }] }), "resources[0].lb_polcy", /unknown field "lb_polcy" .* \(did you mean "lb_policy"\?\)/);
    fails(validateDiscoveryResponse({ version_info: "1", type_url: TYPE_URLS.cluster, resources: [{ ...cluster, "@type": "type.googleapis.com/envoy.config.cluster.v3.Clustr" }] }), "resources[0].@type", /unknown @type/);
  });
});

describe("document reader", () => {
  test("validate-as directives, @type documents, bootstraps, Kubernetes objects", () => {
    const parsed = parseDocuments(
      ["# validate-as: envoy.config.route.v3.Route", "match: {prefix: /}", "direct_response: {status: 200}", "---", "# header", "", "# validate-as: envoy.config.core.v3.HealthCheck partial", "interval: 5s", "---", '"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router', "---", "admin: {}", "---", "apiVersion: networking.istio.io/v1", "kind: DestinationRule", "metadata: {name: x}", "spec: {host: a}", "---", ""].join("\n"),
    );
    assert.equal(parsed.length, 5);
    assert.equal(parsed[0]!.validateAs, "envoy.config.route.v3.Route");
    assert.equal(parsed[1]!.validateAs, "envoy.config.core.v3.HealthCheck");
    assert.equal(parsed[1]!.partial, true);
    const kinds = parsed.map((d) => validateDocument(d));
    assert.deepEqual(
      kinds.map((k) => [k.kind, k.result.ok]),
      [
        ["envoy.config.route.v3.Route", true],
        ["envoy.config.core.v3.HealthCheck (partial)", true],
        ["envoy.extensions.filters.http.router.v3.Router", true],
        ["envoy.config.bootstrap.v3.Bootstrap", true],
        ["Kubernetes DestinationRule (shape check)", true],
      ],
    );
  });
  test("YAML errors are reported, duplicate keys included", () => {
    assert.throws(() => parseDocuments("a: 1\na: 2\n"), /unique/);
    assert.throws(() => parseDocuments("a: [1\n"), /document 1/);
  });
});

describe("Kubernetes shape checks", () => {
  const [wasmPlugin, routing, depFilter] = docs("envoy/snippets/istio.yaml") as Record<string, any>[];
  const [extPolicy, patchPolicy] = docs("envoy/snippets/envoy-gateway.yaml") as Record<string, any>[];
  const check = (o: Record<string, any>) => checkKubernetesObject(o);

  test("our snippets pass", () => {
    for (const o of [wasmPlugin, routing, depFilter, extPolicy, patchPolicy]) ok(check(o!));
  });
  test("WasmPlugin: sha256 format, phase, failStrategy, unknown spec key, missing url", () => {
    const w = structuredClone(wasmPlugin!);
    w.spec.sha256 = "abc";
    w.spec.phase = "ROUTER";
    w.spec.failStrategy = "FAIL_CLOSED";
    w.spec.config = {};
    delete w.spec.url;
    const r = check(w);
    fails(r, "spec.sha256", /64 lower-case hex/);
    fails(r, "spec.phase", /one of/);
    fails(r, "spec.failStrategy", /FAIL_CLOSE, FAIL_OPEN/);
    fails(r, "spec.config", /unknown key/);
    fails(r, "spec.url", /required/);
  });
  test("EnvoyFilter: embedded Envoy protos are validated (ADD/INSERT fully, MERGE partially)", () => {
    const f = structuredClone(routing!);
    f.spec.configPatches[1].patch.value.route.cluster = "also";
    f.spec.configPatches[0].patch.value.typed_config.mutations.request_mutation = [];
    const r = check(f);
    fails(r, "spec.configPatches[1].patch.value.route", /oneof "cluster_specifier"/);
    fails(r, "spec.configPatches[0].patch.value.typed_config.mutations.request_mutation", /unknown field .* \(did you mean "request_mutations"\?\)/);
    const d = structuredClone(depFilter!);
    d.spec.configPatches[0].patch.value.health_checks[0].interval = "5";
    d.spec.configPatches[0].applyTo = "CLUSTERS";
    const r2 = check(d);
    fails(r2, "spec.configPatches[0].applyTo", /unknown applyTo/);
  });
  test("EnvoyFilter MERGE into a cluster: unknown field and bad duration are caught", () => {
    const d = structuredClone(depFilter!);
    d.spec.configPatches[0].patch.value.health_checks[0].interval = "5";
    d.spec.configPatches[0].patch.value.common_lb_config.panic_threshold = 0;
    const r = check(d);
    fails(r, "spec.configPatches[0].patch.value.health_checks[0].interval", /invalid Duration/);
    fails(r, "spec.configPatches[0].patch.value.common_lb_config.panic_threshold", /unknown field/);
  });
  test("EnvoyPatchPolicy: values validated at their JSON Pointer; bad pointers refused", () => {
    const p = structuredClone(patchPolicy!);
    p.spec.jsonPatches[2].operation.value.policies[0].typed_extension_config.typed_config.override_host_sources = [];
    p.spec.jsonPatches[1].operation.path = "/virtual_hosts/0/routez/0";
    const r = check(p);
    fails(r, "spec.jsonPatches[2].operation.value.policies[0].typed_extension_config.typed_config.override_host_sources", /needs at least 1 item/);
    fails(r, "spec.jsonPatches[1].operation.path", /no field "routez" in envoy\.config\.route\.v3\.VirtualHost/);
  });
  test("EnvoyExtensionPolicy: code type and sha256", () => {
    const e = structuredClone(extPolicy!);
    e.spec.wasm[0].code.type = "Http";
    const r = check(e);
    fails(r, "spec.wasm[0].code.type", /HTTP or Image/);
  });
  test("unknown kinds are refused rather than passed unchecked", () => {
    // (ConfigMap, Deployment … have checks now, envoy/validate/k8s-core.ts: a kind we still do not check.)
    fails(check({ apiVersion: "batch/v1", kind: "CronJob", metadata: { name: "x" }, spec: {} }), "kind", /no shape check/);
  });
});
