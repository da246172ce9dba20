/**
 * Checks over a SET of Kubernetes objects applied together (a kustomization's resources): every
 * object alone (k8s.ts / k8s-core.ts), then what refers to what.
 *
 * CHECKED:
 *   - each namespaced object's namespace is a Namespace of the set; with a kustomization `namespace`,
 *     the objects' own metadata.namespace (kept so `kubectl apply -f` lands in the same place) equals it;
 *     no two objects of one kind share a namespace and name;
 *   - env `configMapKeyRef` / `secretKeyRef` name a ConfigMap / Secret of the set in the same namespace
 *     that has that key (unless `optional: true`); `envFrom` and configMap/secret volumes (and their
 *     `items[].key`) name existing objects;
 *   - a Service selects the pods of at least one workload, and each of its targetPorts (by name, or by
 *     number; the port itself when absent) is a port of those pods' containers;
 *   - a StatefulSet's serviceName is a headless Service of the set selecting its pods;
 *   - a PodDisruptionBudget selects the pods of at least one workload and still lets one of them be
 *     evicted (minAvailable below its replicas);
 *   - the control service (a container named `control`): its environment — envFrom and env merged as
 *     the kubelet does (env wins), Secret values decoded, fieldRefs given a sample value — is parsed by
 *     control/src/config.ts's own `loadConfig`; every issue it reports is an error here. Then: it listens
 *     beyond loopback; CONTROL_PORT (and CONTROL_XDS_GRPC_PORT when set) are container ports; the readiness
 *     probe is `GET /healthz` on CONTROL_PORT; the liveness probe is NOT /healthz (it answers 503 while
 *     Redis is away: every replica would be restarted, and each still serves its last table meanwhile);
 *     admin and plugin tokens are configured (else each replica generates its own admin token, and no
 *     plugin can authenticate); every REDIS_SENTINELS host that is a cluster DNS name resolves to a
 *     Service of the set (`<svc>[.<ns>[.svc[.cluster.local]]]`) or to a pod of a StatefulSet behind a
 *     headless one (`<sts>-<ordinal>.<svc>.<ns>…`, ordinal below its replicas), on a port it serves.
 *
 * NOT CHECKED: anything a real cluster decides (admission, quotas, storage classes, DNS suffixes other
 * than cluster.local, network policies), references to objects outside the set, Secret values beyond
 * what the control service's own parser refuses (placeholders pass: replace them).
 */
import { loadConfig } from "../../control/src/config.js";
import { checkKubernetesObject } from "./k8s.js";
import { findPort, isObj, NAMESPACED, selects, type Obj } from "./k8s-core.js";
import type { Issue } from "./walker.js";

export interface SetEntry {
  /** Where the object comes from, e.g. `control.yaml#4`. */
  source: string;
  value: Obj;
}

export interface SetOptions {
  /** A kustomization's `namespace`: every namespaced object ends up there. */
  namespace?: string;
}

interface Item {
  label: string;
  kind: string;
  name: string;
  ns: string;
  o: Obj;
}

/** The container named this is the control service; its env is checked with control/src/config.ts. */
export const CONTROL_CONTAINER = "control";

const WORKLOADS = new Set(["Deployment", "StatefulSet"]);

const meta = (o: Obj): Obj => (isObj(o.metadata) ? o.metadata : {});
const str = (v: unknown): string => (typeof v === "string" ? v : "");

/** A Secret's or ConfigMap's key → value (Secret data base64-decoded, stringData winning). */
function dataOf(o: Obj): Map<string, string> {
  const out = new Map<string, string>();
  if (isObj(o.data)) for (const [k, v] of Object.entries(o.data)) if (typeof v === "string") out.set(k, o.kind === "Secret" ? Buffer.from(v, "base64").toString("utf8") : v);
  if (o.kind === "Secret" && isObj(o.stringData)) for (const [k, v] of Object.entries(o.stringData)) if (typeof v === "string") out.set(k, v);
  if (o.kind === "ConfigMap" && isObj(o.binaryData)) for (const k of Object.keys(o.binaryData)) out.set(k, "");
  return out;
}

