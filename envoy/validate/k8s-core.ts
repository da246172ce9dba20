/**
 * Hand-written checks for the core Kubernetes kinds of envoy/kubernetes/: v1 Namespace, ConfigMap,
 * Secret, Service; apps/v1 Deployment, StatefulSet; policy/v1 PodDisruptionBudget; kustomize's
 * Kustomization. One object at a time here; the references between objects are in k8s-set.ts.
 *
 * CHECKED: apiVersion per kind; allowed keys at the top level, in metadata, in spec, in the pod
 * template and pod spec, in containers, ports, env/envFrom, probes, volume mounts, volumes, resources
 * and security contexts (an unknown or misspelt key is an error, as `kubectl apply --validate=strict`
 * makes it); required keys; scalar types where the API server would refuse them (ConfigMap and env
 * values must be strings, ports integers 1–65535, Secret `data` base64); DNS names of objects, port
 * names (IANA service names, ≤ 15 characters), ConfigMap/Secret keys; the selector matching the
 * template's labels; a probe's named or numbered port existing on its container; volume mounts naming
 * a volume or a volumeClaimTemplate; PDB minAvailable XOR maxUnavailable.
 * And OUR deployment rules for a workload we ship (errors, not Kubernetes' rules): at least 2 replicas;
 * spread across nodes (topologySpreadConstraints or podAntiAffinity on kubernetes.io/hostname, selecting
 * the pods' own labels); a Deployment rolls with maxUnavailable 0 and maxSurge ≥ 1; every container has
 * readiness and liveness probes, cpu/memory requests and a memory limit, runs as non-root with a
 * read-only root filesystem and no privilege escalation; no ConfigMap key or literal env value that
 * names a password, token, secret or key, nor a URL carrying a password (those go in a Secret).
 *
 * NOT CHECKED: the Kubernetes OpenAPI schemas themselves (no package with them works here: the npm
 * `kubernetes-models` validators accept unknown keys and need Node ≥ 22), deep shapes we do not use
 * (affinity terms beyond the spread rule, volume sources other than configMap/secret/emptyDir/PVC/
 * projected/downwardAPI beyond their keys, lifecycle hooks, resource quantities' syntax), admission
 * defaults and policies of a real cluster, image existence, whether the scripts inside a ConfigMap work.
 */
import type { Issue } from "./walker.js";

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

