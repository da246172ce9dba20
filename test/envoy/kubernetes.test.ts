/**
 * envoy/kubernetes/: the shipped manifests validate clean as one set (envoy/validate/k8s-core.ts,
 * k8s-set.ts), meet issue 20's requirements, agree with the data-plane snippets on the control
 * Service, and every check fails on a copy broken in the way it guards against — naming the object
 * and the path.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { loadConfig } from "../../control/src/config.js";
import { loadKustomization, validateFile } from "../../envoy/validate/documents.js";
import { checkKubernetesSet, controlEnvironments, type SetEntry } from "../../envoy/validate/k8s-set.js";
import { docs, REPO } from "./support.js";

const DIR = join(REPO, "envoy/kubernetes");
const KUSTOMIZATION = join(DIR, "kustomization.yaml");
const NS = "model-gateway";

/** A fresh copy of the shipped set (safe to mutate). */
function shipped(): SetEntry[] {
  const k = loadKustomization(KUSTOMIZATION);
  assert.deepEqual(k.issues, []);
  assert.equal(k.namespace, NS);
  return structuredClone(k.entries);
}

function obj(entries: SetEntry[], kind: string, name: string): Record<string, any> {
  const e = entries.find((x) => x.value.kind === kind && (x.value.metadata as { name?: string })?.name === name);
  assert.ok(e, `no ${kind}/${name} in the set`);
  return e.value as Record<string, any>;
}

const check = (entries: SetEntry[]) => checkKubernetesSet(entries, { namespace: NS });

/** Asserts an issue on `Kind/name: path` (exactly that path) whose message matches. */
function assertIssue(entries: SetEntry[], object: string, path: string, message?: RegExp): void {
  const issues = check(entries);
  const hit = issues.find((i) => i.path.endsWith(` ${object}: ${path}`) && (!message || message.test(i.message)));
  assert.ok(hit, `expected an issue at ${object}: ${path}${message ? ` matching ${message}` : ""}; got:\n${issues.map((i) => `${i.path}: ${i.message}`).join("\n") || "(none)"}`);
}

const CONTROL = "Deployment/gateway-control";
const C0 = "spec.template.spec.containers[0]";
const control = (e: SetEntry[]) => obj(e, "Deployment", "gateway-control");
const controlContainer = (e: SetEntry[]) => control(e).spec.template.spec.containers[0];
const envEntry = (e: SetEntry[], name: string) => controlContainer(e).env.find((x: { name: string }) => x.name === name);