const podSpec = (w: Obj): Obj => {
  const t = isObj(w.spec) && isObj(w.spec.template) ? w.spec.template : {};
  return isObj(t.spec) ? t.spec : {};
};
const podLabels = (w: Obj): Obj => {
  const t = isObj(w.spec) && isObj(w.spec.template) ? w.spec.template : {};
  return isObj(t.metadata) && isObj(t.metadata.labels) ? t.metadata.labels : {};
};
const containersOf = (w: Obj): Obj[] => {
  const p = podSpec(w);
  return Array.isArray(p.containers) ? p.containers.filter(isObj) : [];
};
const replicasOf = (w: Obj): number => (isObj(w.spec) && typeof w.spec.replicas === "number" ? w.spec.replicas : 1);

function toItem(e: SetEntry, opts: SetOptions): Item {
  const kind = str(e.value.kind);
  const name = str(meta(e.value).name);
  const ns = NAMESPACED.has(kind) ? opts.namespace || str(meta(e.value).namespace) || "default" : "";
  return { label: `${e.source} ${kind}/${name || "?"}`, kind, name, ns, o: e.value };
}

const finder = (items: Item[]) => (kind: string, ns: string, name: string): Item | undefined => items.find((i) => i.kind === kind && i.ns === ns && i.name === name);

/** The environment of every control container of the set, as the kubelet would build it (for tests and tools). */
export function controlEnvironments(entries: SetEntry[], opts: SetOptions = {}): { workload: string; env: Record<string, string> }[] {
  const items = entries.filter((e) => e.value.kind !== "Kustomization").map((e) => toItem(e, opts));
  const out: { workload: string; env: Record<string, string> }[] = [];
  for (const w of items.filter((i) => WORKLOADS.has(i.kind))) {
    for (const c of containersOf(w.o)) {
      if (c.name !== CONTROL_CONTAINER) continue;
      const env: Record<string, string> = {};
      for (const [k, v] of containerEnv(w, c, finder(items))) env[k] = v.value;
      out.push({ workload: `${w.kind}/${w.name}`, env });
    }
  }
  return out;
}

