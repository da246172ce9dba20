/**
 * The plugin's VM lifecycle in a real Envoy (>= 1.35) (issue 14; envoy/local/host/API.md "VM lifecycle",
 * plugin/README.md "Table distribution", "Request path" point 3): Envoy runs the plugin in a
 * configuration canary, a main-thread VM and one VM per worker, and a filter configuration update
 * starts a second root context in each of them. What goes through Envoy's listener, and what is checked:
 *
 *   - cold start (twice: the e2e's poll_interval_ms 200, and poll_interval_ms 60000 — the plugin must
 *     still poll about 100 ms after start): the control service already has a table, Envoy starts with
 *     --concurrency 4 (4 worker VMs + the main-thread VM + the canary), and from the first moment its
 *     listener accepts, 16 keep-alive connections (spread over the workers by the kernel) send requests
 *     naming the managed model, for 3 s after admin /ready. Every answer is either 503 with the OpenAI
 *     error code table_not_loaded and retry-after: retry_after_seconds, or routed to a mock instance
 *     (never a passthrough: nothing reaches the SaaS stand-in); on each connection, once routed always
 *     routed; every connection routed within 2 s of /ready (the measured figures: t.diagnostic).
 *     Requests name the model in the JSON body: the plugin answers 503 only after the whole request
 *     was read, so the connection stays usable (a reply before the request body is complete may make
 *     Envoy close an HTTP/1.1 connection — not what is under test here).
 *   - filter reload (listener from LDS, a file: support/lds.ts; that bootstrap and the LDS documents are
 *     checked everywhere, below): under steady traffic (8 keep-alive connections + new connections per
 *     request) the LDS file is replaced atomically with max_fallbacks changed (2 → 1). Throughout: every
 *     request answered 200 by a mock instance of the deployment (no 5xx, no network error, nothing to
 *     the SaaS stand-in, no table_not_loaded — the new root contexts take the table from shared data in
 *     on_configure); after Envoy applied the update, new connections carry the new list length in
 *     x-gateway-destination-endpoint (old connections may keep the old filter chain while it drains).
 *     Then an LDS file whose plugin configuration has an unknown key: Envoy rejects it
 *     (listener_manager.lds.update_rejected; the canary's on_configure refused it, its log names the
 *     key), nothing is updated, and traffic keeps being routed by the configuration in force.
 *
 * Runs only where Envoy exists (ENVOY_BIN, or `envoy` on PATH); elsewhere the Envoy tests report SKIPPED
 * with the reason — never passed. The LDS bootstrap test runs everywhere. Every wait is on a condition
 * (admin /ready, /stats, /clusters; answers seen), bounded; every Envoy, connection and temp dir is
 * released in `after`, also when a step fails.
 *
 * Dry run of this file's own logic without Envoy (NOT evidence about Envoy): ENVOY_BIN=
 * test/e2e-envoy/support/sim-envoy (a simulation, see sim-envoy.ts: every request on one worker, no
 * per-worker listener stats — so the cold-start tests' last check, "the connections met several
 * workers", fails there by design; an LDS update applies to every stream at once, no draining chains).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { PluginConfig, type PluginConfigInput } from "../../control/contracts/plugin-config.js";
import { formatIssue, validateBootstrap, validateDiscoveryResponse } from "../../envoy/validate/index.js";
import { freePort } from "../support/redis.js";
import { E2E_PLUGIN_SETTINGS, WASM_PATH, e2eBootstrap, locate, type E2eBootstrap } from "./support/bootstrap.js";
import { header, until, type Sent, type SendOptions } from "./support/client.js";
import { ClientConnection, UpstreamIndex, sendFresh } from "./support/connection.js";
import { assertEnvoyVersion, findEnvoy, pluginStat, startEnvoy, type RunningEnvoy } from "./support/envoy.js";
import { ldsBootstrap, ldsDocument, pluginConfigText, withPluginConfigText, writeAtomically } from "./support/lds.js";
import { DEPLOYMENTS, PLUGIN, startStack, type Stack } from "./support/stack.js";

const { bin, why } = findEnvoy();
const skip = bin ? false : `SKIPPED: ${why}`;

/** The one deployment these tests route to (4 instances: a list of up to 4 addresses). */
const RR = DEPLOYMENTS.find((d) => d.id === "rr")!;
const MODEL = RR.model;

/** Cold start: keep-alive connections, traffic window after /ready, bound on "routed" per connection. */
const COLD_CONNECTIONS = 16;
const COLD_WINDOW_MS = 3_000;
const COLD_ROUTED_WITHIN_MS = 2_000;
const WORKERS = 4;

