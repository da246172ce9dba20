/**
 * Loads Envoy's v3 API protos — as vendored by npm `@grpc/grpc-js-xds` (mid-2024) — plus our own
 * overlay (envoy/validate/overlay/gateway/*.proto, written from Envoy's docs for what is newer) into
 * one protobufjs Root. Loaded once per process (~1 s) and cached.
 *
 * What gets loaded: every `.proto` under deps/envoy-api/envoy except v1/v2/v2alpha packages and the
 * few files whose imports are not vendored (OpenCensus/OpenTelemetry/Prometheus protos); those are
 * listed in `Schema.excluded`. Imports resolve through deps/envoy-api, deps/xds,
 * deps/protoc-gen-validate and deps/googleapis; google/protobuf/*.proto come from protobufjs.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";

export interface Schema {
  root: protobuf.Root;
  /** Vendored files not loaded because an import is not vendored. */
  excluded: string[];
  /** Overlay files loaded (absolute paths). */
  overlayFiles: string[];
  /** "target full name → added field names", from overlay additions. */
  additions: Record<string, string[]>;
}

const OVERLAY_DIR = fileURLToPath(new URL("./overlay/", import.meta.url));
const ADDITIONS_PREFIX = "gateway.overlay.additions";
/** Well-known types protobufjs ships as JSON (it resolves these names itself). */
const BUNDLED_WKT = /^google\/protobuf\/(any|duration|empty|field_mask|struct|timestamp|wrappers)\.proto$/;

function depsDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
}

function protoFiles(dir: string, base: string, out: string[] = []): string[] {
  for (const entry of readdirSync(dir).sort()) {
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) protoFiles(p, base, out);
    else if (entry.endsWith(".proto")) out.push(relative(base, p));
  }
  return out;
}

let cached: Schema | undefined;

export function loadSchema(): Schema {
  if (cached) return cached;
  const deps = depsDir();
  const require = createRequire(import.meta.url);
  const includeDirs = [
    OVERLAY_DIR,
    join(deps, "envoy-api"),
    join(deps, "xds"),
    join(deps, "protoc-gen-validate"),
    join(deps, "googleapis"),
    dirname(require.resolve("protobufjs/package.json")), // google/protobuf/descriptor.proto
  ];
  const find = (target: string): string | undefined => {
    for (const dir of includeDirs) {
      const p = join(dir, target);
      if (existsSync(p)) return p;
    }
    return undefined;
  };

  // Keep only files whose whole import closure is available.
  const loadable = new Map<string, boolean>();
  const isLoadable = (target: string): boolean => {
    if (BUNDLED_WKT.test(target)) return true;
    const known = loadable.get(target);
    if (known !== undefined) return known;
    loadable.set(target, true); // cycle guard
    const path = find(target);
    let ok = path !== undefined;
    if (path) {
      const src = readFileSync(path, "utf8");
      for (const m of src.matchAll(/^import\s+(?:public\s+|weak\s+)?"([^"]+)";/gm)) {
        if (!isLoadable(m[1]!)) ok = false;
      }
    }
    loadable.set(target, ok);
    return ok;
  };

  const envoyApi = join(deps, "envoy-api");
  const all = protoFiles(join(envoyApi, "envoy"), envoyApi).filter((f) => !/\/v[12](alpha\d*)?\//.test(f));
  const files = all.filter(isLoadable);
  const excluded = all.filter((f) => !isLoadable(f));
  const overlayFiles = protoFiles(join(OVERLAY_DIR, "gateway"), OVERLAY_DIR);
  // Types an Any may name that no Envoy file imports: all well-known types, and the TypedStructs.
  const extras = [
    ...["any", "duration", "empty", "field_mask", "struct", "timestamp", "wrappers"].map((n) => `google/protobuf/${n}.proto`),
    "udpa/type/v1/typed_struct.proto",
    "xds/type/v3/typed_struct.proto",
  ].filter(isLoadable);

  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string): string => (BUNDLED_WKT.test(target) ? target : (find(target) ?? target));
  root.loadSync([...files, ...extras, ...overlayFiles], { keepCase: true });

  const additions = applyAdditions(root);
  markDeprecated(root);
  root.resolveAll();
  cached = { root, excluded, overlayFiles: overlayFiles.map((f) => join(OVERLAY_DIR, f)), additions };
  return cached;
}

/**
 * Fields deprecated by Envoy after the vendored protos were cut (so the walker warns on them like
 * Envoy does). Overlay knowledge, from the same docs page as the additions:
 * `fail_open` — "Deprecated: use failure_policy" (Wasm (proto), PluginConfig).
 */
const DEPRECATED_SINCE_VENDORED = ["envoy.extensions.wasm.v3.PluginConfig.fail_open"];

function markDeprecated(root: protobuf.Root): void {
  for (const full of DEPRECATED_SINCE_VENDORED) {
    const i = full.lastIndexOf(".");
    const field = root.lookupType(full.slice(0, i)).fields[full.slice(i + 1)];
    if (!field) throw new Error(`overlay deprecation: no field ${full}`);
    field.options = { ...field.options, deprecated: true };
  }
}

/** Moves the fields of every message under `gateway.overlay.additions.<target>` onto `<target>`. */
function applyAdditions(root: protobuf.Root): Record<string, string[]> {
  const done: Record<string, string[]> = {};
  const ns = root.lookup(ADDITIONS_PREFIX);
  if (!(ns instanceof protobuf.Namespace)) return done;
  const visit = (n: protobuf.Namespace): void => {
    for (const child of n.nestedArray) {
      if (child instanceof protobuf.Type) {
        const targetName = child.fullName.slice(ADDITIONS_PREFIX.length + 2); // drop ".prefix."
        const target = root.lookup(targetName);
        if (!(target instanceof protobuf.Type)) throw new Error(`overlay addition ${child.fullName}: no message ${targetName} to extend`);
        for (const field of [...child.fieldsArray]) {
          if (target.fields[field.name] || target.fieldsById[field.id]) {
            throw new Error(`overlay addition ${child.fullName}.${field.name}: ${targetName} already has that field name or number — drop it from the overlay`);
          }
          child.remove(field);
          target.add(field);
          (done[targetName] ??= []).push(field.name);
        }
      } else if (child instanceof protobuf.Namespace) {
        visit(child);
      }
    }
  };
  visit(ns);
  return done;
}
