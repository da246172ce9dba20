/**
 * The OpenAI-facing request path through a real Envoy (>= 1.35): served names, client credentials,
 * refused paths (plugin/README.md "Request path"), and Envoy's own local replies in OpenAI's error
 * shape (envoy/README.md "Errors: one shape": the bootstrap's local_reply_config). Same stack as
 * gateway.e2e.test.ts (support/stack.ts: Redis, the control service, mock vLLM-like engines, a SaaS
 * stand-in; Envoy with build/plugin.wasm and a bootstrap generated from envoy/bootstrap.yaml), with
 * two deployments of its own:
 *   - "sn": model e2e-sn, alias e2e-sn-alias, served_name org/E2E-Served-1 — its engine serves only the
 *     served name (vLLM's 404 for any other);
 *   - "dead": model e2e-dead, one instance, on_unavailable panic — the plugin keeps routing to it after
 *     it stops (its ejection leaves nothing else), so what the client gets is Envoy's own reply.
 *
 * What goes through Envoy's listener, and what is checked:
 *   - served name: the public name and the alias, body-routed and header-routed (x-model with
 *     content-type application/json, so the plugin reads the body): 200 from the engine, which got the
 *     very body sent with only "model" replaced by the served name, and a content-length equal to the
 *     length of the body it got;
 *   - credentials: a routed request's authorization and x-api-key never reach the engine (a passthrough
 *     request keeps both); paths: /v1/load_lora_adapter naming a managed model (header and body) →
 *     404 unknown_url, reaching nothing, counted in gateway.path_refused;
 *   - Envoy's local replies, each exactly {"error":{"message","type","param","code"}} with content-type
 *     application/json and the message/type/code of the bootstrap's mapper:
 *       no route (the passthrough route only takes /v1/…: an unknown model on /chat/completions, and
 *       GET /) → 404 model_not_found;
 *       the only instance refusing connections → 503 upstream_connect_error while Envoy's health check
 *       still passes it; once the check has marked it failed → 503 no_healthy_upstream;
 *       a body over the listener's per_connection_buffer_limit_bytes (header-routed to the alias with a
 *       JSON body, and body-routed) → 413 request_too_large, reaching nothing, and not the plugin's own
 *       413 (gateway.body_too_large unchanged).
 *
 * Envoy's 413: a filter must be buffering the body for Envoy to answer it (the router alone gives up
 * retry buffering instead, and a header-routed text/plain body is streamed, never buffered). The only
 * buffering filter is the plugin, which answers its own 413 above max_body_bytes — in the shipped
 * configuration (1 MiB, half the listener's 2 MiB) before Envoy's buffer can overflow. So this file's
 * Envoy runs the plugin with max_body_bytes twice the listener's limit: the body then overflows
 * Envoy's buffer while the plugin still waits for the rest (the shipped listener is unchanged).
 *
 * Runs only where Envoy exists (ENVOY_BIN, or `envoy` on PATH); elsewhere the Envoy tests report
 * SKIPPED with the reason — never passed. The check of the bootstrap's mappers these tests rely on runs
 * everywhere. Envoy runs with --concurrency 1. Every wait is on a condition (admin /ready, /clusters,
 * /stats; the control API), bounded; all processes are stopped in `after`, also when a step fails.
 *
 * Dry run of this file's own logic without Envoy (NOT evidence about Envoy): ENVOY_BIN=
 * test/e2e-envoy/support/sim-envoy (a simulation: it does not implement local_reply_config — its own
 * replies are plain text — and hands the plugin a request body in one piece, so the local-reply test
 * fails there by design).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { formatIssue, validateBootstrap } from "../../envoy/validate/index.js";
import { freePort } from "../support/redis.js";
import { WASM_PATH, e2eBootstrap, loadShippedBootstrap, locate, type E2eBootstrap } from "./support/bootstrap.js";
import { SEQ_HEADER, chatBody, header, send, trace, until, type Sent } from "./support/client.js";
import { assertEnvoyVersion, findEnvoy, pluginStat, startEnvoy, type RunningEnvoy, clustersSeen, diagnoser } from "./support/envoy.js";
import { CHAT, PLUGIN, UNKNOWN_MODEL, startStack, type DeploymentSpec, type Stack } from "./support/stack.js";

const { bin, why } = findEnvoy();
const skip = bin ? false : `SKIPPED: ${why}`;

/* eslint-disable @typescript-eslint/no-explicit-any */
type Doc = Record<string, any>;

