// GET /v1/events (live change stream, server-sent events), GET /v1/whoami, the per-bucket history, and
// the dashboard's static files at /ui — against real replicas, Redis and mock model instances.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { StreamEvent } from "../../control/src/events/schemas.js";
import { createEventHub, type StreamSink } from "../../control/src/events/hub.js";
import { createLogger } from "../../control/src/log.js";
import { InstanceHistory } from "../../control/src/telemetry/history.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { ADMIN, PLUGIN, VIEWER, registerModel, startReplica, waitFor, withRedis, type Replica } from "./harness.js";
import { stream } from "./sse.js";

/** GET with the path exactly as given. */
function rawGet(base: string, path: string): Promise<{ status: number; body: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    http
      .get({ host: u.hostname, port: u.port, path }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}

describe("event stream", () => {
  let redis: RedisServer;
  let a: Replica;
  let b: Replica;
  let m1: MockOpenAI;
  let m2: MockOpenAI;
  const open: { close(): Promise<void> }[] = [];
  const track = <T extends { close(): Promise<void> }>(s: T): T => (open.push(s), s);

  before(async () => {
    redis = await withRedis();
    a = await startReplica(redis.url, { REPLICA_ID: "ev-a", EVENTS_HEARTBEAT_MS: "100", TELEMETRY_BUCKET_MS: "500" });
    b = await startReplica(redis.url, { REPLICA_ID: "ev-b" });
    m1 = await startMockOpenAI({ model: "ev-model" });
    m2 = await startMockOpenAI({ model: "ev-model" });
    await registerModel(a.api, "ev-model");
  });
  after(async () => {
    for (const s of open) await s.close();
    await a.stop();
    await b.stop();
    await m1.close();
    await m2.close();
    await redis.close();
  });

  test("auth: a token is required; viewer and admin may follow, plugin may not", async () => {
    const none = await a.api("GET", "/v1/events", { token: null });
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, "unauthenticated");
    assert.equal((await a.api("GET", "/v1/events", { token: PLUGIN })).status, 403);
    const head = await a.api("HEAD", "/v1/events", { token: VIEWER });
    assert.equal(head.status, 200);
    assert.match(head.headers.get("content-type") ?? "", /^text\/event-stream/);
    const s = track(await stream(a.url, VIEWER));
    assert.equal(s.res.status, 200);
    assert.match(s.res.headers.get("content-type") ?? "", /^text\/event-stream/);
    assert.match(s.res.headers.get("cache-control") ?? "", /no-cache/);
    await waitFor(() => s.frames.length > 0, 2_000, "the first frame");
    assert.equal(s.frames[0]!.retry, 2_000);
    assert.match(s.frames[0]!.id ?? "", /^[a-z0-9]+-\d+$/, "a new stream starts with its position");
    await s.close();
  });

  test("whoami names the token's role", async () => {
    for (const [token, role] of [[ADMIN, "admin"], [VIEWER, "viewer"], [PLUGIN, "plugin"]] as const) {
      const r = await a.api("GET", "/v1/whoami", { token });
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, { role });
    }
    assert.equal((await a.api("GET", "/v1/whoami", { token: "not-a-valid-token-at-all" })).status, 401);
  });

  test("changes made through another replica: created, connectivity result, state, settings — each a valid StreamEvent", async () => {
    const s = track(await stream(a.url, VIEWER));
    await waitFor(() => s.frames.length > 0, 2_000, "stream open");
    const r = await b.api("POST", "/v1/deployments", {
      body: { id: "ev", model: "ev-model", health_check: { interval_seconds: 0.05, timeout_seconds: 0.3, unhealthy_threshold: 2, healthy_threshold: 2 }, instances: [{ id: "i1", url: m1.url }] },
    });
    assert.equal(r.status, 201, r.text);
    await s.until((e) => e.type === "deployment.created" && e.deployment === "ev", "created");
    const checked = await s.until((e) => e.type === "instance.checked" && e.instance === "i1", "connectivity result");
    assert.deepEqual({ ok: checked.ok, error_code: checked.error_code, engine: checked.engine }, { ok: true, error_code: null, engine: "vllm" });
    // Tested before it was stored: the instance appears active (no pending state was ever stored).
    await s.until((e) => e.type === "instance.state" && e.instance === "i1" && e.from === null && e.to === "active", "added, active");
    await s.until((e) => e.type === "table", "a table version");

    const before = s.events().length;
    assert.equal((await b.api("PATCH", "/v1/deployments/ev", { body: { strategy: "failover" } })).status, 200);
    await waitFor(() => s.events().slice(before).some((e) => e.type === "deployment.updated" && e.deployment === "ev"), 5_000, "updated");
    for (const e of s.events()) assert.ok(StreamEvent.safeParse(e).success, `valid event: ${JSON.stringify(e)}`);
    // Ids increase; every data frame names its type in `event:`.
    const data = s.frames.filter((f) => f.data !== undefined && f.event !== "stats");
    const seqs = data.map((f) => Number(f.id!.split("-")[1]));
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
    for (const f of s.frames.filter((f) => f.data !== undefined)) assert.equal(f.event, JSON.parse(f.data!).type);
    await s.close();
  });

  test("an ejection and the return: state changes and timeline entries, live", async () => {
    const s = track(await stream(a.url, ADMIN));
    await waitFor(() => s.frames.length > 0, 2_000, "stream open");
    await m1.stop();
    await s.until((e) => e.type === "instance.event" && e.instance === "i1" && e.event === "probe_failed", "probe_failed");
    const ej = await s.until((e) => e.type === "instance.event" && e.instance === "i1" && e.event === "ejected", "ejected");
    assert.equal(ej.reason, "probe_failures");
    await s.until((e) => e.type === "instance.state" && e.instance === "i1" && e.from === "active" && e.to === "ejected", "active → ejected");
    await m1.start();
    await s.until((e) => e.type === "instance.event" && e.instance === "i1" && e.event === "readmitted", "readmitted");
    await s.until((e) => e.type === "instance.state" && e.instance === "i1" && e.from === "ejected" && e.to === "active", "ejected → active");
    await s.close();
  });

  test("a migration's progress: phases and health-check counts", async () => {
    const s = track(await stream(a.url, VIEWER));
    await waitFor(() => s.frames.length > 0, 2_000, "stream open");
    const r = await a.api("POST", "/v1/deployments/ev/migrations", { body: { instance_id: "i1", url: m2.url, new_instance_id: "i2", drain_timeout_seconds: 0.1 } });
    assert.equal(r.status, 202, r.text);
    await s.until((e) => e.type === "migration" && e.phase === "succeeded", "succeeded");
    const phases = s.events().filter((e) => e.type === "migration").map((e) => e.phase);
    assert.deepEqual([...new Set(phases)], ["testing", "health_checking", "draining", "succeeded"]);
    const counts = s.events().filter((e) => e.type === "migration" && e.phase === "health_checking").map((e) => e.consecutive_successes);
    assert.ok(counts.includes(1), `health checks counted: ${counts}`);
    const i1 = s.events().filter((e) => e.type === "instance.state" && e.instance === "i1").map((e) => `${e.from}→${e.to}`);
    const i2 = s.events().filter((e) => e.type === "instance.state" && e.instance === "i2").map((e) => `${e.from}→${e.to}`);
    assert.deepEqual(i2, ["null→pending", "pending→active"]);
    assert.deepEqual(i1, ["active→draining", "draining→null"]);
    await s.close();
  });

  test("Last-Event-ID: missed events are replayed on the same replica; elsewhere or unknown → resync", async () => {
    const s = track(await stream(a.url, VIEWER));
    await waitFor(() => s.frames.length > 0, 2_000, "stream open");
    const last = s.lastId()!;
    await s.close();
    assert.equal((await a.api("PATCH", "/v1/deployments/ev/instances/i2", { body: { weight: 7 } })).status, 200);
    await waitFor(async () => (await a.api("GET", "/v1/deployments/ev")).body.instances[0].weight === 7, 2_000, "written");

    const again = track(await stream(a.url, VIEWER, { "last-event-id": last }));
    const replayed = await again.until((e) => e.type === "deployment.updated" && e.deployment === "ev", "the missed update, replayed");
    assert.ok(replayed);
    assert.ok(!again.events().some((e) => e.type === "resync"));
    await again.close();

    const other = track(await stream(b.url, VIEWER, { "last-event-id": last }));
    const rs = await other.until((e) => e.type === "resync", "resync on another replica");
    assert.equal(rs.reason, "unknown_last_event_id");
    await other.close();
    const bogus = track(await stream(a.url, VIEWER, { "last-event-id": "zzz-999999" }));
    await bogus.until((e) => e.type === "resync", "resync for an unknown id");
    await bogus.close();
  });

  test("heartbeat comments and stats ticks keep an idle stream alive", async () => {
    const s = track(await stream(a.url, VIEWER));
    await waitFor(() => s.frames.filter((f) => f.comment === "keep-alive").length >= 2, 2_000, "two heartbeats");
    const tick = await s.until((e) => e.type === "stats", "a stats tick");
    assert.equal(tick.bucket_ms, 500);
    assert.equal(s.frames.find((f) => f.event === "stats")?.id, undefined, "stats ticks are never replayed (no id)");
    await s.close();
  });

  test("at most EVENTS_MAX_STREAMS streams per replica: then 503 too_many_streams; a closed one frees its slot", async () => {
    const c = await startReplica(redis.url, { REPLICA_ID: "ev-c", EVENTS_MAX_STREAMS: "2" });
    try {
      const one = await stream(c.url, VIEWER);
      const two = await stream(c.url, ADMIN);
      assert.deepEqual([one.res.status, two.res.status], [200, 200]);
      const over = await c.api("GET", "/v1/events", { token: VIEWER });
      assert.equal(over.status, 503);
      assert.equal(over.body.error.code, "too_many_streams");
      assert.equal(over.headers.get("retry-after"), "5");
      await one.close();
      let three: Awaited<ReturnType<typeof stream>> | null = null;
      await waitFor(async () => {
        const s = await stream(c.url, VIEWER);
        if (s.res.status === 200) three = s;
        else await s.close();
        return three !== null;
      }, 2_000, "a slot freed");
      await two.close();
      await three!.close();
    } finally {
      await c.stop();
    }
  });

  test("deleting a deployment: deployment.deleted", async () => {
    const s = track(await stream(a.url, VIEWER));
    await waitFor(() => s.frames.length > 0, 2_000, "stream open");
    assert.equal((await b.api("DELETE", "/v1/deployments/ev")).status, 204);
    await s.until((e) => e.type === "deployment.deleted" && e.deployment === "ev", "deleted");
    await s.close();
  });

  test("history: one point per telemetry bucket, oldest first", async () => {
    const r = await a.api("POST", "/v1/deployments", { body: { id: "hist", model: "ev-model", health_check: { interval_seconds: 0.05 }, instances: [{ id: "h1", url: m1.url }] } });
    assert.equal(r.status, 201, r.text);
    await waitFor(async () => (await a.api("GET", "/v1/deployments/hist/instances/h1/history?seconds=5", { token: VIEWER })).body.points.some((p: { probes: number }) => p.probes > 0), 5_000, "probes in the history");
    const h = await a.api("GET", "/v1/deployments/hist/instances/h1/history?seconds=5", { token: VIEWER });
    assert.equal(h.status, 200);
    assert.ok(InstanceHistory.safeParse(h.body).success);
    assert.equal(h.body.bucket_ms, 500);
    assert.equal(h.body.points.length, 10);
    const starts = h.body.points.map((p: { start: string }) => Date.parse(p.start));
    for (let k = 1; k < starts.length; k++) assert.equal(starts[k] - starts[k - 1], 500);
    assert.equal((await a.api("GET", "/v1/deployments/hist/instances/nope/history")).status, 404);
    assert.equal((await a.api("GET", "/v1/deployments/hist/instances/h1/history?seconds=601")).status, 400);
    assert.equal((await a.api("GET", "/v1/deployments/hist/instances/h1/history", { token: PLUGIN })).status, 403);
  });

  test("OpenAPI documents the stream, whoami and history", async () => {
    const doc = (await a.api("GET", "/openapi.json", { token: null })).body;
    const ev = doc.paths["/v1/events"].get;
    assert.deepEqual(ev.responses["200"].content["text/event-stream"].schema, { $ref: "#/components/schemas/StreamEvent" });
    assert.ok(ev.parameters.some((p: { name: string }) => p.name === "Last-Event-ID"));
    assert.ok(doc.components.schemas.StreamEvent.oneOf ?? doc.components.schemas.StreamEvent.anyOf);
    assert.ok(doc.paths["/v1/whoami"].get);
    assert.ok(doc.paths["/v1/deployments/{id}/instances/{instanceId}/history"].get);
    assert.ok(doc.components.schemas.InstanceHistory);
  });

  test("the dashboard's files: public, strict headers, nothing else under /ui", async () => {
    const page = await fetch(`${a.url}/ui/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    const csp = page.headers.get("content-security-policy") ?? "";
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(page.headers.get("x-content-type-options"), "nosniff");
    const html = await page.text();
    assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(html), "no inline script");
    assert.ok(!/\sstyle=|<style/i.test(html), "no inline style");
    const js = await fetch(`${a.url}/ui/app.js`);
    assert.match(js.headers.get("content-type") ?? "", /javascript/);
    const redirect = await fetch(`${a.url}/ui`, { redirect: "manual" });
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.get("location"), "/ui/");
    // Sent as is (fetch would normalise the dot segments away).
    for (const p of ["/ui/nope.js", "/ui/tsconfig.json", "/ui/%2e%2e/package.json", "/ui/..%2f..%2fpackage.json", "/ui/../../package.json", "/ui/.hidden"]) {
      const r = await rawGet(a.url, p);
      assert.equal(r.status, 404, `${p}: ${r.status}`);
      assert.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, "not_found");
    }
  });
});

describe("event hub (unit)", () => {
  const log = createLogger({ level: "error", sink: () => undefined });
  const sink = (reads: boolean) => {
    const s = {
      chunks: [] as string[],
      writableLength: 0,
      destroyed: false,
      ended: false,
      write(c: string) {
        s.chunks.push(c);
        if (!reads) s.writableLength += Buffer.byteLength(c); // a client not reading: nothing leaves the buffer
        return reads;
      },
      destroy() {
        s.destroyed = true;
      },
      end() {
        s.ended = true;
      },
    };
    return s as typeof s & StreamSink;
  };

  test("a client that does not read is dropped once its buffer passes the bound; the others go on", () => {
    const hub = createEventHub({ send: async () => undefined, log, maxStreams: 10, maxBufferBytes: 4_096, heartbeatMs: 0, statsMs: 0 });
    const slow = sink(false);
    const fast = sink(true);
    assert.ok(hub.attach(slow, undefined));
    assert.ok(hub.attach(fast, undefined));
    const msg = JSON.stringify([{ type: "deployment.updated", at: new Date().toISOString(), deployment: "d", revision: 1 }]);
    for (let k = 0; k < 200; k++) hub.receive(msg);
    assert.equal(slow.destroyed, true);
    assert.ok(slow.writableLength <= 4_096 + 512, `buffered ${slow.writableLength} bytes`);
    assert.equal(hub.dropped, 1);
    assert.equal(hub.streams, 1);
    assert.equal(fast.chunks.filter((c) => c.includes("deployment.updated")).length, 200);
    hub.stop();
    assert.equal(fast.ended, true);
  });

  test("the replay buffer is bounded; an id older than it gets resync", () => {
    const hub = createEventHub({ send: async () => undefined, log, maxStreams: 10, maxBufferBytes: 1 << 20, heartbeatMs: 0, statsMs: 0, replay: 5 });
    const first = sink(true);
    hub.attach(first, undefined);
    const epochId = /id: (\S+)/.exec(first.chunks[0]!)![1]!;
    const msg = JSON.stringify([{ type: "table", at: new Date().toISOString(), version: 1 }]);
    for (let k = 0; k < 3; k++) hub.receive(msg);
    const replay = sink(true);
    hub.attach(replay, epochId);
    assert.equal(replay.chunks.join("").match(/event: table/g)?.length, 3, "3 missed events replayed");
    for (let k = 0; k < 10; k++) hub.receive(msg);
    const late = sink(true);
    hub.attach(late, epochId);
    assert.match(late.chunks.join(""), /event: resync\ndata: \{"type":"resync","at":"[^"]+","reason":"replay_gap"\}/);
    hub.receive("not json");
    hub.receive(JSON.stringify([{ type: "no-such-type" }]));
    assert.equal(hub.streams, 3, "bad messages are ignored, streams kept");
    hub.stop();
  });
});