/** Reload: steady keep-alive connections + loops of one-request connections. */
const STEADY_CONNECTIONS = 8;
const FRESH_LOOPS = 2;
/** One-request connections: a probe every this many ms per loop (the keep-alive clients are the load). */
const FRESH_PACE_MS = 10;
/** Fresh connections checked after each LDS step. */
const FRESH_CHECKED = 24;
/**
 * Envoy's main thread applies an LDS update and posts the new filter chains to every worker; a
 * connection a worker accepts before running that post still gets the old chain. Fresh connections
 * opened this long after the admin reports the update applied must all have the new configuration.
 */
const WORKER_APPLY_GRACE_MS = 250;
/** A key contract 2 does not know: the plugin's on_configure refuses it (in the canary: LDS rejected). */
const UNKNOWN_KEY = "e2e_no_such_setting";

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));


async function distinctFreePorts(n: number): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await freePort());
  return [...out];
}

// ---------------------------------------------------------------------------------------------
// Answers and traffic.

interface Answer {
  /** Which client loop: "c3", "fresh1", … */
  client: string;
  /** The client's TCP connection that carried it (keep-alive clients; 0 for one-request connections). */
  socket: number;
  seq: string;
  startedAt: number;
  at: number;
  kind: "routed" | "not_loaded" | "failed";
  /** Routed: "<deployment>/<instance>" that served. */
  where?: string;
  /** Routed: x-gateway-destination-endpoint as the instance received it. */
  list?: string[];
  detail?: string;
}

interface Expect {
  stack: Stack;
  index: UpstreamIndex;
  plugin: PluginConfig;
  /** The deployment's Envoy cluster (what the plugin writes into cluster_header). */
  cluster: string;
}

/**
 * Routed to RR (200 from one of its instances, one upstream request, the plugin's headers, a list of
 * distinct RR addresses starting with the one that served), or 503 table_not_loaded with retry-after
 * and no upstream request; anything else is "failed" with the reason.
 */
function classify(x: Expect, r: Sent): Pick<Answer, "kind" | "where" | "list" | "detail"> {
  const hits = x.index.hits(r.seq);
  const brief = () => `seq ${r.seq}: ${r.status} ${r.text.slice(0, 300)} → upstream: ${hits.map((h) => h.where).join(",") || "none"}`;
  if (hits.some((h) => h.where === "saas")) return { kind: "failed", detail: `reached the SaaS stand-in (passthrough): ${brief()}` };
  if (r.status === 503) {
    let code: unknown;
    let type: unknown;
    try {
      const e = (JSON.parse(r.text) as { error?: { code?: unknown; type?: unknown } }).error;
      code = e?.code;
      type = e?.type;
    } catch {
      code = undefined;
    }
    const retryAfter = r.headers.get("retry-after");
    if (code === "table_not_loaded" && type === "server_error" && retryAfter === String(x.plugin.retry_after_seconds) && hits.length === 0) return { kind: "not_loaded" };
    return { kind: "failed", detail: `503 but not table_not_loaded with retry-after ${x.plugin.retry_after_seconds} (retry-after ${String(retryAfter)}): ${brief()}` };
  }
  if (r.status !== 200) return { kind: "failed", detail: brief() };
  if (hits.length !== 1) return { kind: "failed", detail: `expected one upstream request: ${brief()}` };
  const hit = hits[0]!;
  if (!hit.where.startsWith(`${RR.id}/`)) return { kind: "failed", detail: `served by ${hit.where}: ${brief()}` };
  if (r.content !== hit.where) return { kind: "failed", detail: `answer ${String(r.content)} is not from the instance that got the request: ${brief()}` };
  const h = hit.req.headers;
  const problems: string[] = [];
  if (header(h, x.plugin.cluster_header) !== x.cluster) problems.push(`${x.plugin.cluster_header}=${String(header(h, x.plugin.cluster_header))}`);
  if (header(h, x.plugin.deployment_header) !== RR.id) problems.push(`${x.plugin.deployment_header}=${String(header(h, x.plugin.deployment_header))}`);
  if (header(h, x.plugin.instance_header) !== hit.where.slice(RR.id.length + 1)) problems.push(`${x.plugin.instance_header}=${String(header(h, x.plugin.instance_header))}`);
  const list = (header(h, x.plugin.endpoint_header) ?? "").split(",");
  const rrAddresses = new Set(RR.instances.map((i) => x.stack.address(`${RR.id}/${i.id}`)));
  if (list[0] !== x.stack.address(hit.where)) problems.push(`list does not start with the pick: ${list.join(",")}`);
  if (new Set(list).size !== list.length || !list.every((a) => rrAddresses.has(a))) problems.push(`list not distinct addresses of ${RR.id}: ${list.join(",")}`);
  if (problems.length > 0) return { kind: "failed", detail: `${problems.join("; ")}: ${brief()}` };
  return { kind: "routed", where: hit.where, list };
}

/** Client loops sending until stopped; every answer (or network error) recorded in order. */
class Traffic {
  readonly answers: Answer[] = [];
  private stopped = false;
  private readonly loops: Promise<void>[] = [];