const SERVED = "org/E2E-Served-1";
const ALIAS = "e2e-sn-alias";
const SN: DeploymentSpec = { id: "sn", model: "e2e-sn", aliases: [ALIAS], servedName: SERVED, strategy: "round_robin", instances: [{ id: "s1" }] };
const DEAD: DeploymentSpec = { id: "dead", model: "e2e-dead", strategy: "round_robin", onUnavailable: "panic", instances: [{ id: "x" }] };
const DEPLOYMENTS: readonly DeploymentSpec[] = [SN, DEAD];
const SN_KEY = "sn/s1";
const DEAD_KEY = "dead/x";

/** The listener's buffer limit (shipped), the plugin's max_body_bytes here (above it), the 413 body size (between). */
const LISTENER_LIMIT = Number(locate(loadShippedBootstrap()).listener.per_connection_buffer_limit_bytes);
const PLUGIN_MAX_BODY = 2 * LISTENER_LIMIT;
const OVER_LIMIT_BODY = LISTENER_LIMIT + 256 * 1024;

const CREDS = { authorization: "Bearer sk-client-own-key", "x-api-key": "sk-client-x-key" } as const;
const JSON_CT = { "content-type": "application/json" } as const;

interface OpenAIError {
  message: string;
  type: string;
  param: string | null;
  code: string;
}

/** A local_reply_config mapper, as the tests use it: its body text (if fixed) and its json_format error. */
interface Mapper {
  index: number;
  filter: Doc;
  inlineBody: string | undefined;
  error: Doc;
}

function mappers(bootstrap: Doc): Mapper[] {
  const list = locate(bootstrap).hcm.local_reply_config?.mappers;
  assert.ok(Array.isArray(list), "the bootstrap's connection manager has local_reply_config.mappers");
  return (list as Doc[]).map((m, index) => ({ index, filter: m.filter ?? {}, inlineBody: m.body?.inline_string, error: m.body_format_override?.json_format?.error ?? {} }));
}
const byFlag = (ms: Mapper[], flag: string): Mapper => {
  const m = ms.find((x) => (x.filter.response_flag_filter?.flags as string[] | undefined)?.includes(flag));
  assert.ok(m, `a local_reply_config mapper for response flag ${flag}`);
  return m;
};
const byCel = (ms: Mapper[], fragment: string): Mapper => {
  const m = ms.find((x) => String(x.filter.extension_filter?.typed_config?.expression ?? "").includes(fragment));
  assert.ok(m, `a local_reply_config mapper whose CEL expression mentions ${fragment}`);
  return m;
};

/** What a reply from a mapper must be: its fixed body (or Envoy's own text) as message, its type/param/code. */
function expected(m: Mapper, envoyText?: string): OpenAIError {
  const message = m.inlineBody ?? envoyText;
  assert.ok(message !== undefined, `mapper ${m.index} has no fixed body: Envoy's text must be given`);
  return { message, type: m.error.type, param: m.error.param ?? null, code: m.error.code };
}

/** The reply is exactly {"error":{"message","type","param","code"}}, as JSON; returns the error object. */
function openaiError(r: Sent, status: number): OpenAIError {
  assert.equal(r.status, status, `seq ${r.seq}: ${r.status} ${r.text.slice(0, 500)}`);
  assert.match(r.headers.get("content-type") ?? "", /^application\/json(;|$)/, `seq ${r.seq}: content-type ${String(r.headers.get("content-type"))} (body ${JSON.stringify(r.text.slice(0, 200))})`);
  let j: unknown;
  try {
    j = JSON.parse(r.text);
  } catch {
    assert.fail(`seq ${r.seq}: not JSON: ${JSON.stringify(r.text.slice(0, 500))}`);
  }
  assert.ok(j !== null && typeof j === "object" && !Array.isArray(j), r.text);
  assert.deepEqual(Object.keys(j), ["error"], `one top-level key: ${r.text}`);
  const e = (j as { error: unknown }).error;
  assert.ok(e !== null && typeof e === "object" && !Array.isArray(e), r.text);
  assert.deepEqual(Object.keys(e).sort(), ["code", "message", "param", "type"], `exactly message, type, param, code: ${r.text}`);
  const err = e as OpenAIError;
  assert.equal(typeof err.message, "string", r.text);
  assert.notEqual(err.message, "", r.text);
  assert.equal(typeof err.type, "string", r.text);
  assert.ok(err.param === null || typeof err.param === "string", r.text);
  assert.equal(typeof err.code, "string", r.text);
  return err;
}

