/**
 * The product parts never reach into the tests: plugin/, control/ and envoy/ (the local data plane and its
 * proxy-wasm host included) import nothing from test/. Checked on the import specifiers of every source file.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const TEST_DIR = join(ROOT, "test");

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (/\.(ts|js|mjs)$/.test(e.name)) out.push(p);
  }
  return out;
}

/** Relative specifiers of static imports, dynamic imports and re-exports. */
export function importSpecifiers(code: string): string[] {
  const specs: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']/g;
  for (let m = re.exec(code); m; m = re.exec(code)) specs.push(m[1]!);
  return specs;
}

test("the specifier scan finds static, dynamic and re-export imports", () => {
  assert.deepEqual(importSpecifiers(`import a from "./a.js";\nexport { b } from '../b.js';\nconst c = await import("../../test/c.js");\nimport "./side.js";`), ["./a.js", "../b.js", "../../test/c.js", "./side.js"]);
});

test("plugin/, control/ and envoy/ import nothing from test/", () => {
  const offenders: string[] = [];
  for (const part of ["plugin", "control", "envoy"]) {
    for (const file of sources(join(ROOT, part))) {
      for (const spec of importSpecifiers(readFileSync(file, "utf8"))) {
        if (!spec.startsWith(".")) continue;
        const target = resolve(dirname(file), spec);
        if (!relative(TEST_DIR, target).startsWith("..")) offenders.push(`${relative(ROOT, file)} → ${spec}`);
      }
    }
  }
  assert.deepEqual(offenders, []);
});
