/**
 * Real-Envoy check of the documents in envoy/. Runs only where an Envoy binary exists
 * (ENVOY_BIN, or `envoy` on PATH); elsewhere every test here reports SKIPPED with the reason —
 * never passed. Where it runs: Envoy's version must be >= 1.35 (override_host,
 * allow_on_headers_stop_iteration), and Envoy itself must accept envoy/bootstrap.yaml — and the
 * bootstrap with the per-deployment cluster example added as a static cluster — in
 * `--mode validate`, which builds every listener, filter (wasm VM included) and cluster without
 * serving traffic. This is the check our proto-based validator (test/envoy/) cannot replace:
 * extensions actually compiled in, files readable, Envoy's own semantic checks.
 * The traffic e2e (requests through Envoy's listener) is gateway.e2e.test.ts; the bootstrap it
 * generates is checked everywhere by bootstrap.test.ts.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { parseDocuments } from "../../envoy/validate/documents.js";
import { MIN_ENVOY as MIN, findEnvoy, parseEnvoyVersion } from "./support/envoy.js";
import { e2eBootstrap } from "./support/bootstrap.js";

export { parseEnvoyVersion };

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const { bin, why } = findEnvoy();
const skip = bin ? false : `SKIPPED: ${why}`;

function envoy(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(bin!, args, { cwd: REPO, encoding: "utf8", timeout: 60_000 });
  return { status: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? String(r.error) : ""}` };
}

describe("real Envoy", () => {
  test("version parser (runs everywhere)", () => {
    assert.deepEqual(parseEnvoyVersion("envoy  version: 6c7f0fd0a0c5e3c8a3b1e8b0b0f1a2d3e4f5a6b7/1.35.2/Clean/RELEASE/BoringSSL"), [1, 35, 2]);
    assert.equal(parseEnvoyVersion("nothing"), undefined);
  });

  test(`Envoy version >= ${MIN.join(".")}`, { skip }, () => {
    const r = envoy(["--version"]);
    assert.equal(r.status, 0, r.out);
    const v = parseEnvoyVersion(r.out);
    assert.ok(v, `cannot read the version from: ${r.out}`);
    assert.ok(v[0] > MIN[0] || (v[0] === MIN[0] && v[1] >= MIN[1]), `Envoy ${v.join(".")} < ${MIN.join(".")}: override_host and allow_on_headers_stop_iteration need 1.35`);
  });

  test("envoy --mode validate -c envoy/bootstrap.yaml", { skip }, () => {
    assert.ok(existsSync(join(REPO, "build/plugin.wasm")), "build/plugin.wasm missing: npm run build:plugin (the bootstrap loads it from there)");
    const r = envoy(["--mode", "validate", "-c", "envoy/bootstrap.yaml", "--log-level", "warn"]);
    assert.equal(r.status, 0, r.out);
  });

  test("bootstrap + per-deployment cluster example as a static cluster, --mode validate", { skip }, () => {
    assert.ok(existsSync(join(REPO, "build/plugin.wasm")), "build/plugin.wasm missing: npm run build:plugin");
    const boot = parseDocuments(readFileSync(join(REPO, "envoy/bootstrap.yaml"), "utf8"))[0]!.value as Record<string, any>;
    const cluster = { ...(parseDocuments(readFileSync(join(REPO, "envoy/per-deployment-cluster.example.yaml"), "utf8"))[0]!.value as Record<string, any>) };
    delete cluster["@type"];
    boot.static_resources.clusters.push(cluster);
    const dir = mkdtempSync(join(tmpdir(), "envoy-e2e-"));
    const file = join(dir, "bootstrap.json");
    writeFileSync(file, JSON.stringify(boot));
    const r = envoy(["--mode", "validate", "-c", file, "--log-level", "warn"]);
    assert.equal(r.status, 0, r.out);
  });

  test("the traffic e2e's generated bootstrap (support/bootstrap.ts), --mode validate", { skip }, () => {
    assert.ok(existsSync(join(REPO, "build/plugin.wasm")), "build/plugin.wasm missing: npm run build:plugin");
    const { bootstrap } = e2eBootstrap({ nodeId: "validate", adminPort: 19901, listenerPort: 19000, controlPort: 18080, adsPort: 18000, saasPort: 18443, pluginToken: "plugin-token-0123456789abcdef" });
    const dir = mkdtempSync(join(tmpdir(), "envoy-e2e-"));
    const file = join(dir, "e2e-bootstrap.json");
    writeFileSync(file, JSON.stringify(bootstrap));
    const r = envoy(["--mode", "validate", "-c", file, "--log-level", "warn"]);
    assert.equal(r.status, 0, r.out);
  });

  test("the REST fallback (envoy/snippets/xds-rest.yaml in the bootstrap), --mode validate", { skip }, () => {
    assert.ok(existsSync(join(REPO, "build/plugin.wasm")), "build/plugin.wasm missing: npm run build:plugin");
    const { bootstrap } = e2eBootstrap({ nodeId: "validate", adminPort: 19901, listenerPort: 19000, controlPort: 18080, xds: "rest", saasPort: 18443, pluginToken: "plugin-token-0123456789abcdef" });
    const dir = mkdtempSync(join(tmpdir(), "envoy-e2e-"));
    const file = join(dir, "e2e-bootstrap-rest.json");
    writeFileSync(file, JSON.stringify(bootstrap));
    const r = envoy(["--mode", "validate", "-c", file, "--log-level", "warn"]);
    assert.equal(r.status, 0, r.out);
  });
});
