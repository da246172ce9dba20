// Issue 17 on a real Redis with ADS: a plugin's routing table follows its own Envoy's xDS ACK. A fake
// Envoy (test/xds/ads-client.ts: a raw ADS stream decoded with @grpc/grpc-js-xds's protos) ACKs or NACKs
// like Envoy — CDS, then EDS for the clusters it took — and can hold its answers (an Envoy not done
// yet). Plugins are HTTP long-polls naming the node (`x-gateway-node`), adopting only higher versions.
// Shown: create → a node that has not ACKed gets the table without the new deployment; its long-poll
// wakes with it once the node ACKed; a scaled-up instance likewise; a NACKing node keeps getting deletes
// but never the NACKed addition; a replica that does not know the node, an unknown node and no node id
// get the complete table; the bound (a node that never answers gets the complete table after
// TABLE_XDS_WAIT_SECONDS, a NACKing one does not); versions seen by each consumer strictly increase.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { TYPE_URL } from "../../control/xds/build.js";
import type { RoutingTable } from "../../control/contracts/routing-table.js";
import type { RedisServer } from "../support/redis.js";
import { RawAds, decodeSingleResource, type AdsResponse } from "../xds/ads-client.js";
import { parseMetrics } from "./health-support.js";
import { PLUGIN, VIEWER, registerModel, startReplica, table, waitFor, withRedis, type Api, type Replica, type Res } from "./harness.js";

const CDS = TYPE_URL.cluster;
const EDS = TYPE_URL.clusterLoadAssignment;

/** An Envoy on an ADS stream: ACKs (or NACKs what `rejects` names), subscribes EDS to the clusters it took. */
class FakeEnvoy {
  readonly raw: RawAds;
  /** Clusters it has (its last accepted CDS) and when it ACKed each first. */
  clusters: string[] = [];
  readonly ackedAt = new Map<string, number>();
  private cdsVersion = "";
  private edsVersion = "";
  private edsNonce: string | undefined;
  private edsNames: string[] = [];
  private paused = false;
  private held: AdsResponse[] = [];
  nacks = 0;
  private readonly done: Promise<void>;

  constructor(
    port: number,
    readonly id: string,
    private readonly rejects: (clusters: string[]) => string | null = () => null,
  ) {
    this.raw = new RawAds(`127.0.0.1:${port}`);
    this.raw.send({ node: { id, cluster: "edge" }, type_url: CDS });
    this.done = this.run();
  }

  private async run(): Promise<void> {
    for (;;) {
      let r: AdsResponse;
      try {
        r = await this.raw.next(3_600_000);
      } catch {
        return; // the stream ended
      }
      if (this.paused) this.held.push(r);
      else this.handle(r);
    }
  }

  private handle(r: AdsResponse): void {
    if (r.type_url === CDS) {
      const names = r.resources.map((x) => decodeSingleResource(CDS, x.value).name as string);
      const refusal = this.rejects(names);
      if (refusal !== null) {
        // Envoy keeps what it has and says so: the version it keeps + error_detail, with the response's nonce.
        this.nacks++;
        this.raw.send({ version_info: this.cdsVersion, type_url: CDS, response_nonce: r.nonce, error_detail: { code: 13, message: refusal } });
        return;
      }
      this.cdsVersion = r.version_info;
      this.clusters = names;
      const t = Date.now();
      for (const n of names) if (!this.ackedAt.has(n)) this.ackedAt.set(n, t);
      this.raw.send({ version_info: r.version_info, type_url: CDS, response_nonce: r.nonce });
      if (names.join() !== this.edsNames.join()) {
        // Envoy then asks for the new clusters' endpoints (on the EDS stream's last nonce).
        this.edsNames = names;
        this.raw.send({ version_info: this.edsVersion, type_url: EDS, resource_names: names, ...(this.edsNonce ? { response_nonce: this.edsNonce } : {}) });
      }
    } else if (r.type_url === EDS) {
      this.edsVersion = r.version_info;
      this.edsNonce = r.nonce;
      this.raw.send({ version_info: r.version_info, type_url: EDS, response_nonce: r.nonce, resource_names: this.edsNames });
    }
  }

  /** Stop answering (responses are held: an Envoy still applying them). */
  pause(): void {
    this.paused = true;
  }

