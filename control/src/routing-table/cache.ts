/**
 * The routing table as served by this replica: the last good table in memory (served even while Redis is
 * away), refreshed when any replica publishes a new version (pub/sub), on reconnect, and periodically as a
 * safety net. Long-polls wait here for a version above the one they have.
 */
import { tableEtag, type RoutingTable } from "../../contracts/routing-table.js";
import type { Logger } from "../log.js";
import { errorFields } from "../log.js";
import { buildValidTable, withoutSecrets } from "./builder.js";
import type { Snapshot, TableStore } from "./store.js";

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
}

export function createTableCache(deps: {
  store: Pick<TableStore, "snapshot">;
  log: Logger;
  refreshMs: number;
  /** Called with each newly published table and the snapshot it was built from (xDS is built from the same). */
  onPublish?: (table: RoutingTable, snapshot: Snapshot) => void;
}): TableCache {
  const { store, log } = deps;
  let cur: CurrentTable | null = null;
  let running: Promise<void> | null = null;
  let again = false;
  let timer: NodeJS.Timeout | null = null;
  const waiters = new Set<{ version: number; wake: () => void; cancel: () => void }>();

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
    if (cur && snap.version <= cur.version) {
      if (snap.version < cur.version) log.error("routing table version went backwards in Redis (data lost?); keeping the newer table", { stored: snap.version, served: cur.version });
      return;
    }
    const built = buildValidTable(snap.version, snap.models, snap.deployments, snap.apiKeys);
    if (!built.ok) {
      log.error("routing table failed validation; not published", { version: snap.version, issues: built.issues.slice(0, 10) });
      return;
    }
    const open = withoutSecrets(built.table);
    try {
      deps.onPublish?.(open, snap);
    } catch (e) {
      log.error("publish hook failed", errorFields(e));
    }
    publish(built.table, open);
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
  };
}
