/**
 * envoy/bootstrap.yaml's `local_reply_config` (Envoy's own local replies in OpenAI's error shape), its buffer
 * limit and its route timeouts: the shipped document has them and validates; each broken variant of a mapper
 * fails validation at the mapper; the mappers are exactly the table the local data plane applies
 * (envoy/local/dataplane.ts LOCAL_REPLY_MAPPERS) and its defaults are the bootstrap's values; and the plugin's
 * own replies are ones no mapper touches (their response code details start with `gateway_`).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PluginConfig } from "../../control/contracts/plugin-config.js";
import { CODE_FROM_DETAILS, FLAG, keepsLocalReply, LOCAL_DEFAULTS, LOCAL_REPLY_MAPPERS, mapLocalReply, type LocalReplyMapper } from "../../envoy/local/dataplane.js";
import { formatIssue, validateBootstrap, type ValidationResult } from "../../envoy/validate/index.js";
import { gateway, header, request, table } from "../plugin/support.js";
import { bootstrap, del, deploymentCluster, get, HCM, PLUGIN_CONFIG_JSON, ROUTES, set } from "./support.js";

const LRC = `${HCM}.local_reply_config`;
const MAPPERS = `${LRC}.mappers`;
const CEL_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter";
/** The guard every catch-all expression carries: the plugin's replies and direct responses stay as they are. */
const GUARD = "!response.code_details.startsWith('gateway_') && response.code_details != 'direct_response'";

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const seconds = (d: string): number => {
  const m = /^(\d+(?:\.\d+)?)s$/.exec(d);
  assert.ok(m, `duration ${d}`);
  return Number(m[1]);
};

/** A bootstrap mapper read back as the local data plane's LocalReplyMapper (or an assertion failure). */
function asLocalMapper(m: Doc, i: number): LocalReplyMapper {
  const where = `mapper ${i}`;
  assert.equal(m.status_code, undefined, `${where}: keeps Envoy's status code`);
  assert.equal(m.headers_to_add, undefined, where);
  const fmt = m.body_format_override;
  assert.ok(fmt?.json_format, `${where}: body_format_override.json_format`);
  assert.deepEqual(Object.keys(fmt), ["json_format"], `${where}: JSON (content-type application/json is json_format's default)`);
  const e = fmt.json_format.error;
  assert.deepEqual(Object.keys(fmt.json_format), ["error"], where);
  assert.deepEqual(Object.keys(e).sort(), ["code", "message", "param", "type"], where);
  assert.equal(e.message, "%LOCAL_REPLY_BODY%", where);
  assert.equal(e.param, null, where);
  const out: LocalReplyMapper = { type: e.type, code: e.code };
  if (m.body !== undefined) out.message = m.body.inline_string;
  const f = m.filter;
  if (f.response_flag_filter) {
    out.flags = (f.response_flag_filter.flags as string[]).reduce((acc, name) => {
      const bit = (FLAG as Record<string, bigint>)[name];
      assert.ok(bit !== undefined, `${where}: flag ${name} unknown to the local data plane`);
      return acc | bit;
    }, 0n);
  } else {
    const ext = f.extension_filter;
    assert.equal(ext?.name, "envoy.access_loggers.extension_filters.cel", where);
    assert.equal(ext.typed_config["@type"], CEL_TYPE, where);
    const expr = ext.typed_config.expression as string;
    const details = /^response\.code_details == '([a-z0-9_]+)'$/.exec(expr);
    const range = /^response\.code >= (\d+) && response\.code <= (\d+) && (.*)$/.exec(expr);
    if (details) out.details = details[1]!;
    else if (range) {
      out.status = [Number(range[1]), Number(range[2])];
      assert.equal(range[3], GUARD, `${where}: a catch-all must leave the plugin's replies alone`);
    } else assert.fail(`${where}: unexpected CEL expression ${expr}`);
  }
  // Same key order as LOCAL_REPLY_MAPPERS' literals, for a readable deepEqual.
  const { flags, details, status, message, type, code } = out;
  return { ...(flags !== undefined ? { flags } : {}), ...(details !== undefined ? { details } : {}), ...(status !== undefined ? { status } : {}), ...(message !== undefined ? { message } : {}), type, code };
}

function expectError(r: ValidationResult, pathPrefix: string, message: RegExp): void {
  const listing = r.errors.map(formatIssue).join("\n") || "(no errors)";
  assert.equal(r.ok, false, `expected a failure under ${pathPrefix}`);
  assert.ok(r.errors.some((e) => e.path.startsWith(pathPrefix) && message.test(e.message)), `expected ${pathPrefix}…: ${message}, got:\n${listing}`);
}