export function checkKubernetesSet(entries: SetEntry[], opts: SetOptions = {}): Issue[] {
  const issues: Issue[] = [];
  const items: Item[] = [];
  for (const e of entries) {
    const kind = str(e.value.kind);
    const name = str(meta(e.value).name);
    const label = `${e.source} ${kind}/${name || "?"}`;
    for (const i of checkKubernetesObject(e.value).errors) issues.push({ path: `${label}: ${i.path}`, message: i.message });
    if (kind === "Kustomization") {
      issues.push({ path: `${label}: kind`, message: "a Kustomization among the resources: list its folder's files instead (nested kustomizations are not followed here)" });
      continue;
    }
    const own = str(meta(e.value).namespace);
    if (opts.namespace && own && own !== opts.namespace) issues.push({ path: `${label}: metadata.namespace`, message: `"${own}", but the kustomization puts it in "${opts.namespace}" (kubectl apply -f would not)` });
    items.push(toItem(e, opts));
  }
  const at = (it: Item, path: string, message: string): void => void issues.push({ path: `${it.label}: ${path}`, message });

  // Names, namespaces.
  const seen = new Set<string>();
  for (const it of items) {
    const key = `${it.kind}/${it.ns}/${it.name}`;
    if (seen.has(key)) at(it, "metadata.name", `a second ${it.kind} "${it.name}" in namespace "${it.ns}"`);
    seen.add(key);
    if (it.ns && !items.some((n) => n.kind === "Namespace" && n.name === it.ns)) at(it, "metadata.namespace", `namespace "${it.ns}" is not created by this set (add a Namespace)`);
  }
  const find = finder(items);
  const workloads = items.filter((i) => WORKLOADS.has(i.kind));

  // References from pods to ConfigMaps and Secrets.
  for (const w of workloads) {
    const pod = podSpec(w.o);
    for (const list of ["initContainers", "containers"]) {
      const cs = Array.isArray(pod[list]) ? (pod[list] as unknown[]) : [];
      cs.forEach((c, ci) => {
        if (!isObj(c)) return;
        const cp = `spec.template.spec.${list}[${ci}]`;
        (Array.isArray(c.env) ? c.env : []).forEach((e, i) => {
          if (!isObj(e) || !isObj(e.valueFrom)) return;
          for (const [refKey, kind] of [["configMapKeyRef", "ConfigMap"], ["secretKeyRef", "Secret"]] as const) {
            const ref = e.valueFrom[refKey];
            if (!isObj(ref) || ref.optional === true) continue;
            const target = find(kind, w.ns, str(ref.name));
            const p = `${cp}.env[${i}].valueFrom.${refKey}`;
            if (!target) at(w, `${p}.name`, `no ${kind} "${str(ref.name)}" in namespace "${w.ns}" in this set`);
            else if (!dataOf(target.o).has(str(ref.key))) at(w, `${p}.key`, `${kind} "${target.name}" (${target.label.split(" ")[0]}) has no key "${str(ref.key)}"`);
          }
        });
        (Array.isArray(c.envFrom) ? c.envFrom : []).forEach((e, i) => {
          if (!isObj(e)) return;
          for (const [refKey, kind] of [["configMapRef", "ConfigMap"], ["secretRef", "Secret"]] as const) {
            const ref = e[refKey];
            if (isObj(ref) && ref.optional !== true && !find(kind, w.ns, str(ref.name))) at(w, `${cp}.envFrom[${i}].${refKey}.name`, `no ${kind} "${str(ref.name)}" in namespace "${w.ns}" in this set`);
          }
        });
      });
    }
    (Array.isArray(pod.volumes) ? pod.volumes : []).forEach((v, i) => {
      if (!isObj(v)) return;
      for (const [src, kind, nameKey] of [["configMap", "ConfigMap", "name"], ["secret", "Secret", "secretName"]] as const) {
        const ref = v[src];
        if (!isObj(ref) || ref.optional === true) continue;
        const target = find(kind, w.ns, str(ref[nameKey]));
        const p = `spec.template.spec.volumes[${i}].${src}`;
        if (!target) { at(w, `${p}.${nameKey}`, `no ${kind} "${str(ref[nameKey])}" in namespace "${w.ns}" in this set`); continue; }
        const keys = dataOf(target.o);
        (Array.isArray(ref.items) ? ref.items : []).forEach((it, j) => {
          if (isObj(it) && !keys.has(str(it.key))) at(w, `${p}.items[${j}].key`, `${kind} "${target.name}" has no key "${str(it.key)}"`);
        });
      }
    });
  }

  // Services → pods and their ports.
  for (const s of items.filter((i) => i.kind === "Service")) {
    const spec = isObj(s.o.spec) ? s.o.spec : {};
    if (!isObj(spec.selector)) continue; // a Service without selector: endpoints managed elsewhere
    const selected = workloads.filter((w) => w.ns === s.ns && selects({ matchLabels: spec.selector }, podLabels(w.o)));
    if (selected.length === 0) { at(s, "spec.selector", `selects no pods of a Deployment or StatefulSet in namespace "${s.ns}"`); continue; }
    (Array.isArray(spec.ports) ? spec.ports : []).forEach((p, i) => {
      if (!isObj(p)) return;
      const target = (p.targetPort ?? p.port) as string | number;
      for (const w of selected) {
        if (!containersOf(w.o).some((c) => findPort(c, target))) at(s, `spec.ports[${i}].targetPort`, `${typeof target === "string" ? `no container port named "${target}"` : `no container port ${target}`} on the pods of ${w.kind} "${w.name}"`);
      }
    });
  }

  // StatefulSet → its headless Service.
  for (const w of workloads.filter((i) => i.kind === "StatefulSet")) {
    const svcName = str(isObj(w.o.spec) ? w.o.spec.serviceName : undefined);
    if (!svcName) continue;
    const svc = find("Service", w.ns, svcName);
    if (!svc) { at(w, "spec.serviceName", `no Service "${svcName}" in namespace "${w.ns}" in this set (the pods' DNS names come from it)`); continue; }
    const sspec = isObj(svc.o.spec) ? svc.o.spec : {};
    if (sspec.clusterIP !== "None") at(w, "spec.serviceName", `Service "${svcName}" is not headless (clusterIP: None): the pods get no stable DNS names`);
    if (!selects({ matchLabels: sspec.selector }, podLabels(w.o))) at(w, "spec.serviceName", `Service "${svcName}" does not select this StatefulSet's pods`);
  }

  // PodDisruptionBudgets → workloads.
  for (const b of items.filter((i) => i.kind === "PodDisruptionBudget")) {
    const spec = isObj(b.o.spec) ? b.o.spec : {};
    const selected = workloads.filter((w) => w.ns === b.ns && selects(spec.selector, podLabels(w.o)));
    if (selected.length === 0) { at(b, "spec.selector", `selects no pods of a Deployment or StatefulSet in namespace "${b.ns}"`); continue; }
    const total = selected.reduce((n, w) => n + replicasOf(w.o), 0);
    const min = spec.minAvailable;
    if ((typeof min === "number" && min >= total) || min === "100%") at(b, "spec.minAvailable", `${String(min)} of ${total} pods: no pod can ever be evicted, node drains hang`);
  }

  for (const w of workloads) checkControl(w, items, find, issues);
  return issues;
}

