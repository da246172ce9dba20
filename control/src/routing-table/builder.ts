/**
 * The routing table (contract 1) as a pure function of stored state. Deterministic: the same state and
 * version give the same document. Only instances the plugin may know about appear (active, draining,
 * ejected, with a resolved address); pending and unreachable ones do not.
 */
import { RoutingTable, type TableDeployment, type TableInstance } from "../../contracts/routing-table.js";
import type { Deployment, Instance } from "../deployments/schemas.js";
import { modelNames, servedNameOf, type Model } from "../models/schemas.js";
import type { TableEntry } from "./assemble.js";
import type { LoadEntry } from "../health/load.js";

/** Engine load scores by `<deployment>/<instance>` (health/load.ts). */
export type Loads = ReadonlyMap<string, LoadEntry>;

export const clusterName = (deploymentId: string) => `gw.${deploymentId}`;

const TABLE_STATES = new Set(["active", "draining", "ejected"]);

/** Upstream API keys by `<deployment>/<instance>` (the `instance-api-keys` hash). */
export type ApiKeys = Readonly<Record<string, string>>;

function tableInstance(d: Deployment, i: Instance, apiKeys: ApiKeys, loads?: Loads): TableInstance | null {
  if (!TABLE_STATES.has(i.state) || i.address === null) return null;
  const t: TableInstance = { id: i.id, address: i.address, base_path: i.base_path, weight: i.weight, priority: i.priority, region: i.region, state: i.state as TableInstance["state"] };
  const key = apiKeys[`${d.id}/${i.id}`];
  if (key !== undefined) t.authorization = `Bearer ${key}`;
  // Only with load_signals on (a score left in Redis after it was turned off is not published).
  const load = d.load_signals ? loads?.get(`${d.id}/${i.id}`) : undefined;
  if (load !== undefined) t.load = { score: load.score, at_ms: load.at_ms, interval_ms: load.interval_ms, ...(load.capacity !== undefined ? { capacity: load.capacity } : {}) };
  return t;
}

/** Which instance keeps an address shared by several (see `onePerAddress`): lower wins, then the first. */
const ADDRESS_RANK: Record<TableInstance["state"], number> = { active: 0, ejected: 1, draining: 2 };

/**
 * At most one instance per address: Envoy keys a cluster's hosts by ip:port, so contract 4 (xDS) refuses
 * duplicates, and one refused snapshot would freeze Envoy's clusters for every deployment. Tests refuse a
 * second instance on a pool address (`duplicate_address`); what remains (a migration to the same ip:port,
 * which has nothing to drain; a DNS change) keeps the active one.
 */
export function onePerAddress(instances: TableInstance[]): TableInstance[] {
  const keep = new Map<string, TableInstance>();
  for (const i of instances) {
    const a = i.address.toLowerCase();
    const cur = keep.get(a);
    if (!cur || ADDRESS_RANK[i.state] < ADDRESS_RANK[cur.state]) keep.set(a, i);
  }
  return instances.filter((i) => keep.get(i.address.toLowerCase()) === i);
}

export function tableDeployment(d: Deployment, apiKeys: ApiKeys = {}, loads?: Loads): TableDeployment {
  return {
    id: d.id,
    cluster: clusterName(d.id),
    strategy: d.strategy,
    on_unavailable: d.on_unavailable,
    // Only when set: tables of deployments without them stay as they were.
    ...(d.forward_client_credentials ? { forward_client_credentials: true } : {}),
    ...(d.extra_paths && d.extra_paths.length > 0 ? { extra_paths: d.extra_paths } : {}),
    ...(d.affinity ? { affinity: d.affinity } : {}),
    instances: onePerAddress(d.instances.map((i) => tableInstance(d, i, apiKeys, loads)).filter((i): i is TableInstance => i !== null)),
  };
}

/**
 * True when two versions of a deployment look the same in the table (no version bump needed). Keys are
 * not compared: a change of key is an API write, which always bumps the version.
 */
export function sameInTable(a: Deployment, b: Deployment): boolean {
  return JSON.stringify(tableDeployment(a)) === JSON.stringify(tableDeployment(b));
}

/** The table without its secrets (`authorization`): what admins and viewers get. */
export function withoutSecrets(t: RoutingTable): RoutingTable {
  return { ...t, deployments: t.deployments.map((d) => ({ ...d, instances: d.instances.map(({ authorization: _secret, ...i }) => i) })) };
}

/** Each deployment's table entry (its model's names with it), sorted by deployment id. */
export function tableEntries(models: Model[], deployments: Deployment[], apiKeys: ApiKeys = {}, loads?: Loads): TableEntry[] {
  const byId = new Map(models.map((m) => [m.id, m]));
  const sorted = [...deployments].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return sorted.map((d) => {
    const m = byId.get(d.model_id);
    // The engine's name rides with the deployment: the plugin rewrites requests that used another name.
    if (!m) return { deployment: tableDeployment(d, apiKeys, loads), names: [] };
    return { deployment: { ...tableDeployment(d, apiKeys, loads), served_name: servedNameOf(m) }, names: [...modelNames(m)].sort() };
  });
}

/** The whole table as stored state describes it (unchecked; see assemble.ts for what is published). */
export function buildRoutingTable(version: number, models: Model[], deployments: Deployment[], apiKeys: ApiKeys = {}): RoutingTable {
  const entries = tableEntries(models, deployments, apiKeys);
  const names: [string, string][] = entries.flatMap((e) => e.names.map((n): [string, string] => [n, e.deployment.id]));
  names.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return { schema: 1, version, models: Object.fromEntries(names), deployments: entries.map((e) => e.deployment) };
}

/** Build and validate with the contract's zod schema; invalid → the issues (messages carry no values). */
export function buildValidTable(version: number, models: Model[], deployments: Deployment[], apiKeys: ApiKeys = {}): { ok: true; table: RoutingTable } | { ok: false; issues: string[] } {
  const table = buildRoutingTable(version, models, deployments, apiKeys);
  const r = RoutingTable.safeParse(table);
  if (!r.success) return { ok: false, issues: r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`) };
  return { ok: true, table };
}