describe("envoy/bootstrap.yaml: Envoy's local replies in OpenAI's error shape", () => {
  test("the shipped bootstrap has the local_reply_config mappers and validates", () => {
    const b = bootstrap();
    const r = validateBootstrap(b);
    assert.ok(r.ok, r.errors.map(formatIssue).join("\n"));
    assert.deepEqual(r.warnings, []);
    const lrc = get(b, LRC);
    assert.equal(lrc.body_format, undefined, "no body_format for every local reply: it would rewrap the plugin's JSON replies");
    assert.ok(Array.isArray(lrc.mappers) && lrc.mappers.length >= 5);
    for (const m of lrc.mappers as Doc[]) assert.equal(m.filter.status_code_filter, undefined, "no mapper matches on a status code alone (the plugin's 404/413/503 share them)");
  });

  test("the mappers are the local data plane's table, in the same order", () => {
    const mappers = get(bootstrap(), MAPPERS) as Doc[];
    assert.deepEqual(mappers.map(asLocalMapper), LOCAL_REPLY_MAPPERS);
    // The five Envoy replies the gateway names: no route, no healthy host, connect failure, timeout, 413.
    const codes = LOCAL_REPLY_MAPPERS.map((m) => m.code);
    for (const c of ["model_not_found", "no_healthy_upstream", "upstream_connect_error", "upstream_timeout", "request_too_large"]) assert.ok(codes.includes(c), c);
  });

  test("what the table does to Envoy's replies (as the local data plane applies it)", () => {
    const json = (r: ReturnType<typeof mapLocalReply>) => (r ? { status: r.status, ct: header(r.headers, "content-type"), ...JSON.parse(new TextDecoder().decode(r.body)) } : null);
    assert.deepEqual(json(mapLocalReply(404, FLAG.NR, "route_not_found", "")).error.code, "model_not_found");
    assert.deepEqual(json(mapLocalReply(503, FLAG.UH, "no_healthy_upstream", "no healthy upstream")), { status: 503, ct: "application/json", error: { message: "no healthy upstream", type: "server_error", param: null, code: "no_healthy_upstream" } });
    assert.equal(json(mapLocalReply(503, FLAG.UF | FLAG.URX, "upstream_reset_before_response_started{connection_failure}", "upstream connect error or disconnect/reset before headers. reset reason: connection failure")).error.code, "upstream_connect_error");
    assert.equal(json(mapLocalReply(504, FLAG.UT, "upstream_per_try_idle_timeout", "upstream request timeout")).error.code, "upstream_timeout");
    assert.equal(json(mapLocalReply(413, 0n, "request_payload_too_large", "Payload Too Large")).error.code, "request_too_large");
    assert.deepEqual(json(mapLocalReply(408, FLAG.SI, "stream_idle_timeout", "stream timeout")).error, { message: "stream timeout", type: "invalid_request_error", param: null, code: "stream_idle_timeout" });
    assert.equal(json(mapLocalReply(503, FLAG.UO, "upstream_reset_before_response_started{overflow}", "upstream connect error or disconnect/reset before headers. reset reason: overflow")).error.code, "upstream_reset_before_response_started{overflow}");
    // Left alone: the plugin's replies, direct responses, non-errors.
    assert.equal(mapLocalReply(413, 0n, "gateway_body_too_large", "{}"), null);
    assert.equal(mapLocalReply(503, 0n, "gateway_table_not_loaded", "{}"), null);
    assert.equal(mapLocalReply(404, 0n, "direct_response", "gone"), null);
    assert.equal(mapLocalReply(200, 0n, "via_upstream", ""), null);
    assert.equal(CODE_FROM_DETAILS, "%RESPONSE_CODE_DETAILS%");
  });

  test("the plugin's own replies carry response code details starting with gateway_, so no mapper touches them", async () => {
    const TABLE = table(1, [{ id: "llama", instances: [{ id: "i0", state: "ejected" }] }], { llama3: "llama" });
    const seen: string[] = [];
    const check = (r: ReturnType<typeof request>, status: number) => {
      assert.equal(r.outcome, "local_reply");
      const lr = r.localReply!;
      assert.equal(lr.by, "plugin");
      assert.equal(lr.status, status);
      assert.match(lr.details, /^gateway_/);
      assert.ok(keepsLocalReply(lr.status, lr.details));
      assert.match(String(header(lr.headers, "content-type")), /^application\/json/);
      seen.push(`${status} ${lr.details}`);
    };
    // Before any table: 503 table_not_loaded.
    const early = await gateway({ config: { unknown_model: "reject", max_body_bytes: 1024 } });
    check(request(early, { model: "llama3", body: "{}" }), 503);
    const host = await gateway({ table: TABLE, config: { unknown_model: "reject", max_body_bytes: 1024 } });
    check(request(host, { body: '{"model": "llama3"' }), 400); // invalid JSON
    check(request(host, { body: JSON.stringify({ model: "llama3", pad: "x".repeat(2000) }) }), 413);
    check(request(host, { body: '{"model":"unknown"}' }), 404); // unknown_model: reject
    check(request(host, { body: '{"model":"llama3"}' }), 503); // no eligible instance (only an ejected one, on_unavailable fail)
    check(host.request({ headers: [[":method", "GET"], [":path", "/v1/models/unknown"], [":authority", "gw"], [":scheme", "http"]] }), 404); // models endpoint
    console.log(`# plugin replies: ${seen.join(", ")}`);
  });
});

