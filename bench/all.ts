// `npm run bench`: every benchmark, one after the other, each in its own process (so one bench's heap,
// timers and children never colour the next), then one combined JSON and the README's results section.
//
// Each bench writes bench/results/<name>-<date>.json with a `table: {head, rows}` (the table it printed)
// and its machine; this script collects the files written during this run, writes
// bench/results/all-<date>.json, and replaces the block between the bench markers in README.md.
// A bench that fails is reported (and the exit code says so) but does not stop the others.
// BENCH_ONLY=plugin,gateway runs a subset; BENCH_NO_README=1 leaves README.md alone.
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { RESULTS_DIR, machineEnd, machineLines, machineStart, markdownTable, writeResult, type Machine } from "./support.js";

interface Bench {
  name: string;
  file: string;
  what: string;
}

export const BENCHES: Bench[] = [
  { name: "plugin", file: "plugin.bench.ts", what: "Picker cost: ns/request through the test host by table size, against the no-op filter floor" },
  { name: "gateway", file: "gateway.bench.ts", what: "Gateway overhead: 4 weighted mock upstreams behind our local data plane, Portkey and nginx; added latency over direct" },
  { name: "propagation", file: "propagation.bench.ts", what: "Propagation: control API change → every worker VM of the local data plane routing by it, at 1, 4 and 8 workers" },
  { name: "detection", file: "detection.bench.ts", what: "Detection: instance killed → not picked; restored → picked again, against the 3·N + timeout bound" },
  { name: "control-scale", file: "control-scale.bench.ts", what: "Control-plane scale: CPU and memory of one control process probing 1k and 10k instances at N = 5 s" },
  { name: "balance", file: "balance.bench.ts", what: "Load balancing under real capacity: 4 engine mocks (one with a third of the slots), open-loop Poisson arrivals at 80 % of capacity; p99 wait = latency − the engine's service time" },
  { name: "faults", file: "faults.bench.ts", what: "Faults one at a time under traffic and API writes: Redis primary SIGKILLed (Sentinel), the control replica holding the probe lease SIGKILLed, one data plane's control connections cut; failed requests, lost writes, recovery times" },
  { name: "envoy-plugin", file: "envoy-plugin.bench.ts", what: "Plugin cost in real Envoy: Envoy CPU µs per header-routed request, plugin vs no-op filter vs router only (skipped without Envoy)" },
];

const README = fileURLToPath(new URL("../README.md", import.meta.url));
const START = "<!-- bench:start -->";
const END = "<!-- bench:end -->";

interface Outcome {
  bench: Bench;
  code: number | null;
  seconds: number;
  file: string | null;
  result: { date?: string; machine?: Machine; table?: { head: string[]; rows: string[][] } } | null;
  /** Not run this time (BENCH_ONLY): the newest earlier result. */
  earlier?: boolean;
}

function run(b: Bench): Promise<{ code: number | null; seconds: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    // stdio inherited: the bench's own table and progress are the live output.
    const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(new URL(b.file, import.meta.url))], { stdio: "inherit" });
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    process.on("SIGINT", forward).on("SIGTERM", forward);
    child.on("exit", (code, signal) => {
      process.off("SIGINT", forward).off("SIGTERM", forward);
      resolve({ code: code ?? (signal ? 128 : null), seconds: (performance.now() - t0) / 1000 });
    });
  });
}

/** The newest result of `name` written after `since` (file names carry the ISO date). */
function newestResult(name: string, since: Date): string | null {
  const stamp = (f: string) => f.slice(name.length + 1, -".json".length);
  const mine = readdirSync(RESULTS_DIR)
    .filter((f) => f.startsWith(`${name}-`) && f.endsWith(".json") && /^\d{4}-/.test(stamp(f)))
    .filter((f) => stamp(f) >= since.toISOString().replace(/:/g, "-"))
    .sort();
  return mine.length > 0 ? `${RESULTS_DIR}${mine[mine.length - 1]}` : null;
}

/** A bench not run this time: its newest result from an earlier run, if any. */
function earlier(b: Bench): Outcome | null {
  const file = newestResult(b.name, new Date(0));
  if (!file) return null;
  const result = JSON.parse(readFileSync(file, "utf8")) as Outcome["result"];
  return { bench: b, code: 0, seconds: NaN, file, result, earlier: true };
}

export function readmeSection(outcomes: Outcome[], machine: Machine, date: string): string {
  const out: string[] = [START, `Latest \`npm run bench\`: ${date}.`, "", ...machineLines(machine).map((l) => `- ${l}`), ""];
  for (const o of outcomes) {
    const when = o.earlier
      ? `not run this time: the result of ${o.result?.date ?? "an earlier run"}${o.result?.machine ? ` on ${o.result.machine.cpu}, ${o.result.machine.cores} cores, load ${o.result.machine.loadStart[0]?.toFixed(2)}` : ""}`
      : `${o.seconds.toFixed(0)} s`;
    out.push(`**${o.bench.what}** (\`npm run bench:${o.bench.name}\`, ${when})`, "");
    const t = o.result?.table;
    if (o.code !== 0 || !t) out.push(`Not measured in this run: the bench ${o.code !== 0 ? `exited with ${o.code}` : "wrote no table"}.`, "");
    else out.push(markdownTable(t.head, t.rows), "");
  }
  out.push(END);
  return out.join("\n");
}

async function main(): Promise<void> {
  const only = process.env.BENCH_ONLY?.split(",").map((s) => s.trim()).filter(Boolean);
  const todo = only ? BENCHES.filter((b) => only.includes(b.name)) : BENCHES;
  if (only && todo.length !== only.length) throw new Error(`BENCH_ONLY: unknown bench in ${only.join(",")}; known: ${BENCHES.map((b) => b.name).join(", ")}`);
  const machine = machineStart();
  const started = new Date();
  const outcomes: Outcome[] = [];
  for (const b of todo) {
    console.log(`\n=== bench ${b.name}: ${b.what}`);
    const { code, seconds } = await run(b);
    const file = newestResult(b.name, started);
    const result = file ? (JSON.parse(readFileSync(file, "utf8")) as Outcome["result"]) : null;
    outcomes.push({ bench: b, code, seconds, file, result });
  }
  // With BENCH_ONLY, the README keeps the others' newest tables, each marked with its own date.
  const shown = BENCHES.map((b) => outcomes.find((o) => o.bench === b) ?? earlier(b)).filter((o): o is Outcome => o !== null);
  machineEnd(machine);
  const date = started.toISOString();
  const all = writeResult("all", {
    bench: "all", date, machine,
    runs: outcomes.map((o) => ({ bench: o.bench.name, exit_code: o.code, seconds: o.seconds, result_file: o.file, table: o.result?.table ?? null })),
  });
  console.log(`\n=== summary (${all})`);
  for (const o of outcomes) console.log(`${o.bench.name.padEnd(14)} exit ${o.code}  ${o.seconds.toFixed(0).padStart(4)} s  ${o.file ?? "no result file"}`);
  if (!process.env.BENCH_NO_README) {
    const readme = readFileSync(README, "utf8");
    const a = readme.indexOf(START);
    const z = readme.indexOf(END);
    if (a < 0 || z < a) throw new Error(`README.md has no ${START} … ${END} block to replace`);
    writeFileSync(README, readme.slice(0, a) + readmeSection(shown, machine, date) + readme.slice(z + END.length));
    console.log("README.md: benchmark section updated");
  }
  if (outcomes.some((o) => o.code !== 0)) process.exitCode = 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  });
}
