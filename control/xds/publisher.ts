/**
 * Holds the xDS snapshot a replica serves: build → check → swap in one assignment, so a request
 * sees either the old complete snapshot or the new complete one. A snapshot that fails its checks is
 * logged and never served (the last good one stays), and versions never go backwards.
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
}

export function createXdsPublisher(opts: { logger?: XdsLogger; options?: Partial<XdsBuildOptions> } = {}): XdsPublisher {
  let cur: XdsSnapshot | undefined;
  const log = opts.logger;
  return {
    current: () => cur,
    publish(input) {
      const r = buildXdsSnapshot(input, opts.options);
      for (const w of r.warnings) log?.warn("xds snapshot warning", { path: w.path, message: w.message });
      if (!r.ok) {
        log?.error("xds snapshot refused; still serving the previous one", { served: cur?.version ?? null, issues: r.issues.slice(0, 10) });
        return { ...r, published: false };
      }
      if (cur && r.snapshot.version <= cur.version) {
        if (r.snapshot.version < cur.version) log?.error("xds snapshot version went backwards; keeping the newer one", { offered: r.snapshot.version, served: cur.version });
        return { ...r, published: false };
      }
      cur = r.snapshot;
      log?.debug("xds snapshot published", { version: cur.version, clusters: cur.clusters.length });
      return { ...r, published: true };
    },
  };
}