  /** Answer everything held, in order, and go on answering. */
  resume(): void {
    this.paused = false;
    for (const r of this.held.splice(0)) this.handle(r);
  }

  async close(): Promise<void> {
    this.raw.close();
    await this.done;
  }
}

/** A plugin: long-polls naming its node, adopts only a strictly higher version (asserting the server never offers less). */
class Plugin {
  have: number | null = null;
  doc: RoutingTable | null = null;
  readonly versions: number[] = [];
  receivedAt = 0;
  constructor(
    private api: Api,
    readonly node: string | null,
  ) {}

  async poll(wait = 0, api = this.api): Promise<Res> {
    const headers: Record<string, string> = {};
    if (this.node !== null) headers["x-gateway-node"] = this.node;
    if (this.have !== null) headers["if-none-match"] = `"${this.have}"`;
    const r = await api("GET", `/v1/routing-table?wait=${wait}`, { token: PLUGIN, headers });
    if (r.status === 200) {
      const v = r.body.version as number;
      assert.equal(r.headers.get("etag"), `"${v}"`);
      assert.ok(this.have === null || v > this.have, `${this.node}: offered version ${v} while holding ${this.have} (versions must rise)`);
      this.have = v;
      this.doc = r.body as RoutingTable;
      this.versions.push(v);
      this.receivedAt = Date.now();
    } else assert.equal(r.status, 304, r.text);
    return r;
  }

  deployments(): string[] {
    return (this.doc?.deployments ?? []).map((d) => d.id);
  }
  instances(dep: string): string[] {
    return (this.doc?.deployments.find((d) => d.id === dep)?.instances ?? []).map((i) => i.id);
  }
}

