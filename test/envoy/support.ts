/** Helpers for the Envoy document tests: read our documents, address values by JSON path. */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocuments } from "../../envoy/validate/documents.js";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));
export const ENVOY_DIR = join(REPO, "envoy");

/** Every YAML/JSON document file we ship under envoy/ (the validator's own folder excluded). */
export function shippedDocuments(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir).sort()) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) {
        if (relative(ENVOY_DIR, p) !== "validate") walk(p);
      } else if (/\.(ya?ml|json)$/.test(e)) out.push(relative(REPO, p));
    }
  };
  walk(ENVOY_DIR);
  return out;
}

/** The documents of a shipped file (values are fresh copies, safe to mutate). */
export function docs(file: string): Record<string, any>[] {
  return parseDocuments(readFileSync(join(REPO, file), "utf8"), file).map((d) => d.value as Record<string, any>);
}

export const bootstrap = (): Record<string, any> => docs("envoy/bootstrap.yaml")[0]!;
export const deploymentCluster = (): Record<string, any> => docs("envoy/per-deployment-cluster.example.yaml")[0]!;

/** Splits "a.b[0].c" / 'a["x.y"]' into keys. */
function keys(path: string): (string | number)[] {
  const out: (string | number)[] = [];
  const re = /([^.[\]]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]/g;
  for (const m of path.matchAll(re)) out.push(m[2] !== undefined ? Number(m[2]) : m[3] !== undefined ? JSON.parse(`"${m[3]}"`) : m[1]!);
  return out;
}

export function get(obj: unknown, path: string): any {
  let cur: any = obj;
  for (const k of keys(path)) {
    if (cur === undefined || cur === null) throw new Error(`no ${path} (stopped at ${String(k)})`);
    cur = cur[k];
  }
  return cur;
}

export function set(obj: unknown, path: string, value: unknown): void {
  const ks = keys(path);
  const parent = ks.length > 1 ? get(obj, ks.slice(0, -1).map((k) => (typeof k === "number" ? `[${k}]` : `["${k}"]`)).join("")) : obj;
  if (parent === undefined || parent === null) throw new Error(`no parent for ${path}`);
  (parent as any)[ks[ks.length - 1]!] = value;
}

export function del(obj: unknown, path: string): void {
  const ks = keys(path);
  const parent = ks.length > 1 ? get(obj, ks.slice(0, -1).map((k) => (typeof k === "number" ? `[${k}]` : `["${k}"]`)).join("")) : obj;
  if (parent === undefined || !(ks[ks.length - 1]! in parent)) throw new Error(`no ${path} to delete`);
  delete (parent as any)[ks[ks.length - 1]!];
}

// Paths into envoy/bootstrap.yaml used by several tests.
export const HCM = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
export const ROUTES = `${HCM}.route_config.virtual_hosts[0].routes`;
export const WASM = `${HCM}.http_filters[1].typed_config`;
export const PLUGIN_CONFIG_JSON = `${WASM}.config.configuration.value`;
