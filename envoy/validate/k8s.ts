/**
 * Shape checks for the Kubernetes objects in envoy/snippets/ (Istio, Envoy Gateway). These are
 * NOT validated against the CRDs' OpenAPI schemas (not vendored here): we check that the object
 * parses, has apiVersion/kind/metadata.name, that its spec uses only the keys we know for that
 * kind, that the keys we rely on are present, and a few enums/formats. Envoy protos embedded in an
 * Istio EnvoyFilter patch ARE validated against Envoy's protos (MERGE patches as partial messages).
 * A kind we have no check for is an error, so a new snippet cannot slip through unchecked.
 *
 * The core kinds of envoy/kubernetes/ (Namespace, ConfigMap, Secret, Service, Deployment, StatefulSet,
 * PodDisruptionBudget, Kustomization) are checked one object at a time by k8s-core.ts (its header says
 * what is and is not checked), and as a set — the references between them, and the control
 * container's environment parsed by control/src/config.ts — by k8s-set.ts (`checkKubernetesSet`).
 */
import protobuf from "protobufjs";
import { loadSchema, validateMessage, type Issue, type ValidationResult } from "./index.js";
import { checkCoreObject, CORE_KINDS } from "./k8s-core.js";

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const SHA256 = /^[0-9a-f]{64}$/;

interface KindCheck {
  apiVersions: string[];
  specKeys: string[];
  required: string[];
  check?: (spec: Obj, issues: Issue[]) => void;
}

const ENVOY_FILTER_TYPES: Record<string, string> = {
  CLUSTER: "envoy.config.cluster.v3.Cluster",
  LISTENER: "envoy.config.listener.v3.Listener",
  FILTER_CHAIN: "envoy.config.listener.v3.FilterChain",
  NETWORK_FILTER: "envoy.config.listener.v3.Filter",
  HTTP_FILTER: "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
  ROUTE_CONFIGURATION: "envoy.config.route.v3.RouteConfiguration",
  VIRTUAL_HOST: "envoy.config.route.v3.VirtualHost",
  HTTP_ROUTE: "envoy.config.route.v3.Route",
  EXTENSION_CONFIG: "envoy.config.core.v3.TypedExtensionConfig",
  BOOTSTRAP: "envoy.config.bootstrap.v3.Bootstrap",
  LISTENER_FILTER: "envoy.config.listener.v3.ListenerFilter",
};
const ENVOY_FILTER_OPS = ["MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"];