async function distinctFreePorts(n: number): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await freePort());
  return [...out];
}

describe("e2e bootstrap: what the OpenAI-path tests rely on (runs everywhere)", () => {
  test("local_reply_config mappers, the passthrough route's reach, the buffer limits", () => {
    const gen = e2eBootstrap({ nodeId: "openai-e2e-check", adminPort: 19901, listenerPort: 19000, controlPort: 18080, adsPort: 18000, saasPort: 18443, pluginToken: PLUGIN, plugin: { max_body_bytes: PLUGIN_MAX_BODY } });
    assert.deepEqual(validateBootstrap(gen.bootstrap).errors.map(formatIssue), []);
    const ms = mappers(gen.bootstrap);
    const nr = byFlag(ms, "NR");
    assert.ok(nr.inlineBody, "NR: a fixed message");
    assert.deepEqual(expected(nr), { message: nr.inlineBody, type: "invalid_request_error", param: null, code: "model_not_found" });
    const uh = byFlag(ms, "UH");
    assert.deepEqual(expected(uh, "no healthy upstream"), { message: "no healthy upstream", type: "server_error", param: null, code: "no_healthy_upstream" });
    const uf = byFlag(ms, "UF");
    assert.equal(byFlag(ms, "URX"), uf, "URX (retries exhausted) maps like UF");
    assert.deepEqual(expected(uf, "x"), { message: "x", type: "server_error", param: null, code: "upstream_connect_error" });
    // A reply after a refused attempt and a retry finding no healthy host carries UF and UH: first match wins.
    assert.ok(uh.index < uf.index, "the UH mapper comes before the UF one");
    const big = byCel(ms, "request_payload_too_large");
    assert.ok(big.inlineBody, "413: a fixed message");
    assert.deepEqual(expected(big), { message: big.inlineBody, type: "invalid_request_error", param: null, code: "request_too_large" });
    for (const m of [nr, uh, uf, big]) assert.equal(m.error.message, "%LOCAL_REPLY_BODY%", `mapper ${m.index}: the message is the local reply body`);

    // No route: the gateway route needs the plugin's cluster header; the passthrough route only takes /v1/….
    const at = locate(gen.bootstrap);
    assert.deepEqual(Object.keys(at.saasRoute.match), ["prefix"]);
    assert.deepEqual(Object.keys(at.gatewayRoute.match).sort(), ["headers", "prefix"]);
    for (const p of ["/chat/completions", "/"]) assert.ok(!p.startsWith(at.saasRoute.match.prefix), `${p} is outside the passthrough route`);
    assert.ok(CHAT.startsWith(at.saasRoute.match.prefix));

    // Envoy's 413 before the plugin's: the body is over the listener's limit, under the plugin's.
    assert.ok(Number.isInteger(LISTENER_LIMIT) && LISTENER_LIMIT > 0, `per_connection_buffer_limit_bytes = ${LISTENER_LIMIT}`);
    assert.equal(Number(at.listener.per_connection_buffer_limit_bytes), LISTENER_LIMIT, "the e2e keeps the shipped listener limit");
    assert.equal(gen.plugin.max_body_bytes, PLUGIN_MAX_BODY);
    assert.ok(LISTENER_LIMIT < OVER_LIMIT_BODY && OVER_LIMIT_BODY < PLUGIN_MAX_BODY);
  });
});

