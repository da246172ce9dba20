/**
 * control/xds/discovery.ts over real HTTP: REST-JSON CDS/EDS as Envoy polls them — DiscoveryResponses
 * that validate against Envoy's protos, 304 on the current version, EDS resource_names, 400 naming
 * the bad field, 503 before the first snapshot, the authorize hook; and the publisher's rules.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import express, { type NextFunction, type Request, type Response } from "express";
import { buildXdsSnapshot, TYPE_URL, type XdsSnapshot } from "../../control/xds/build.js";
import { createXdsRouter, type XdsLogger } from "../../control/xds/discovery.js";
import { createXdsPublisher } from "../../control/xds/publisher.js";
import { formatIssue, validateDiscoveryResponse } from "../../envoy/validate/index.js";
import { fullSnapshot } from "./fixtures.js";

const CDS = "/v3/discovery:clusters";
const EDS = "/v3/discovery:endpoints";

/** What Envoy sends (REST subscriptions carry the node with a few more fields we ignore). */
const envoyNode = { id: "edge-1", cluster: "model-gateway", user_agent_name: "envoy", user_agent_build_version: { version: { major_number: 1, minor_number: 35 } }, extensions: [{ name: "envoy.load_balancing_policies.override_host" }] };

function snapshot(version = 42): XdsSnapshot {
  const r = buildXdsSnapshot(fullSnapshot(version));
  assert.ok(r.ok);
  return r.snapshot;
}

