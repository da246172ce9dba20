/**
 * The e2e bootstrap (support/bootstrap.ts) with its listener delivered by LDS from a file, so the
 * wasm filter's configuration can change while Envoy runs:
 *   - the bootstrap: the generated e2e bootstrap without static_resources.listeners, plus
 *     dynamic_resources.lds_config = { resource_api_version: V3, path_config_source: { path } };
 *     everything else (admin, node, static clusters, CDS from the control service) unchanged;
 *   - the LDS file: a v3 DiscoveryResponse (what Envoy's filesystem subscription reads) holding that
 *     very listener as a typed resource;
 *   - rewriting it the way Envoy's file watcher expects: without `watched_directory` Envoy watches the
 *     path for moves (inotify IN_MOVED_TO), so a new version is written to a temp file in the same
 *     directory and renamed over the path (atomic; a partial file is never read).
 */
import { renameSync, writeFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join } from "node:path";
import { TYPE_URLS } from "../../../envoy/validate/index.js";
import { locate, type E2eBootstrap } from "./bootstrap.js";

/* eslint-disable @typescript-eslint/no-explicit-any */
type Doc = Record<string, any>;

export interface LdsBootstrap {
  /** The bootstrap Envoy starts with: no static listener, LDS from `ldsPath`. */
  bootstrap: Doc;
  /** The listener the static e2e bootstrap had (a copy): what the LDS file delivers. */
  listener: Doc;
}

/** Moves the generated e2e bootstrap's listener out to LDS from the file `ldsPath` (absolute). */
export function ldsBootstrap(gen: E2eBootstrap, ldsPath: string): LdsBootstrap {
  if (!isAbsolute(ldsPath)) throw new Error(`LDS path must be absolute (Envoy resolves relative ones from its cwd): ${ldsPath}`);
  const bootstrap = structuredClone(gen.bootstrap);
  const listener = structuredClone(locate(bootstrap).listener);
  delete bootstrap.static_resources.listeners;
  bootstrap.dynamic_resources = {
    ...bootstrap.dynamic_resources,
    lds_config: { resource_api_version: "V3", path_config_source: { path: ldsPath } },
  };
  return { bootstrap, listener };
}

/** The LDS file's content: a DiscoveryResponse with `listeners` as typed resources. */
export function ldsDocument(version: string, ...listeners: Doc[]): Doc {
  return {
    version_info: version,
    type_url: TYPE_URLS.listener,
    resources: listeners.map((l) => ({ "@type": TYPE_URLS.listener, ...structuredClone(l) })),
  };
}

/** The wasm filter's `config` inside a listener shaped like the e2e one (located by name, checked). */
export function wasmConfigOf(listener: Doc): Doc {
  return locate({ static_resources: { listeners: [listener], clusters: [] }, dynamic_resources: { cds_config: { api_config_source: {} } } }).wasmConfig;
}

/** The plugin configuration JSON string of a listener shaped like the e2e one. */
export function pluginConfigText(listener: Doc): string {
  return String(wasmConfigOf(listener).configuration.value);
}

/** A copy of `listener` whose plugin configuration is `text` (taken as is: it may be invalid on purpose). */
export function withPluginConfigText(listener: Doc, text: string): Doc {
  const copy = structuredClone(listener);
  wasmConfigOf(copy).configuration.value = text;
  return copy;
}

let tmpCounter = 0;

/** Writes `doc` as JSON to a temp file beside `path`, then renames it over `path` (atomic, a move). */
export function writeAtomically(path: string, doc: unknown): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${++tmpCounter}.tmp`);
  writeFileSync(tmp, JSON.stringify(doc, null, 2));
  renameSync(tmp, path);
}