describe("OpenAI request path through a real Envoy", { timeout: 300_000 }, () => {
  let stack: Stack | undefined;
  let envoy: RunningEnvoy | undefined;
  let gen: E2eBootstrap;
  const clusterOf = new Map<string, string>();

  const S = (): Stack => stack!;
  const E = (): RunningEnvoy => envoy!;
  const listener = () => E().listener;
  const stats = () => E().stats("gateway\\.|update_rejected");
  const stat = async (name: string) => pluginStat(await stats(), name);

  /** Adds what Envoy and the control service last said to a failing step. */
  const diag = diagnoser(() => envoy, () => stack?.logTail(40));
  const seenClusters = () => clustersSeen(E());


  /** Envoy's view of an instance's host: failing its active health check, or UNHEALTHY by EDS. */
  const hostBad = async (key: string, dep: string): Promise<boolean> => {
    const h = (await E().clusters()).get(clusterOf.get(dep)!)?.hosts.find((x) => x.address === S().address(key));
    assert.ok(h, `${key} is a host of ${clusterOf.get(dep)}`);
    return h.failedActiveHc || h.eds === "UNHEALTHY";
  };

  /** 200 from the engine of `key`, which got exactly one upstream request for it; returns that request. */
  const servedBy = (r: Sent, key: string) => {
    assert.equal(r.status, 200, `seq ${r.seq}: ${r.status} ${r.text}`);
    const hits = trace(S(), r.seq);
    assert.deepEqual(hits.map((h) => h.where), [key], `seq ${r.seq} reached ${hits.map((h) => h.where).join(", ") || "nothing"}`);
    assert.equal(r.content, key, "the answer comes from the instance that got the request");
    return hits[0]!.req;
  };

  /**
   * Requests an engine got that a client sent (through the gateway: they carry a seq) or on a path the
   * gateway must never forward to it — not the control service's probes (GET /health …).
   */
  const clientRequests = (key: string, path?: string) => S().mock(key).requests.filter((q) => q.headers[SEQ_HEADER] !== undefined || (path !== undefined && q.path.includes(path))).length;

  const reachedNothing = (r: Sent) => assert.deepEqual(trace(S(), r.seq).map((h) => h.where), [], `seq ${r.seq} must reach no upstream`);

  before(async () => {
    if (!bin) return; // every Envoy test is skipped
    const version = assertEnvoyVersion(bin);
    console.log(`envoy under test: ${bin} (${version})`);
    assert.ok(existsSync(WASM_PATH), "build/plugin.wasm missing: npm run build:plugin");
    stack = await startStack({ deployments: DEPLOYMENTS });
    const [adminPort, listenerPort] = (await distinctFreePorts(2)) as [number, number];
    gen = e2eBootstrap({
      nodeId: `gw-openai-e2e-${process.pid}`,
      adminPort,
      listenerPort,
      controlPort: stack.controlPort,
      adsPort: stack.adsPort,
      saasPort: stack.saas.port,
      pluginToken: PLUGIN,
      plugin: { max_body_bytes: PLUGIN_MAX_BODY },
    });
    const v = validateBootstrap(gen.bootstrap);
    assert.deepEqual(v.errors.map(formatIssue), [], "the generated bootstrap must pass envoy/validate before Envoy sees it");
    envoy = await startEnvoy({ bin, bootstrap: gen.bootstrap, adminPort, listenerPort, concurrency: 1 });

    await diag(async () => {
      const table = await S().table();
      for (const d of table.deployments) clusterOf.set(d.id, d.cluster);
      assert.equal(table.deployments.find((d) => d.id === SN.id)?.served_name, SERVED, "the table carries the served name");
      await until(
        async () => {
          const cs = await E().clusters();
          return table.deployments.every((d) => {
            const c = cs.get(d.cluster);
            if (!c || !c.addedViaApi) return false;
            const got = c.hosts.map((h) => h.address).sort();
            const want = d.instances.map((i) => i.address).sort();
            return JSON.stringify(got) === JSON.stringify(want) && c.hosts.every((h) => !h.pendingActiveHc && !h.failedActiveHc);
          });
        },
        30_000,
        "every deployment cluster (CDS) with all its endpoints (EDS), past a passing first health check",
        seenClusters,
      );
      const version = table.version;
      await until(async () => ((await stat("gateway.table.version")) ?? 0) >= version, 15_000, `plugin table version >= ${version}`, async () => `plugin gateway.table.version = ${String(await stat("gateway.table.version"))}`);
      const s = await stats();
      assert.equal(s.get("cluster_manager.cds.update_rejected") ?? 0, 0, "Envoy rejected a CDS response");
      assert.equal(pluginStat(s, "gateway.table.rejected") ?? 0, 0, "the plugin refused a routing table");
    });
  });

  after(async () => {
    try {
      await envoy?.stop();
    } finally {
      await stack?.close();
    }
  });

  test("served name: public name and alias, body- and header-routed, reach the engine as its served name", { skip }, () =>
    diag(async () => {
      // The engine really refuses any other name (so a 200 below needed the rewrite).
      const direct = await fetch(`${S().mock(SN_KEY).url}/chat/completions`, { method: "POST", headers: JSON_CT, body: chatBody(SN.model), signal: AbortSignal.timeout(10_000) });
      assert.equal(direct.status, 404, "the engine answers vLLM's 404 for the public name");
      await direct.text();

      for (const name of [SN.model, ALIAS]) {
        for (const via of ["body", "header"] as const) {
          const sent = chatBody(name);
          // Header-routed with a JSON content type: the plugin holds the headers and reads the body.
          const r = await send(listener(), { model: name, via, headers: { ...JSON_CT } });
          const got = servedBy(r, SN_KEY);
          const what = `${name} ${via}-routed`;
          assert.equal(got.method, "POST", what);
          assert.equal(got.path, CHAT, what);
          assert.notEqual(sent.length, chatBody(SERVED).length, "the rewrite changes the length");
          assert.equal(got.body, chatBody(SERVED), `${what}: the body sent, with only "model" replaced by the served name`);
          assert.equal((JSON.parse(got.body) as { model: string }).model, SERVED, what);
          assert.equal(header(got.headers, "content-length"), String(Buffer.byteLength(got.body)), `${what}: content-length of the body the engine got`);
          assert.equal(header(got.headers, "transfer-encoding"), undefined, `${what}: not re-chunked`);
          assert.equal(header(got.headers, "content-type"), "application/json", what);
          assert.equal(header(got.headers, gen.plugin.deployment_header), SN.id, what);
        }
      }
    }));

  test("credentials and paths: client keys removed on routed requests; /v1/load_lora_adapter → 404 unknown_url, forwarded nowhere", { skip }, () =>
    diag(async () => {
      for (const via of ["body", "header"] as const) {
        const got = servedBy(await send(listener(), { model: SN.model, via, headers: { ...JSON_CT, ...CREDS } }), SN_KEY);
        assert.equal(header(got.headers, "authorization"), undefined, `${via}-routed: the client's authorization must not reach the engine`);
        assert.equal(header(got.headers, "x-api-key"), undefined, `${via}-routed: the client's x-api-key must not reach the engine`);
      }
      // Passthrough (a model we do not serve) keeps both: they are the client's key for the SaaS.
      const p = await send(listener(), { model: UNKNOWN_MODEL, headers: { ...CREDS } });
      assert.equal(p.status, 200, p.text);
      const hits = trace(S(), p.seq);
      assert.deepEqual(hits.map((h) => h.where), ["saas"]);
      assert.equal(header(hits[0]!.req.headers, "authorization"), CREDS.authorization);
      assert.equal(header(hits[0]!.req.headers, "x-api-key"), CREDS["x-api-key"]);

      // vLLM's admin endpoint, naming a managed model by header and by body: refused by the plugin.
      const refusedBefore = (await stat("gateway.path_refused")) ?? 0;
      const lora = { lora_name: "evil", lora_path: "/tmp/evil" };
      const mockBefore = clientRequests(SN_KEY, "load_lora_adapter");
      for (const o of [
        { path: "/v1/load_lora_adapter", model: SN.model, via: "header" as const, raw: JSON.stringify(lora), headers: { ...JSON_CT, ...CREDS } },
        { path: "/v1/load_lora_adapter", raw: JSON.stringify({ model: SN.model, ...lora }), headers: { ...CREDS } },
      ]) {
        const r = await send(listener(), o);
        const e = openaiError(r, 404);
        assert.deepEqual(e, { message: e.message, type: "invalid_request_error", param: null, code: "unknown_url" }, r.text);
        assert.ok(e.message.startsWith("Invalid URL (POST /v1/load_lora_adapter)"), e.message);
        reachedNothing(r);
      }
      assert.equal(clientRequests(SN_KEY, "load_lora_adapter"), mockBefore, "the engine got no client request at all (no /v1/load_lora_adapter)");
      await until(async () => ((await stat("gateway.path_refused")) ?? 0) === refusedBefore + 2, 5_000, "gateway.path_refused counted twice", async () => String(await stat("gateway.path_refused")));
    }));

  test("Envoy's own local replies in OpenAI's JSON: no route 404, refused connections 503, buffer overflow 413", { skip }, (t) =>
    diag(async () => {
      const ms = mappers(gen.bootstrap);

      // 1. No route: an unknown model is passed through by the plugin, but the passthrough route only
      //    takes /v1/…; a path outside it (and GET / without a model) matches no route → NR.
      for (const o of [{ path: "/chat/completions", model: UNKNOWN_MODEL }, { method: "GET", path: "/" }]) {
        const r = await send(listener(), o);
        const e = openaiError(r, 404);
        assert.deepEqual(e, expected(byFlag(ms, "NR")), `${o.method ?? "POST"} ${o.path}: ${r.text}`);
        reachedNothing(r);
      }

      // 2. The only instance refuses connections. The plugin still routes to it (panic: passive or
      //    control-service ejection leaves nothing else), so the reply is Envoy's.
      await S().mock(DEAD_KEY).stop();
      const badBefore = await hostBad(DEAD_KEY, DEAD.id);
      const r1 = await send(listener(), { model: DEAD.model });
      const badAfter = await hostBad(DEAD_KEY, DEAD.id);
      const e1 = openaiError(r1, 503);
      reachedNothing(r1);
      // While Envoy still takes the host for healthy, every attempt (the pick, then the fallback's
      // choice: the same host) fails to connect → UF(+URX). If its health check turned meanwhile,
      // no_healthy_upstream is right too.
      if (badBefore || badAfter) t.diagnostic(`dead/x was already marked bad by Envoy (before: ${badBefore}, after: ${badAfter}): ${e1.code}`);
      if (e1.code === "no_healthy_upstream" && (badBefore || badAfter)) {
        assert.deepEqual(e1, expected(byFlag(ms, "UH"), "no healthy upstream"), r1.text);
      } else {
        assert.deepEqual(e1, expected(byFlag(ms, "UF"), e1.message), r1.text);
        assert.ok(e1.message.startsWith("upstream connect error or disconnect/reset before headers"), e1.message);
      }
      // Once Envoy's active health check marks it failed: the pick is tried, the retry finds no
      // healthy host (healthy_panic_threshold 0) → UH.
      await until(async () => await hostBad(DEAD_KEY, DEAD.id), 15_000, "Envoy marks dead/x failed (active health check) or UNHEALTHY (EDS)", seenClusters);
      for (let i = 0; i < 3; i++) {
        const r = await send(listener(), { model: DEAD.model, via: i % 2 === 0 ? "body" : "header" });
        const e = openaiError(r, 503);
        assert.deepEqual(e, expected(byFlag(ms, "UH"), "no healthy upstream"), r.text);
        reachedNothing(r);
      }

      // 3. A body over the listener's buffer limit while the plugin is buffering it (header-routed to
      //    the alias with a JSON body: the served-name rewrite reads it; and body-routed). The plugin's
      //    limit is above the listener's here: the 413 is Envoy's, not the plugin's.
      const tooLargeBefore = (await stat("gateway.body_too_large")) ?? 0;
      /** A chat body of exactly OVER_LIMIT_BODY bytes naming `model`. */
      const big = (model: string) => {
        const empty = JSON.stringify({ model, messages: [{ role: "user", content: "" }] });
        return JSON.stringify({ model, messages: [{ role: "user", content: "x".repeat(OVER_LIMIT_BODY - empty.length) }] });
      };
      const mockBefore = clientRequests(SN_KEY);
      for (const o of [
        { model: ALIAS, via: "header" as const, raw: big(ALIAS), headers: { ...JSON_CT } },
        { raw: big(ALIAS), headers: { ...JSON_CT } },
      ]) {
        assert.equal(Buffer.byteLength(o.raw), OVER_LIMIT_BODY);
        const r = await send(listener(), o);
        const e = openaiError(r, 413);
        assert.deepEqual(e, expected(byCel(ms, "request_payload_too_large")), `${o.via ?? "body"}-routed: ${r.text}`);
        reachedNothing(r);
      }
      assert.equal(clientRequests(SN_KEY), mockBefore, "the engine got no client request");
      assert.equal((await stat("gateway.body_too_large")) ?? 0, tooLargeBefore, "Envoy's 413, not the plugin's");
    }));
});
