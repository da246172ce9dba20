// Requests must die young (issue 19, envoy/local/README.md "Cost per request"). A long-lived Set or Map
// with an entry added and deleted per request (the data plane's exchanges in progress, a VM's contexts)
// made V8 keep whole requests alive through scavenges until the next full GC: ~5 KB promoted to old space
// per request, scavenges 6–11 ms. Each of the two such collections alone still promotes ~100× the bound
// below; without either, a few bytes per request are promoted.
// The load runs in a child process (retention.child.ts) with V8's GC trace on for the measured requests.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const REQUESTS = 6000;
/** Promoted bytes per request allowed (fixed: ~20; with either collection back: ≥ 2,000). */
const MAX_PROMOTED_PER_REQUEST = 500;

test("the local data plane's requests die young: almost nothing is promoted by scavenges under load", async () => {
  const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(new URL("./retention.child.ts", import.meta.url))], {
    env: { ...process.env, RETENTION_REQUESTS: String(REQUESTS) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  assert.equal(code, 0, `child failed: ${out.slice(-2000)}`);
  assert.match(out, new RegExp(`requests ${REQUESTS}`));
  const scavenges = out.split("\n").filter((l) => /\bgc=s\b/.test(l));
  assert.ok(scavenges.length >= 5, `enough scavenges to judge (${scavenges.length})`);
  const promoted = scavenges.reduce((a, l) => a + Number(/\bpromoted=(\d+)/.exec(l)?.[1] ?? NaN), 0);
  assert.ok(Number.isFinite(promoted), "V8 reports promoted bytes per scavenge");
  const perRequest = promoted / REQUESTS;
  assert.ok(
    perRequest <= MAX_PROMOTED_PER_REQUEST,
    `${perRequest.toFixed(0)} bytes promoted per request over ${scavenges.length} scavenges (≤ ${MAX_PROMOTED_PER_REQUEST}): ` +
      "something long-lived keeps per-request objects (a Set/Map with per-request entries, a listener on a reused socket, …)",
  );
});
