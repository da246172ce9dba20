import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, rename, unlink, writeFile } from "node:fs/promises";
import { basename } from "node:path";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { ProxyWasmHost } from "../../envoy/local/host/host.js";
import type { HostOptions } from "../../envoy/local/host/types.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
/** Fixture-local abort (plugin/lib/gateway_abort.ts belongs to the plugin and may change under us). */
const FIXTURE_LIB = join(FIXTURES, "lib");
const OUT = join(ROOT, "build", "host-fixtures");

/** The repo's asc conventions (asconfig.json) with the fixture lib instead of plugin/lib. */
const FLAGS = ["--runtime", "incremental", "--exportStart", "_initialize", "--use", "abort=gateway_abort", "--optimizeLevel", "2", "--shrinkLevel", "0"];

// The compiler (with binaryen) takes seconds to load: read only its version for the cache key and
// import it on a cache miss.
const ASC_VERSION: string = (createRequire(import.meta.url)("assemblyscript/package.json") as { version: string }).version;

const inFlight = new Map<string, Promise<Uint8Array<ArrayBuffer>>>();

/**
 * Compiles test/host/fixtures/<name>.ts with the AssemblyScript compiler API, cached in
 * build/host-fixtures/ by a hash of the sources, flags and compiler version.
 */
export function buildFixture(name: string): Promise<Uint8Array<ArrayBuffer>> {
  let p = inFlight.get(name);
  if (!p) inFlight.set(name, (p = compile(name)));
  return p;
}

async function compile(name: string): Promise<Uint8Array<ArrayBuffer>> {
  const entry = join(FIXTURES, `${name}.ts`);
  const sources = [entry, ...(await listTs(join(FIXTURES, "common"))), ...(await listTs(FIXTURE_LIB))];
  const hash = createHash("sha256");
  hash.update(ASC_VERSION).update(FLAGS.join(" "));
  for (const f of sources) hash.update(f).update(await readFile(f));
  const outFile = join(OUT, `${name}-${hash.digest("hex").slice(0, 16)}.wasm`);
  try {
    return new Uint8Array(await readFile(outFile));
  } catch {
    // not cached yet
  }
  await mkdir(OUT, { recursive: true });
  const tmp = `${outFile}.${process.pid}.tmp`;
  const { default: asc } = await import("assemblyscript/asc");
  const stderr = asc.createMemoryStream();
  const { error } = await asc.main([relative(ROOT, entry), "--baseDir", ROOT, "--outFile", relative(ROOT, tmp), "--lib", relative(ROOT, FIXTURE_LIB), ...FLAGS], {
    stderr,
    readFile: (file: string, baseDir: string) => readFile(join(baseDir, file), "utf8").catch(() => null),
    writeFile: (file: string, contents: Uint8Array | string, baseDir: string) => writeFile(join(baseDir, file), contents),
    listFiles: (dir: string, baseDir: string) => readdir(join(baseDir, dir)).then((fs) => fs.filter((f) => f.endsWith(".ts")), () => null),
  });
  if (error) throw new Error(`asc failed for fixture ${name}: ${error.message}\n${stderr.toString()}`);
  // Rename is atomic: test files compiling the same fixture in parallel never see half a module.
  await rename(tmp, outFile);
  await pruneOlderBuilds(name, outFile);
  return new Uint8Array(await readFile(outFile));
}

/** Drops builds of this fixture from older sources (any process compiling now computes the same hash). */
async function pruneOlderBuilds(name: string, keep: string): Promise<void> {
  const pattern = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}-[0-9a-f]{16}\\.wasm$`);
  for (const f of await readdir(OUT)) {
    if (pattern.test(f) && f !== basename(keep)) await unlink(join(OUT, f)).catch(() => undefined);
  }
}

async function listTs(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((f) => f.endsWith(".ts")).sort().map((f) => join(dir, f));
  } catch {
    return [];
  }
}

/** Starts a host on a compiled fixture. */
/**
 * Starts a fixture. The ABI tests look at one behaviour at a time, so the canary and the main-thread VM
 * are off unless a test asks for them (test/host/vm-lifecycle.test.ts does); the plugin's tests run the
 * whole lifecycle (ProxyWasmHost's defaults).
 */
export async function startFixture(name: string, options: Omit<HostOptions, "wasm"> = {}): Promise<ProxyWasmHost> {
  return ProxyWasmHost.start({ canary: false, mainThread: false, ...options, wasm: await buildFixture(name) });
}

/** Value of the first header `key` in pairs (test convenience). */
export function header(pairs: readonly (readonly [string, string])[] | null, key: string): string | undefined {
  return pairs?.find(([k]) => k === key)?.[1];
}