interface Server {
  url: string;
  close(): Promise<void>;
}
async function serve(app: express.Express): Promise<Server> {
  const server = app.listen(0, "127.0.0.1");
  await new Promise<void>((resolve) => server.once("listening", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

function post(base: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<globalThis.Response> {
  return fetch(base + path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
}

const showIssues = (r: { errors: { path: string; message: string }[] }): string => r.errors.map(formatIssue).join("\n");

describe("xDS REST transport", () => {
  let current: XdsSnapshot | undefined;
  const logs: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const logger: XdsLogger = {
    debug: (msg, fields) => logs.push({ level: "debug", msg, fields }),
    info: (msg, fields) => logs.push({ level: "info", msg, fields }),
    warn: (msg, fields) => logs.push({ level: "warn", msg, fields }),
    error: (msg, fields) => logs.push({ level: "error", msg, fields }),
  };
  let srv: Server;
  before(async () => {
    const app = express();
    app.use(createXdsRouter({ snapshot: () => current, logger }));
    srv = await serve(app);
  });
  after(() => srv.close());

  test("503 with a JSON error before the first snapshot", async () => {
    current = undefined;
    for (const path of [CDS, EDS]) {
      const r = await post(srv.url, path, { node: envoyNode, version_info: "", resource_names: [] });
      assert.equal(r.status, 503);
      assert.equal(r.headers.get("retry-after"), "1");
      const body = (await r.json()) as any;
      assert.equal(body.error.code, "xds_snapshot_unavailable");
    }
  });

  test("CDS: 200, a DiscoveryResponse that validates, every cluster, version_info and nonce", async () => {
    current = snapshot();
    const r = await post(srv.url, CDS, { node: envoyNode, version_info: "", resource_names: [], type_url: TYPE_URL.cluster });
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type") ?? "", /^application\/json/);
    const body = (await r.json()) as any;
    const v = validateDiscoveryResponse(body);
    assert.ok(v.ok, showIssues(v));
    assert.deepEqual(v.warnings, []);
    assert.equal(body.version_info, "42");
    assert.equal(body.type_url, TYPE_URL.cluster);
    assert.equal(body.nonce, "42");
    assert.deepEqual(body.resources.map((c: any) => c.name), ["gw.empty", "gw.llama-rr", "gw.mixtral-wrr", "gw.phi-failover2", "gw.qwen-failover"]);
    assert.ok(body.resources.every((c: any) => c["@type"] === TYPE_URL.cluster));
    assert.deepEqual(body.resources, JSON.parse(JSON.stringify(current.clusters)));
  });

  test("CDS is state of the world: resource_names do not narrow it", async () => {
    const r = await post(srv.url, CDS, { node: envoyNode, resource_names: ["gw.llama-rr"] });
    const body = (await r.json()) as any;
    assert.equal(body.resources.length, 5);
  });

  test("EDS: all assignments without names; only the named (existing) ones with names", async () => {
    const all = (await (await post(srv.url, EDS, { node: envoyNode, version_info: "", type_url: TYPE_URL.clusterLoadAssignment })).json()) as any;
    assert.ok(validateDiscoveryResponse(all).ok, showIssues(validateDiscoveryResponse(all)));
    assert.equal(all.resources.length, 5);

    const r = await post(srv.url, EDS, { node: envoyNode, version_info: "", resource_names: ["gw.qwen-failover", "gw.no-such-cluster", "gw.llama-rr"], type_url: TYPE_URL.clusterLoadAssignment });
    assert.equal(r.status, 200);
    const body = (await r.json()) as any;
    const v = validateDiscoveryResponse(body);
    assert.ok(v.ok, showIssues(v));
    assert.deepEqual(body.resources.map((e: any) => e.cluster_name), ["gw.llama-rr", "gw.qwen-failover"]);
    assert.ok(body.resources.every((e: any) => e["@type"] === TYPE_URL.clusterLoadAssignment));
    assert.equal(body.type_url, TYPE_URL.clusterLoadAssignment);

    const one = (await (await post(srv.url, EDS, { node: envoyNode, resource_names: ["gw.phi-failover2"] })).json()) as any;
    assert.deepEqual(one.resources, [JSON.parse(JSON.stringify(current!.endpointsByName.get("gw.phi-failover2")))]);
  });

  test("the DiscoveryResponse check can fail: a resource of the wrong type, an unknown field", async () => {
    const body = (await (await post(srv.url, CDS, { node: envoyNode })).json()) as any;
    const wrongType = { ...body, type_url: TYPE_URL.clusterLoadAssignment };
    assert.equal(validateDiscoveryResponse(wrongType).ok, false);
    const unknown = structuredClone(body);
    unknown.resources[1].lb_polcy = "ROUND_ROBIN";
    assert.equal(validateDiscoveryResponse(unknown).ok, false);
  });

  test("304 when the request already has the current version (CDS and EDS, with or without names)", async () => {
    for (const [path, names] of [
      [CDS, []],
      [EDS, []],
      [EDS, ["gw.llama-rr"]],
    ] as const) {
      const r = await post(srv.url, path, { node: envoyNode, version_info: "42", resource_names: names });
      assert.equal(r.status, 304, `${path} ${names.join(",")}`);
      assert.equal(await r.text(), "");
    }
    // An older version → the current resources.
    assert.equal((await post(srv.url, CDS, { node: envoyNode, version_info: "41" })).status, 200);
  });

  test("a new snapshot is served to everyone at once; the old version then gets 200", async () => {
    current = snapshot(43);
    const r = await post(srv.url, EDS, { node: envoyNode, version_info: "42", resource_names: ["gw.llama-rr"] });
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as any).version_info, "43");
    assert.equal((await post(srv.url, CDS, { node: envoyNode, version_info: "43" })).status, 304);
  });

  test("responses are byte-identical for the same snapshot content (replicas agree)", async () => {
    current = snapshot(43);
    const a = await (await post(srv.url, CDS, { node: envoyNode })).text();
    current = snapshot(43); // rebuilt independently
    const b = await (await post(srv.url, CDS, { node: { id: "edge-2", cluster: "model-gateway" } })).text();
    assert.equal(a, b);
  });

  test("lowerCamelCase request fields are read too", async () => {
    const r = await post(srv.url, EDS, { node: envoyNode, versionInfo: "", resourceNames: ["gw.empty"], typeUrl: TYPE_URL.clusterLoadAssignment });
    assert.equal(r.status, 200);
    assert.deepEqual(((await r.json()) as any).resources.map((e: any) => e.cluster_name), ["gw.empty"]);
    assert.equal((await post(srv.url, EDS, { versionInfo: "43" })).status, 304);
  });

  test("bad DiscoveryRequests → 400 JSON naming the field", async () => {
    const cases: [string, unknown, string, string][] = [
      [CDS, { version_info: 42 }, "version_info", "validation_failed"],
      [EDS, { resource_names: "gw.llama-rr" }, "resource_names", "validation_failed"],
      [EDS, { resource_names: ["ok", 7] }, "resource_names[1]", "validation_failed"],
      [EDS, { resource_names: [""] }, "resource_names[0]", "validation_failed"],
      [CDS, { node: "edge-1" }, "node", "validation_failed"],
      [CDS, { node: { id: 5 } }, "node.id", "validation_failed"],
      [CDS, { type_url: TYPE_URL.clusterLoadAssignment }, "type_url", "validation_failed"],
      [EDS, { type_url: TYPE_URL.cluster }, "type_url", "validation_failed"],
      [EDS, { version_info: "", versionInfo: "" }, "versionInfo", "validation_failed"],
      [CDS, [1, 2], "", "validation_failed"],
    ];
    for (const [path, body, field, code] of cases) {
      const r = await post(srv.url, path, body);
      assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}`);
      const json = (await r.json()) as any;
      assert.equal(json.error.code, code);
      assert.ok(
        json.error.issues.some((i: any) => i.path === field),
        `${JSON.stringify(body)}: issues ${JSON.stringify(json.error.issues)} do not name ${field}`,
      );
      assert.ok(field === "" || json.error.message.includes(field), json.error.message);
    }
  });

  test("malformed JSON, no JSON body → 400 JSON (never HTML)", async () => {
    const bad = await post(srv.url, CDS, "{not json");
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as any).error.code, "malformed_json");
    const none = await fetch(srv.url + CDS, { method: "POST" });
    assert.equal(none.status, 400);
    assert.equal(((await none.json()) as any).error.code, "validation_failed");
    const text = await fetch(srv.url + EDS, { method: "POST", headers: { "content-type": "text/plain" }, body: "{}" });
    assert.equal(text.status, 400);
  });

  test("a rejection reported by a client (error_detail, gRPC-style) is logged once", async () => {
    logs.length = 0;
    const req = { node: envoyNode, version_info: "42", error_detail: { code: 3, message: "Proto constraint validation failed" } };
    for (let i = 0; i < 3; i++) await post(srv.url, CDS, req);
    const warns = logs.filter((l) => l.level === "warn" && l.msg === "envoy rejected an xds response");
    assert.equal(warns.length, 1);
    assert.equal(warns[0]!.fields!.node, "edge-1");
    assert.equal(warns[0]!.fields!.detail, "Proto constraint validation failed");
  });

  test("other paths and methods are not ours", async () => {
    assert.equal((await post(srv.url, "/v3/discovery:listeners", {})).status, 404);
    assert.equal((await fetch(srv.url + CDS)).status, 404);
  });
});

describe("xDS router inside an app", () => {
  test("authorize runs first; works behind an app-level JSON parser", async () => {
    const app = express();
    app.use(express.json());
    const authorize = (req: Request, res: Response, next: NextFunction) => {
      if (req.get("authorization") !== "Bearer plugin-token-0123456789") return void res.status(401).json({ error: { code: "unauthenticated" } });
      next();
    };
    const s = snapshot();
    app.use(createXdsRouter({ snapshot: () => s, authorize }));
    const srv = await serve(app);
    try {
      assert.equal((await post(srv.url, CDS, {})).status, 401);
      assert.equal((await post(srv.url, EDS, { version_info: "42" })).status, 401, "even a 304 needs auth");
      const ok = await post(srv.url, EDS, { resource_names: ["gw.llama-rr"] }, { authorization: "Bearer plugin-token-0123456789" });
      assert.equal(ok.status, 200);
      assert.deepEqual(((await ok.json()) as any).resources.map((e: any) => e.cluster_name), ["gw.llama-rr"]);
    } finally {
      await srv.close();
    }
  });
});

describe("xDS publisher", () => {
  test("serves the first good snapshot, then only newer good ones", () => {
    const errors: string[] = [];
    const p = createXdsPublisher({ logger: { debug() {}, info() {}, warn() {}, error: (m) => errors.push(m) } });
    assert.equal(p.current(), undefined);
    assert.equal(p.publish(fullSnapshot(5)).published, true);
    assert.equal(p.current()!.version_info, "5");

    // A problem that names no deployment refuses the whole snapshot: the last good one stays.
    const bad = { ...fullSnapshot(6), version: -1 };
    const r = p.publish(bad);
    assert.equal(r.published, false);
    assert.equal(r.ok, false);
    assert.equal(p.current()!.version, 5, "the last good snapshot stays");
    assert.match(errors.join("\n"), /refused/);

    assert.equal(p.publish(fullSnapshot(4)).published, false, "older version");
    assert.match(errors.join("\n"), /backwards/);
    assert.equal(p.publish(fullSnapshot(5)).published, false, "same version");
    assert.equal(p.publish(fullSnapshot(7)).published, true);
    assert.equal(p.current()!.version, 7);
  });

  test("one bad deployment keeps its last good cluster; every other deployment still gets its update", () => {
    const errors: string[] = [];
    const p = createXdsPublisher({ logger: { debug() {}, info() {}, warn() {}, error: (m) => errors.push(m) } });
    const good = fullSnapshot(5);
    assert.equal(p.publish(good).published, true);
    const before = p.current()!.clusters.find((c: any) => c.name === good.deployments[1]!.cluster);
    assert.ok(before, "deployment 1 is served");

    const next = fullSnapshot(6);
    next.deployments[0]!.health_check.interval_seconds += 1; // a legitimate change elsewhere
    next.deployments[1]!.cluster = next.deployments[0]!.cluster; // deployment 1 is now invalid (duplicate cluster)
    const r = p.publish(next);
    assert.equal(r.published, true, "the rest of the snapshot is served");
    assert.equal(p.current()!.version, 6);
    const names = p.current()!.clusters.map((c: any) => c.name);
    assert.equal(new Set(names).size, names.length, "no duplicate cluster is served");
    assert.deepEqual(p.current()!.clusters.find((c: any) => c.name === good.deployments[1]!.cluster), before, "deployment 1 keeps its last good cluster");
    const c0 = p.current()!.clusters.find((c: any) => c.name === next.deployments[0]!.cluster) as any;
    assert.equal(c0.health_checks[0].interval, `${next.deployments[0]!.health_check.interval_seconds}s`, "deployment 0's change is served");
    assert.match(errors.join("\n"), /keep their last good clusters/);

    // A deployment that was never good is left out instead.
    const fresh = fullSnapshot(7);
    const dup = structuredClone(fresh.deployments[0]!);
    dup.id = "never-good";
    fresh.deployments.push(dup); // same cluster name as deployment 0
    assert.equal(p.publish(fresh).published, true);
    assert.equal(p.current()!.clusters.filter((c: any) => c.name === dup.cluster).length, 1);
  });
});
