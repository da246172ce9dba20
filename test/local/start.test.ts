// `npm start` (envoy/local/start.ts) as a process, and the Envoy bootstrap it would generate.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { localEnvoyBootstrap } from "../../envoy/local/envoy-config.js";
import { keptToken } from "../../envoy/local/launcher.js";
import { formatIssue, validateBootstrap } from "../../envoy/validate/index.js";
import { freePort, waitFor } from "../support/redis.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

interface Run {
  stdout(): string;
  stderr(): string;
  exit(): { code: number | null; signal: string | null } | null;
  exited: Promise<{ code: number | null; signal: string | null }>;
  pid: number;
}

function run(script: string, env: NodeJS.ProcessEnv): Run {
  const child = spawn(process.execPath, ["--import", "tsx", script], { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  let exit: { code: number | null; signal: string | null } | null = null;
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) =>
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      r(exit);
    }),
  );
  return { stdout: () => out, stderr: () => err, exit: () => exit, exited, pid: child.pid! };
}

/** SIGTERM (the gateway stops what it started: Redis, control, data plane), SIGKILL if that takes over 10 s. */
async function stopRun(r: Run): Promise<void> {
  process.kill(r.pid, "SIGTERM");
  const t = setTimeout(() => r.exit() === null && process.kill(r.pid, "SIGKILL"), 10_000);
  await r.exited;
  clearTimeout(t);
}

function baseEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, GATEWAY_DATA_PLANE: "local", ...extra };
  for (const k of ["REDIS_URL", "CONTROL_ADMIN_TOKENS", "CONTROL_PLUGIN_TOKENS", "PASSTHROUGH_URL"]) if (!(k in extra)) delete env[k];
  return env;
}