  constructor(private readonly x: () => Expect | undefined) {}

  /**
   * `send` is called again as soon as the previous request is answered. A refused connection whose
   * request started before `refusedUntil()` (Envoy not listening yet) is retried after 5 ms and not
   * recorded; any other network error is a failed answer. `paceMs`: at most one request per that
   * many ms (probes on one-request connections need not be load).
   */
  loop(client: string, send: (i: number) => Promise<Sent & { socket?: number }>, opts: { refusedUntil?: () => number; paceMs?: number } = {}): void {
    const refusedUntil = opts.refusedUntil ?? (() => 0);
    this.loops.push(
      (async () => {
        for (let i = 0; !this.stopped; i++) {
          const startedAt = Date.now();
          let r: Sent & { socket?: number };
          try {
            r = await send(i);
          } catch (e) {
            const refused = (e as { code?: string }).code === "ECONNREFUSED";
            if (!(refused && startedAt < refusedUntil())) {
              this.answers.push({ client, socket: -1, seq: String((e as { seq?: string }).seq ?? "?"), startedAt, at: Date.now(), kind: "failed", detail: `network error: ${String(e)}` });
            }
            await pause(5);
            continue;
          }
          const x = this.x();
          const c: Pick<Answer, "kind" | "where" | "list" | "detail"> = x ? classify(x, r) : { kind: "failed", detail: "answered before the test knew what to expect" };
          this.answers.push({ client, socket: r.socket ?? 0, seq: r.seq, startedAt, at: Date.now(), ...c });
          const rest = (opts.paceMs ?? 0) - (Date.now() - startedAt);
          if (rest > 0 && !this.stopped) await pause(rest);
        }
      })(),
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  of(client: string): Answer[] {
    return this.answers.filter((a) => a.client === client);
  }
}

const failures = (as: readonly Answer[]) => as.filter((a) => a.kind === "failed");
const show = (as: readonly Answer[], n = 10) =>
  as
    .slice(0, n)
    .map((a) => `${a.client}#${a.socket} ${a.kind} ${a.where ?? ""} ${a.list ? `[${a.list.length}]` : ""} ${a.detail ?? ""}`)
    .join("\n") + (as.length > n ? `\n… ${as.length - n} more` : "");

/** Envoy's per-worker accepted connections on the gateway listener (admin listener excluded). */
function workerConnections(stats: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of stats) {
    const m = /^listener\.(.+)\.(worker_\d+)\.downstream_cx_total$/.exec(k);
    if (m && m[1] !== "admin" && v > 0) out.set(m[2]!, (out.get(m[2]!) ?? 0) + v);
  }
  return out;
}

function quantiles(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return s.length === 0 ? "none" : `min ${s[0]} ms, median ${q(0.5)} ms, max ${s[s.length - 1]} ms`;
}

// ---------------------------------------------------------------------------------------------
// Runs everywhere: the LDS bootstrap and documents.

describe("LDS e2e bootstrap: the e2e bootstrap with its listener from a file, valid without Envoy", () => {
  const PORTS = { adminPort: 19901, listenerPort: 19000, controlPort: 18080, adsPort: 18000, saasPort: 18443 };
  const LDS_PATH = "/var/tmp/gw-e2e/lds.json";
  const gen = (plugin?: Partial<PluginConfigInput>) => e2eBootstrap({ nodeId: "e2e-lds-test", pluginToken: PLUGIN, ...PORTS, ...(plugin ? { plugin } : {}) });

  test("the bootstrap: valid against Envoy's v3 protos and startup cross-references, no warnings; listeners by LDS from the file (v3)", () => {
    const { bootstrap } = ldsBootstrap(gen(), LDS_PATH);
    const r = validateBootstrap(bootstrap);
    assert.deepEqual(r.errors.map(formatIssue), []);
    assert.deepEqual(r.warnings.map(formatIssue), []);
    assert.equal(bootstrap.static_resources.listeners, undefined, "no static listener: it comes from LDS");
    assert.deepEqual(bootstrap.dynamic_resources.lds_config, { resource_api_version: "V3", path_config_source: { path: LDS_PATH } });
  });

  test("the same e2e bootstrap otherwise: only the listener moved to LDS", () => {
    const g = gen();
    const { bootstrap, listener } = ldsBootstrap(g, LDS_PATH);
    const expected = structuredClone(g.bootstrap);
    assert.deepEqual(listener, locate(expected).listener, "the LDS listener is the static e2e listener");
    delete expected.static_resources.listeners;
    expected.dynamic_resources.lds_config = { resource_api_version: "V3", path_config_source: { path: LDS_PATH } };
    assert.deepEqual(bootstrap, expected);
    assert.ok(Array.isArray(g.bootstrap.static_resources.listeners), "generation leaves its input alone");
  });

  test("LDS documents: valid DiscoveryResponses; the reload changes only the plugin's max_fallbacks; the bad one is refused by the plugin, not by the protos", () => {
    const g1 = gen();
    const g2 = gen({ max_fallbacks: 1 });
    const v1 = ldsBootstrap(g1, LDS_PATH).listener;
    const v2 = ldsBootstrap(g2, LDS_PATH).listener;
    const cfg2 = JSON.parse(pluginConfigText(v2)) as Record<string, unknown>;
    const v3 = withPluginConfigText(v2, JSON.stringify({ ...cfg2, [UNKNOWN_KEY]: true }));
    for (const [name, l] of [["v1", v1], ["v2", v2], ["v3 (bad plugin configuration)", v3]] as const) {
      const doc = ldsDocument("1", l);
      const r = validateDiscoveryResponse(doc);
      assert.deepEqual(r.errors.map(formatIssue), [], name);
      assert.deepEqual(r.warnings.map(formatIssue), [], name);
      assert.equal(doc.resources.length, 1);
      assert.equal(doc.resources[0]["@type"], "type.googleapis.com/envoy.config.listener.v3.Listener");
    }
    // v1 → v2: only the plugin configuration string differs, and in it only max_fallbacks.
    assert.deepEqual(withPluginConfigText(v2, pluginConfigText(v1)), v1);
    const cfg1 = JSON.parse(pluginConfigText(v1)) as Record<string, unknown>;
    assert.deepEqual({ ...cfg2, max_fallbacks: cfg1.max_fallbacks }, cfg1);
    assert.equal(g1.plugin.max_fallbacks, 2);
    assert.equal(g2.plugin.max_fallbacks, 1);
    // With 4 instances the list is pick + min(max_fallbacks, 3): 3 → 2, visible to the instance.
    assert.ok(RR.instances.length > g1.plugin.max_fallbacks);
    // v3: Envoy parses it (a StringValue), the plugin must refuse it: contract 2 has no such key.
    const p3 = PluginConfig.safeParse(JSON.parse(pluginConfigText(v3)));
    assert.equal(p3.success, false);
    assert.match(JSON.stringify(p3.error?.issues), new RegExp(UNKNOWN_KEY));
    assert.equal(PluginConfig.safeParse(JSON.parse(pluginConfigText(v2))).success, true);
  });

  test("cold-start variant: poll_interval_ms 60000 is a valid plugin configuration and bootstrap", () => {
    const g = gen({ poll_interval_ms: 60_000 });
    assert.equal(g.plugin.poll_interval_ms, 60_000);
    assert.deepEqual(validateBootstrap(g.bootstrap).errors.map(formatIssue), []);
  });

  test("writeAtomically: a rename over the path (new inode), the whole document, no temp file left", () => {
    const dir = mkdtempSync(join(tmpdir(), "gw-lds-write-"));
    try {
      const path = join(dir, "lds.json");
      const listener = ldsBootstrap(gen(), path).listener;
      writeAtomically(path, ldsDocument("1", listener));
      const ino1 = statSync(path).ino;
      writeAtomically(path, ldsDocument("2", listener));
      assert.notEqual(statSync(path).ino, ino1, "replaced by a move, not rewritten in place (Envoy watches for moves)");
      assert.deepEqual(JSON.parse(readFileSync(path, "utf8")), ldsDocument("2", listener));
      assert.deepEqual(readdirSync(dir), ["lds.json"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("generation refuses a relative LDS path", () => {
    assert.throws(() => ldsBootstrap(gen(), "lds.json"), /absolute/);
  });
});

// ---------------------------------------------------------------------------------------------
// Real Envoy.

describe("plugin VM lifecycle through a real Envoy", { timeout: 600_000 }, () => {
  let stack: Stack | undefined;
  let index: UpstreamIndex | undefined;
  let cluster = "";
  const envoys: RunningEnvoy[] = [];
  const connections: ClientConnection[] = [];
  const traffics: Traffic[] = [];
  const dirs: string[] = [];

  const S = (): Stack => stack!;

  before(async () => {
    if (!bin) return; // every Envoy test is skipped
    const version = assertEnvoyVersion(bin);
    console.log(`envoy under test: ${bin} (${version})`);
    assert.ok(existsSync(WASM_PATH), "build/plugin.wasm missing: npm run build:plugin");
    stack = await startStack({ deployments: [RR] });
    index = new UpstreamIndex(stack);
    const table = await stack.table();
    assert.equal(table.models[MODEL], RR.id, "the control service has a table naming the model before Envoy starts");
    cluster = table.deployments.find((d) => d.id === RR.id)!.cluster;
  });

  after(async () => {
    const errors: unknown[] = [];
    const attempt = async (f: () => Promise<void> | void) => {
      try {
        await f();
      } catch (e) {
        errors.push(e);
      }
    };
    for (const t of traffics) await attempt(() => t.stop());
    for (const c of connections) await attempt(() => c.close());
    for (const e of envoys) await attempt(() => e.stop());
    for (const d of dirs) await attempt(() => rmSync(d, { recursive: true, force: true }));
    await attempt(() => stack?.close());
    if (errors.length > 0) throw new AggregateError(errors, "lifecycle e2e cleanup failed");
  });

  /** The Envoy, wrapped so a failing step carries Envoy's and the control service's last words. */
  const diag = async <T>(envoy: () => RunningEnvoy | undefined, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const en = envoy();
      let st = "(no envoy)";
      if (en) {
        try {
          st = [...(await en.stats("gateway\\.|listener_manager\\.|update_rejected|worker_"))].map(([k, v]) => `${k}: ${v}`).join("\n");
        } catch {
          st = "(stats unavailable)";
        }
      }
      throw new Error(`${msg}\n--- plugin/listener stats ---\n${st}\n--- envoy log (tail) ---\n${en?.logTail(150) ?? ""}\n--- control log (tail) ---\n${stack?.logTail(40) ?? ""}`, { cause: e });
    }
  };

  const generate = (adminPort: number, listenerPort: number, plugin?: Partial<PluginConfigInput>): E2eBootstrap =>
    e2eBootstrap({ nodeId: `gw-e2e-life-${process.pid}-${listenerPort}`, adminPort, listenerPort, controlPort: S().controlPort, adsPort: S().adsPort, saasPort: S().saas.port, pluginToken: PLUGIN, ...(plugin ? { plugin } : {}) });

  const validated = (b: unknown, what: string) => {
    const v = validateBootstrap(b);
    assert.deepEqual(v.errors.map(formatIssue), [], `${what}: the bootstrap must pass envoy/validate before Envoy sees it`);
  };

  /** The first moment admin /ready answers 200 (polled every 10 ms), or undefined once `give up` is true. */
  const watchReady = async (admin: string, giveUp: () => boolean): Promise<number | undefined> => {
    for (;;) {
      try {
        const r = await fetch(`${admin}/ready`, { signal: AbortSignal.timeout(1_000) });
        await r.text();
        if (r.status === 200) return Date.now();
      } catch {
        // not listening yet
      }
      if (giveUp()) return undefined;
      await pause(10);
    }
  };

  const coldStart = (variant: string, plugin: Partial<PluginConfigInput>) => async (t: TestContext) => {
    const [adminPort, listenerPort] = (await distinctFreePorts(2)) as [number, number];
    const gen = generate(adminPort, listenerPort, plugin);
    validated(gen.bootstrap, variant);
    const x: Expect = { stack: S(), index: index!, plugin: gen.plugin, cluster };
    const saasBefore = S().saas.requests.length;
    const listener = `http://127.0.0.1:${listenerPort}`;
    let envoy: RunningEnvoy | undefined;
    let readyAt: number | undefined;
    let startFailed = false;

    const traffic = new Traffic(() => x);
    traffics.push(traffic);
    const clients = Array.from({ length: COLD_CONNECTIONS }, () => new ClientConnection(listener));
    connections.push(...clients);
    // From before Envoy exists: refused until it listens (not recorded while /ready was not yet seen).
    clients.forEach((c, i) => traffic.loop(`c${i}`, () => c.send({ model: MODEL, via: "body" }), { refusedUntil: () => readyAt ?? Number.POSITIVE_INFINITY }));

    await diag(
      () => envoy,
      async () => {
        const spawnedAt = Date.now();
        const ready = watchReady(`http://127.0.0.1:${adminPort}`, () => startFailed || Date.now() > spawnedAt + 90_000);
        try {
          envoy = await startEnvoy({ bin: bin!, bootstrap: gen.bootstrap, adminPort, listenerPort, concurrency: WORKERS });
        } catch (e) {
          startFailed = true;
          await traffic.stop();
          throw e;
        }
        envoys.push(envoy);
        readyAt = await ready;
        assert.ok(readyAt !== undefined, "admin /ready seen (startEnvoy saw it)");
        t.diagnostic(`${variant}: Envoy ready ${readyAt - spawnedAt} ms after spawn`);
        // The traffic window: COLD_WINDOW_MS of requests after /ready.
        await until(() => Date.now() >= readyAt! + COLD_WINDOW_MS, COLD_WINDOW_MS + 1_000, "the traffic window to pass");
        await traffic.stop();

        const all = traffic.answers;
        assert.deepEqual(failures(all).map((a) => a.detail), [], `every answer is 503 table_not_loaded (+ retry-after) or routed to ${RR.id}:\n${show(failures(all))}`);
        assert.equal(S().saas.requests.length, saasBefore, "no request reached the SaaS stand-in (never a passthrough)");

        const firstRouted: number[] = [];
        for (let i = 0; i < clients.length; i++) {
          const as = traffic.of(`c${i}`);
          const first = as.findIndex((a) => a.kind === "routed");
          assert.ok(first >= 0, `c${i}: never routed in ${COLD_WINDOW_MS} ms after /ready (${as.length} answers: ${as.filter((a) => a.kind === "not_loaded").length} table_not_loaded)`);
          firstRouted.push(Math.max(0, as[first]!.at - readyAt!));
          // Once routed, always routed on that connection (a worker that holds a table keeps one).
          for (const sock of new Set(as.map((a) => a.socket))) {
            const onSock = as.filter((a) => a.socket === sock);
            const k = onSock.findIndex((a) => a.kind === "routed");
            if (k < 0) continue;
            const later = onSock.slice(k).filter((a) => a.kind !== "routed");
            assert.deepEqual(later.map((a) => a.seq), [], `c${i} connection ${sock}: table_not_loaded after the first routed answer:\n${show(later)}`);
          }
        }
        // From the moment the last connection was first routed, every request anywhere is routed.
        const allRoutedFrom = readyAt! + Math.max(...firstRouted);
        const stragglers = all.filter((a) => a.kind !== "routed" && a.startedAt > allRoutedFrom);
        assert.deepEqual(stragglers.map((a) => a.seq), [], `not routed after every connection had been:\n${show(stragglers)}`);
        const notLoaded = all.filter((a) => a.kind === "not_loaded").length;
        const stats = await envoy.stats("^listener\\.|gateway\\.table");
        const workers = workerConnections(stats);
        t.diagnostic(
          `${variant}: ${all.length} answers on ${clients.length} clients (${clients.reduce((n, c) => n + c.sockets, 0)} TCP connections), ` +
            `${notLoaded} × 503 table_not_loaded, ${all.length - notLoaded} routed; /ready → first routed answer per connection: ${quantiles(firstRouted)} ` +
            `(bound ${COLD_ROUTED_WITHIN_MS} ms); connections per worker: ${JSON.stringify(Object.fromEntries(workers))}; plugin table version ${String(pluginStat(stats, "gateway.table.version"))}`,
        );
        const late = firstRouted.map((ms, i) => [i, ms] as const).filter(([, ms]) => ms > COLD_ROUTED_WITHIN_MS);
        assert.deepEqual(late.map(([i, ms]) => `c${i}: ${ms} ms`), [], `every connection routed within ${COLD_ROUTED_WITHIN_MS} ms of /ready`);
        // The connections met several workers (each its own plugin VM), or this proved less than it says.
        assert.ok(workers.size >= 2, `connections reached ${workers.size} worker(s) of ${WORKERS}: ${JSON.stringify(Object.fromEntries(workers))}`);
      },
    );
    for (const c of clients) c.close();
    await envoy?.stop();
  };

  test(`cold start at --concurrency ${WORKERS}, poll_interval_ms ${E2E_PLUGIN_SETTINGS.poll_interval_ms}: table_not_loaded or routed, never passthrough; every connection routed soon after /ready`, { skip }, (t) =>
    coldStart(`poll_interval_ms ${E2E_PLUGIN_SETTINGS.poll_interval_ms}`, {})(t));

  test(`cold start at --concurrency ${WORKERS}, poll_interval_ms 60000: the plugin still polls at once at start`, { skip }, (t) => coldStart("poll_interval_ms 60000", { poll_interval_ms: 60_000 })(t));

  test("filter reload over LDS under steady traffic: no failure, no table_not_loaded, the change visible; a bad plugin configuration rejected, the old one kept", { skip }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "gw-lds-e2e-"));
    dirs.push(dir);
    const ldsPath = join(dir, "lds.json");
    const [adminPort, listenerPort] = (await distinctFreePorts(2)) as [number, number];
    const g1 = generate(adminPort, listenerPort);
    const g2 = generate(adminPort, listenerPort, { max_fallbacks: 1 });
    const { bootstrap, listener: v1 } = ldsBootstrap(g1, ldsPath);
    const v2 = ldsBootstrap(g2, ldsPath).listener;
    const v3 = withPluginConfigText(v2, JSON.stringify({ ...(JSON.parse(pluginConfigText(v2)) as object), [UNKNOWN_KEY]: true }));
    validated(bootstrap, "LDS bootstrap");
    for (const [name, doc] of [["v1", ldsDocument("1", v1)], ["v2", ldsDocument("2", v2)], ["v3", ldsDocument("3", v3)]] as const) {
      assert.deepEqual(validateDiscoveryResponse(doc).errors.map(formatIssue), [], `LDS document ${name} must pass envoy/validate`);
    }
    const lengthOf = (p: PluginConfig) => 1 + Math.min(p.max_fallbacks, RR.instances.length - 1);
    const OLD = lengthOf(g1.plugin);
    const NEW = lengthOf(g2.plugin);
    assert.notEqual(OLD, NEW, "the reload must be visible in the list length");

    writeAtomically(ldsPath, ldsDocument("1", v1));
    let envoy: RunningEnvoy | undefined;
    const E = () => envoy!;
    const lm = async () => E().stats("^listener_manager\\.");
    const num = (s: Map<string, number>, k: string) => s.get(k) ?? 0;
    const x: Expect = { stack: S(), index: index!, plugin: g1.plugin, cluster };
    const saasBefore = S().saas.requests.length;
    const traffic = new Traffic(() => x);
    traffics.push(traffic);

    await diag(
      () => envoy,
      async () => {
        envoy = await startEnvoy({ bin: bin!, bootstrap, adminPort, listenerPort, concurrency: WORKERS });
        envoys.push(envoy);
        const s0 = await lm();
        assert.equal(num(s0, "listener_manager.lds.update_rejected"), 0, "Envoy rejected the first LDS file");
        assert.ok(num(s0, "listener_manager.lds.update_success") >= 1, "the listener came from the LDS file");
        // The deployment's cluster (CDS) with its hosts (EDS) past the first health check, and the plugin's table.
        const version = (await S().table()).version;
        await until(
          async () => {
            const c = (await E().clusters()).get(cluster);
            return !!c && c.addedViaApi && c.hosts.length === RR.instances.length && c.hosts.every((h) => !h.pendingActiveHc && !h.failedActiveHc);
          },
          30_000,
          `cluster ${cluster} (CDS) with its ${RR.instances.length} endpoints, healthy`,
        );
        await until(async () => (pluginStat(await E().stats("gateway\\.table"), "gateway.table.version") ?? 0) >= version, 15_000, `plugin table version >= ${version}`);

        // Steady traffic: keep-alive connections (body and header routing alternating) + new connections.
        const steady = Array.from({ length: STEADY_CONNECTIONS }, () => new ClientConnection(E().listener));
        connections.push(...steady);
        steady.forEach((c, i) => traffic.loop(`c${i}`, (k) => c.send({ model: MODEL, via: k % 2 === 0 ? "body" : "header" })));
        for (let i = 0; i < FRESH_LOOPS; i++) traffic.loop(`fresh${i}`, (k) => sendFresh(E().listener, { model: MODEL, via: k % 2 === 0 ? "body" : "header" }), { paceMs: FRESH_PACE_MS });
        const fresh = (since: number) => traffic.answers.filter((a) => a.client.startsWith("fresh") && a.startedAt >= since);
        const everySteadyAnswered = (since: number, n: number) => steady.every((_, i) => traffic.of(`c${i}`).filter((a) => a.startedAt >= since).length >= n);
        const progress = () => `${traffic.answers.length} answers; last: ${show(traffic.answers.slice(-5))}`;

        // Warm-up: every worker VM has the table (its nudge or tick): all connections routed.
        await until(
          () => steady.every((_, i) => traffic.of(`c${i}`).some((a) => a.kind === "routed")) && fresh(0).slice(-FRESH_CHECKED).filter((a) => a.kind === "routed").length === FRESH_CHECKED,
          15_000,
          "warm-up: every keep-alive connection and the last new connections routed",
          progress,
        );
        const strictFrom = Date.now();
        await until(() => everySteadyAnswered(strictFrom, 3) && fresh(strictFrom).length >= FRESH_CHECKED, 15_000, "steady traffic before the reload", progress);

        // Reload: max_fallbacks 2 → 1.
        const b2 = await lm();
        const tWrite = Date.now();
        writeAtomically(ldsPath, ldsDocument("2", v2));
        await until(async () => num(await lm(), "listener_manager.lds.update_success") > num(b2, "listener_manager.lds.update_success"), 10_000, "Envoy to accept the new LDS file", async () => JSON.stringify(Object.fromEntries(await lm())));
        await until(
          async () => {
            const s = await lm();
            const updated = num(s, "listener_manager.listener_in_place_updated") + num(s, "listener_manager.listener_modified");
            return num(s, "listener_manager.total_listeners_warming") === 0 && updated > num(b2, "listener_manager.listener_in_place_updated") + num(b2, "listener_manager.listener_modified");
          },
          10_000,
          "the listener updated and warm",
          async () => JSON.stringify(Object.fromEntries(await lm())),
        );
        const tApplied = Date.now();
        assert.equal(num(await lm(), "listener_manager.lds.update_rejected"), 0);
        await until(() => fresh(tApplied).some((a) => a.list?.length === NEW), 10_000, `a new connection with the new configuration (list of ${NEW})`, progress);
        const tVisible = fresh(tApplied).find((a) => a.list?.length === NEW)!.at;
        const checkFrom = tApplied + WORKER_APPLY_GRACE_MS;
        await until(() => fresh(checkFrom).length >= FRESH_CHECKED && everySteadyAnswered(tApplied, 3), 15_000, "traffic after the reload", progress);
        const afterReload = fresh(checkFrom).slice(0, FRESH_CHECKED);
        assert.deepEqual(
          afterReload.filter((a) => a.list?.length !== NEW).map((a) => `${a.seq} ${a.kind} [${String(a.list?.length)}]`),
          [],
          `new connections opened ${WORKER_APPLY_GRACE_MS} ms after the update was applied carry the new configuration (list of ${NEW})`,
        );
        const oldInGrace = traffic.answers.filter((a) => a.client.startsWith("fresh") && a.startedAt >= tApplied && a.startedAt < checkFrom && a.list?.length === OLD).length;

        // A plugin configuration the plugin refuses: the canary's on_configure fails → LDS update rejected.
        const b3 = await lm();
        const tBad = Date.now();
        writeAtomically(ldsPath, ldsDocument("3", v3));
        await until(async () => num(await lm(), "listener_manager.lds.update_rejected") > num(b3, "listener_manager.lds.update_rejected"), 10_000, "Envoy to reject the LDS file with the bad plugin configuration", async () => JSON.stringify(Object.fromEntries(await lm())));
        const tRejected = Date.now();
        const s3 = await lm();
        for (const k of ["listener_manager.lds.update_success", "listener_manager.listener_in_place_updated", "listener_manager.listener_modified", "listener_manager.listener_added"]) {
          assert.equal(num(s3, k), num(b3, k), `${k}: nothing updated by the rejected file`);
        }
        // Why: the plugin's own refusal (on_configure in the canary), not something else Envoy disliked.
        const refusal = `invalid plugin configuration: ${UNKNOWN_KEY}`;
        await until(() => E().logTail(4000).includes(refusal), 5_000, `Envoy's log to carry the plugin's refusal "${refusal}"`, () => E().logTail(40));
        await until(() => fresh(tRejected).length >= FRESH_CHECKED && everySteadyAnswered(tRejected, 3), 15_000, "traffic after the rejected update", progress);
        const afterReject = fresh(tRejected).slice(0, FRESH_CHECKED);
        assert.deepEqual(
          afterReject.filter((a) => a.list?.length !== NEW).map((a) => `${a.seq} ${a.kind} [${String(a.list?.length)}]`),
          [],
          `after the rejection new connections are still routed by the configuration in force (list of ${NEW})`,
        );
        await traffic.stop();

        // Throughout: nothing but routed answers once warm (no 5xx, no network error, no table_not_loaded).
        const all = traffic.answers;
        assert.deepEqual(failures(all).map((a) => a.detail), [], `every request answered by an instance of ${RR.id}:\n${show(failures(all))}`);
        const notLoaded = all.filter((a) => a.kind === "not_loaded" && a.startedAt >= strictFrom);
        assert.deepEqual(notLoaded.map((a) => a.seq), [], `no table_not_loaded once warm (${notLoaded.filter((a) => a.startedAt >= tWrite).length} of them after the reload):\n${show(notLoaded)}`);
        assert.equal(S().saas.requests.length, saasBefore, "no request reached the SaaS stand-in");
        const routed = all.filter((a) => a.kind === "routed");
        assert.deepEqual([...new Set(routed.map((a) => a.list!.length))].filter((n) => n !== OLD && n !== NEW), [], `every list is the old (${OLD}) or the new (${NEW}) configuration's`);
        // (A request sent just before the write may well meet the new chain: on a new connection, or held in a socket.)
        const early = routed.filter((a) => a.list!.length === NEW && a.at < tWrite);
        assert.deepEqual(early.map((a) => a.seq), [], "answered by the new configuration before the LDS file was written?");
        const steadyNew = routed.filter((a) => a.client.startsWith("c") && a.list!.length === NEW).length;
        const steadyOld = routed.filter((a) => a.client.startsWith("c") && a.list!.length === OLD && a.startedAt >= tApplied).length;
        t.diagnostic(
          `reload: LDS file written → update applied ${tApplied - tWrite} ms → first new connection with the new configuration ${tVisible - tWrite} ms; ` +
            `${oldInGrace} new connection(s) within the ${WORKER_APPLY_GRACE_MS} ms grace still had the old chain; ` +
            `keep-alive connections after the update: ${steadyOld} answers by the old configuration (draining chain), ${steadyNew} by the new; ` +
            `TCP connections of the ${STEADY_CONNECTIONS} keep-alive clients: ${steady.reduce((n, c) => n + c.sockets, 0)}`,
        );
        t.diagnostic(`bad configuration: rejected ${tRejected - tBad} ms after the write; ${all.length} answers in all, ${routed.length} routed, ${all.length - routed.length} warm-up table_not_loaded`);
        for (const c of steady) c.close();
      },
    );
    await envoy?.stop();
  });
});
