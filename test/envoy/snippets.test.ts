// Issue 16 item 6: the Envoy Gateway snippet strips the internal routing headers before the plugin
// (as envoy/bootstrap.yaml does), so failOpen cannot let a client's x-gateway-cluster pick a cluster.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { checkKubernetesObject } from "../../envoy/validate/k8s.js";
import { bootstrap, docs } from "./support.js";

const ROUTING_HEADERS = ["x-gateway-cluster", "x-gateway-destination-endpoint", "x-model-deployment", "x-model-instance"];
const HEADER_MUTATION = "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation";

/** The headers a header_mutation filter config removes from requests. */
const removed = (typedConfig: Record<string, any>): string[] => (typedConfig.mutations?.request_mutations ?? []).map((m: { remove?: string }) => m.remove).filter(Boolean);

describe("envoy/snippets/envoy-gateway.yaml", () => {
  const [extPolicy, patchPolicy] = docs("envoy/snippets/envoy-gateway.yaml");

  test("the four routing headers are the ones envoy/bootstrap.yaml strips", () => {
    const hcm = bootstrap().static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    const filters = hcm.http_filters as Record<string, any>[];
    const strip = filters.findIndex((f) => f.typed_config?.["@type"] === HEADER_MUTATION);
    assert.ok(strip >= 0 && strip < filters.findIndex((f) => f.name === "envoy.filters.http.wasm"));
    assert.deepEqual(removed(filters[strip]!.typed_config).sort(), [...ROUTING_HEADERS].sort());
  });

  test("a listener patch puts a header_mutation removing all four first in the HTTP filter chain (before the wasm filter)", () => {
    assert.equal(extPolicy!.kind, "EnvoyExtensionPolicy");
    assert.ok(extPolicy!.spec.wasm.length > 0, "the plugin is a wasm filter of the EnvoyExtensionPolicy");
    assert.equal(patchPolicy!.kind, "EnvoyPatchPolicy");
    // Same Gateway as the wasm policy.
    assert.deepEqual(patchPolicy!.spec.targetRef, extPolicy!.spec.targetRefs[0]);
    const strips = (patchPolicy!.spec.jsonPatches as Record<string, any>[]).filter(
      (p) => p.type === "type.googleapis.com/envoy.config.listener.v3.Listener" && p.operation?.value?.typed_config?.["@type"] === HEADER_MUTATION,
    );
    assert.equal(strips.length, 1, "one listener patch adds the header_mutation filter");
    const op = strips[0]!.operation;
    assert.equal(op.op, "add");
    // Index 0 of the HttpConnectionManager's http_filters: ahead of every filter Envoy Gateway
    // generates, the EnvoyExtensionPolicy's wasm filter included (and never disabled per route).
    assert.match(op.path, /^\/(default_filter_chain|filter_chains\/\d+)\/filters\/0\/typed_config\/http_filters\/0$/);
    assert.equal(op.value.name, "envoy.filters.http.header_mutation");
    assert.equal(op.value.disabled, undefined);
    assert.deepEqual(removed(op.value.typed_config).sort(), [...ROUTING_HEADERS].sort());
  });

  test("failOpen stays only together with the strip", () => {
    const failOpen = extPolicy!.spec.wasm.some((w: Record<string, any>) => w.failOpen === true);
    const strips = JSON.stringify(patchPolicy!.spec.jsonPatches).includes(HEADER_MUTATION);
    assert.ok(!failOpen || strips);
  });

  test("both documents validate, the header_mutation value against Envoy's protos", () => {
    for (const d of [extPolicy!, patchPolicy!]) {
      const r = checkKubernetesObject(d);
      assert.ok(r.ok, JSON.stringify(r.errors));
    }
    // The value really is checked at its pointer (through the listener filter's typed_config).
    const i = (patchPolicy!.spec.jsonPatches as Record<string, any>[]).findIndex((p) => p.operation?.value?.typed_config?.["@type"] === HEADER_MUTATION);
    const bad = structuredClone(patchPolicy!);
    bad.spec.jsonPatches[i].operation.value.typed_config.mutations = { request_mutation: [{ remove: "x-gateway-cluster" }] };
    const r = checkKubernetesObject(bad);
    assert.ok(!r.ok && r.errors.some((e) => e.path === `spec.jsonPatches[${i}].operation.value.typed_config.mutations.request_mutation`), JSON.stringify(r.errors));
    const badPath = structuredClone(patchPolicy!);
    badPath.spec.jsonPatches[i].operation.path = "/default_filter_chain/filters/0/typed_config/http_filterz/0";
    assert.ok(checkKubernetesObject(badPath).errors.some((e) => /no field "http_filterz" in .*HttpConnectionManager/.test(e.message)));
    // An Any whose type is not known from the pointer is still refused rather than passed unchecked.
    const unknownAny = structuredClone(patchPolicy!);
    unknownAny.spec.jsonPatches[i].operation.path = "/listener_filters/0/typed_config/foo";
    assert.ok(checkKubernetesObject(unknownAny).errors.some((e) => /google\.protobuf\.Any/.test(e.message)));
  });
});