describe("npm start", { timeout: 90_000 }, () => {
  test("without redis-server (and no REDIS_URL) it says how to install it and exits non-zero", async () => {
    const bin = mkdtempSync(join(tmpdir(), "gw-nobin-"));
    try {
      symlinkSync(process.execPath, join(bin, "node")); // PATH with node only
      const r = run("envoy/local/start.ts", baseEnv({ PATH: bin, GATEWAY_DATA_DIR: join(bin, "data") }));
      const e = await r.exited;
      assert.notEqual(e.code, 0);
      assert.match(r.stderr(), /redis-server was not found/);
      assert.match(r.stderr(), /apt-get install -y redis-server/);
      assert.match(r.stderr(), /brew install redis/);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  test("an invalid data-plane limit is refused before anything starts, naming the variable", async () => {
    const data = mkdtempSync(join(tmpdir(), "gw-limits-"));
    try {
      for (const [name, value] of [["GATEWAY_FIRST_BYTE_TIMEOUT_MS", "soon"], ["GATEWAY_BUFFER_LIMIT_BYTES", "1024"], ["GATEWAY_CONNECT_TIMEOUT_MS", "-5"]] as const) {
        const r = run("envoy/local/start.ts", baseEnv({ GATEWAY_DATA_DIR: data, [name]: value }));
        const e = await r.exited;
        assert.equal(e.code, 1, r.stderr());
        assert.match(r.stderr(), new RegExp(`${name} must be an integer`));
        assert.ok(!existsSync(join(data, "redis")), "nothing was started");
      }
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  });

  test("starts Redis with append-only data under the data folder, control and the local data plane; Ctrl-C stops all; data survives a restart", async () => {
    const data = mkdtempSync(join(tmpdir(), "gw-start-"));
    const started: ReturnType<typeof run>[] = [];
    try {
      const env = baseEnv({ GATEWAY_DATA_DIR: data, GATEWAY_PORT: String(await freePort()), CONTROL_PORT: String(await freePort()) });
      const first = run("envoy/local/start.ts", env);
      started.push(first);
      await waitFor(() => first.exit() !== null || first.stdout().includes("Ctrl-C stops everything"), 30_000, "the banner");
      assert.equal(first.exit(), null, first.stderr());
      assert.match(first.stdout(), /LOCAL DATA PLANE \(not Envoy\)/);
      const token = /admin token\s+(\S+)/.exec(first.stdout())?.[1];
      assert.ok(token, first.stdout());
      const control = `http://127.0.0.1:${env.CONTROL_PORT}`;
      // The banner's sign-in link: the dashboard with the token in the fragment (never in a query string).
      assert.ok(first.stdout().includes(`dashboard (sign-in link)      ${control}/ui/#token=${token}`), first.stdout());
      assert.ok(!first.stdout().includes(`?token=`));
      assert.ok(first.stdout().includes(`generated now and kept in ${join(data, "secrets", "admin-token")} (mode 0600)`), first.stdout());
      // GET / leads to the dashboard.
      const root = await fetch(`${control}/`, { redirect: "manual" });
      assert.equal(root.status, 302);
      assert.equal(root.headers.get("location"), "/ui/");
      const created = await fetch(`${control}/v1/models`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ name: "persisted-model" }) });
      assert.equal(created.status, 201);
      // Unmanaged model, no PASSTHROUGH_URL: the data plane answers 404 model_not_found (OpenAI's shape).
      const nr = await fetch(`http://127.0.0.1:${env.GATEWAY_PORT}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"model":"x","messages":[]}' });
      assert.equal(nr.status, 404);
      assert.match(String(nr.headers.get("content-type")), /^application\/json/);
      assert.equal((await nr.json()).error.code, "model_not_found");
      process.kill(first.pid, "SIGINT");
      assert.deepEqual(await first.exited, { code: 0, signal: null }, first.stderr());
      assert.ok(existsSync(join(data, "redis")) && readdirSync(join(data, "redis")).some((f) => f.startsWith("appendonly")), "append-only files in <data>/redis");

      // The generated tokens are kept for the next start: owner-only files in an owner-only directory.
      const secrets = join(data, "secrets");
      assert.equal(statSync(secrets).mode & 0o777, 0o700, "secrets directory 0700");
      for (const f of ["admin-token", "plugin-token"]) assert.equal(statSync(join(secrets, f)).mode & 0o777, 0o600, `${f} 0600`);
      assert.equal(readFileSync(join(secrets, "admin-token"), "utf8").trim(), token);
      const pluginToken = readFileSync(join(secrets, "plugin-token"), "utf8").trim();

      // The next start reuses them: the same admin token works, the banner says where it is kept.
      const second = run("envoy/local/start.ts", env);
      started.push(second);
      await waitFor(() => second.exit() !== null || second.stdout().includes("Ctrl-C stops everything"), 30_000, "the banner again");
      assert.equal(/admin token\s+(\S+)/.exec(second.stdout())?.[1], token, second.stdout());
      assert.ok(second.stdout().includes(`kept since an earlier start in ${join(secrets, "admin-token")} (mode 0600)`), second.stdout());
      assert.ok(second.stdout().includes(`${control}/ui/#token=${token}`));
      const models = await fetch(`${control}/v1/models`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(models.status, 200);
      assert.ok(JSON.stringify(await models.json()).includes("persisted-model"), "the model registered in the first run is still there");
      assert.equal((await fetch(`${control}/v1/routing-table`, { headers: { authorization: `Bearer ${pluginToken}` } })).status, 200, "the kept plugin token too");
      process.kill(second.pid, "SIGTERM");
      assert.deepEqual(await second.exited, { code: 0, signal: null }, second.stderr());
      assert.equal(statSync(join(secrets, "admin-token")).mode & 0o777, 0o600);

      // CONTROL_ADMIN_TOKENS still overrides (and the kept file is left as it is).
      const third = run("envoy/local/start.ts", { ...env, CONTROL_ADMIN_TOKENS: "a-configured-admin-token-0123456789" });
      started.push(third);
      await waitFor(() => third.exit() !== null || third.stdout().includes("Ctrl-C stops everything"), 30_000, "the banner a third time");
      assert.match(third.stdout(), /admin token\s+from CONTROL_ADMIN_TOKENS/);
      assert.ok(third.stdout().includes(`dashboard                     ${control}/ui/ (sign in with a token of CONTROL_ADMIN_TOKENS)`), third.stdout());
      assert.ok(!third.stdout().includes(token), "the kept token is not printed when it is not in use");
      assert.equal((await fetch(`${control}/v1/models`, { headers: { authorization: `Bearer ${token}` } })).status, 401);
      assert.equal((await fetch(`${control}/v1/models`, { headers: { authorization: "Bearer a-configured-admin-token-0123456789" } })).status, 200);
      assert.equal(readFileSync(join(secrets, "admin-token"), "utf8").trim(), token);
      process.kill(third.pid, "SIGTERM");
      assert.deepEqual(await third.exited, { code: 0, signal: null }, third.stderr());
    } finally {
      // A failed assertion must not leave a gateway (and its Redis) running: the whole group goes.
      for (const p of started) if (p.exit() === null) await stopRun(p);
      rmSync(data, { recursive: true, force: true });
    }
  });
});

describe("keptToken: the launcher's generated tokens across restarts", () => {
  test("created 0600 in a 0700 directory, read back, repaired when loosened, replaced when unusable", () => {
    const root = mkdtempSync(join(tmpdir(), "gw-kept-"));
    try {
      const dir = join(root, "secrets");
      const said: string[] = [];
      const first = keptToken(dir, "admin-token", (l) => said.push(l));
      assert.equal(first.created, true);
      assert.match(first.token, /^[A-Za-z0-9_-]{32}$/);
      assert.equal(statSync(dir).mode & 0o777, 0o700);
      assert.equal(statSync(first.file).mode & 0o777, 0o600);
      assert.deepEqual(keptToken(dir, "admin-token"), { ...first, created: false });
      // Loosened by hand: made owner-only again, with a warning; a loosened directory too.
      chmodSync(first.file, 0o644);
      chmodSync(dir, 0o755);
      assert.equal(keptToken(dir, "admin-token", (l) => said.push(l)).token, first.token);
      assert.equal(statSync(first.file).mode & 0o777, 0o600);
      assert.equal(statSync(dir).mode & 0o777, 0o700);
      assert.ok(said.some((l) => /readable by others/.test(l)), said.join("\n"));
      // Not a usable token (too short, a comma would split CONTROL_ADMIN_TOKENS): replaced.
      for (const bad of ["", "short", "has,comma-0123456789abcdef"]) {
        writeFileSync(first.file, bad);
        const next = keptToken(dir, "admin-token", (l) => said.push(l));
        assert.equal(next.created, true);
        assert.notEqual(next.token, bad);
        assert.equal(statSync(next.file).mode & 0o777, 0o600);
      }
      assert.deepEqual(readdirSync(dir), ["admin-token"], "no temporary file left");
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("Envoy bootstrap for a local run (used when envoy ≥ 1.35 is installed)", () => {
  const base = { listenHost: "127.0.0.1", listenPort: 10000, adminPort: 9901, controlHost: "127.0.0.1", controlPort: 8080, pluginToken: "plugin-token-0123456789abcdef", wasmPath: "/abs/build/plugin.wasm" };
  for (const passthroughUrl of [null, "https://api.openai.com", "http://127.0.0.1:9999/openai"]) {
    test(`validates against Envoy's protos (passthrough ${passthroughUrl ?? "none"})`, () => {
      const doc = localEnvoyBootstrap({ ...base, passthroughUrl });
      const v = validateBootstrap(doc);
      assert.ok(v.ok, v.errors.map(formatIssue).join("\n"));
      const json = JSON.stringify(doc);
      assert.ok(json.includes("plugin-token-0123456789abcdef") && json.includes("/abs/build/plugin.wasm"));
      assert.equal(json.includes("api.openai.com"), passthroughUrl === "https://api.openai.com", "the shipped SaaS upstream is replaced by PASSTHROUGH_URL");
      if (passthroughUrl === null) {
        assert.equal(json.includes("saas_openai"), false);
        // Unknown models then match no route: local_reply_config makes Envoy's NR 404 model_not_found.
        const hcm = doc.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
        assert.deepEqual(hcm.route_config.virtual_hosts[0].routes.map((r: { name: string }) => r.name), ["gateway_models"]);
        assert.ok(hcm.local_reply_config.mappers.some((m: { filter: { response_flag_filter?: { flags: string[] } }; body_format_override: { json_format: { error: { code: string } } } }) => m.filter.response_flag_filter?.flags.includes("NR") && m.body_format_override.json_format.error.code === "model_not_found"));
      }
    });
  }

  test("with the control's ADS port (npm start with Envoy: CONTROL_XDS_GRPC_PORT, default 18000): clusters over ADS from gateway_xds; without it the REST fallback", () => {
    const ads = localEnvoyBootstrap({ ...base, adsPort: 18123, passthroughUrl: null });
    const v = validateBootstrap(ads);
    assert.ok(v.ok, v.errors.map(formatIssue).join("\n"));
    assert.deepEqual(ads.dynamic_resources.cds_config.ads, {});
    const name = ads.dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name;
    const xds = ads.static_resources.clusters.find((c: { name: string }) => c.name === name);
    assert.deepEqual(xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, { address: "127.0.0.1", port_value: 18123 });
    // The shipped bootstrap lists three control replicas; npm start runs one: one endpoint each, the ADS
    // one health-checked on the control's HTTP port (shipped checks kept).
    const control = ads.static_resources.clusters.find((c: { name: string }) => c.name === "gateway_control");
    assert.equal(control.load_assignment.endpoints[0].lb_endpoints.length, 1);
    assert.equal(xds.load_assignment.endpoints[0].lb_endpoints.length, 1);
    assert.deepEqual(xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.health_check_config, { port_value: base.controlPort });
    assert.equal(control.health_checks[0].http_health_check.path, "/healthz");
    const rest = localEnvoyBootstrap({ ...base, adsPort: null, passthroughUrl: null });
    assert.ok(validateBootstrap(rest).ok);
    assert.equal(rest.dynamic_resources.ads_config, undefined);
    assert.deepEqual(rest.dynamic_resources.cds_config.api_config_source.cluster_names, ["gateway_control"]);
    assert.equal(rest.static_resources.clusters.some((c: { name: string }) => c.name === name), false);
  });
});
