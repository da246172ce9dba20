/**
 * Holds the xDS snapshot a replica serves: build → check → swap in one assignment, so a request
 * sees either the old complete snapshot or the new complete one. Versions never go backwards.
 *
 * One bad deployment must not freeze every other one: when the checks blame specific deployments,
 * those keep their last good definition (or are left out if they never had one) and the rest of the
 * snapshot is served; the refusal is logged with the blamed deployments. Issues that name no
 * deployment refuse the whole snapshot (the last good one stays).
 *
 *   const xds = createXdsPublisher({ logger });
 *   xds.publish({ version, deployments });          // whenever the routing table is rebuilt
 *   app.use(createXdsRouter({ snapshot: xds.current, authorize }));
 */
import { buildXdsSnapshot, type BuildResult, type XdsBuildOptions, type XdsSnapshot } from "./build.js";
import type { XdsLogger } from "./discovery.js";

export interface XdsPublisher {
  /** The snapshot being served, undefined before the first good one. */
  current: () => XdsSnapshot | undefined;
  /**
   * Builds and, when it is good and newer, serves `input` (contract 4). `published` is false for
   * invalid input, an older version, or the version already served (same version = same state).
   */
  publish(input: unknown): BuildResult & { published: boolean };
  /** Calls `listener` after each newly served snapshot (the ADS server pushes from it). Returns the unsubscribe. */
  subscribe(listener: (snapshot: XdsSnapshot) => void): () => void;
}

export function createXdsPublisher(opts: { logger?: XdsLogger; options?: Partial<XdsBuildOptions> } = {}): XdsPublisher {
  let cur: XdsSnapshot | undefined;
  /** The input of every deployment as last served, by id: what a blamed deployment falls back to. */
  let lastGood = new Map<string, unknown>();
  const log = opts.logger;
  const listeners = new Set<(snapshot: XdsSnapshot) => void>();

  function serve(r: BuildResult, input: unknown): BuildResult & { published: boolean } {
    if (!r.ok) return { ...r, published: false };
    if (cur && r.snapshot.version <= cur.version) {
      if (r.snapshot.version < cur.version) log?.error("xds snapshot version went backwards; keeping the newer one", { offered: r.snapshot.version, served: cur.version });
      return { ...r, published: false };
    }
    cur = r.snapshot;
    lastGood = new Map(deploymentsOf(input).map((d) => [idOf(d), d] as const).filter(([id]) => id !== undefined) as [string, unknown][]);
    log?.debug("xds snapshot published", { version: cur.version, clusters: cur.clusters.length });
    for (const l of listeners) {
      try {
        l(cur);
      } catch (e) {
        log?.error("xds snapshot listener failed", { error: (e as Error)?.message ?? String(e) });
      }
    }
    return { ...r, published: true };
  }

  return {
    current: () => cur,
    subscribe(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    publish(input) {
      const r = buildXdsSnapshot(input, opts.options);
      for (const w of r.warnings) log?.warn("xds snapshot warning", { path: w.path, message: w.message });
      if (r.ok) return serve(r, input);
      const blamed = blamedDeployments(r.issues);
      const deployments = deploymentsOf(input);
      if (blamed !== null && deployments.length > 0) {
        const kept = deployments.flatMap((d, i) => {
          if (!blamed.has(i)) return [d];
          const prev = lastGood.get(idOf(d) ?? "");
          return prev === undefined ? [] : [prev];
        });
        const partial = { ...(input as object), deployments: kept };
        const r2 = buildXdsSnapshot(partial, opts.options);
        if (r2.ok) {
          log?.error("xds: deployments refused; they keep their last good clusters, the rest is served", {
            deployments: [...blamed].map((i) => idOf(deployments[i]) ?? `#${i}`),
            issues: r.issues.slice(0, 10),
          });
          return serve(r2, partial);
        }
      }
      log?.error("xds snapshot refused; still serving the previous one", { served: cur?.version ?? null, issues: r.issues.slice(0, 10) });
      return { ...r, published: false };
    },
  };
}

function deploymentsOf(input: unknown): unknown[] {
  const d = input && typeof input === "object" ? (input as { deployments?: unknown }).deployments : undefined;
  return Array.isArray(d) ? d : [];
}

function idOf(d: unknown): string | undefined {
  const id = d && typeof d === "object" ? (d as { id?: unknown }).id : undefined;
  return typeof id === "string" ? id : undefined;
}

/** Indexes of the deployments the issues name (`deployments[3]…`), or null if any issue names none. */
function blamedDeployments(issues: { path: string }[]): Set<number> | null {
  const out = new Set<number>();
  for (const i of issues) {
    const m = /^deployments\[(\d+)\]/.exec(i.path);
    if (!m) return null;
    out.add(Number(m[1]));
  }
  return out.size > 0 ? out : null;
}