/** The control container's env as the kubelet builds it, with where each value came from. */
function containerEnv(w: Item, c: Obj, find: (k: string, ns: string, n: string) => Item | undefined): Map<string, { value: string; from: string }> {
  const env = new Map<string, { value: string; from: string }>();
  for (const e of Array.isArray(c.envFrom) ? c.envFrom.filter(isObj) : []) {
    const prefix = str(e.prefix);
    for (const [refKey, kind] of [["configMapRef", "ConfigMap"], ["secretRef", "Secret"]] as const) {
      const ref = e[refKey];
      if (!isObj(ref)) continue;
      const t = find(kind, w.ns, str(ref.name));
      if (t) for (const [k, v] of dataOf(t.o)) env.set(prefix + k, { value: v, from: `${kind} ${t.name} key ${k}` });
    }
  }
  for (const e of Array.isArray(c.env) ? c.env.filter(isObj) : []) {
    const name = str(e.name);
    if (typeof e.value === "string") env.set(name, { value: e.value, from: "env value" });
    else if (isObj(e.valueFrom)) {
      const vf = e.valueFrom;
      for (const [refKey, kind] of [["configMapKeyRef", "ConfigMap"], ["secretKeyRef", "Secret"]] as const) {
        const ref = vf[refKey];
        if (!isObj(ref)) continue;
        const v = find(kind, w.ns, str(ref.name)) ? dataOf(find(kind, w.ns, str(ref.name))!.o).get(str(ref.key)) : undefined;
        if (v !== undefined) env.set(name, { value: v, from: `${kind} ${str(ref.name)} key ${str(ref.key)}` });
      }
      if (isObj(vf.fieldRef)) {
        const fp = str(vf.fieldRef.fieldPath);
        const sample = fp === "metadata.name" ? (w.kind === "StatefulSet" ? `${w.name}-0` : `${w.name}-5d8f7c9b6-x4k2q`) : fp === "metadata.namespace" ? w.ns : fp === "status.podIP" ? "10.0.0.10" : "sample";
        env.set(name, { value: sample, from: `fieldRef ${fp} (sample value)` });
      }
    } else env.set(name, { value: "", from: "env" });
  }
  return env;
}

