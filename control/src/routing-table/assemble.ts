/**
 * One table from many deployments, where one deployment's problem stays that deployment's.
 *
 * Every write path checks the table's limits before it commits (limits.ts), but state can still arrive
 * that the contract refuses — data written by an older version, a Redis restored by hand, a race at a
 * limit. Refusing the whole table for it froze every deployment (issue 16): later acknowledged writes,
 * a deleted instance among them, never reached the plugins. Here each deployment is checked on its own;
 * one that fails keeps the entry it had in the last published table (or stays out if it never had one),
 * the rest publish, and the caller reports what was held back (event, metric, /healthz). The xDS
 * publisher does the same for Envoy's clusters (control/xds/publisher.ts).
 */
import { ModelName, RoutingTable, TABLE_LIMITS, TableDeployment } from "../../contracts/routing-table.js";

/** A deployment as the table shows it, with the client-facing names that route to it. */
export interface TableEntry {
  deployment: TableDeployment;
  names: string[];
}

/** A deployment whose current state is not in the published table. */
export interface Held {
  deployment: string;
  /** Why (contract issues; messages carry no values). */
  reasons: string[];
  /** What the plugins route by instead: its entry from an earlier table, or nothing. */
  serving: "last_good" | "none";
}

/** Issues of one entry against the contract (its names and its deployment), none when it may publish. */
export function entryIssues(e: TableEntry): string[] {
  const issues: string[] = [];
  const r = TableDeployment.safeParse(e.deployment);
  if (!r.success) issues.push(...r.error.issues.slice(0, 5).map((i) => `${i.path.join(".") || "deployment"}: ${i.message}`));
  const ids = new Set<string>();
  for (const i of e.deployment.instances) {
    if (ids.has(i.id)) issues.push(`instances: duplicate instance id ${i.id}`);
    ids.add(i.id);
  }
  const bad = e.names.filter((n) => !ModelName.safeParse(n).success).length;
  if (bad > 0) issues.push(`models: ${bad} invalid model name(s)`);
  return issues;
}

/** Entries in the last published table by deployment id (with their secrets: this is the plugin's view). */
export type LastGood = ReadonlyMap<string, TableEntry>;

const sameNames = (a: string[], b: string[]) => a.length === b.length && a.every((n, i) => n === b[i]);

/**
 * The table to publish at `version` from `entries` (sorted by deployment id), and what was held back.
 * Entries already published unchanged in name go first, so the limits that count across deployments
 * (deployments, model names) hold back what is new, never what was serving.
 */
export function assembleTable(version: number, entries: TableEntry[], lastGood: LastGood): { table: RoutingTable; held: Held[]; entries: Map<string, TableEntry> } {
  const held: Held[] = [];
  const chosen = new Map<string, TableEntry>();
  const owner = new Map<string, string>();
  let nameCount = 0;

  const fits = (e: TableEntry) =>
    chosen.size < TABLE_LIMITS.maxDeployments && nameCount + e.names.length <= TABLE_LIMITS.maxModelNames && e.names.every((n) => !owner.has(n));
  const admit = (id: string, e: TableEntry) => {
    chosen.set(id, e);
    for (const n of e.names) owner.set(n, id);
    nameCount += e.names.length;
  };
  const holdBack = (id: string, reasons: string[]) => {
    const prev = lastGood.get(id);
    if (prev && entryIssues(prev).length === 0 && fits(prev)) {
      admit(id, prev);
      held.push({ deployment: id, reasons, serving: "last_good" });
    } else {
      held.push({ deployment: id, reasons, serving: "none" });
    }
  };

  const valid: TableEntry[] = [];
  const refused: [string, string[]][] = [];
  for (const e of entries) {
    const issues = entryIssues(e);
    if (issues.length > 0) refused.push([e.deployment.id, issues]);
    else valid.push(e);
  }
  // Established first: unchanged names were in one valid table together, so they fit together again.
  const established: TableEntry[] = [];
  const rest: TableEntry[] = [];
  for (const e of valid) {
    const prev = lastGood.get(e.deployment.id);
    (prev !== undefined && sameNames(prev.names, e.names) ? established : rest).push(e);
  }
  for (const e of established) {
    if (fits(e)) admit(e.deployment.id, e);
    else holdBack(e.deployment.id, ["models: a model name is also claimed by another deployment"]);
  }
  const over: TableEntry[] = [];
  for (const e of rest) {
    if (fits(e)) admit(e.deployment.id, e);
    else over.push(e);
  }
  // Stale entries last: what is stored now (and valid) wins a name or a slot over what used to be.
  for (const e of over) holdBack(e.deployment.id, [overLimitReason(chosen.size, nameCount, e, owner)]);
  for (const [id, issues] of refused) holdBack(id, issues);

  const ids = [...chosen.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const names: [string, string][] = [];
  for (const id of ids) for (const n of chosen.get(id)!.names) names.push([n, id]);
  names.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  held.sort((a, b) => (a.deployment < b.deployment ? -1 : a.deployment > b.deployment ? 1 : 0));
  return {
    table: { schema: 1, version, models: Object.fromEntries(names), deployments: ids.map((id) => chosen.get(id)!.deployment) },
    held,
    entries: chosen,
  };
}

function overLimitReason(deployments: number, names: number, e: TableEntry, owner: ReadonlyMap<string, string>): string {
  if (deployments >= TABLE_LIMITS.maxDeployments) return `deployments: the table holds at most ${TABLE_LIMITS.maxDeployments} deployments`;
  const taken = e.names.find((n) => owner.has(n));
  if (taken !== undefined) return `models: a model name is also claimed by deployment ${owner.get(taken)}`;
  return `models: the table holds at most ${TABLE_LIMITS.maxModelNames} model names (${names} published, this deployment adds ${e.names.length})`;
}
