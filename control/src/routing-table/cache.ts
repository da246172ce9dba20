/**
 * The routing table as served by this replica: the last good table in memory (served even while Redis is
 * away), refreshed when any replica publishes a new version (pub/sub), on reconnect, and periodically as a
 * safety net. Long-polls wait here for a version above the one they have.
 */
import { tableEtag, type RoutingTable } from "../../contracts/routing-table.js";
import type { Logger } from "../log.js";
import { errorFields } from "../log.js";
import { RoutingTable as TableSchema } from "../../contracts/routing-table.js";
import { assembleTable, type Held, type TableEntry } from "./assemble.js";
import { tableEntries, withoutSecrets } from "./builder.js";
import type { Snapshot, TableStore } from "./store.js";

/** How the served table stands against the stored state (GET /healthz, /metrics). */
export interface TableStatus {
  /** The version this replica serves (null: none yet). */
  served_version: number | null;
  /** The newest version this replica has seen in Redis (read or announced). */
  stored_version: number | null;
  /** Deployments whose stored state is not what the plugins get (see assemble.ts). */
  held: Held[];
  /** True when the served table has lagged the stored version for longer than the grace period. */
  behind: boolean;
}

/** A table lagging its stored version this long (a publish in flight takes milliseconds) counts as behind. */
export const BEHIND_GRACE_MS = 3_000;

export interface CurrentTable {
  version: number;
  etag: string;
  /** The plugin's view: with each keyed instance's `authorization` (a secret). */
  json: string;
  /** The same version without secrets: for admins and viewers (built on first use). */
  readonly publicJson: string;
  /** Without secrets (metrics, xDS, and whatever else reads the current table). */
  table: RoutingTable;
}

export interface TableCache {
  current(): CurrentTable | null;
  /** Re-read state; publish a new table when the version moved. Coalesces concurrent calls. */
  refresh(): Promise<void>;
  /** Called with a version seen on pub/sub. */
  notify(version: number): void;
  /** Resolves when a version above `version` is current, or after `ms` (→ false). */
  waitForNewer(version: number, ms: number, signal?: AbortSignal): Promise<boolean>;
  start(): void;
  stop(): void;
  readonly waiting: number;
  status(): TableStatus;
  /**
   * A consumer holds `version` (a plugin's If-None-Match) though this replica serves less: the store was
   * restored from an older snapshot, or lost its data. Plugins never adopt a version at or below theirs,
   * so the stored version jumps past it; the next table carries the stored state at that new version.
   */
  raiseFloor(version: number): Promise<void>;
}