function checkControl(w: Item, items: Item[], find: (k: string, ns: string, n: string) => Item | undefined, issues: Issue[]): void {
  containersOf(w.o).forEach((c, ci) => {
    if (c.name !== CONTROL_CONTAINER) return;
    const cp = `spec.template.spec.containers[${ci}]`;
    const at = (path: string, message: string): void => void issues.push({ path: `${w.label}: ${cp}${path}`, message });
    const env = containerEnv(w, c, find);
    const plain: Record<string, string> = {};
    for (const [k, v] of env) plain[k] = v.value;
    const loaded = loadConfig(plain);
    if (!loaded.ok) {
      for (const i of loaded.issues) {
        const name = i.path.split(".")[0] ?? "";
        at(`.env["${name}"]`, `control/src/config.ts refuses ${i.path || "the environment"}${env.has(name) ? ` (from ${env.get(name)!.from})` : ""}: ${i.message}`);
      }
      return;
    }
    const cfg = loaded.config;
    if (/^(127\.|::1$|localhost$)/.test(cfg.host)) at(`.env["CONTROL_HOST"]`, `${cfg.host} is loopback: the kubelet's probes and the Service reach the pod's address (use 0.0.0.0)`);
    if (cfg.generatedAdminToken) at(`.env["CONTROL_ADMIN_TOKENS"]`, "no admin token: every replica would generate its own (set CONTROL_ADMIN_TOKENS from a Secret)");
    if (cfg.tokens.plugin.length === 0) at(`.env["CONTROL_PLUGIN_TOKENS"]`, "no plugin token: the data planes' plugins cannot fetch the routing table");
    if (!findPort(c, cfg.port)) at(".ports", `no container port ${cfg.port} (CONTROL_PORT)`);
    if (cfg.xdsGrpc && !findPort(c, cfg.xdsGrpc.port)) at(".ports", `no container port ${cfg.xdsGrpc.port} (CONTROL_XDS_GRPC_PORT)`);
    const portNumber = (ref: unknown): number | undefined => {
      if (typeof ref === "number") return ref;
      const p = typeof ref === "string" ? findPort(c, ref) : undefined;
      return p && typeof p.containerPort === "number" ? p.containerPort : undefined;
    };
    const rp = isObj(c.readinessProbe) ? c.readinessProbe : undefined;
    const rGet = rp && isObj(rp.httpGet) ? rp.httpGet : undefined;
    if (!rGet) at(".readinessProbe.httpGet", "the control service's readiness is GET /healthz on CONTROL_PORT");
    else {
      if (rGet.path !== "/healthz") at(".readinessProbe.httpGet.path", `"${String(rGet.path)}": the control service's readiness is /healthz (503 while it cannot reach Redis)`);
      if (portNumber(rGet.port) !== cfg.port) at(".readinessProbe.httpGet.port", `${String(rGet.port)} is not CONTROL_PORT (${cfg.port})`);
    }
    const lp = isObj(c.livenessProbe) ? c.livenessProbe : undefined;
    const lGet = lp && isObj(lp.httpGet) ? lp.httpGet : undefined;
    if (lGet && String(lGet.path).split("?")[0] === "/healthz") at(".livenessProbe.httpGet.path", "/healthz answers 503 while Redis is away: a Redis outage would restart every replica (each keeps serving its last table meanwhile); probe a path that does not depend on Redis, e.g. /openapi.json");
    if (cfg.redis.kind === "sentinel") {
      cfg.redis.sentinels.forEach((s, i) => {
        const problem = clusterHostProblem(s.host, s.port, w.ns, items, find);
        if (problem) at(`.env["REDIS_SENTINELS"]`, `sentinel ${i + 1} (${s.host}:${s.port}): ${problem}`);
      });
    }
  });
}

/**
 * A cluster DNS name → null when it resolves in the set to something serving `port`, else the problem.
 * Names outside the cluster (IPs, other suffixes) are not ours to check: null.
 */
function clusterHostProblem(host: string, port: number, fromNs: string, items: Item[], find: (k: string, ns: string, n: string) => Item | undefined): string | null {
  let rest: string;
  if (host.endsWith(".svc.cluster.local")) rest = host.slice(0, -".svc.cluster.local".length);
  else if (host.endsWith(".svc")) rest = host.slice(0, -".svc".length);
  else if (!host.includes(".") && !/^[\d:]/.test(host)) rest = host;
  else return null;
  const parts = rest.split(".");
  if (parts.length === 1 || parts.length === 2) {
    const [svcName, ns = fromNs] = parts as [string, string?];
    const svc = find("Service", ns, svcName);
    if (!svc) return `no Service "${svcName}" in namespace "${ns}" in this set`;
    const ports = isObj(svc.o.spec) && Array.isArray(svc.o.spec.ports) ? svc.o.spec.ports.filter(isObj) : [];
    return ports.some((p) => p.port === port) ? null : `Service "${svcName}" has no port ${port}`;
  }
  if (parts.length === 3) {
    const [pod, svcName, ns] = parts as [string, string, string];
    const svc = find("Service", ns, svcName);
    if (!svc) return `no Service "${svcName}" in namespace "${ns}" in this set`;
    if (!isObj(svc.o.spec) || svc.o.spec.clusterIP !== "None") return `Service "${svcName}" is not headless: pods get no DNS names under it`;
    const m = /^(.+)-(\d+)$/.exec(pod);
    const sts = m ? items.find((i) => i.kind === "StatefulSet" && i.ns === ns && i.name === m[1] && isObj(i.o.spec) && i.o.spec.serviceName === svcName) : undefined;
    if (!m || !sts) return `"${pod}" is not a pod of a StatefulSet governed by Service "${svcName}"`;
    if (Number(m[2]) >= replicasOf(sts.o)) return `StatefulSet "${sts.name}" has ${replicasOf(sts.o)} replicas: no pod ${pod}`;
    return containersOf(sts.o).some((c) => findPort(c, port)) ? null : `no container of StatefulSet "${sts.name}" declares port ${port}`;
  }
  return `not a Service or pod name (<svc>.<ns>.svc.cluster.local or <pod>.<svc>.<ns>.svc.cluster.local)`;
}