describe("envoy/kubernetes: the shipped manifests", () => {
  test("validate clean as files and as the kustomization's set (no errors, no warnings)", () => {
    for (const f of readdirSync(DIR).filter((f) => f.endsWith(".yaml"))) {
      const r = validateFile(join(DIR, f));
      assert.ok(r.ok, r.lines.join("\n"));
      for (const rep of r.reports) assert.deepEqual(rep.result.warnings, []);
    }
    const k = validateFile(KUSTOMIZATION);
    assert.match(k.reports[0]!.kind, /its 11 objects as one set/);
    assert.deepEqual(check(shipped()), []);
  });

  test("the kustomization lists every manifest of the folder, and `validate:envoy` covers them", () => {
    const k = docs("envoy/kubernetes/kustomization.yaml")[0]!;
    const files = readdirSync(DIR).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml").sort();
    assert.deepEqual([...k.resources].sort(), files);
    const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8"));
    assert.match(pkg.scripts["validate:envoy"], /envoy\/kubernetes\/\*\.yaml/);
    const kinds = shipped().map((e) => e.value.kind).sort();
    assert.deepEqual(kinds, ["ConfigMap", "ConfigMap", "Deployment", "Namespace", "PodDisruptionBudget", "PodDisruptionBudget", "Secret", "Secret", "Service", "Service", "StatefulSet"]);
  });

  test("control: 3 replicas, rolling 0/1, spread over nodes, /healthz readiness, non-root read-only, a PDB", () => {
    const e = shipped();
    const d = control(e);
    assert.equal(d.spec.replicas, 3);
    assert.deepEqual(d.spec.strategy.rollingUpdate, { maxUnavailable: 0, maxSurge: 1 });
    assert.ok(d.spec.template.spec.topologySpreadConstraints.some((t: { topologyKey: string; whenUnsatisfiable: string }) => t.topologyKey === "kubernetes.io/hostname" && t.whenUnsatisfiable === "DoNotSchedule"));
    const c = controlContainer(e);
    assert.deepEqual(c.readinessProbe.httpGet, { path: "/healthz", port: "http" });
    assert.notEqual(c.livenessProbe.httpGet.path, "/healthz");
    assert.ok(c.livenessProbe.failureThreshold * c.livenessProbe.periodSeconds > c.readinessProbe.failureThreshold * c.readinessProbe.periodSeconds, "liveness is less strict than readiness");
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(d.spec.template.spec.securityContext.runAsNonRoot, true);
    const pdb = obj(e, "PodDisruptionBudget", "gateway-control");
    assert.equal(pdb.apiVersion, "policy/v1");
    assert.ok(pdb.spec.maxUnavailable === 1 || pdb.spec.minAvailable === 2);
  });

  test("control env: Sentinel through the headless Service's pod names, WAIT auto, credentials only from Secrets — accepted by control/src/config.ts", () => {
    const e = shipped();
    const [only, ...more] = controlEnvironments(e, { namespace: NS });
    assert.ok(only && more.length === 0);
    const loaded = loadConfig(only.env);
    assert.ok(loaded.ok, JSON.stringify(!loaded.ok && loaded.issues));
    const cfg = loaded.config;
    assert.equal(cfg.redis.kind, "sentinel");
    if (cfg.redis.kind !== "sentinel") return;
    assert.deepEqual(cfg.redis.sentinels, [0, 1, 2].map((i) => ({ host: `redis-${i}.redis.${NS}.svc.cluster.local`, port: 26379 })));
    assert.equal(cfg.redisWait.replicas, "auto");
    assert.ok(cfg.redis.password && cfg.redis.sentinelPassword);
    assert.equal(cfg.generatedAdminToken, null);
    // The sentinels monitor the master name the control service asks for.
    const sts = obj(e, "StatefulSet", "redis");
    for (const c of sts.spec.template.spec.containers) assert.equal(c.env.find((x: { name: string }) => x.name === "MASTER_NAME").value, cfg.redis.masterName);
    // No credential is in a ConfigMap; every credential variable comes from a secretKeyRef.
    const cm = obj(e, "ConfigMap", "gateway-control-env");
    for (const k of ["REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD", "CONTROL_ADMIN_TOKENS", "CONTROL_PLUGIN_TOKENS"]) {
      assert.equal(cm.data[k], undefined);
      assert.ok(envEntry(e, k).valueFrom.secretKeyRef, `${k} from a Secret`);
    }
    // Service ports = the ports the service listens on.
    const svc = obj(e, "Service", "gateway-control");
    assert.deepEqual(svc.spec.ports.map((p: { port: number }) => p.port).sort(), [cfg.port, cfg.xdsGrpc!.port].sort());
  });

  test("redis: 3 pods with a sentinel each, headless Service, quorum 2, hostnames announced, pods 1..2 replicas at first start", () => {
    const e = shipped();
    const sts = obj(e, "StatefulSet", "redis");
    assert.equal(sts.spec.replicas, 3);
    assert.deepEqual(sts.spec.template.spec.containers.map((c: { name: string }) => c.name), ["redis", "sentinel"]);
    assert.equal(obj(e, "Service", sts.spec.serviceName).spec.clusterIP, "None");
    const scripts = obj(e, "ConfigMap", "redis-scripts").data;
    assert.match(scripts["sentinel.sh"], /sentinel monitor \$MASTER_NAME \$PRIMARY 6379 2"/);
    assert.match(scripts["sentinel.sh"], /sentinel resolve-hostnames yes[\s\S]*sentinel announce-hostnames yes[\s\S]*sentinel monitor/);
    assert.match(scripts["sentinel.sh"], /sentinel announce-ip \$SELF/);
    assert.match(scripts["redis.sh"], /replica-announce-ip \$SELF/);
    assert.match(scripts["redis.sh"], /if \[ "\$PRIMARY" != "\$SELF" \]; then echo "replicaof \$PRIMARY 6379"/);
    assert.match(scripts["common.sh"], /if \[ -z "\$PRIMARY" \]; then PRIMARY="\$FIRST"/);
  });
});

describe("envoy/kubernetes: the data planes reach the control Service of the manifests", () => {
  type Snippets = { istio: Record<string, any>[]; eg: Record<string, any>[] };
  const snippets = (): Snippets => ({ istio: docs("envoy/snippets/istio.yaml"), eg: docs("envoy/snippets/envoy-gateway.yaml") });

  /** What does not agree between the snippets and the Services of the set (empty: all agree). */
  function mismatches(s: Snippets, entries: SetEntry[]): string[] {
    const out: string[] = [];
    const served = (host: string, port: number): boolean => {
      const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local$/.exec(host);
      if (!m) return false;
      const svc = entries.find((e) => e.value.kind === "Service" && (e.value.metadata as any).name === m[1] && ((e.value.metadata as any).namespace ?? NS) === m[2]);
      return Boolean(svc && (svc.value.spec as any).ports.some((p: { port: number }) => p.port === port));
    };
    const wasm = s.istio.find((d) => d.kind === "WasmPlugin")!;
    const cluster = /^outbound\|(\d+)\|\|(.+)$/.exec(wasm.spec.pluginConfig.control_cluster);
    if (!cluster || !served(cluster[2]!, Number(cluster[1]))) out.push(`istio control_cluster ${wasm.spec.pluginConfig.control_cluster}`);
    if (cluster && wasm.spec.pluginConfig.control_authority !== cluster[2]) out.push(`istio control_authority ${wasm.spec.pluginConfig.control_authority}`);
    const ext = s.eg.find((d) => d.kind === "EnvoyExtensionPolicy")!;
    const cfg = ext.spec.wasm[0].config;
    const patch = s.eg.find((d) => d.kind === "EnvoyPatchPolicy")!.spec.jsonPatches.find((p: any) => p.name === cfg.control_cluster);
    const sa = patch?.operation.value.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    if (!sa || !served(sa.address, sa.port_value)) out.push(`envoy-gateway ${cfg.control_cluster} → ${sa?.address}:${sa?.port_value}`);
    if (sa && cfg.control_authority !== sa.address) out.push(`envoy-gateway control_authority ${cfg.control_authority}`);
    // The control service requires a plugin token: each plugin configuration carries one of the Secret's.
    const secret = entries.find((e) => e.value.kind === "Secret" && (e.value.metadata as any).name === "gateway-control-tokens");
    const tokens = String((secret?.value.stringData as any)?.["plugin-tokens"] ?? "").split(",");
    if (!tokens.includes(wasm.spec.pluginConfig.control_token)) out.push(`istio control_token`);
    if (!tokens.includes(cfg.control_token)) out.push(`envoy-gateway control_token`);
    return out;
  }

  test("Istio's control_cluster outbound|<port>||<svc>.<ns>.svc.cluster.local and Envoy Gateway's gateway_control name the Service", () => {
    assert.deepEqual(mismatches(snippets(), shipped()), []);
  });

  test("…and a renamed Service, another port or a stale authority is caught", () => {
    const renamed = shipped();
    obj(renamed, "Service", "gateway-control").metadata.name = "control";
    assert.equal(mismatches(snippets(), renamed).length, 2);
    const s = snippets();
    s.istio[0]!.spec.pluginConfig.control_cluster = "outbound|9090||gateway-control.model-gateway.svc.cluster.local";
    assert.deepEqual(mismatches(s, shipped()), ["istio control_cluster outbound|9090||gateway-control.model-gateway.svc.cluster.local"]);
    const t = snippets();
    t.eg[0]!.spec.wasm[0].config.control_authority = "gateway-control.other.svc.cluster.local";
    assert.deepEqual(mismatches(t, shipped()), ["envoy-gateway control_authority gateway-control.other.svc.cluster.local"]);
    const u = snippets();
    delete u.istio[0]!.spec.pluginConfig.control_token;
    assert.deepEqual(mismatches(u, shipped()), ["istio control_token"]);
  });
});

describe("envoy/kubernetes: every check fails on a broken copy, naming the path", () => {
  const cases: [string, (e: SetEntry[]) => void, string, string, RegExp?][] = [
    ["readiness path not /healthz", (e) => void (controlContainer(e).readinessProbe.httpGet.path = "/ready"), CONTROL, `${C0}.readinessProbe.httpGet.path`, /\/healthz/],
    ["readiness on another port than CONTROL_PORT", (e) => void (controlContainer(e).readinessProbe.httpGet.port = "grpc-xds"), CONTROL, `${C0}.readinessProbe.httpGet.port`, /CONTROL_PORT/],
    ["a probe port the container does not have", (e) => void (controlContainer(e).startupProbe.tcpSocket.port = "htp"), CONTROL, `${C0}.startupProbe.tcpSocket.port`, /no container port named "htp"/],
    ["liveness on /healthz (a Redis outage would restart every replica)", (e) => void (controlContainer(e).livenessProbe.httpGet.path = "/healthz"), CONTROL, `${C0}.livenessProbe.httpGet.path`, /503/],
    ["no readiness probe", (e) => void delete controlContainer(e).readinessProbe, CONTROL, `${C0}.readinessProbe`, /required/],
    ["replicas < 2 (Deployment)", (e) => void (control(e).spec.replicas = 1), CONTROL, "spec.replicas", /at least 2/],
    ["replicas < 2 (StatefulSet)", (e) => void (obj(e, "StatefulSet", "redis").spec.replicas = 1), "StatefulSet/redis", "spec.replicas", /at least 2/],
    ["rolling update may drop replicas", (e) => void (control(e).spec.strategy.rollingUpdate.maxUnavailable = 1), CONTROL, "spec.strategy.rollingUpdate.maxUnavailable"],
    ["no spread over nodes", (e) => void delete control(e).spec.template.spec.topologySpreadConstraints, CONTROL, "spec.template.spec.topologySpreadConstraints", /spread/],
    ["writable root filesystem", (e) => void (controlContainer(e).securityContext.readOnlyRootFilesystem = false), CONTROL, `${C0}.securityContext.readOnlyRootFilesystem`],
    ["root allowed", (e) => { delete control(e).spec.template.spec.securityContext.runAsNonRoot; delete controlContainer(e).securityContext.runAsNonRoot; }, CONTROL, `${C0}.securityContext.runAsNonRoot`],
    ["no memory limit", (e) => void delete controlContainer(e).resources.limits, CONTROL, `${C0}.resources.limits.memory`],
    ["a misspelt spec key", (e) => void (control(e).spec.replica = 3), CONTROL, "spec.replica", /unknown key/],
    ["a misspelt container key", (e) => void (controlContainer(e).readinesProbe = {}), CONTROL, `${C0}.readinesProbe`, /unknown key/],
    ["selector not matching the template labels", (e) => void (control(e).spec.selector.matchLabels = { app: "other" }), CONTROL, "spec.selector", /does not match/],
    ["a volume mount without its volume", (e) => void (controlContainer(e).volumeMounts[0].name = "scratch"), CONTROL, `${C0}.volumeMounts[0].name`],
    ["PDB selector not matching any pods", (e) => void (obj(e, "PodDisruptionBudget", "gateway-control").spec.selector.matchLabels = { "app.kubernetes.io/name": "gateway-contrl" }), "PodDisruptionBudget/gateway-control", "spec.selector", /selects no pods/],
    ["PDB that blocks every eviction", (e) => { const s = obj(e, "PodDisruptionBudget", "gateway-control").spec; delete s.maxUnavailable; s.minAvailable = 3; }, "PodDisruptionBudget/gateway-control", "spec.minAvailable", /drains/],
    ["PDB with both minAvailable and maxUnavailable", (e) => void (obj(e, "PodDisruptionBudget", "redis").spec.minAvailable = 2), "PodDisruptionBudget/redis", "spec", /exactly one/],
    ["REDIS_PASSWORD in the ConfigMap", (e) => void (obj(e, "ConfigMap", "gateway-control-env").data.REDIS_PASSWORD = "hunter2"), "ConfigMap/gateway-control-env", 'data["REDIS_PASSWORD"]', /Secret/],
    ["CONTROL_TOKEN in the ConfigMap", (e) => void (obj(e, "ConfigMap", "gateway-control-env").data.CONTROL_TOKEN = "0123456789abcdef0123"), "ConfigMap/gateway-control-env", 'data["CONTROL_TOKEN"]', /Secret/],
    ["CONTROL_ADMIN_TOKENS in the ConfigMap", (e) => void (obj(e, "ConfigMap", "gateway-control-env").data.CONTROL_ADMIN_TOKENS = "0123456789abcdef0123"), "ConfigMap/gateway-control-env", 'data["CONTROL_ADMIN_TOKENS"]', /Secret/],
    ["a Redis URL with its password in the ConfigMap", (e) => void (obj(e, "ConfigMap", "gateway-control-env").data.REDIS_URL = "redis://default:hunter2@redis:6379"), "ConfigMap/gateway-control-env", 'data["REDIS_URL"]', /password/],
    ["a literal password in the env", (e) => void (envEntry(e, "REDIS_PASSWORD").value = "hunter2", delete envEntry(e, "REDIS_PASSWORD").valueFrom), CONTROL, `${C0}.env[4].value`, /Secret/],
    ["a number in the ConfigMap", (e) => void (obj(e, "ConfigMap", "gateway-control-env").data.CONTROL_PORT = 8080), "ConfigMap/gateway-control-env", 'data["CONTROL_PORT"]', /string/],
    ["env referencing a missing Secret key", (e) => void (envEntry(e, "REDIS_PASSWORD").valueFrom.secretKeyRef.key = "password"), CONTROL, `${C0}.env[4].valueFrom.secretKeyRef.key`, /no key "password"/],
    ["env referencing a missing Secret", (e) => void (envEntry(e, "CONTROL_ADMIN_TOKENS").valueFrom.secretKeyRef.name = "tokens"), CONTROL, `${C0}.env[1].valueFrom.secretKeyRef.name`, /no Secret "tokens"/],
    ["envFrom a missing ConfigMap", (e) => void (controlContainer(e).envFrom[0].configMapRef.name = "control-env"), CONTROL, `${C0}.envFrom[0].configMapRef.name`, /no ConfigMap/],
    ["a volume of a missing ConfigMap", (e) => void (obj(e, "StatefulSet", "redis").spec.template.spec.volumes[0].configMap.name = "scripts"), "StatefulSet/redis", "spec.template.spec.volumes[0].configMap.name", /no ConfigMap/],
    ["the config loader refuses a bad value", (e) => void (obj(e, "ConfigMap", "gateway-control-env").data.REDIS_WAIT_REPLICAS = "sometimes"), CONTROL, `${C0}.env["REDIS_WAIT_REPLICAS"]`, /control\/src\/config\.ts refuses REDIS_WAIT_REPLICAS \(from ConfigMap gateway-control-env key REDIS_WAIT_REPLICAS\)/],
    ["the config loader refuses a short token from the Secret", (e) => void (obj(e, "Secret", "gateway-control-tokens").stringData["plugin-tokens"] = "short"), CONTROL, `${C0}.env["CONTROL_PLUGIN_TOKENS"]`, /at least 16 characters/],
    ["no admin token (each replica would make its own)", (e) => { const c = controlContainer(e); c.env = c.env.filter((x: { name: string }) => x.name !== "CONTROL_ADMIN_TOKENS"); }, CONTROL, `${C0}.env["CONTROL_ADMIN_TOKENS"]`, /generate/],
    ["listening on loopback only", (e) => void (obj(e, "ConfigMap", "gateway-control-env").data.CONTROL_HOST = "127.0.0.1"), CONTROL, `${C0}.env["CONTROL_HOST"]`, /loopback/],
    ["the ADS port not a container port", (e) => void (obj(e, "ConfigMap", "gateway-control-env").data.CONTROL_XDS_GRPC_PORT = "18001"), CONTROL, `${C0}.ports`, /CONTROL_XDS_GRPC_PORT/],
    ["a sentinel host that is no Service", (e) => void (obj(e, "ConfigMap", "gateway-control-env").data.REDIS_SENTINELS = "redis-sentinel.model-gateway.svc.cluster.local:26379"), CONTROL, `${C0}.env["REDIS_SENTINELS"]`, /no Service "redis-sentinel"/],
    ["a sentinel pod the StatefulSet does not have", (e) => void (obj(e, "ConfigMap", "gateway-control-env").data.REDIS_SENTINELS = "redis-3.redis.model-gateway.svc.cluster.local:26379"), CONTROL, `${C0}.env["REDIS_SENTINELS"]`, /no pod redis-3/],
    ["a sentinel port nothing serves", (e) => void (obj(e, "ConfigMap", "gateway-control-env").data.REDIS_SENTINELS = "redis-0.redis.model-gateway.svc.cluster.local:26380"), CONTROL, `${C0}.env["REDIS_SENTINELS"]`, /port 26380/],
    ["a Service targetPort the pods do not have", (e) => void (obj(e, "Service", "gateway-control").spec.ports[1].targetPort = "grpc"), "Service/gateway-control", "spec.ports[1].targetPort", /no container port named "grpc"/],
    ["a Service selecting no pods", (e) => void (obj(e, "Service", "gateway-control").spec.selector = { app: "control" }), "Service/gateway-control", "spec.selector", /selects no pods/],
    ["a StatefulSet whose Service is not headless", (e) => void delete obj(e, "Service", "redis").spec.clusterIP, "StatefulSet/redis", "spec.serviceName", /headless/],
    ["an object in another namespace than the kustomization's", (e) => void (obj(e, "Secret", "redis-auth").metadata.namespace = "redis"), "Secret/redis-auth", "metadata.namespace", /kustomization/],
  ];
  for (const [name, mutate, object, path, message] of cases) {
    test(name, () => {
      const e = shipped();
      mutate(e);
      assertIssue(e, object, path, message);
    });
  }

  test("a namespace the set does not create", () => {
    const e = shipped().filter((x) => x.value.kind !== "Namespace");
    assertIssue(e, CONTROL, "metadata.namespace", /not created by this set/);
  });

  test("a kustomization resource outside its folder, a missing one, an unknown kustomization key", () => {
    const dir = mkdtempSync(join(tmpdir(), "k8s-kustomize-"));
    const file = join(dir, "kustomization.yaml");
    writeFileSync(file, "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: model-gateway\nresource: []\nresources:\n  - ../../etc/x.yaml\n  - missing.yaml\n");
    const r = validateFile(file);
    assert.ok(!r.ok);
    const errors = r.reports[0]!.result.errors;
    assert.ok(errors.some((i) => i.path === "resources[0]" && /load restrictor/.test(i.message)), JSON.stringify(errors));
    assert.ok(errors.some((i) => i.path === "resources[1]" && /no such file/.test(i.message)));
    assert.ok(errors.some((i) => i.path === "resource" && /unknown key/.test(i.message)));
  });

  test("the CLI takes envoy/kubernetes/*.yaml: exit 0 as shipped, 1 for a broken copy", () => {
    const cli = join(REPO, "envoy/validate/cli.ts");
    const files = readdirSync(DIR).filter((f) => f.endsWith(".yaml")).map((f) => join(DIR, f));
    const ok = spawnSync(process.execPath, ["--import", "tsx", cli, ...files], { cwd: REPO, encoding: "utf8" });
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /kustomization\.yaml: OK as Kubernetes Kustomization \(shape check \+ its 11 objects as one set\)/);
    const dir = mkdtempSync(join(tmpdir(), "k8s-broken-"));
    for (const f of readdirSync(DIR).filter((f) => f.endsWith(".yaml"))) writeFileSync(join(dir, f), readFileSync(join(DIR, f), "utf8"));
    writeFileSync(join(dir, "control.yaml"), readFileSync(join(DIR, "control.yaml"), "utf8").replace("path: /healthz", "path: /ready"));
    const bad = spawnSync(process.execPath, ["--import", "tsx", cli, join(dir, "kustomization.yaml")], { cwd: REPO, encoding: "utf8" });
    assert.equal(bad.status, 1, bad.stdout);
    assert.match(bad.stdout, /control\.yaml#3 Deployment\/gateway-control: spec\.template\.spec\.containers\[0\]\.readinessProbe\.httpGet\.path/);
  });
});