const checks: Record<string, KindCheck> = {
  // Istio: extensions.istio.io/v1alpha1 WasmPlugin
  WasmPlugin: {
    apiVersions: ["extensions.istio.io/v1alpha1"],
    specKeys: ["selector", "targetRef", "targetRefs", "url", "sha256", "imagePullPolicy", "imagePullSecret", "pluginConfig", "pluginName", "phase", "priority", "vmConfig", "match", "type", "failStrategy"],
    required: ["url"],
    check(spec, issues) {
      const url = String(spec.url);
      if (!/^(oci|file|https?):\/\//.test(url)) issues.push({ path: "spec.url", message: "must start with oci://, file://, http:// or https://" });
      if (spec.sha256 !== undefined && !SHA256.test(String(spec.sha256))) issues.push({ path: "spec.sha256", message: "must be 64 lower-case hex characters" });
      enumOf(spec, "phase", ["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"], issues);
      enumOf(spec, "failStrategy", ["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"], issues);
      enumOf(spec, "type", ["HTTP", "NETWORK"], issues);
      if (spec.pluginConfig !== undefined && !isObj(spec.pluginConfig)) issues.push({ path: "spec.pluginConfig", message: "must be an object" });
    },
  },
  // Istio: networking.istio.io EnvoyFilter — patch values are Envoy protos and validated as such.
  EnvoyFilter: {
    apiVersions: ["networking.istio.io/v1alpha3"],
    specKeys: ["workloadSelector", "targetRefs", "configPatches", "priority"],
    required: ["configPatches"],
    check(spec, issues) {
      const patches = Array.isArray(spec.configPatches) ? spec.configPatches : [];
      if (patches.length === 0) issues.push({ path: "spec.configPatches", message: "must be a non-empty list" });
      patches.forEach((p, i) => {
        const path = `spec.configPatches[${i}]`;
        if (!isObj(p)) return void issues.push({ path, message: "must be an object" });
        const applyTo = String(p.applyTo);
        const type = ENVOY_FILTER_TYPES[applyTo];
        if (!type) issues.push({ path: `${path}.applyTo`, message: `unknown applyTo "${applyTo}"` });
        const patch = isObj(p.patch) ? p.patch : undefined;
        if (!patch) return void issues.push({ path: `${path}.patch`, message: "required" });
        const op = String(patch.operation);
        if (!ENVOY_FILTER_OPS.includes(op)) issues.push({ path: `${path}.patch.operation`, message: `must be one of ${ENVOY_FILTER_OPS.join(", ")}` });
        if (op !== "REMOVE" && type) {
          if (patch.value === undefined) return void issues.push({ path: `${path}.patch.value`, message: "required" });
          const r = validateMessage(type, patch.value, { partial: op === "MERGE" });
          for (const e of r.errors) issues.push({ path: `${path}.patch.value${e.path ? "." + e.path : ""}`, message: e.message });
        }
      });
    },
  },
  ServiceEntry: {
    apiVersions: ["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"],
    specKeys: ["hosts", "addresses", "ports", "location", "resolution", "endpoints", "workloadSelector", "exportTo", "subjectAltNames"],
    required: ["hosts"],
    check(spec, issues) {
      if (!Array.isArray(spec.hosts) || spec.hosts.length === 0) issues.push({ path: "spec.hosts", message: "must be a non-empty list" });
      enumOf(spec, "resolution", ["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"], issues);
      enumOf(spec, "location", ["MESH_EXTERNAL", "MESH_INTERNAL"], issues);
    },
  },
  DestinationRule: {
    apiVersions: ["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"],
    specKeys: ["host", "trafficPolicy", "subsets", "exportTo", "workloadSelector"],
    required: ["host"],
  },
  // Envoy Gateway: gateway.envoyproxy.io/v1alpha1
  EnvoyExtensionPolicy: {
    apiVersions: ["gateway.envoyproxy.io/v1alpha1"],
    specKeys: ["targetRef", "targetRefs", "targetSelectors", "wasm", "extProc", "lua"],
    required: [],
    check(spec, issues) {
      if (!spec.targetRef && !spec.targetRefs && !spec.targetSelectors) issues.push({ path: "spec", message: "needs targetRefs (or targetRef/targetSelectors)" });
      const wasm = Array.isArray(spec.wasm) ? spec.wasm : [];
      wasm.forEach((w, i) => {
        const path = `spec.wasm[${i}]`;
        if (!isObj(w)) return void issues.push({ path, message: "must be an object" });
        unknownKeys(w, ["name", "rootID", "code", "config", "failOpen", "priority", "env"], path, issues);
        const code = isObj(w.code) ? w.code : undefined;
        if (!code) return void issues.push({ path: `${path}.code`, message: "required" });
        const type = String(code.type);
        if (type !== "HTTP" && type !== "Image") issues.push({ path: `${path}.code.type`, message: "must be HTTP or Image" });
        const src = type === "HTTP" ? code.http : code.image;
        if (!isObj(src) || typeof src.url !== "string") issues.push({ path: `${path}.code.${type === "HTTP" ? "http" : "image"}.url`, message: "required" });
        else if (src.sha256 !== undefined && !SHA256.test(String(src.sha256))) issues.push({ path: `${path}.code.${type === "HTTP" ? "http" : "image"}.sha256`, message: "must be 64 lower-case hex characters" });
        if (w.config !== undefined && !isObj(w.config)) issues.push({ path: `${path}.config`, message: "must be an object" });
      });
    },
  },
  EnvoyPatchPolicy: {
    apiVersions: ["gateway.envoyproxy.io/v1alpha1"],
    specKeys: ["targetRef", "type", "jsonPatches", "priority"],
    required: ["targetRef", "type", "jsonPatches"],
    check(spec, issues) {
      if (spec.type !== "JSONPatch") issues.push({ path: "spec.type", message: "must be JSONPatch" });
      const patches = Array.isArray(spec.jsonPatches) ? spec.jsonPatches : [];
      patches.forEach((p, i) => {
        const path = `spec.jsonPatches[${i}]`;
        if (!isObj(p)) return void issues.push({ path, message: "must be an object" });
        if (typeof p.type !== "string" || !p.type.startsWith("type.googleapis.com/envoy.")) issues.push({ path: `${path}.type`, message: "must be an Envoy xDS type URL" });
        const op = isObj(p.operation) ? p.operation : undefined;
        if (!op) return void issues.push({ path: `${path}.operation`, message: "required" });
        if (!["add", "remove", "replace", "move", "copy", "test"].includes(String(op.op))) issues.push({ path: `${path}.operation.op`, message: "must be an RFC 6902 op" });
        if (typeof op.path !== "string" && typeof op.jsonPath !== "string") issues.push({ path: `${path}.operation.path`, message: "required (or jsonPath)" });
        // Values of add/replace at a JSON Pointer we can follow through the schema are Envoy protos.
        if ((op.op === "add" || op.op === "replace") && typeof op.path === "string" && typeof p.type === "string" && op.value !== undefined) {
          const target = typeAtPointer(p.type.slice(p.type.lastIndexOf("/") + 1), op.path);
          if (target.error) issues.push({ path: `${path}.operation.path`, message: target.error });
          else if (target.type) {
            const r = validateMessage(target.type, op.value);
            for (const e of r.errors) issues.push({ path: `${path}.operation.value${e.path ? "." + e.path : ""}`, message: e.message });
          }
        }
      });
    },
  },
};

/**
 * The message type found at an RFC 6901 pointer inside a resource of type `resource`; no type when
 * the pointer ends at a scalar or a whole list/map (not checked); or an error.
 */
function typeAtPointer(resource: string, pointer: string): { type?: string; error?: string } {
  const root = loadSchema().root;
  let t: protobuf.Type | undefined;
  try {
    const found = root.lookup(resource);
    t = found instanceof protobuf.Type ? found : undefined;
  } catch {
    t = undefined;
  }
  if (!t) return { error: `unknown resource type ${resource}` };
  if (pointer === "") return { type: resource };
  const segs = pointer.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  let inRepeated = false;
  let inMap = false;
  for (const [i, seg] of segs.entries()) {
    if (inRepeated || inMap) {
      if (inRepeated && !/^(\d+|-)$/.test(seg)) return { error: `"${seg}" is not an index into a repeated field` };
      inRepeated = inMap = false;
      continue;
    }
    if (!t) return {};
    if (t.fullName === ".google.protobuf.Any") {
      // An Any's type is the generated resource's, not the schema's. Known case: a listener network
      // filter's typed_config (Envoy Gateway's HTTP listeners have one, the HttpConnectionManager).
      const before = segs.slice(0, i);
      const inListenerFilter = resource === "envoy.config.listener.v3.Listener" && before.length >= 3 && before[before.length - 3] === "filters" && before[before.length - 1] === "typed_config";
      if (!inListenerFilter) return { error: `cannot follow "${seg}" into a google.protobuf.Any (its type is not known here)` };
      const hcm = root.lookup("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
      if (!(hcm instanceof protobuf.Type)) return { error: "HttpConnectionManager is not in the schema" };
      t = hcm;
    }
    const f: protobuf.Field | undefined = t.fields[seg] ?? t.fieldsArray.find((x) => x.name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()) === seg);
    if (!f) return { error: `no field "${seg}" in ${t.fullName.slice(1)}` };
    f.resolve();
    inRepeated = f.repeated && !f.map;
    inMap = f.map;
    t = f.resolvedType instanceof protobuf.Type ? f.resolvedType : undefined;
  }
  if (inRepeated || inMap) return {}; // a whole list/map: not checked
  return t ? { type: t.fullName.slice(1) } : {};
}

function enumOf(spec: Obj, key: string, values: string[], issues: Issue[]): void {
  if (spec[key] !== undefined && !values.includes(String(spec[key]))) issues.push({ path: `spec.${key}`, message: `must be one of ${values.join(", ")}` });
}

function unknownKeys(o: Obj, allowed: string[], path: string, issues: Issue[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) issues.push({ path: `${path}.${k}`, message: `unknown key "${k}"` });
}

export function checkKubernetesObject(o: Obj): ValidationResult {
  const issues: Issue[] = [];
  const kind = String(o.kind);
  const core = CORE_KINDS[kind];
  if (core) {
    // Core kinds (k8s-core.ts): each knows its own top-level keys (ConfigMap and Secret have no spec).
    if (!core.apiVersions.includes(String(o.apiVersion))) issues.push({ path: "apiVersion", message: `expected one of ${core.apiVersions.join(", ")}` });
    checkCoreObject(o, core, issues);
    for (const i of issues) if (i.path.startsWith(".")) i.path = i.path.slice(1);
    return { ok: issues.length === 0, type: kind, errors: issues, warnings: [] };
  }
  const c = checks[kind];
  if (!c) {
    issues.push({ path: "kind", message: `no shape check for kind "${kind}" (add one to envoy/validate/k8s.ts)` });
    return { ok: false, type: kind, errors: issues, warnings: [] };
  }
  if (!c.apiVersions.includes(String(o.apiVersion))) issues.push({ path: "apiVersion", message: `expected one of ${c.apiVersions.join(", ")}` });
  unknownKeys(o, ["apiVersion", "kind", "metadata", "spec"], "", issues);
  const meta = isObj(o.metadata) ? o.metadata : undefined;
  if (!meta || typeof meta.name !== "string" || meta.name === "") issues.push({ path: "metadata.name", message: "required" });
  const spec = isObj(o.spec) ? o.spec : undefined;
  if (!spec) {
    issues.push({ path: "spec", message: "required" });
  } else {
    unknownKeys(spec, c.specKeys, "spec", issues);
    for (const k of c.required) if (spec[k] === undefined) issues.push({ path: `spec.${k}`, message: "required" });
    c.check?.(spec, issues);
  }
  for (const i of issues) if (i.path.startsWith(".")) i.path = i.path.slice(1);
  return { ok: issues.length === 0, type: kind, errors: issues, warnings: [] };
}
