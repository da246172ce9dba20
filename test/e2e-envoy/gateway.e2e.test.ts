/**
 * The model gateway end to end through a real Envoy (>= 1.35): Redis, the control service, mock
 * OpenAI-compatible instances, a SaaS stand-in, and Envoy running build/plugin.wasm with a bootstrap
 * generated from envoy/bootstrap.yaml (support/bootstrap.ts; proven proto-valid everywhere by
 * bootstrap.test.ts, and validated again here before Envoy starts).
 *
 * Runs only where Envoy exists (ENVOY_BIN, or `envoy` on PATH); elsewhere every test here reports
 * SKIPPED with the reason — never passed. ENVOY_BIN set to something that is not a working Envoy
 * >= 1.35 fails.
 *
 * What goes through Envoy's listener, and what is checked:
 *   - round robin over 4 instances: an exactly even spread; each request served by the plugin's pick
 *     (override_host honoured x-gateway-destination-endpoint), with the plugin's headers upstream;
 *     the plugin's pick counters in Envoy's stats equal what the instances saw;
 *   - override_host decides: an instance failing only Envoy's own health check (so Envoy's load
 *     balancer would never choose it) still gets exactly its round-robin share of the plugin's picks;
 *   - weighted round robin 3:1: exactly 3:1 in every window of 4 consecutive requests (header routing);
 *   - failover: primary tier stopped → every request still answered, by the backup tier (retries
 *     walk the list, passive ejection may act); after the control service ejects the primaries the
 *     backups are picked directly; primaries back → traffic returns to them, none to the backups;
 *   - ejection: a stopped instance is ejected by the control service; once the plugin has that table
 *     (and its own passive ejection has expired) the instance gets no request — checked while it
 *     listens again (answering the API, failing /health), so "no request" is not just "port closed";
 *     re-admitted → its share again;
 *   - passthrough: an unknown model (and a request without model) reaches the SaaS stand-in untouched
 *     (same body bytes, client Authorization kept, no internal headers);
 *   - client-supplied x-gateway-destination-endpoint / x-gateway-cluster / x-model-* are ignored.
 *
 * Envoy runs with --concurrency 1: picker state is per worker, and exact shares are a property of
 * one picker (with N workers each worker's picks are exact, their sum over a window is not).
 * Every wait is on a condition (admin /ready, /clusters, /stats; the control API), bounded; all
 * processes are stopped in `after`, also when a step fails.
 *
 * Dry run of this file's own logic without Envoy (NOT evidence about Envoy): ENVOY_BIN=
 * test/e2e-envoy/support/sim-envoy (a simulation: the real plugin in envoy/local/host + our reading of Envoy).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { formatIssue, validateBootstrap } from "../../envoy/validate/index.js";
import { freePort } from "../support/redis.js";
import { WASM_PATH, e2eBootstrap, type E2eBootstrap } from "./support/bootstrap.js";
import { INTERNAL_HEADERS, gatewayHits, header, send, sendMany, tally, trace, until, type Sent, type SendOptions } from "./support/client.js";
import { assertEnvoyVersion, findEnvoy, pluginStat, startEnvoy, type RunningEnvoy, clustersSeen, diagnoser } from "./support/envoy.js";
import { CHAT, PLUGIN, UNKNOWN_MODEL, startStack, type Stack } from "./support/stack.js";

const { bin, why } = findEnvoy();
const skip = bin ? false : `SKIPPED: ${why}`;


async function distinctFreePorts(n: number): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await freePort());
  return [...out];
}

describe("model gateway through a real Envoy", { timeout: 600_000 }, () => {
  let stack: Stack | undefined;
  let envoy: RunningEnvoy | undefined;
  let gen: E2eBootstrap;
  /** Deployment id → its Envoy cluster (the name the plugin writes into x-gateway-cluster). */
  const clusterOf = new Map<string, string>();

  const S = (): Stack => stack!;
  const E = (): RunningEnvoy => envoy!;
  const listener = () => E().listener;
  const stats = () => E().stats("gateway\\.|update_rejected");
  const stat = async (name: string) => pluginStat(await stats(), name);

  /** Adds what Envoy and the control service last said to a failing step. */
  const diag = diagnoser(() => envoy, () => stack?.logTail(40));
  const seenClusters = () => clustersSeen(E());


  /** The plugin in Envoy has adopted the control service's current table (or a newer one). */
  const pluginHasCurrentTable = async (what: string) => {
    const version = (await S().table()).version;
    await until(async () => ((await stat("gateway.table.version")) ?? 0) >= version, 15_000, `${what}: plugin table version >= ${version}`, async () => `plugin gateway.table.version = ${String(await stat("gateway.table.version"))}`);
    return version;
  };

  /** Waits until the control service's table shows these instance states (what the plugin will get). */
  const controlStates = async (dep: string, want: Record<string, string>, ms = 20_000) => {
    const states = async (): Promise<Record<string, string>> =>
      Object.fromEntries((await S().table()).deployments.find((d) => d.id === dep)!.instances.map((i) => [i.id, i.state]));
    await until(
      async () => {
        const x = await states();
        return Object.entries(want).every(([id, st]) => x[id] === st);
      },
      ms,
      `control service: ${dep} ${JSON.stringify(want)}`,
      async () => JSON.stringify(await states()),
    );
  };

  /**
   * A request the plugin routed to deployment `dep`: 200 from one instance of it, exactly one upstream
   * request, carrying the plugin's headers (single values) with the serving instance's own address
   * first in x-gateway-destination-endpoint. Returns "<dep>/<instance>" of the instance that served.
   */
  const routed = (r: Sent, dep: string, opts: { listLength?: number } = {}): string => {
    assert.equal(r.status, 200, `seq ${r.seq}: ${r.status} ${r.text}`);
    const hits = trace(S(), r.seq);
    assert.equal(hits.length, 1, `seq ${r.seq} reached ${hits.map((h) => h.where).join(", ") || "nothing"}`);
    const hit = hits[0]!;
    assert.ok(hit.where.startsWith(`${dep}/`), `seq ${r.seq} (model of ${dep}) served by ${hit.where}: ${r.text}`);
    assert.equal(r.content, hit.where, "the answer comes from the instance that got the request");
    const inst = hit.where.slice(dep.length + 1);
    const h = hit.req.headers;
    assert.equal(header(h, gen.plugin.cluster_header), clusterOf.get(dep), `${gen.plugin.cluster_header} upstream`);
    assert.equal(header(h, gen.plugin.deployment_header), dep);
    assert.equal(header(h, gen.plugin.instance_header), inst, "served by the plugin's pick (override_host honoured the header)");
    const list = (header(h, gen.plugin.endpoint_header) ?? "").split(",");
    assert.equal(list[0], S().address(hit.where), `${gen.plugin.endpoint_header} starts with the pick: ${list.join(",")}`);
    assert.equal(new Set(list).size, list.length, `no address twice: ${list.join(",")}`);
    for (const a of list) assert.match(a, /^127\.0\.0\.1:\d+$/, `one plugin-written list, nothing appended: ${list.join(",")}`);
    if (opts.listLength !== undefined) assert.equal(list.length, opts.listLength, `pick + fallbacks: ${list.join(",")}`);
    return hit.where;
  };

  const chat = (model: string, via: "body" | "header" = "body", extra: Partial<SendOptions> = {}): SendOptions => ({ model, via, ...extra });

  before(async () => {
    if (!bin) return; // every test is skipped
    const version = assertEnvoyVersion(bin);
    console.log(`envoy under test: ${bin} (${version})`);
    assert.ok(existsSync(WASM_PATH), "build/plugin.wasm missing: npm run build:plugin");
    stack = await startStack();
    const [adminPort, listenerPort] = (await distinctFreePorts(2)) as [number, number];
    gen = e2eBootstrap({ nodeId: `gw-e2e-${process.pid}`, adminPort, listenerPort, controlPort: stack.controlPort, adsPort: stack.adsPort, saasPort: stack.saas.port, pluginToken: PLUGIN });
    const v = validateBootstrap(gen.bootstrap);
    assert.deepEqual(v.errors.map(formatIssue), [], "the generated bootstrap must pass envoy/validate before Envoy sees it");
    envoy = await startEnvoy({ bin, bootstrap: gen.bootstrap, adminPort, listenerPort, concurrency: 1 });

    await diag(async () => {
      // Every deployment's cluster arrived by CDS, with all its hosts by EDS, each past its first
      // active health check (a cluster with health checks is used only after that round anyway).
      const table = await S().table();
      for (const d of table.deployments) clusterOf.set(d.id, d.cluster);
      await until(
        async () => {
          const cs = await E().clusters();
          return table.deployments.every((d) => {
            const c = cs.get(d.cluster);
            if (!c || !c.addedViaApi) return false;
            const got = c.hosts.map((h) => h.address).sort();
            const want = d.instances.map((i) => i.address).sort();
            // Hosts are past their first check and healthy — except those whose front fails Envoy's
            // check on purpose (their state is the override_host test's to assert).
            return JSON.stringify(got) === JSON.stringify(want) && c.hosts.every((h) => !h.pendingActiveHc && (S().envoyHcFails(h.address) || !h.failedActiveHc));
          });
        },
        30_000,
        "every deployment cluster (CDS) with all its endpoints (EDS), past the first health check",
        seenClusters,
      );
      await pluginHasCurrentTable("startup");
      const s = await stats();
      assert.equal(s.get("cluster_manager.cds.update_rejected") ?? 0, 0, "Envoy rejected a CDS response");
      for (const d of table.deployments) assert.equal(s.get(`cluster.${d.cluster}.update_rejected`) ?? 0, 0, `Envoy rejected an EDS response for ${d.cluster}`);
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

  test("round robin over 4 instances: an exactly even spread, each request served by the plugin's pick", { skip }, () =>
    diag(async () => {
      const N = 40;
      // Alternate body routing (allow_on_headers_stop_iteration) and header routing.
      const rs = await sendMany(listener(), N, (i) => chat("e2e-rr", i % 2 === 0 ? "body" : "header"));
      const served = rs.map((r) => routed(r, "rr", { listLength: 1 + gen.plugin.max_fallbacks }));
      assert.deepEqual(tally(served), { "rr/a": 10, "rr/b": 10, "rr/c": 10, "rr/d": 10 });
      // Consecutive picks go round: no instance twice within any 4 in a row.
      for (let i = 0; i + 4 <= N; i++) assert.equal(new Set(served.slice(i, i + 4)).size, 4, `window ${i}: ${served.slice(i, i + 4).join(" ")}`);
      // The plugin's pick counters (flushed to Envoy on its tick) equal what the instances saw.
      await until(
        async () => {
          const s = await stats();
          return ["a", "b", "c", "d"].every((i) => pluginStat(s, `gateway.deployment.rr.instance.${i}.picks`) === gatewayHits(S(), `rr/${i}`).length);
        },
        10_000,
        "pick counters in Envoy's stats equal the requests each instance got",
        async () => JSON.stringify(Object.fromEntries([...(await stats())].filter(([k]) => k.includes("deployment.rr")))),
      );
    }));

  test("override_host decides: a host that fails Envoy's own health check still gets exactly the plugin's picks", { skip }, () =>
    diag(async () => {
      // ovr/o2 passes the control service's probes (active in the table, so the plugin picks it) but
      // fails Envoy's active health check: Envoy's own load balancing (the fallback) never chooses it.
      // Its share can only come from override_host using x-gateway-destination-endpoint — which also
      // shows override_host does not consult host health (envoy-notes; the plugin must leave bad hosts out).
      const hcState = async (key: string) => (await E().clusters()).get(clusterOf.get("ovr")!)?.hosts.find((h) => h.address === S().address(key))?.failedActiveHc;
      await until(async () => (await hcState("ovr/o2")) === true, 10_000, "Envoy marks ovr/o2 as failing its active health check (Host = cluster name)", seenClusters);
      assert.equal(await hcState("ovr/o1"), false);
      const served = (await sendMany(listener(), 20, () => chat("e2e-ovr"))).map((r) => routed(r, "ovr", { listLength: 2 }));
      assert.deepEqual(tally(served), { "ovr/o1": 10, "ovr/o2": 10 });
    }));

  test("upstream API keys: each instance receives its own key in place of the client's", { skip }, () =>
    diag(async () => {
      // k1 and k2 require different keys (as vLLM --api-key does): a request answered 200 was sent with
      // the right one, which only the plugin could have set; no same-key fallback, so a list of 1.
      const rs = await sendMany(listener(), 20, (i) => chat("e2e-key", i % 2 === 0 ? "body" : "header", { headers: { authorization: "Bearer sk-client" } }));
      const served = rs.map((r) => routed(r, "key", { listLength: 1 }));
      assert.deepEqual(tally(served), { "key/k1": 10, "key/k2": 10 });
      for (const k of ["k1", "k2"]) {
        const seen = new Set(gatewayHits(S(), `key/${k}`).map((q) => header(q.headers, "authorization")));
        assert.deepEqual([...seen], [`Bearer sk-e2e-${k}`], `key/${k} got its own key only`);
      }
    }));

  test("weighted round robin 3:1: exactly 3:1 in every window of 4 consecutive requests", { skip }, () =>
    diag(async () => {
      const N = 40;
      const rs = await sendMany(listener(), N, () => chat("e2e-wrr", "header"));
      const served = rs.map((r) => routed(r, "wrr", { listLength: 2 }));
      assert.deepEqual(tally(served), { "wrr/heavy": 30, "wrr/light": 10 });
      for (let i = 0; i + 4 <= N; i++) {
        assert.deepEqual(tally(served.slice(i, i + 4)), { "wrr/heavy": 3, "wrr/light": 1 }, `window ${i}: ${served.slice(i, i + 4).join(" ")}`);
      }
    }));

  test("passthrough: an unknown model reaches the SaaS stand-in untouched", { skip }, () =>
    diag(async () => {
      const unknownBefore = (await stat("gateway.unknown_model")) ?? 0;
      // Unusual spacing and key order: any re-serialisation on the way would show.
      const raw = `{"temperature": 0.2,  "model":"${UNKNOWN_MODEL}", "messages":[{"role":"user","content":"hi \\u00e9"}]}`;
      const r = await send(listener(), { raw, headers: { authorization: "Bearer sk-client-own-key", "x-client-trace": "t-1" } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get("x-served-by"), "saas-stand-in");
      assert.equal(r.content, "saas");
      const hits = trace(S(), r.seq);
      assert.deepEqual(hits.map((h) => h.where), ["saas"], "only the stand-in got it");
      const got = hits[0]!.req;
      assert.equal(got.method, "POST");
      assert.equal(got.path, CHAT);
      assert.equal(got.body, raw, "body byte for byte");
      assert.equal(header(got.headers, "authorization"), "Bearer sk-client-own-key", "the client's own key goes to the SaaS");
      assert.equal(header(got.headers, "content-type"), "application/json");
      assert.equal(header(got.headers, "x-client-trace"), "t-1");
      assert.equal(header(got.headers, "host"), "api.openai.com", "the route's host_rewrite_literal");
      for (const h of INTERNAL_HEADERS) assert.equal(got.headers[h], undefined, `${h} must not reach the SaaS`);
      await until(async () => ((await stat("gateway.unknown_model")) ?? 0) === unknownBefore + 1, 5_000, "gateway.unknown_model counted once");

      // No model at all (GET /v1/files): passthrough too.
      const f = await send(listener(), { method: "GET", path: "/v1/files" });
      assert.equal(f.status, 200, f.text);
      assert.deepEqual(trace(S(), f.seq).map((h) => h.where), ["saas"]);
      assert.equal((trace(S(), f.seq)[0]!.req as { path: string }).path, "/v1/files");
      // GET /v1/models is the plugin's own answer (models_endpoint: local): the managed models, no hop.
      const m = await send(listener(), { method: "GET", path: "/v1/models" });
      assert.equal(m.status, 200, m.text);
      assert.deepEqual(trace(S(), m.seq), [], "answered by the plugin, not forwarded");
      assert.ok((JSON.parse(m.text) as { data: { id: string }[] }).data.some((x) => x.id === "e2e-rr"), m.text);
    }));

  test("client-supplied x-gateway-destination-endpoint, x-gateway-cluster and x-model-* are ignored", { skip }, () =>
    diag(async () => {
      const spoof = {
        [gen.plugin.endpoint_header]: S().address("rr/a"),
        [gen.plugin.cluster_header]: clusterOf.get("wrr")!,
        [gen.plugin.deployment_header]: "wrr",
        [gen.plugin.instance_header]: "heavy",
      };
      // Managed model: the plugin's choice stands, round robin continues as if nothing was sent.
      const rs = await sendMany(listener(), 8, (i) => chat("e2e-rr", i % 2 === 0 ? "body" : "header", { headers: spoof }));
      const served = rs.map((r) => routed(r, "rr"));
      assert.deepEqual(tally(served), { "rr/a": 2, "rr/b": 2, "rr/c": 2, "rr/d": 2 }, "rr/a was requested by the client every time");

      // Unknown model / no model with a cluster and host "chosen" by the client: the SaaS route, and
      // the SaaS never sees our internal headers.
      const hitsBefore = ["a", "b", "c", "d"].map((i) => gatewayHits(S(), `rr/${i}`).length);
      for (const o of [chat(UNKNOWN_MODEL, "body", { headers: { ...spoof, [gen.plugin.cluster_header]: clusterOf.get("rr")! } }), { method: "GET", path: "/v1/files", headers: { ...spoof, [gen.plugin.cluster_header]: clusterOf.get("rr")! } }]) {
        const r = await send(listener(), o);
        assert.equal(r.status, 200, r.text);
        const hits = trace(S(), r.seq);
        assert.deepEqual(hits.map((h) => h.where), ["saas"], `${o.method ?? "POST"} with spoofed headers went to ${hits.map((h) => h.where).join(",")}`);
        for (const h of INTERNAL_HEADERS) assert.equal(hits[0]!.req.headers[h], undefined, `${h} reached the SaaS`);
      }
      assert.deepEqual(["a", "b", "c", "d"].map((i) => gatewayHits(S(), `rr/${i}`).length), hitsBefore, "no rr instance got the spoofed passthrough requests");
    }));

  test("failover: primary tier down → the backup tier serves; primary back → traffic returns", { skip }, () =>
    diag(async () => {
      const fo = (ids: string[]) => ids.map((i) => `fo/${i}`);
      // Baseline: only the primary tier, alternating; the list = pick, other primary, first backup.
      let served = (await sendMany(listener(), 20, () => chat("e2e-fo"))).map((r) => routed(r, "fo", { listLength: 3 }));
      assert.deepEqual(tally(served), { "fo/p1": 10, "fo/p2": 10 });

      // Both primaries stop (connections refused). Before the control service has decided anything,
      // every request is still answered — by a backup: Envoy's retries walk the plugin's list
      // (connect-failure), and the plugin's passive ejection may already leave the primaries out.
      await S().mock("fo/p1").stop();
      await S().mock("fo/p2").stop();
      const during = await sendMany(listener(), 10, () => chat("e2e-fo"));
      for (const r of during) {
        assert.equal(r.status, 200, `seq ${r.seq} during the outage: ${r.status} ${r.text}`);
        const hits = trace(S(), r.seq);
        assert.equal(hits.length, 1);
        assert.ok(fo(["b1", "b2"]).includes(hits[0]!.where), `during the outage served by ${hits[0]!.where}`);
        assert.equal(r.content, hits[0]!.where);
      }

      // The control service ejects both; once the plugin has that table the backups are the picks.
      await controlStates("fo", { p1: "ejected", p2: "ejected", b1: "active", b2: "active" });
      await pluginHasCurrentTable("primaries ejected");
      served = (await sendMany(listener(), 20, () => chat("e2e-fo"))).map((r) => routed(r, "fo", { listLength: 2 }));
      assert.deepEqual(tally(served), { "fo/b1": 10, "fo/b2": 10 });

      // Primaries back: re-admitted after healthy_threshold probes → traffic returns to them only.
      await S().mock("fo/p1").start();
      await S().mock("fo/p2").start();
      await controlStates("fo", { p1: "active", p2: "active" });
      await pluginHasCurrentTable("primaries re-admitted");
      // The plugin's own passive ejection of the primaries (from the outage) must be over too, or it still skips them.
      for (const primary of ["p1", "p2"]) {
        const gauge = `gateway.deployment.fo.instance.${primary}.passive_ejected`;
        await until(async () => ((await stat(gauge)) ?? 0) === 0, 10_000, `passive ejection of ${primary} over`, async () => `passive_ejected = ${String(await stat(gauge))}`);
      }
      const backupsBefore = fo(["b1", "b2"]).map((k) => gatewayHits(S(), k).length);
      served = (await sendMany(listener(), 20, () => chat("e2e-fo"))).map((r) => routed(r, "fo", { listLength: 3 }));
      assert.deepEqual(tally(served), { "fo/p1": 10, "fo/p2": 10 });
      assert.deepEqual(fo(["b1", "b2"]).map((k) => gatewayHits(S(), k).length), backupsBefore, "no request reached a backup");
    }));

  test("ejection: a stopped instance, once ejected by the control service, gets no request (even listening again)", { skip }, () =>
    diag(async () => {
      let served = (await sendMany(listener(), 30, () => chat("e2e-ej"))).map((r) => routed(r, "ej", { listLength: 3 }));
      assert.deepEqual(tally(served), { "ej/e1": 10, "ej/e2": 10, "ej/e3": 10 });

      const e2 = S().mock("ej/e2");
      await e2.stop();
      // Until the control service decides, requests picking e2 are retried on the next address (and
      // after passive_failures of them this worker leaves e2 out): no failure reaches the client.
      for (const r of await sendMany(listener(), 12, () => chat("e2e-ej"))) {
        assert.equal(r.status, 200, `seq ${r.seq} while e2 is down: ${r.status} ${r.text}`);
        assert.ok(["ej/e1", "ej/e3"].includes(r.content ?? ""), `served by ${String(r.content)}`);
      }

      await controlStates("ej", { e2: "ejected", e1: "active", e3: "active" });
      await pluginHasCurrentTable("e2 ejected");
      // What keeps e2 out from here on must be the control service's verdict, not the plugin's own
      // passive ejection (cooldown passive_cooldown_ms): wait for that to be over.
      await until(async () => ((await stat("gateway.deployment.ej.instance.e2.passive_ejected")) ?? 0) === 0, 10_000, "passive ejection of e2 over", async () => `passive_ejected = ${String(await stat("gateway.deployment.ej.instance.e2.passive_ejected"))}`);

      // e2 listens again and would serve the API, but fails /health: it stays ejected.
      e2.set({ mode: "unhealthy" });
      await e2.start();
      const direct = await fetch(`${e2.url}/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "e2e-ej", messages: [] }) });
      assert.equal(direct.status, 200, "e2 answers when asked directly: a request routed to it would be seen");
      await direct.text();
      const e2Before = gatewayHits(S(), "ej/e2").length;
      served = (await sendMany(listener(), 30, () => chat("e2e-ej"))).map((r) => routed(r, "ej", { listLength: 2 }));
      assert.deepEqual(tally(served), { "ej/e1": 15, "ej/e3": 15 });
      assert.equal(gatewayHits(S(), "ej/e2").length, e2Before, "no request reached the ejected instance");
      for (const r of served) assert.notEqual(r, "ej/e2");
      assert.equal((await S().table()).deployments.find((d) => d.id === "ej")!.instances.find((i) => i.id === "e2")!.state, "ejected", "still ejected (failing /health)");

      // Healthy again → re-admitted → its share again.
      e2.set({ mode: "ok" });
      await controlStates("ej", { e2: "active" });
      await pluginHasCurrentTable("e2 re-admitted");
      served = (await sendMany(listener(), 30, () => chat("e2e-ej"))).map((r) => routed(r, "ej", { listLength: 3 }));
      assert.deepEqual(tally(served), { "ej/e1": 10, "ej/e2": 10, "ej/e3": 10 });
    }));
});