describe("the routing table follows each node's xDS ACK (issue 17)", () => {
  let redis: RedisServer;
  let a: Replica; // the replica the fake Envoys stream from
  let b: Replica; // a replica no fake Envoy talks to
  let c: Replica; // TABLE_XDS_WAIT_SECONDS=1: the bound
  const mocks: Record<string, MockOpenAI> = {};
  const envoys: FakeEnvoy[] = [];
  const envoy = (r: Replica, id: string, rejects?: (clusters: string[]) => string | null) => {
    const e = new FakeEnvoy(r.control.adsPort!, id, rejects);
    envoys.push(e);
    return e;
  };
  const complete = async (r: Replica, id: string): Promise<number> => {
    const v = (await table(r.api)).version as number;
    await waitFor(async () => {
      const res = await r.api("GET", "/v1/dataplanes", { token: VIEWER });
      return res.body.dataplanes.some((d: { id: string; acked_version: number | null }) => d.id === id && d.acked_version !== null && d.acked_version >= v);
    }, 5000, `${id} complete at ${v}`);
    return v;
  };
  const create = async (r: Replica, id: string, model: string, mock: MockOpenAI): Promise<number> => {
    const res = await r.api("POST", "/v1/deployments", { body: { id, model, instances: [{ id: `${id}-1`, url: mock.url }] } });
    assert.equal(res.status, 201, res.text);
    let v = 0;
    await waitFor(async () => {
      const t = await table(r.api);
      v = t.version;
      return t.deployments.some((d: { id: string; instances: unknown[] }) => d.id === id && d.instances.length === 1);
    }, 5000, `${id} in the table`);
    return v;
  };

  before(async () => {
    redis = await withRedis();
    for (const m of ["m-a", "m-b", "m-bad", "m-c", "m-d"]) mocks[m] = await startMockOpenAI({ model: m });
    mocks["m-a2"] = await startMockOpenAI({ model: "m-a" });
    a = await startReplica(redis.url, { CONTROL_XDS_GRPC_PORT: "0" });
    b = await startReplica(redis.url, { CONTROL_XDS_GRPC_PORT: "0" });
    c = await startReplica(redis.url, { CONTROL_XDS_GRPC_PORT: "0", TABLE_XDS_WAIT_SECONDS: "1" });
    for (const m of ["m-a", "m-b", "m-bad", "m-c", "m-d"]) await registerModel(a.api, m);
    const v = await create(a, "dep-a", "m-a", mocks["m-a"]!);
    assert.equal(v % 2, 0, `table version ${v}: every write must move it by an even step (redis/cas.ts, version-floor.ts: issue 17) for views at V − 1`);
  });
  after(async () => {
    for (const e of envoys) await e.close();
    await a?.stop();
    await b?.stop();
    await c?.stop();
    for (const m of Object.values(mocks)) await m.close();
    await redis?.close();
  });

  const env = () => envoys[0]!;
  const behind = async (r: Replica) => parseMetrics((await r.api("GET", "/metrics", { token: VIEWER })).text).find((m) => m.name === "gateway_table_nodes_behind")?.value;
  let plugin: Plugin;

  test("create: a node that has not ACKed gets a table without the new deployment; after its ACK the long-poll wakes with it", async () => {
    envoy(a, "envoy-1", (names) => (names.includes("gw.dep-bad") ? "cds: cluster gw.dep-bad: unsupported (test refusal)" : null));
    const v0 = await complete(a, "envoy-1");
    plugin = new Plugin(a.api, "envoy-1");
    await plugin.poll();
    assert.equal(plugin.have, v0, "in step with its Envoy: the complete table");
    assert.deepEqual(plugin.deployments(), ["dep-a"]);

    env().pause();
    const waiting = plugin.poll(20);
    const v1 = await create(a, "dep-b", "m-b", mocks["m-b"]!);
    const woke = await waiting;
    assert.equal(woke.status, 200, "the new version woke the long-poll");
    assert.ok(!plugin.deployments().includes("dep-b"), `not ACKed: no dep-b in version ${plugin.have}`);
    await plugin.poll();
    assert.equal(plugin.have, v1 - 1, "the view of the current version");
    assert.deepEqual(plugin.deployments(), ["dep-a"]);
    assert.ok(!env().clusters.includes("gw.dep-b"));
    assert.equal(await behind(a), 1, "gateway_table_nodes_behind");
    // Its long-poll waits for the ACK…
    const afterAck = plugin.poll(20);
    env().resume();
    const r = await afterAck;
    assert.equal(r.status, 200, "woken by the ACK (a 304 would come after 20 s)");
    assert.equal(plugin.have, v1);
    assert.deepEqual(plugin.deployments(), ["dep-a", "dep-b"]);
    // …and got it only after its Envoy had the cluster.
    assert.ok(env().ackedAt.get("gw.dep-b")! <= plugin.receivedAt);
    // The table is served to the admin at that version all along.
    assert.equal((await table(a.api)).version, v1);
    assert.equal(await behind(a), 0);
  });

  test("scale-up: the new instance is listed once the node ACKed its endpoint", async () => {
    env().pause();
    const res = await a.api("POST", "/v1/deployments/dep-a/instances", { body: { id: "dep-a-2", url: mocks["m-a2"]!.url } });
    assert.ok(res.status === 201 || res.status === 202, res.text);
    let v2 = 0;
    await waitFor(async () => {
      const t = await table(a.api);
      v2 = t.version;
      return t.deployments.find((d: { id: string }) => d.id === "dep-a").instances.length === 2;
    }, 5000, "the instance in the table");
    await plugin.poll();
    assert.equal(plugin.have, v2 - 1);
    assert.deepEqual(plugin.instances("dep-a"), ["dep-a-1"]);
    const afterAck = plugin.poll(20);
    env().resume();
    assert.equal((await afterAck).status, 200);
    assert.equal(plugin.have, v2);
    assert.deepEqual(plugin.instances("dep-a"), ["dep-a-1", "dep-a-2"]);
  });

  test("a NACKing node's plugin never gets the NACKed addition, and still gets a delete of another deployment", async () => {
    const vBad = await create(a, "dep-bad", "m-bad", mocks["m-bad"]!);
    await waitFor(async () => {
      const d = (await a.api("GET", "/v1/dataplanes", { token: VIEWER })).body.dataplanes.find((x: { id: string }) => x.id === "envoy-1");
      return d?.types.some((t: { type_url: string; state: string; nacked: { version: string } | null }) => t.type_url === CDS && t.state === "nacked" && Number(t.nacked?.version) >= vBad);
    }, 5000, "envoy-1's NACK of the version with dep-bad");
    await plugin.poll();
    assert.equal(plugin.have, vBad - 1);
    assert.deepEqual(plugin.deployments(), ["dep-a", "dep-b"]);

    const waiting = plugin.poll(20);
    assert.equal((await a.api("DELETE", "/v1/deployments/dep-b")).status, 204);
    assert.equal((await waiting).status, 200, "the delete woke it (no ACK to wait for)");
    const vDel = (await table(a.api)).version as number;
    await plugin.poll();
    assert.equal(plugin.have, vDel - 1);
    assert.deepEqual(plugin.deployments(), ["dep-a"], "dep-b gone, dep-bad never there");
    assert.ok(env().nacks >= 2, "the version with the delete was NACKed too (it still had the bad cluster)");
    // Its Envoy never took the cluster; the plugin was never told about it.
    assert.ok(!env().clusters.includes("gw.dep-bad"));
    // (Every version it adopted rose: checked at each answer.)
    assert.ok(plugin.versions.every((v, i) => i === 0 || v > plugin.versions[i - 1]!));
  });

  test("fallbacks: a replica that does not know the node, an unknown node id and no node id get the complete table", async () => {
    const full = await table(a.api);
    assert.ok(full.deployments.some((d: { id: string }) => d.id === "dep-bad"));
    await waitFor(async () => (await table(b.api)).version === full.version, 3000, "replica b at the version");
    const elsewhere = new Plugin(b.api, "envoy-1");
    await elsewhere.poll();
    assert.equal(elsewhere.have, full.version, "b has no stream of envoy-1: the complete table (documented fallback)");
    assert.ok(elsewhere.deployments().includes("dep-bad"));
    const stranger = new Plugin(a.api, "no-such-node");
    await stranger.poll();
    assert.equal(stranger.have, full.version);
    const anonymous = new Plugin(a.api, null);
    await anonymous.poll();
    assert.equal(anonymous.have, full.version);

    // One plugin of envoy-1 polling both replicas: it takes b's complete table (higher), then a's view
    // (lower) is never offered to it again; versions only rise.
    const roaming = new Plugin(a.api, "envoy-1");
    await roaming.poll();
    assert.equal(roaming.have, full.version - 1);
    await roaming.poll(0, b.api);
    assert.equal(roaming.have, full.version);
    assert.equal((await roaming.poll(0, a.api)).status, 304);
    assert.equal((await roaming.poll(1, a.api)).status, 304);
  });

  test("the bound: a node that does not answer gets the complete table after TABLE_XDS_WAIT_SECONDS; a NACKing one keeps its view", async () => {
    const slow = envoy(c, "envoy-slow");
    const nacking = envoy(c, "envoy-nack-c", (names) => (names.includes("gw.dep-d") ? "cds: cluster gw.dep-d: unsupported (test refusal)" : null));
    await complete(c, "envoy-slow");
    await complete(c, "envoy-nack-c");
    const pSlow = new Plugin(c.api, "envoy-slow");
    const pNack = new Plugin(c.api, "envoy-nack-c");
    await pSlow.poll();
    await pNack.poll();
    slow.pause();
    const vC = await create(a, "dep-c", "m-c", mocks["m-c"]!);
    await waitFor(async () => (await table(c.api)).version >= vC, 3000, "replica c at the version");
    await pSlow.poll();
    assert.equal(pSlow.have, vC - 1);
    assert.ok(!pSlow.deployments().includes("dep-c"));
    const t0 = Date.now();
    const r = await pSlow.poll(20);
    assert.equal(r.status, 200, "the bound ended the view");
    assert.equal(pSlow.have, vC);
    assert.ok(pSlow.deployments().includes("dep-c"));
    assert.ok(Date.now() - t0 < 5000, `within the bound (1 s) and a bit, not the long-poll's 20 s: ${Date.now() - t0} ms`);
    assert.ok(!slow.clusters.includes("gw.dep-c"), "its Envoy still has not answered");
    slow.resume();

    // The NACKing node: its plugin keeps the view well past the bound.
    const vD = await create(a, "dep-d", "m-d", mocks["m-d"]!);
    await waitFor(async () => nacking.nacks > 0 && (await table(c.api)).version >= vD, 5000, "envoy-nack-c's NACK");
    await pNack.poll();
    assert.equal(pNack.have, vD - 1);
    assert.ok(!pNack.deployments().includes("dep-d"));
    assert.ok(pNack.deployments().includes("dep-c"), "what it ACKed is there");
    const held = await pNack.poll(3); // three times the bound: nothing new for it
    assert.equal(held.status, 304);
    assert.ok(!pNack.deployments().includes("dep-d"));
  });
});
