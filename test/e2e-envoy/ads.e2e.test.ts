/**
 * Clusters over ADS through a real Envoy (>= 1.35), issue 17: Envoy runs the e2e bootstrap generated
 * from envoy/bootstrap.yaml as shipped — CDS and EDS on one gRPC stream (ads_config → the static HTTP/2
 * cluster gateway_xds → the control service's CONTROL_XDS_GRPC_PORT) — and:
 *
 *   - the stream: Envoy connected (control_plane.connected_state 1), GET /v1/dataplanes lists its node
 *     over ADS with CDS and EDS ACKed at the routing table's version, nothing NACKed or rejected;
 *   - create → routed without NC: while one client sends requests naming a model nobody serves yet (one
 *     at a time, back to back), the model and a deployment of it are created through the API. Every
 *     answer is either the SaaS passthrough (the plugin does not know the model yet) or the new
 *     instance; never Envoy's 503 for a cluster it does not have (flag NC, details cluster_not_found —
 *     the plugin naming a cluster before Envoy has it warm), never anything else; once routed, always
 *     routed; routed within ROUTED_WITHIN_MS of the create's answer. CREATES times, each a new deployment;
 *   - scale-up without a silent fall-through: a failover deployment served by one instance gets a second
 *     one at a better tier. Every answer comes from one of the two; none is a request whose
 *     x-gateway-destination-endpoint put the new instance first and that the old one served (the
 *     plugin's pick skipped by override_host because Envoy did not have the host yet); the new instance
 *     serves within ROUTED_WITHIN_MS of the API's answer.
 * The zero-NC / zero-fall-through assertions are the goal of issue 17's "order the two paths" (a plugin
 * never routes to a cluster or address its Envoy has not ACKed); without that ordering they fail, and
 * the counts are in the error and in t.diagnostic.
 *
 * Runs only where Envoy exists (ENVOY_BIN, or `envoy` on PATH); elsewhere SKIPPED with the reason. Every
 * wait is bounded and on a condition; Envoy, the stack and the mocks are stopped in `after`.
 *
 * Dry run of this file's own logic without Envoy (NOT evidence about Envoy):
 *   ENVOY_BIN=test/e2e-envoy/support/sim-envoy node --import tsx --test test/e2e-envoy/ads.e2e.test.ts
 * (sim-envoy speaks ADS when the bootstrap says so: see its header for what is cited and what inferred).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, test, type TestContext } from "node:test";
import { formatIssue, validateBootstrap } from "../../envoy/validate/index.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { VIEWER, registerModel } from "../control/harness.js";
import { freePort } from "../support/redis.js";
import { WASM_PATH, e2eBootstrap, type E2eBootstrap } from "./support/bootstrap.js";
import { SEQ_HEADER, header, send, until, type Sent } from "./support/client.js";
import { assertEnvoyVersion, clustersSeen, diagnoser, findEnvoy, pluginStat, startEnvoy, type RunningEnvoy } from "./support/envoy.js";
import { DEPLOYMENTS, HEALTH, PLUGIN, startStack, type Stack } from "./support/stack.js";

const { bin, why } = findEnvoy();
const skip = bin ? false : `SKIPPED: ${why}`;

/** New deployments created under traffic. */
const CREATES = 5;
/** From the API's 2xx to the first routed answer (issue 17's goal is p99 ≤ 200 ms; this is a test bound). */
const ROUTED_WITHIN_MS = 2_000;
/** Answers that must stay routed after the first one. */
const AFTER_ROUTED = 20;

interface Seen {
  kind: "passthrough" | "nc" | "routed" | "other";
  at: number;
  detail: string;
}

/** The probe has seen enough: a first routed answer and AFTER_ROUTED answers after it. */
const routedAndHeld = (s: Seen[]): boolean => {
  const first = s.findIndex((x) => x.kind === "routed");
  return first >= 0 && s.length - first > AFTER_ROUTED;
};

/** Envoy's 503 for a cluster it does not have: local_reply_config gives details cluster_not_found as the code; sim-envoy says "no cluster". */
const isNoCluster = (r: Sent): boolean => r.status === 503 && (/cluster_not_found/.test(r.text) || r.text === "no cluster");

