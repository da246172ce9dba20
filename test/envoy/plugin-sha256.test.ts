import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { publishSha256, sha256Hex } from "../../envoy/plugin-sha256.js";
import { REPO } from "./support.js";

test("publishes the lower-case hex SHA-256 Istio/Envoy Gateway expect, one line", () => {
  const dir = mkdtempSync(join(tmpdir(), "sha-"));
  const wasm = join(dir, "plugin.wasm");
  writeFileSync(wasm, Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
  const digest = publishSha256(wasm);
  assert.equal(digest, sha256Hex(readFileSync(wasm)));
  assert.match(digest, /^[0-9a-f]{64}$/);
  assert.equal(readFileSync(`${wasm}.sha256`, "utf8"), `${digest}\n`);
  assert.equal(sha256Hex(Buffer.from("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
});

test("missing wasm: exit 1 with a hint to build", () => {
  const r = spawnSync(process.execPath, ["--import", "tsx", "envoy/plugin-sha256.ts", "--wasm", join(tmpdir(), "does-not-exist.wasm")], { cwd: REPO, encoding: "utf8" });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /build the plugin first/);
});