describe("envoy/bootstrap.yaml: buffer limit and timeouts, and the local data plane's defaults", () => {
  test("per_connection_buffer_limit_bytes sits above the plugin's max_body_bytes by more than a read", () => {
    const b = bootstrap();
    const limit = get(b, "static_resources.listeners[0].per_connection_buffer_limit_bytes") as number;
    const max = PluginConfig.parse(JSON.parse(get(b, PLUGIN_CONFIG_JSON))).max_body_bytes;
    assert.ok(limit >= 2 * max, `${limit} vs max_body_bytes ${max}`);
    assert.equal(LOCAL_DEFAULTS.bufferLimitBytes, limit);
    assert.equal(LOCAL_DEFAULTS.maxBodyBytes, max);
  });

  test("route timeouts: no total cap, per_try_idle_timeout for the first byte and the gaps, the stream idle timer above it", () => {
    const route = get(bootstrap(), `${ROUTES}[0]`);
    assert.equal(route.name, "gateway_models");
    assert.equal(route.route.timeout, "0s");
    const perTryIdle = seconds(route.route.retry_policy.per_try_idle_timeout);
    assert.equal(route.route.retry_policy.per_try_timeout, undefined);
    assert.ok(perTryIdle >= 120, "long enough for a slow non-streaming generation");
    assert.ok(seconds(route.route.idle_timeout) > perTryIdle, "the route's stream idle timeout must not fire before the router's per-try one");
    assert.equal(LOCAL_DEFAULTS.firstByteTimeoutMs, perTryIdle * 1000);
    assert.equal(LOCAL_DEFAULTS.idleTimeoutMs, perTryIdle * 1000);
    assert.match(route.route.retry_policy.retry_on, /\breset\b/, "a per-try timeout before any response byte is retried like a reset, as the local data plane does");
    assert.equal(LOCAL_DEFAULTS.connectTimeoutMs, seconds(deploymentCluster().connect_timeout) * 1000);
    assert.equal(LOCAL_DEFAULTS.drainIdleMs, seconds(get(bootstrap(), `${HCM}.delayed_close_timeout`)) * 1000);
  });
});

describe("broken local_reply_config mappers fail validation", () => {
  const cases: Array<{ name: string; break: (d: Doc) => void; path: string; message: RegExp }> = [
    { name: "mapper without a filter (required)", break: (d) => del(d, `${MAPPERS}[0].filter`), path: `${MAPPERS}[0].filter`, message: /missing required field "filter"/ },
    { name: "unknown response flag", break: (d) => set(d, `${MAPPERS}[1].filter.response_flag_filter.flags`, ["UH", "NOPE"]), path: `${MAPPERS}[1].filter.response_flag_filter.flags`, message: /must be one of LH, UH, UT/ },
    { name: "status_code out of range (lt 600)", break: (d) => set(d, `${MAPPERS}[2].status_code`, 700), path: `${MAPPERS}[2].status_code`, message: /must be < 600/ },
    { name: "json_format and text_format together (oneof)", break: (d) => set(d, `${MAPPERS}[3].body_format_override.text_format`, "x"), path: `${MAPPERS}[3].body_format_override`, message: /oneof/ },
    { name: "unknown @type in the CEL filter", break: (d) => set(d, `${MAPPERS}[4].filter.extension_filter.typed_config.@type`, `${CEL_TYPE}x`), path: `${MAPPERS}[4].filter.extension_filter.typed_config.@type`, message: /unknown @type/ },
    { name: "misspelled field in a mapper", break: (d) => set(d, `${MAPPERS}[5].body_format_overide`, {}), path: `${MAPPERS}[5].body_format_overide`, message: /unknown field "body_format_overide" in .*ResponseMapper/ },
    { name: "misspelled field in the CEL filter", break: (d) => set(d, `${MAPPERS}[6].filter.extension_filter.typed_config.expresion`, "true"), path: `${MAPPERS}[6].filter.extension_filter.typed_config.expresion`, message: /unknown field "expresion"/ },
    { name: "body as a plain string instead of a DataSource", break: (d) => set(d, `${MAPPERS}[0].body`, "no route"), path: `${MAPPERS}[0].body`, message: /expected an object|expected a JSON object|object/ },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const doc = bootstrap();
      c.break(doc);
      expectError(validateBootstrap(doc), c.path, c.message);
    });
  }
});