export function unknownKeys(o: Obj, allowed: readonly string[], path: string, issues: Issue[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) issues.push({ path: `${path}.${k}`, message: `unknown key "${k}"` });
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** IANA_SVC_NAME, what a named port must be. */
const PORT_NAME = /^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/;
const DATA_KEY = /^[-._a-zA-Z0-9]{1,253}$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A name that says its value is a credential: such a value belongs in a Secret. */
export const SECRET_NAME = /(PASSWORD|PASSWD|SECRET|PRIVATE_KEY|API_?KEY|CREDENTIAL|(^|_)(ADMIN|VIEWER|PLUGIN|ACCESS|AUTH|BEARER|API|CONTROL)_?TOKENS?$|^TOKENS?$|_TOKEN$)/i;
/** scheme://user:password@… */
const URL_WITH_PASSWORD = /^[a-z][a-z0-9+.-]*:\/\/[^/@\s:]*:[^/@\s]+@/i;

const META_KEYS = ["name", "namespace", "labels", "annotations", "generateName", "finalizers", "ownerReferences"];
const POD_SPEC_KEYS = [
  "containers", "initContainers", "volumes", "securityContext", "serviceAccountName", "automountServiceAccountToken", "affinity",
  "topologySpreadConstraints", "terminationGracePeriodSeconds", "nodeSelector", "tolerations", "priorityClassName", "enableServiceLinks",
  "hostname", "subdomain", "dnsPolicy", "dnsConfig", "restartPolicy", "imagePullSecrets", "schedulerName", "shareProcessNamespace",
  "runtimeClassName", "hostNetwork", "hostPID", "hostIPC", "readinessGates", "preemptionPolicy", "overhead", "os", "hostAliases",
  "setHostnameAsFQDN", "activeDeadlineSeconds", "hostUsers", "resourceClaims", "schedulingGates",
];
const CONTAINER_KEYS = [
  "name", "image", "command", "args", "workingDir", "ports", "env", "envFrom", "resources", "volumeMounts", "volumeDevices", "livenessProbe",
  "readinessProbe", "startupProbe", "lifecycle", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy", "securityContext",
  "stdin", "stdinOnce", "tty", "resizePolicy", "restartPolicy",
];
const POD_SECURITY_KEYS = ["runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "fsGroupChangePolicy", "supplementalGroups", "supplementalGroupsPolicy", "seccompProfile", "seLinuxOptions", "sysctls", "windowsOptions", "appArmorProfile", "seLinuxChangePolicy"];
const CONTAINER_SECURITY_KEYS = ["runAsNonRoot", "runAsUser", "runAsGroup", "readOnlyRootFilesystem", "allowPrivilegeEscalation", "privileged", "capabilities", "seccompProfile", "seLinuxOptions", "procMount", "windowsOptions", "appArmorProfile"];
const PROBE_KEYS = ["httpGet", "tcpSocket", "grpc", "exec", "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold", "terminationGracePeriodSeconds"];
const VOLUME_SOURCES = ["configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected", "downwardAPI", "hostPath", "csi", "ephemeral", "nfs", "image"];
const SELECTOR_KEYS = ["matchLabels", "matchExpressions"];

export interface CoreCheck {
  apiVersions: string[];
  topKeys: string[];
  /** Keys allowed in spec (when the kind has one) and the ones required there. */
  specKeys?: string[];
  specRequired?: string[];
  /** Kustomization: no metadata.name needed. */
  nameOptional?: boolean;
  check?: (o: Obj, issues: Issue[]) => void;
}

const int = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);

/** Does a label selector ({matchLabels, matchExpressions}) select these labels? Null selector: nothing. */
export function selects(selector: unknown, labels: unknown): boolean {
  if (!isObj(selector)) return false;
  const l = isObj(labels) ? labels : {};
  const ml = isObj(selector.matchLabels) ? selector.matchLabels : {};
  const me = Array.isArray(selector.matchExpressions) ? selector.matchExpressions : [];
  if (Object.keys(ml).length === 0 && me.length === 0) return false;
  for (const [k, v] of Object.entries(ml)) if (l[k] !== v) return false;
  for (const e of me) {
    if (!isObj(e)) return false;
    const key = String(e.key);
    const values = Array.isArray(e.values) ? e.values.map(String) : [];
    const has = key in l;
    switch (e.operator) {
      case "In": if (!has || !values.includes(String(l[key]))) return false; break;
      case "NotIn": if (has && values.includes(String(l[key]))) return false; break;
      case "Exists": if (!has) return false; break;
      case "DoesNotExist": if (has) return false; break;
      default: return false;
    }
  }
  return true;
}

function checkSelector(sel: unknown, path: string, issues: Issue[]): void {
  if (!isObj(sel)) return void issues.push({ path, message: "required: a label selector (matchLabels / matchExpressions)" });
  unknownKeys(sel, SELECTOR_KEYS, path, issues);
  const ml = sel.matchLabels;
  if (ml !== undefined && (!isObj(ml) || Object.values(ml).some((v) => typeof v !== "string"))) issues.push({ path: `${path}.matchLabels`, message: "must map label names to strings" });
  if (sel.matchExpressions !== undefined) {
    if (!Array.isArray(sel.matchExpressions)) issues.push({ path: `${path}.matchExpressions`, message: "must be a list" });
    else sel.matchExpressions.forEach((e, i) => {
      const p = `${path}.matchExpressions[${i}]`;
      if (!isObj(e)) return void issues.push({ path: p, message: "must be an object" });
      unknownKeys(e, ["key", "operator", "values"], p, issues);
      if (!["In", "NotIn", "Exists", "DoesNotExist"].includes(String(e.operator))) issues.push({ path: `${p}.operator`, message: "must be In, NotIn, Exists or DoesNotExist" });
    });
  }
  if ((!isObj(ml) || Object.keys(ml).length === 0) && !(Array.isArray(sel.matchExpressions) && sel.matchExpressions.length > 0)) issues.push({ path, message: "an empty selector selects every pod of the namespace" });
}

function checkStringMap(o: unknown, path: string, keyRe: RegExp, issues: Issue[]): Obj {
  if (o === undefined) return {};
  if (!isObj(o)) return issues.push({ path, message: "must be a map of strings" }), {};
  for (const [k, v] of Object.entries(o)) {
    if (!keyRe.test(k)) issues.push({ path: `${path}["${k}"]`, message: `invalid key "${k}" (letters, digits, - _ .)` });
    if (typeof v !== "string") issues.push({ path: `${path}["${k}"]`, message: `must be a string (quote it: "${String(v)}"), the API server refuses ${typeof v} values` });
  }
  return o;
}

function checkName(o: Obj, issues: Issue[], label: boolean): void {
  const meta = isObj(o.metadata) ? o.metadata : undefined;
  const name = meta?.name;
  if (typeof name === "string" && name !== "" && !(label ? DNS_LABEL : DNS_SUBDOMAIN).test(name)) issues.push({ path: "metadata.name", message: `"${name}" is not a DNS-1123 ${label ? "label" : "subdomain"} (lower-case letters, digits, -)` });
}

/** Secret-looking data in a non-secret place (ConfigMap data, literal env values). */
function secretLeak(name: string, value: unknown, path: string, issues: Issue[]): void {
  if (SECRET_NAME.test(name)) issues.push({ path, message: `"${name}" names a credential: put it in a Secret (secretKeyRef), never in a ConfigMap or a literal value` });
  else if (typeof value === "string" && URL_WITH_PASSWORD.test(value.trim())) issues.push({ path, message: "a URL carrying a password: put it in a Secret" });
}

// ---- workloads ---------------------------------------------------------------------------------

type PortRef = string | number;

/** The container port a probe/targetPort reference denotes, or undefined. */
export function findPort(container: Obj, ref: PortRef): Obj | undefined {
  const ports = Array.isArray(container.ports) ? container.ports.filter(isObj) : [];
  return ports.find((p) => (typeof ref === "number" ? p.containerPort === ref : p.name === ref));
}

function checkProbe(probe: unknown, kind: "readiness" | "liveness" | "startup", container: Obj, path: string, issues: Issue[]): void {
  if (probe === undefined) return;
  if (!isObj(probe)) return void issues.push({ path, message: "must be an object" });
  unknownKeys(probe, PROBE_KEYS, path, issues);
  const handlers = ["httpGet", "tcpSocket", "grpc", "exec"].filter((h) => probe[h] !== undefined);
  if (handlers.length !== 1) issues.push({ path, message: "needs exactly one of httpGet, tcpSocket, grpc, exec" });
  for (const k of ["initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold"]) {
    const v = probe[k];
    if (v !== undefined && (!int(v) || v < (k === "initialDelaySeconds" ? 0 : 1))) issues.push({ path: `${path}.${k}`, message: `must be an integer ≥ ${k === "initialDelaySeconds" ? 0 : 1}` });
  }
  if (kind !== "readiness" && probe.successThreshold !== undefined && probe.successThreshold !== 1) issues.push({ path: `${path}.successThreshold`, message: `must be 1 for a ${kind} probe` });
  const portOf = (h: string, keys: string[]): void => {
    const hp = `${path}.${h}`;
    const handler = probe[h];
    if (!isObj(handler)) return void issues.push({ path: hp, message: "must be an object" });
    unknownKeys(handler, keys, hp, issues);
    const port = handler.port;
    if (port === undefined) return void issues.push({ path: `${hp}.port`, message: "required" });
    if (h === "grpc" && !int(port)) return void issues.push({ path: `${hp}.port`, message: "must be a port number (gRPC probes take no port name)" });
    if (typeof port !== "string" && !int(port)) return void issues.push({ path: `${hp}.port`, message: "must be a port name or number" });
    if (!findPort(container, port)) issues.push({ path: `${hp}.port`, message: `no container port ${typeof port === "string" ? `named "${port}"` : port} on container "${String(container.name)}"` });
    if (h === "httpGet" && (typeof handler.path !== "string" || !handler.path.startsWith("/"))) issues.push({ path: `${hp}.path`, message: "must be an absolute path" });
  };
  if (probe.httpGet !== undefined) portOf("httpGet", ["path", "port", "host", "scheme", "httpHeaders"]);
  if (probe.tcpSocket !== undefined) portOf("tcpSocket", ["port", "host"]);
  if (probe.grpc !== undefined) portOf("grpc", ["port", "service"]);
  if (probe.exec !== undefined) {
    const e = probe.exec;
    if (!isObj(e) || !Array.isArray(e.command) || e.command.length === 0) issues.push({ path: `${path}.exec.command`, message: "required: a non-empty list" });
    else unknownKeys(e, ["command"], `${path}.exec`, issues);
  }
}

function checkEnv(c: Obj, path: string, issues: Issue[]): void {
  if (c.env !== undefined) {
    if (!Array.isArray(c.env)) issues.push({ path: `${path}.env`, message: "must be a list" });
    else {
      const seen = new Set<string>();
      c.env.forEach((e, i) => {
        const p = `${path}.env[${i}]`;
        if (!isObj(e)) return void issues.push({ path: p, message: "must be an object" });
        unknownKeys(e, ["name", "value", "valueFrom"], p, issues);
        const name = typeof e.name === "string" ? e.name : "";
        if (!ENV_NAME.test(name)) issues.push({ path: `${p}.name`, message: "required: a variable name" });
        if (seen.has(name)) issues.push({ path: `${p}.name`, message: `"${name}" set twice (the last one wins silently)` });
        seen.add(name);
        if (e.value !== undefined && e.valueFrom !== undefined) issues.push({ path: p, message: "value and valueFrom are exclusive" });
        if (e.value !== undefined) {
          if (typeof e.value !== "string") issues.push({ path: `${p}.value`, message: `must be a string (quote it: "${String(e.value)}")` });
          else secretLeak(name, e.value, `${p}.value`, issues);
        }
        if (e.valueFrom !== undefined) {
          const vf = e.valueFrom;
          if (!isObj(vf)) return void issues.push({ path: `${p}.valueFrom`, message: "must be an object" });
          const refs = ["configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef"];
          unknownKeys(vf, refs, `${p}.valueFrom`, issues);
          const set = refs.filter((r) => vf[r] !== undefined);
          if (set.length !== 1) return void issues.push({ path: `${p}.valueFrom`, message: `needs exactly one of ${refs.join(", ")}` });
          const r = set[0]!;
          const ref = vf[r];
          const rp = `${p}.valueFrom.${r}`;
          if (!isObj(ref)) return void issues.push({ path: rp, message: "must be an object" });
          if (r === "configMapKeyRef" || r === "secretKeyRef") {
            unknownKeys(ref, ["name", "key", "optional"], rp, issues);
            if (typeof ref.name !== "string" || ref.name === "") issues.push({ path: `${rp}.name`, message: "required" });
            if (typeof ref.key !== "string" || ref.key === "") issues.push({ path: `${rp}.key`, message: "required" });
          } else if (r === "fieldRef") {
            unknownKeys(ref, ["fieldPath", "apiVersion"], rp, issues);
            if (typeof ref.fieldPath !== "string") issues.push({ path: `${rp}.fieldPath`, message: "required" });
          } else unknownKeys(ref, ["resource", "containerName", "divisor"], rp, issues);
        }
      });
    }
  }
  if (c.envFrom !== undefined) {
    if (!Array.isArray(c.envFrom)) return void issues.push({ path: `${path}.envFrom`, message: "must be a list" });
    c.envFrom.forEach((e, i) => {
      const p = `${path}.envFrom[${i}]`;
      if (!isObj(e)) return void issues.push({ path: p, message: "must be an object" });
      unknownKeys(e, ["configMapRef", "secretRef", "prefix"], p, issues);
      const set = ["configMapRef", "secretRef"].filter((r) => e[r] !== undefined);
      if (set.length !== 1) return void issues.push({ path: p, message: "needs exactly one of configMapRef, secretRef" });
      const ref = e[set[0]!];
      if (!isObj(ref) || typeof ref.name !== "string") return void issues.push({ path: `${p}.${set[0]}.name`, message: "required" });
      unknownKeys(ref, ["name", "optional"], `${p}.${set[0]}`, issues);
    });
  }
}

function checkContainer(c: unknown, path: string, volumeNames: Set<string>, podSecurity: Obj, issues: Issue[], init: boolean): void {
  if (!isObj(c)) return void issues.push({ path, message: "must be an object" });
  unknownKeys(c, CONTAINER_KEYS, path, issues);
  if (typeof c.name !== "string" || !DNS_LABEL.test(c.name)) issues.push({ path: `${path}.name`, message: "required: a DNS-1123 label" });
  if (typeof c.image !== "string" || c.image === "") issues.push({ path: `${path}.image`, message: "required" });
  for (const k of ["command", "args"]) if (c[k] !== undefined && (!Array.isArray(c[k]) || (c[k] as unknown[]).some((a) => typeof a !== "string"))) issues.push({ path: `${path}.${k}`, message: "must be a list of strings" });
  // ports
  if (c.ports !== undefined) {
    if (!Array.isArray(c.ports)) issues.push({ path: `${path}.ports`, message: "must be a list" });
    else {
      const names = new Set<string>();
      const numbers = new Set<number>();
      c.ports.forEach((p, i) => {
        const pp = `${path}.ports[${i}]`;
        if (!isObj(p)) return void issues.push({ path: pp, message: "must be an object" });
        unknownKeys(p, ["name", "containerPort", "protocol", "hostPort", "hostIP"], pp, issues);
        if (!int(p.containerPort) || p.containerPort < 1 || p.containerPort > 65535) issues.push({ path: `${pp}.containerPort`, message: "required: an integer 1–65535" });
        else if (numbers.has(p.containerPort)) issues.push({ path: `${pp}.containerPort`, message: `${p.containerPort} listed twice` });
        else numbers.add(p.containerPort);
        if (p.name !== undefined) {
          if (typeof p.name !== "string" || !PORT_NAME.test(p.name)) issues.push({ path: `${pp}.name`, message: "must be an IANA service name (≤ 15 characters, lower-case letters, digits, -)" });
          else if (names.has(p.name)) issues.push({ path: `${pp}.name`, message: `"${p.name}" listed twice` });
          else names.add(p.name);
        }
        if (p.protocol !== undefined && !["TCP", "UDP", "SCTP"].includes(String(p.protocol))) issues.push({ path: `${pp}.protocol`, message: "must be TCP, UDP or SCTP" });
      });
    }
  }
  checkEnv(c, path, issues);
  checkProbe(c.readinessProbe, "readiness", c, `${path}.readinessProbe`, issues);
  checkProbe(c.livenessProbe, "liveness", c, `${path}.livenessProbe`, issues);
  checkProbe(c.startupProbe, "startup", c, `${path}.startupProbe`, issues);
  // volume mounts
  if (c.volumeMounts !== undefined) {
    if (!Array.isArray(c.volumeMounts)) issues.push({ path: `${path}.volumeMounts`, message: "must be a list" });
    else {
      const paths = new Set<string>();
      c.volumeMounts.forEach((m, i) => {
        const mp = `${path}.volumeMounts[${i}]`;
        if (!isObj(m)) return void issues.push({ path: mp, message: "must be an object" });
        unknownKeys(m, ["name", "mountPath", "readOnly", "subPath", "subPathExpr", "mountPropagation", "recursiveReadOnly"], mp, issues);
        if (typeof m.name !== "string" || !volumeNames.has(m.name)) issues.push({ path: `${mp}.name`, message: `no volume (or volumeClaimTemplate) named "${String(m.name)}"` });
        if (typeof m.mountPath !== "string" || !m.mountPath.startsWith("/")) issues.push({ path: `${mp}.mountPath`, message: "required: an absolute path" });
        else if (paths.has(m.mountPath)) issues.push({ path: `${mp}.mountPath`, message: `${m.mountPath} mounted twice` });
        else paths.add(m.mountPath);
      });
    }
  }
  // resources
  const res = c.resources;
  if (res !== undefined && !isObj(res)) issues.push({ path: `${path}.resources`, message: "must be an object" });
  const r = isObj(res) ? res : {};
  unknownKeys(r, ["requests", "limits", "claims"], `${path}.resources`, issues);
  for (const k of ["requests", "limits"]) {
    const q = r[k];
    if (q === undefined) continue;
    if (!isObj(q)) { issues.push({ path: `${path}.resources.${k}`, message: "must be a map" }); continue; }
    for (const [name, v] of Object.entries(q)) if (typeof v !== "string" && typeof v !== "number") issues.push({ path: `${path}.resources.${k}.${name}`, message: "must be a quantity" });
  }
  // security context
  const sc = c.securityContext;
  if (sc !== undefined && !isObj(sc)) issues.push({ path: `${path}.securityContext`, message: "must be an object" });
  const s = isObj(sc) ? sc : {};
  unknownKeys(s, CONTAINER_SECURITY_KEYS, `${path}.securityContext`, issues);
  if (isObj(s.capabilities)) unknownKeys(s.capabilities, ["add", "drop"], `${path}.securityContext.capabilities`, issues);

  // Our rules for what we ship.
  if (!init) {
    if (c.readinessProbe === undefined) issues.push({ path: `${path}.readinessProbe`, message: "required (our rule): a replica must not get traffic before it can serve" });
    if (c.livenessProbe === undefined) issues.push({ path: `${path}.livenessProbe`, message: "required (our rule): a hung process must be restarted" });
  }
  const requests = isObj(r.requests) ? r.requests : {};
  const limits = isObj(r.limits) ? r.limits : {};
  for (const k of ["cpu", "memory"]) if (requests[k] === undefined) issues.push({ path: `${path}.resources.requests.${k}`, message: "required (our rule): the scheduler places pods by their requests" });
  if (limits.memory === undefined) issues.push({ path: `${path}.resources.limits.memory`, message: "required (our rule): a leak must not take the node's memory" });
  if ((s.runAsNonRoot ?? podSecurity.runAsNonRoot) !== true) issues.push({ path: `${path}.securityContext.runAsNonRoot`, message: "must be true (our rule; here or in the pod's securityContext)" });
  if (s.readOnlyRootFilesystem !== true) issues.push({ path: `${path}.securityContext.readOnlyRootFilesystem`, message: "must be true (our rule; mount an emptyDir where the process writes)" });
  if (s.allowPrivilegeEscalation !== false) issues.push({ path: `${path}.securityContext.allowPrivilegeEscalation`, message: "must be false (our rule)" });
  if (s.privileged === true) issues.push({ path: `${path}.securityContext.privileged`, message: "must not be true (our rule)" });
}

function checkVolumes(vols: unknown, path: string, issues: Issue[]): Set<string> {
  const names = new Set<string>();
  if (vols === undefined) return names;
  if (!Array.isArray(vols)) return issues.push({ path, message: "must be a list" }), names;
  vols.forEach((v, i) => {
    const p = `${path}[${i}]`;
    if (!isObj(v)) return void issues.push({ path: p, message: "must be an object" });
    unknownKeys(v, ["name", ...VOLUME_SOURCES], p, issues);
    if (typeof v.name !== "string" || !DNS_LABEL.test(v.name)) issues.push({ path: `${p}.name`, message: "required: a DNS-1123 label" });
    else if (names.has(v.name)) issues.push({ path: `${p}.name`, message: `"${v.name}" listed twice` });
    else names.add(v.name);
    const sources = VOLUME_SOURCES.filter((s) => v[s] !== undefined);
    if (sources.length !== 1) issues.push({ path: p, message: `needs exactly one volume source (${VOLUME_SOURCES.join(", ")})` });
    if (isObj(v.configMap)) {
      unknownKeys(v.configMap, ["name", "items", "defaultMode", "optional"], `${p}.configMap`, issues);
      if (typeof v.configMap.name !== "string") issues.push({ path: `${p}.configMap.name`, message: "required" });
    }
    if (isObj(v.secret)) {
      unknownKeys(v.secret, ["secretName", "items", "defaultMode", "optional"], `${p}.secret`, issues);
      if (typeof v.secret.secretName !== "string") issues.push({ path: `${p}.secret.secretName`, message: "required" });
    }
    if (isObj(v.emptyDir)) unknownKeys(v.emptyDir, ["medium", "sizeLimit"], `${p}.emptyDir`, issues);
    if (isObj(v.persistentVolumeClaim)) unknownKeys(v.persistentVolumeClaim, ["claimName", "readOnly"], `${p}.persistentVolumeClaim`, issues);
  });
  return names;
}

/** Spread over nodes: a hostname topology spread constraint or pod anti-affinity selecting the pods' own labels. */
function spreadsOverNodes(pod: Obj, labels: Obj): boolean {
  const tsc = Array.isArray(pod.topologySpreadConstraints) ? pod.topologySpreadConstraints.filter(isObj) : [];
  if (tsc.some((t) => t.topologyKey === "kubernetes.io/hostname" && selects(t.labelSelector, labels))) return true;
  const anti = isObj(pod.affinity) && isObj(pod.affinity.podAntiAffinity) ? pod.affinity.podAntiAffinity : undefined;
  if (!anti) return false;
  const required = Array.isArray(anti.requiredDuringSchedulingIgnoredDuringExecution) ? anti.requiredDuringSchedulingIgnoredDuringExecution.filter(isObj) : [];
  const preferred = Array.isArray(anti.preferredDuringSchedulingIgnoredDuringExecution) ? anti.preferredDuringSchedulingIgnoredDuringExecution.filter(isObj).map((p) => (isObj(p.podAffinityTerm) ? p.podAffinityTerm : {})) : [];
  return [...required, ...preferred].some((t) => t.topologyKey === "kubernetes.io/hostname" && selects(t.labelSelector, labels));
}

function checkTopologySpread(pod: Obj, path: string, issues: Issue[]): void {
  if (pod.topologySpreadConstraints === undefined) return;
  if (!Array.isArray(pod.topologySpreadConstraints)) return void issues.push({ path, message: "must be a list" });
  pod.topologySpreadConstraints.forEach((t, i) => {
    const p = `${path}[${i}]`;
    if (!isObj(t)) return void issues.push({ path: p, message: "must be an object" });
    unknownKeys(t, ["maxSkew", "topologyKey", "whenUnsatisfiable", "labelSelector", "minDomains", "nodeAffinityPolicy", "nodeTaintsPolicy", "matchLabelKeys"], p, issues);
    if (!int(t.maxSkew) || t.maxSkew < 1) issues.push({ path: `${p}.maxSkew`, message: "required: an integer ≥ 1" });
    if (typeof t.topologyKey !== "string") issues.push({ path: `${p}.topologyKey`, message: "required" });
    if (!["DoNotSchedule", "ScheduleAnyway"].includes(String(t.whenUnsatisfiable))) issues.push({ path: `${p}.whenUnsatisfiable`, message: "required: DoNotSchedule or ScheduleAnyway" });
  });
}

/** Deployment and StatefulSet: selector, template, pod spec, containers, and our rules. */
function checkWorkload(o: Obj, issues: Issue[], claimNames: string[]): void {
  const spec = isObj(o.spec) ? o.spec : {};
  const replicas = spec.replicas ?? 1;
  if (!int(replicas) || replicas < 0) issues.push({ path: "spec.replicas", message: "must be an integer ≥ 0" });
  else if (replicas < 2) issues.push({ path: "spec.replicas", message: `${replicas} (our rule: at least 2 — one pod is no availability)` });
  checkSelector(spec.selector, "spec.selector", issues);
  const tpl = spec.template;
  if (!isObj(tpl)) return void issues.push({ path: "spec.template", message: "required" });
  unknownKeys(tpl, ["metadata", "spec"], "spec.template", issues);
  const tmeta = isObj(tpl.metadata) ? tpl.metadata : {};
  unknownKeys(tmeta, ["labels", "annotations", "name", "namespace"], "spec.template.metadata", issues);
  const labels = checkStringMap(tmeta.labels, "spec.template.metadata.labels", /^([a-z0-9.-]+\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/, issues);
  if (Object.keys(labels).length === 0) issues.push({ path: "spec.template.metadata.labels", message: "required: the labels the selector matches" });
  else if (isObj(spec.selector) && !selects(spec.selector, labels)) issues.push({ path: "spec.selector", message: "does not match spec.template.metadata.labels (the API server refuses it)" });
  const pod = isObj(tpl.spec) ? tpl.spec : undefined;
  if (!pod) return void issues.push({ path: "spec.template.spec", message: "required" });
  unknownKeys(pod, POD_SPEC_KEYS, "spec.template.spec", issues);
  const psc = isObj(pod.securityContext) ? pod.securityContext : {};
  unknownKeys(psc, POD_SECURITY_KEYS, "spec.template.spec.securityContext", issues);
  const volumeNames = checkVolumes(pod.volumes, "spec.template.spec.volumes", issues);
  for (const n of claimNames) volumeNames.add(n);
  checkTopologySpread(pod, "spec.template.spec.topologySpreadConstraints", issues);
  if (!Array.isArray(pod.containers) || pod.containers.length === 0) issues.push({ path: "spec.template.spec.containers", message: "required: a non-empty list" });
  const names = new Set<string>();
  for (const [list, init] of [["initContainers", true], ["containers", false]] as const) {
    const cs = Array.isArray(pod[list]) ? (pod[list] as unknown[]) : [];
    cs.forEach((c, i) => {
      const path = `spec.template.spec.${list}[${i}]`;
      checkContainer(c, path, volumeNames, psc, issues, init);
      if (isObj(c) && typeof c.name === "string") {
        if (names.has(c.name)) issues.push({ path: `${path}.name`, message: `container "${c.name}" listed twice` });
        names.add(c.name);
      }
    });
  }
  if (int(replicas) && replicas >= 2 && Object.keys(labels).length > 0 && !spreadsOverNodes(pod, labels)) {
    issues.push({ path: "spec.template.spec.topologySpreadConstraints", message: "our rule: spread the replicas over nodes (topologySpreadConstraints or podAntiAffinity on kubernetes.io/hostname selecting the pods' labels), or one node failure takes them all" });
  }
}

function checkServiceSpec(spec: Obj, issues: Issue[]): void {
  const type = spec.type ?? "ClusterIP";
  if (!["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].includes(String(type))) issues.push({ path: "spec.type", message: "must be ClusterIP, NodePort, LoadBalancer or ExternalName" });
  if (spec.clusterIP === "None" && type !== "ClusterIP") issues.push({ path: "spec.clusterIP", message: "a headless Service (None) must be of type ClusterIP" });
  if (type !== "ExternalName" && (!Array.isArray(spec.ports) || spec.ports.length === 0)) issues.push({ path: "spec.ports", message: "required: a non-empty list" });
  if (spec.selector !== undefined) checkStringMap(spec.selector, "spec.selector", /^([a-z0-9.-]+\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/, issues);
  const ports = Array.isArray(spec.ports) ? spec.ports : [];
  const names = new Set<string>();
  ports.forEach((p, i) => {
    const pp = `spec.ports[${i}]`;
    if (!isObj(p)) return void issues.push({ path: pp, message: "must be an object" });
    unknownKeys(p, ["name", "port", "targetPort", "protocol", "appProtocol", "nodePort"], pp, issues);
    if (!int(p.port) || p.port < 1 || p.port > 65535) issues.push({ path: `${pp}.port`, message: "required: an integer 1–65535" });
    if (ports.length > 1 && typeof p.name !== "string") issues.push({ path: `${pp}.name`, message: "required when a Service has several ports" });
    if (typeof p.name === "string") {
      if (!DNS_LABEL.test(p.name)) issues.push({ path: `${pp}.name`, message: "must be a DNS-1123 label" });
      if (names.has(p.name)) issues.push({ path: `${pp}.name`, message: `"${p.name}" listed twice` });
      names.add(p.name);
    }
    const t = p.targetPort;
    if (t !== undefined && !(int(t) && t >= 1 && t <= 65535) && !(typeof t === "string" && PORT_NAME.test(t))) issues.push({ path: `${pp}.targetPort`, message: "must be a port number or a container port name" });
    if (p.protocol !== undefined && !["TCP", "UDP", "SCTP"].includes(String(p.protocol))) issues.push({ path: `${pp}.protocol`, message: "must be TCP, UDP or SCTP" });
  });
}

const WORKLOAD_META = ["apiVersion", "kind", "metadata", "spec"];

export const CORE_KINDS: Record<string, CoreCheck> = {
  Namespace: {
    apiVersions: ["v1"],
    topKeys: ["apiVersion", "kind", "metadata", "spec"],
    specKeys: ["finalizers"],
    check: (o, issues) => checkName(o, issues, true),
  },
  ConfigMap: {
    apiVersions: ["v1"],
    topKeys: ["apiVersion", "kind", "metadata", "data", "binaryData", "immutable"],
    check(o, issues) {
      checkName(o, issues, false);
      const data = checkStringMap(o.data, "data", DATA_KEY, issues);
      for (const [k, v] of Object.entries(data)) secretLeak(k, v, `data["${k}"]`, issues);
    },
  },
  Secret: {
    apiVersions: ["v1"],
    topKeys: ["apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"],
    check(o, issues) {
      checkName(o, issues, false);
      const data = checkStringMap(o.data, "data", DATA_KEY, issues);
      for (const [k, v] of Object.entries(data)) if (typeof v === "string" && !BASE64.test(v)) issues.push({ path: `data["${k}"]`, message: "must be base64 (use stringData for plain text)" });
      checkStringMap(o.stringData, "stringData", DATA_KEY, issues);
      if (o.type !== undefined && typeof o.type !== "string") issues.push({ path: "type", message: "must be a string (Opaque, kubernetes.io/…)" });
    },
  },
  Service: {
    apiVersions: ["v1"],
    topKeys: WORKLOAD_META,
    specKeys: ["type", "selector", "ports", "clusterIP", "clusterIPs", "publishNotReadyAddresses", "sessionAffinity", "sessionAffinityConfig", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy", "externalTrafficPolicy", "loadBalancerIP", "loadBalancerSourceRanges", "loadBalancerClass", "externalName", "externalIPs", "healthCheckNodePort", "allocateLoadBalancerNodePorts", "trafficDistribution"],
    check(o, issues) {
      checkName(o, issues, true);
      if (isObj(o.spec)) checkServiceSpec(o.spec, issues);
    },
  },
  Deployment: {
    apiVersions: ["apps/v1"],
    topKeys: WORKLOAD_META,
    specKeys: ["replicas", "selector", "template", "strategy", "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds", "paused"],
    specRequired: ["selector", "template"],
    check(o, issues) {
      checkName(o, issues, false);
      checkWorkload(o, issues, []);
      const spec = isObj(o.spec) ? o.spec : {};
      const st = isObj(spec.strategy) ? spec.strategy : undefined;
      if (spec.strategy !== undefined && !st) issues.push({ path: "spec.strategy", message: "must be an object" });
      if (st) {
        unknownKeys(st, ["type", "rollingUpdate"], "spec.strategy", issues);
        if (isObj(st.rollingUpdate)) unknownKeys(st.rollingUpdate, ["maxUnavailable", "maxSurge"], "spec.strategy.rollingUpdate", issues);
      }
      // Our rule: a rolling update never drops below the replica count (the default maxUnavailable is 25%).
      const ru = st && isObj(st.rollingUpdate) ? st.rollingUpdate : {};
      if ((st?.type ?? "RollingUpdate") !== "RollingUpdate") issues.push({ path: "spec.strategy.type", message: "must be RollingUpdate (our rule: Recreate stops every replica first)" });
      else if (ru.maxUnavailable !== 0 && ru.maxUnavailable !== "0%") issues.push({ path: "spec.strategy.rollingUpdate.maxUnavailable", message: "must be 0 (our rule: the default, 25%, drops ready replicas during an update)" });
      const surge = ru.maxSurge;
      if (!((int(surge) && surge >= 1) || (typeof surge === "string" && /^[1-9]\d*%$/.test(surge)))) issues.push({ path: "spec.strategy.rollingUpdate.maxSurge", message: "must be ≥ 1 with maxUnavailable 0 (else the update cannot start)" });
    },
  },
  StatefulSet: {
    apiVersions: ["apps/v1"],
    topKeys: WORKLOAD_META,
    specKeys: ["replicas", "selector", "template", "serviceName", "volumeClaimTemplates", "podManagementPolicy", "updateStrategy", "revisionHistoryLimit", "minReadySeconds", "persistentVolumeClaimRetentionPolicy", "ordinals"],
    specRequired: ["selector", "template", "serviceName"],
    check(o, issues) {
      checkName(o, issues, true);
      const spec = isObj(o.spec) ? o.spec : {};
      const claims: string[] = [];
      if (spec.volumeClaimTemplates !== undefined) {
        if (!Array.isArray(spec.volumeClaimTemplates)) issues.push({ path: "spec.volumeClaimTemplates", message: "must be a list" });
        else spec.volumeClaimTemplates.forEach((t, i) => {
          const p = `spec.volumeClaimTemplates[${i}]`;
          if (!isObj(t)) return void issues.push({ path: p, message: "must be an object" });
          unknownKeys(t, ["metadata", "spec"], p, issues);
          const name = isObj(t.metadata) ? t.metadata.name : undefined;
          if (typeof name !== "string") issues.push({ path: `${p}.metadata.name`, message: "required" });
          else claims.push(name);
          const s = isObj(t.spec) ? t.spec : undefined;
          if (!s) return void issues.push({ path: `${p}.spec`, message: "required" });
          unknownKeys(s, ["accessModes", "resources", "storageClassName", "volumeMode", "selector", "dataSource", "dataSourceRef", "volumeAttributesClassName"], `${p}.spec`, issues);
          if (!Array.isArray(s.accessModes) || s.accessModes.length === 0) issues.push({ path: `${p}.spec.accessModes`, message: "required" });
          if (!isObj(s.resources) || !isObj(s.resources.requests) || s.resources.requests.storage === undefined) issues.push({ path: `${p}.spec.resources.requests.storage`, message: "required" });
        });
      }
      checkWorkload(o, issues, claims);
      if (spec.podManagementPolicy !== undefined && !["OrderedReady", "Parallel"].includes(String(spec.podManagementPolicy))) issues.push({ path: "spec.podManagementPolicy", message: "must be OrderedReady or Parallel" });
      if (spec.updateStrategy !== undefined) {
        if (!isObj(spec.updateStrategy)) issues.push({ path: "spec.updateStrategy", message: "must be an object" });
        else {
          unknownKeys(spec.updateStrategy, ["type", "rollingUpdate"], "spec.updateStrategy", issues);
          if (!["RollingUpdate", "OnDelete"].includes(String(spec.updateStrategy.type ?? "RollingUpdate"))) issues.push({ path: "spec.updateStrategy.type", message: "must be RollingUpdate or OnDelete" });
        }
      }
    },
  },
  PodDisruptionBudget: {
    apiVersions: ["policy/v1"],
    topKeys: WORKLOAD_META,
    specKeys: ["selector", "minAvailable", "maxUnavailable", "unhealthyPodEvictionPolicy"],
    specRequired: ["selector"],
    check(o, issues) {
      checkName(o, issues, false);
      const spec = isObj(o.spec) ? o.spec : {};
      checkSelector(spec.selector, "spec.selector", issues);
      if ((spec.minAvailable === undefined) === (spec.maxUnavailable === undefined)) issues.push({ path: "spec", message: "needs exactly one of minAvailable, maxUnavailable" });
      for (const k of ["minAvailable", "maxUnavailable"]) {
        const v = spec[k];
        if (v !== undefined && !(int(v) && v >= 0) && !(typeof v === "string" && /^\d+%$/.test(v))) issues.push({ path: `spec.${k}`, message: "must be an integer ≥ 0 or a percentage" });
      }
      if (spec.maxUnavailable === 0 || spec.maxUnavailable === "0%") issues.push({ path: "spec.maxUnavailable", message: "0 blocks every node drain" });
      if (spec.unhealthyPodEvictionPolicy !== undefined && !["IfHealthyBudget", "AlwaysAllow"].includes(String(spec.unhealthyPodEvictionPolicy))) issues.push({ path: "spec.unhealthyPodEvictionPolicy", message: "must be IfHealthyBudget or AlwaysAllow" });
    },
  },
  Kustomization: {
    apiVersions: ["kustomize.config.k8s.io/v1beta1"],
    topKeys: ["apiVersion", "kind", "metadata", "resources", "namespace", "namePrefix", "nameSuffix", "labels", "commonAnnotations", "images", "patches", "components", "configMapGenerator", "secretGenerator", "generatorOptions", "replicas"],
    nameOptional: true,
    check(o, issues) {
      if (!Array.isArray(o.resources) || o.resources.length === 0 || o.resources.some((r) => typeof r !== "string")) issues.push({ path: "resources", message: "required: a non-empty list of files" });
      if (o.namespace !== undefined && (typeof o.namespace !== "string" || !DNS_LABEL.test(o.namespace))) issues.push({ path: "namespace", message: "must be a DNS-1123 label" });
    },
  },
};

/** Kinds whose objects live in a namespace (of those above). */
export const NAMESPACED = new Set(["ConfigMap", "Secret", "Service", "Deployment", "StatefulSet", "PodDisruptionBudget"]);

export function checkCoreObject(o: Obj, c: CoreCheck, issues: Issue[]): void {
  unknownKeys(o, c.topKeys, "", issues);
  const meta = isObj(o.metadata) ? o.metadata : undefined;
  if (o.metadata !== undefined && !meta) issues.push({ path: "metadata", message: "must be an object" });
  if (meta) unknownKeys(meta, META_KEYS, "metadata", issues);
  if (!c.nameOptional && (!meta || typeof meta.name !== "string" || meta.name === "")) issues.push({ path: "metadata.name", message: "required" });
  if (meta?.namespace !== undefined && (typeof meta.namespace !== "string" || !DNS_LABEL.test(meta.namespace))) issues.push({ path: "metadata.namespace", message: "must be a DNS-1123 label" });
  if (meta?.labels !== undefined) checkStringMap(meta.labels, "metadata.labels", /^([a-z0-9.-]+\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/, issues);
  if (c.specKeys) {
    const spec = o.spec;
    if (spec === undefined) {
      if (c.specRequired && c.specRequired.length > 0) issues.push({ path: "spec", message: "required" });
    } else if (!isObj(spec)) issues.push({ path: "spec", message: "must be an object" });
    else {
      unknownKeys(spec, c.specKeys, "spec", issues);
      for (const k of c.specRequired ?? []) if (spec[k] === undefined) issues.push({ path: `spec.${k}`, message: "required" });
    }
  }
  c.check?.(o, issues);
}
