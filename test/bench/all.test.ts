// The `npm run bench` aggregator's README block: one table per bench that ran, a clear line for one that did not.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BENCHES, readmeSection } from "../../bench/all.js";

const machine = { cpu: "Test CPU", cores: 2, node: "v20.0.0", platform: "linux x64", loadStart: [1, 1, 1], loadEnd: [2, 2, 2] };

test("every bench the aggregator runs exists as a file", async () => {
  const { existsSync } = await import("node:fs");
  for (const b of BENCHES) assert.ok(existsSync(new URL(`../../bench/${b.file}`, import.meta.url)), b.file);
});

test("README block: the tables of the benches that ran, the machine, and which did not run", () => {
  const [a, b] = BENCHES;
  const s = readmeSection(
    [
      { bench: a!, code: 0, seconds: 12, file: "x.json", result: { table: { head: ["case", "ns"], rows: [["1×4", "900"]] } } },
      { bench: b!, code: 1, seconds: 3, file: null, result: null },
    ],
    machine,
    "2026-11-27T00:00:00.000Z",
  );
  assert.match(s, /^<!-- bench:start -->\n/);
  assert.match(s, /\n<!-- bench:end -->$/);
  assert.match(s, /machine: Test CPU, 2 cores/);
  assert.match(s, /\| case \|\s+ns \|/);
  assert.match(s, /\| 1×4\s+\|\s+900 \|/);
  assert.match(s, new RegExp(`bench:${b!.name}.*\\n\\nNot measured in this run: the bench exited with 1`));
});

test("README block: a bench left out by BENCH_ONLY shows its earlier table, marked with that run's date", () => {
  const [a] = BENCHES;
  const s = readmeSection(
    [{ bench: a!, code: 0, seconds: NaN, file: "old.json", earlier: true, result: { date: "2026-11-26T10:00:00.000Z", machine, table: { head: ["case", "ns"], rows: [["1×4", "800"]] } } }],
    machine,
    "2026-11-27T00:00:00.000Z",
  );
  assert.match(s, /not run this time: the result of 2026-11-26T10:00:00\.000Z on Test CPU, 2 cores, load 1\.00/);
  assert.match(s, /\| 1×4\s+\|\s+800 \|/);
  assert.doesNotMatch(s, /NaN/);
});