export function createTableCache(deps: {
  store: Pick<TableStore, "snapshot">;
  log: Logger;
  refreshMs: number;
  /** Moves the stored version past `floor` unless it is already at or above it; publishes it; returns it (version-floor.ts). */
  raiseVersion: (floor: number) => Promise<{ version: number; raised: boolean }>;
  /** Called with each newly published table and the snapshot it was built from (xDS is built from the same). */
  onPublish?: (table: RoutingTable, snapshot: Snapshot) => void;
  /** Called when the set of held-back deployments changes (after the table with it is published). */
  onHeld?: (held: Held[], version: number) => void;
  now?: () => number;
}): TableCache {
  const { store, log } = deps;
  let cur: CurrentTable | null = null;
  let running: Promise<void> | null = null;
  let again = false;
  let timer: NodeJS.Timeout | null = null;
  const waiters = new Set<{ version: number; wake: () => void; cancel: () => void }>();
  const now = deps.now ?? Date.now;
  /** The last published entries with secrets: what a deployment that cannot publish keeps serving. */
  let lastGood = new Map<string, TableEntry>();
  let held: Held[] = [];
  let stored: number | null = null;
  /** Since when the stored version has been above the served one (null: it is not). */
  let behindSince: number | null = null;
  const seen = (v: number) => {
    if (stored === null || v > stored) stored = v;
    if (behindSince === null && (cur === null || stored > cur.version)) behindSince = now();
  };

  /** `t` with its secrets (the plugin's view), `table` the same without (see withoutSecrets). */
  const publish = (t: RoutingTable, table: RoutingTable) => {
    let publicJson: string | null = null;
    cur = {
      version: t.version,
      etag: tableEtag(t.version),
      json: JSON.stringify(t),
      get publicJson() {
        return (publicJson ??= JSON.stringify(table));
      },
      table,
    };
    for (const w of waiters) if (t.version > w.version) w.wake();
  };

  const once = async () => {
    const snap = await store.snapshot();
    if (snap.version < 1) return;
    seen(snap.version);
    if (cur && snap.version <= cur.version) {
      if (snap.version < cur.version) {
        // Redis went back in time (restored snapshot, lost data): move its version past ours, then serve its state.
        const r = await deps.raiseVersion(cur.version);
        log.error("routing table version went backwards in Redis (restored or lost data?); moved it past the served one", { stored: snap.version, served: cur.version, now: r.version });
        again = true;
      }
      return;
    }
    const assembled = assembleTable(snap.version, tableEntries(snap.models, snap.deployments, snap.apiKeys, snap.loads), lastGood);
    const valid = TableSchema.safeParse(assembled.table);
    if (!valid.success) {
      // Not expected (every entry was checked on its own): keep the whole last table rather than serve this.
      log.error("routing table failed validation; not published", { version: snap.version, issues: valid.error.issues.slice(0, 10).map((i) => `${i.path.join(".")}: ${i.message}`) });
      return;
    }
    const open = withoutSecrets(assembled.table);
    try {
      deps.onPublish?.(open, snap);
    } catch (e) {
      log.error("publish hook failed", errorFields(e));
    }
    const heldBefore = JSON.stringify(held);
    lastGood = assembled.entries;
    held = assembled.held;
    publish(assembled.table, open);
    if (stored !== null && stored <= snap.version) behindSince = null;
    if (JSON.stringify(held) !== heldBefore) {
      if (held.length > 0) log.error("routing table: deployments held back; they keep their last good entry (or none), the rest is published", { version: snap.version, held });
      else log.info("routing table: no deployment held back any more", { version: snap.version });
      deps.onHeld?.(held, snap.version);
    }
    log.debug("routing table published", { version: snap.version });
  };

  const refresh = async (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await once();
        } while (again);
      } finally {
        running = null;
      }
    })();
    return running;
  };

  return {
    current: () => cur,
    refresh,
    notify(version) {
      if (version < Number.MAX_SAFE_INTEGER) seen(version);
      if (!cur || version > cur.version) refresh().catch((e: unknown) => log.debug("routing table refresh failed", errorFields(e)));
    },
    waitForNewer(version, ms, signal) {
      if (cur && cur.version > version) return Promise.resolve(true);
      return new Promise((resolve) => {
        const w = {
          version,
          wake: () => finish(true),
          cancel: () => finish(false),
        };
        const timeout = setTimeout(() => finish(false), ms);
        const onAbort = () => finish(false);
        function finish(v: boolean) {
          clearTimeout(timeout);
          waiters.delete(w);
          signal?.removeEventListener("abort", onAbort);
          resolve(v);
        }
        waiters.add(w);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    },
    start() {
      timer = setInterval(() => {
        refresh().catch(() => {
          /* Redis away: keep serving the last table; the connection logs the outage. */
        });
      }, deps.refreshMs);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      for (const w of waiters) w.cancel();
    },
    get waiting() {
      return waiters.size;
    },
    status() {
      return {
        served_version: cur?.version ?? null,
        stored_version: stored,
        held,
        behind: behindSince !== null && now() - behindSince > BEHIND_GRACE_MS,
      };
    },
    async raiseFloor(version) {
      if (cur && version <= cur.version) return;
      const r = await deps.raiseVersion(version);
      // Not raised: the store is at or past it already, this replica is merely behind another one.
      if (r.raised) log.warn("a consumer holds a newer routing table than the store (restored or lost data?); moved the stored version past it", { consumer: version, now: r.version });
      await refresh();
    },
  };
}