describe("clusters over ADS through a real Envoy", () => {
  let stack: Stack | undefined;
  let envoy: RunningEnvoy | undefined;
  let gen: E2eBootstrap;
  const extra: MockOpenAI[] = [];
  const S = () => stack!;
  const E = () => envoy!;
  const diag = diagnoser(() => envoy, () => stack?.logTail());

  before(async () => {
    if (!bin) return;
    console.log(`envoy under test: ${bin} (${assertEnvoyVersion(bin)})`);
    assert.ok(existsSync(WASM_PATH), "build/plugin.wasm missing: npm run build:plugin");
    stack = await startStack({ deployments: DEPLOYMENTS.filter((d) => d.id === "rr") });
    const adminPort = await freePort();
    let listenerPort = await freePort();
    while (listenerPort === adminPort) listenerPort = await freePort();
    gen = e2eBootstrap({ nodeId: `gw-ads-e2e-${process.pid}`, adminPort, listenerPort, controlPort: S().controlPort, adsPort: S().adsPort, saasPort: S().saas.port, pluginToken: PLUGIN });
    assert.equal(gen.names.transport, "ads");
    assert.deepEqual(validateBootstrap(gen.bootstrap).errors.map(formatIssue), []);
    envoy = await startEnvoy({ bin, bootstrap: gen.bootstrap, adminPort, listenerPort, concurrency: 1 });
    await diag(async () => {
      const table = await S().table();
      await until(async () => (await E().clusters()).get(table.deployments[0]!.cluster)?.hosts.length === 4, 30_000, "the rr cluster with its 4 hosts (ADS)", () => clustersSeen(E()));
      await until(async () => (pluginStat(await E().stats("gateway\\.table\\.version"), "gateway.table.version") ?? 0) >= table.version, 15_000, "the plugin's table");
    });
  });

  after(async () => {
    try {
      await envoy?.stop();
    } finally {
      for (const m of extra) await m.close().catch(() => undefined);
      await stack?.close();
    }
  });

  test("the ADS stream: Envoy connected, CDS and EDS ACKed at the table's version in GET /v1/dataplanes, nothing rejected", { skip }, () =>
    diag(async () => {
      const table = await S().table();
      const id = String(gen.bootstrap.node.id);
      let node: any; // eslint-disable-line @typescript-eslint/no-explicit-any
      await until(
        async () => {
          const r = await S().control.api("GET", "/v1/dataplanes", { token: VIEWER });
          node = (r.body?.dataplanes ?? []).find((d: { id: string }) => d.id === id);
          return node?.transport === "ads" && node.connected === true && node.acked_version >= table.version;
        },
        10_000,
        `node ${id} over ADS with acked_version ≥ ${table.version}`,
        () => JSON.stringify(node ?? null),
      );
      for (const t of node.types) {
        assert.equal(t.nacked, null, `${t.resource} NACKed: ${JSON.stringify(t.nacked)}`);
        assert.equal(t.state, "acked", `${t.resource}: ${t.state}`);
      }
      const s = await E().stats("control_plane\\.connected_state|update_rejected");
      assert.equal(s.get("control_plane.connected_state"), 1);
      for (const [k, v] of s) if (k.endsWith("update_rejected")) assert.equal(v, 0, k);
    }));

  /** Sends back to back until `done()` says so (bounded); every answer classified. */
  async function probe(model: string, classify: (r: Sent) => Seen["kind"], describeIt: (r: Sent) => string, change: () => Promise<number>, enough: (seen: Seen[]) => boolean): Promise<{ seen: Seen[]; apiDoneAt: number }> {
    const seen: Seen[] = [];
    let stop = false;
    const loop = (async () => {
      const deadline = Date.now() + 20_000;
      while (!stop && Date.now() < deadline) {
        let r: Sent;
        try {
          r = await send(E().listener, { model, via: "header" });
        } catch (e) {
          seen.push({ kind: "other", at: performance.now(), detail: `network error: ${String(e)}` });
          continue;
        }
        seen.push({ kind: classify(r), at: performance.now(), detail: describeIt(r) });
        if (enough(seen)) break;
      }
    })();
    // A few answers before the change: the loop is up.
    await until(() => seen.length >= 3, 5_000, "the first answers");
    let apiDoneAt = 0;
    try {
      apiDoneAt = await change();
      await loop;
    } finally {
      stop = true;
      await loop;
    }
    return { seen, apiDoneAt };
  }

  const summary = (seen: Seen[]) => {
    const n = (k: Seen["kind"]) => seen.filter((x) => x.kind === k).length;
    return { passthrough: n("passthrough"), nc: n("nc"), routed: n("routed"), other: n("other") };
  };

  test(`create → routed without NC (${CREATES} new deployments, each under traffic)`, { skip }, (t: TestContext) =>
    diag(async () => {
      const times: number[] = [];
      const nc: number[] = [];
      for (let k = 0; k < CREATES; k++) {
        const model = `e2e-ads-new-${k}`;
        const key = `new${k}/n1`;
        const m = await startMockOpenAI({ model, reply: key });
        extra.push(m);
        const { seen, apiDoneAt } = await probe(
          model,
          (r) => (r.content === key && r.status === 200 ? "routed" : r.content === "saas" && r.status === 200 ? "passthrough" : isNoCluster(r) ? "nc" : "other"),
          (r) => `${r.status} ${r.text.slice(0, 160)}`,
          async () => {
            await registerModel(S().control.api, model);
            const res = await S().control.api("POST", "/v1/deployments", {
              body: { id: `new${k}`, model, strategy: "round_robin", on_unavailable: "fail", health_check: HEALTH, instances: [{ id: "n1", url: m.url }] },
            });
            assert.equal(res.status, 201, res.text);
            return performance.now();
          },
          routedAndHeld,
        );
        const counts = summary(seen);
        const first = seen.findIndex((x) => x.kind === "routed");
        t.diagnostic(`create ${k}: ${JSON.stringify(counts)}; routed ${first >= 0 ? (seen[first]!.at - apiDoneAt).toFixed(1) : "never"} ms after the API's 201`);
        assert.ok(first >= 0, `never routed: ${JSON.stringify(counts)}; last: ${seen.at(-1)?.detail}`);
        assert.equal(counts.other, 0, `create ${k}: unexpected answers: ${seen.filter((x) => x.kind === "other").map((x) => x.detail).slice(0, 5).join(" | ")}`);
        // NC after the first routed answer is counted below too; anything else after it is a failure now.
        assert.deepEqual(seen.slice(first).filter((x) => x.kind !== "routed" && x.kind !== "nc").map((x) => x.detail), [], "once routed, never passed through again");
        times.push(seen[first]!.at - apiDoneAt);
        nc.push(counts.nc);
      }
      t.diagnostic(`API 201 → first routed answer, ms: ${times.map((x) => x.toFixed(1)).join(", ")}; NC answers per create: ${nc.join(", ")}`);
      assert.deepEqual(nc, nc.map(() => 0), `Envoy's 503 no-cluster (NC) answers per create: ${nc.join(", ")} — the plugin routed to a cluster its Envoy did not have warm`);
      for (const [k, ms] of times.entries()) assert.ok(ms <= ROUTED_WITHIN_MS, `create ${k}: routed ${ms.toFixed(1)} ms after the API's answer (> ${ROUTED_WITHIN_MS})`);
    }));

  test("scale-up over ADS: the new instance serves, no pick silently skipped by override_host", { skip }, (t: TestContext) =>
    diag(async () => {
      const model = "e2e-ads-scale";
      const oldKey = "scale/old";
      const newKey = "scale/new";
      const oldM = await startMockOpenAI({ model, reply: oldKey });
      const newM = await startMockOpenAI({ model, reply: newKey });
      extra.push(oldM, newM);
      await registerModel(S().control.api, model);
      const created = await S().control.api("POST", "/v1/deployments", {
        body: { id: "scale", model, strategy: "failover", on_unavailable: "fail", health_check: HEALTH, instances: [{ id: "old", url: oldM.url, priority: 10 }] },
      });
      assert.equal(created.status, 201, created.text);
      await until(async () => (await send(E().listener, { model, via: "header" })).content === oldKey, 10_000, "the deployment routed to its first instance");
      const newAddress = `127.0.0.1:${newM.port}`;
      /** A request the plugin sent to the new instance first that the old one served: override_host skipped it. */
      const fellThrough = (r: Sent): boolean => {
        if (r.content !== oldKey) return false;
        const rec = oldM.requests.find((q) => header(q.headers, SEQ_HEADER) === r.seq);
        return (header(rec?.headers ?? {}, gen.plugin.endpoint_header) ?? "").split(",")[0] === newAddress;
      };
      const { seen, apiDoneAt } = await probe(
        model,
        (r) => (r.status !== 200 ? "other" : r.content === newKey ? "routed" : fellThrough(r) ? "nc" : r.content === oldKey ? "passthrough" : "other"),
        (r) => `${r.status} ${r.content ?? r.text.slice(0, 160)}`,
        async () => {
          const res = await S().control.api("POST", "/v1/deployments/scale/instances", { body: { id: "new", url: newM.url, priority: 0 } });
          assert.equal(res.status, 201, res.text);
          return performance.now();
        },
        routedAndHeld,
      );
      const counts = summary(seen);
      const first = seen.findIndex((x) => x.kind === "routed");
      t.diagnostic(`scale-up: old instance ${counts.passthrough}, fell through (plugin picked the new one, Envoy served the old) ${counts.nc}, new ${counts.routed}, other ${counts.other}; new instance ${first >= 0 ? (seen[first]!.at - apiDoneAt).toFixed(1) : "never"} ms after the API's 201`);
      assert.ok(first >= 0, `the new instance never served: ${JSON.stringify(counts)}`);
      assert.equal(counts.other, 0, seen.filter((x) => x.kind === "other").map((x) => x.detail).slice(0, 5).join(" | "));
      assert.equal(counts.nc, 0, `${counts.nc} requests listed the new instance first and were served by the old one (override_host fall-through: Envoy did not have the host yet)`);
      assert.ok(seen[first]!.at - apiDoneAt <= ROUTED_WITHIN_MS, `new instance first served ${(seen[first]!.at - apiDoneAt).toFixed(1)} ms after the API's answer`);
    }));
});
