/**
 * Publishes the plugin's SHA-256: writes the lower-case hex digest of build/plugin.wasm (and a
 * newline) to build/plugin.wasm.sha256 and prints it. That file's content is what Istio's
 * WasmPlugin `sha256` and Envoy Gateway's `code.http.sha256` / `code.image.sha256` expect.
 *
 *   tsx envoy/plugin-sha256.ts [--wasm build/plugin.wasm] [--out build/plugin.wasm.sha256]
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Writes `<hex>\n` to `out`; returns the digest. Throws if the wasm file is missing. */
export function publishSha256(wasm = "build/plugin.wasm", out = `${wasm}.sha256`): string {
  if (!existsSync(wasm)) throw new Error(`${wasm} not found: build the plugin first (npm run build:plugin)`);
  const digest = sha256Hex(readFileSync(wasm));
  writeFileSync(out, `${digest}\n`);
  return digest;
}

function main(argv: string[]): number {
  let wasm = "build/plugin.wasm";
  let out: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--wasm") wasm = argv[++i] ?? wasm;
    else if (argv[i] === "--out") out = argv[++i];
    else {
      console.error("usage: tsx envoy/plugin-sha256.ts [--wasm build/plugin.wasm] [--out build/plugin.wasm.sha256]");
      return 2;
    }
  }
  try {
    const target = out ?? `${wasm}.sha256`;
    const digest = publishSha256(wasm, target);
    console.log(`${digest}  ${wasm} -> ${target}`);
    return 0;
  } catch (e) {
    console.error(`plugin-sha256: ${(e as Error).message}`);
    return 1;
  }
}

// Run only as a script (the tests import publishSha256).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = main(process.argv.slice(2));
