// Unauthenticated bodies vs. a viewer's reads (issue 16 item 2): a viewer's GET latency while BENCH_ATTACKERS
// (8) clients send BENCH_BODY_MB (1 MiB) deeply nested JSON bodies without a token, against the same GET
// with no attack (the baseline, same run, same control process). `tsx bench/auth-before-body.bench.ts`.
//
//   1. a fresh redis-server (test/support/redis.ts) and one control process (the real entry,
//      control/src/server.ts; prober off, DNS refresh off, otherwise production defaults); 20 models registered
//      so that the measured read has a body;
//   2. baseline: for BENCH_WINDOW_S (5 s) one client sends GET /v1/models with a viewer token, one after the
//      other, on a kept-alive connection: latency p50 / p99 / max;
//   3. attack: the same measurement while a worker thread (its own event loop, so the attackers' work does
//      not colour the measuring client) runs BENCH_ATTACKERS loops, each: connect, send POST /v1/models with
//      no token and a `[[[[…]]]]` body of BENCH_BODY_MB MiB, wait for the answer (or the connection closing),
//      repeat. Counted: attack requests answered, by status, and those the server closed without an answer;
//   4. ratio = p50 under attack / baseline p50 (1.0 = the attack costs the viewer nothing).
// The control's CPU time over each window (utime+stime from /proc) is reported too.
import { Worker } from "node:worker_threads";
import { Agent, request } from "node:http";
import { freePort, startRedis, type RedisServer } from "../test/support/redis.js";
import { ADMIN, client, PLUGIN, VIEWER } from "../test/control/harness.js";
import { startControlProcess, type ControlProcess } from "./control-scale/children.js";
import { bounded, fmt, machineEnd, machineLines, machineStart, markdownTable, pct, procStat, sleep, writeResult } from "./support.js";

const num = (name: string, def: number) => {
  const v = process.env[name];
  const n = v === undefined || v === "" ? def : Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number`);
  return n;
};
const WINDOW_S = num("BENCH_WINDOW_S", 5);
const ATTACKERS = Math.max(1, Math.round(num("BENCH_ATTACKERS", 8)));
const BODY_MB = num("BENCH_BODY_MB", 1);
const LIMIT_S = num("BENCH_LIMIT_S", 120);
const log = (s: string) => console.error(s);

let redis: RedisServer | null = null;
let ctl: ControlProcess | null = null;
let worker: Worker | null = null;

interface Window {
  gets: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  non_200: number;
  control_cpu_seconds: number;
}

/** Viewer GETs one after the other for WINDOW_S seconds on one kept-alive connection. */
async function measure(url: string, pid: number): Promise<Window> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const { hostname, port } = new URL(url);
  const get = () =>
    new Promise<number>((resolve, reject) => {
      const req = request({ host: hostname, port: Number(port), path: "/v1/models", agent, headers: { authorization: `Bearer ${VIEWER}` } }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end();
    });
  const ms: number[] = [];
  let non200 = 0;
  const cpu0 = procStat(pid)?.cpuSeconds ?? NaN;
  const end = performance.now() + WINDOW_S * 1000;
  while (performance.now() < end) {
    const t0 = performance.now();
    const status = await get();
    ms.push(performance.now() - t0);
    if (status !== 200) non200++;
  }
  agent.destroy();
  return { gets: ms.length, p50_ms: pct(ms, 50), p99_ms: pct(ms, 99), max_ms: Math.max(...ms), non_200: non200, control_cpu_seconds: (procStat(pid)?.cpuSeconds ?? NaN) - cpu0 };
}

/** The attackers, in a worker thread (plain JS: workers do not go through tsx). */
const ATTACK = `
const { parentPort, workerData } = require("node:worker_threads");
const net = require("node:net");
const { host, port, attackers, bytes } = workerData;
const half = bytes / 2;
const body = Buffer.concat([Buffer.alloc(half, "["), Buffer.alloc(half, "]")]);
const head = Buffer.from("POST /v1/models HTTP/1.1\\r\\nhost: bench\\r\\ncontent-type: application/json\\r\\ncontent-length: " + bytes + "\\r\\n\\r\\n");
const counts = { answered: {}, closed_without_answer: 0 };
let stop = false;
parentPort.on("message", (m) => { if (m === "stop") { stop = true; setTimeout(() => { parentPort.postMessage(counts); process.exit(0); }, 200); } });
function once() {
  return new Promise((resolve) => {
    const s = net.createConnection({ host, port });
    let got = "";
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      const m = /^HTTP\\/1\\.1 (\\d+)/.exec(got);
      if (m) counts.answered[m[1]] = (counts.answered[m[1]] || 0) + 1; else counts.closed_without_answer++;
      s.destroy();
      resolve();
    };
    s.setEncoding("latin1");
    s.on("data", (d) => { got += d; if (got.includes("\\r\\n\\r\\n")) { const l = /content-length: (\\d+)/i.exec(got); const at = got.indexOf("\\r\\n\\r\\n") + 4; if (!l || got.length - at >= Number(l[1])) finish(); } });
    s.on("close", finish);
    s.on("error", finish);
    s.write(head);
    s.write(body);
  });
}
async function loop() { while (!stop) await once(); }
for (let i = 0; i < attackers; i++) loop();
parentPort.postMessage("started");
`;

function startAttack(url: string): Promise<Worker> {
  const { hostname, port } = new URL(url);
  const w = new Worker(ATTACK, { eval: true, workerData: { host: hostname, port: Number(port), attackers: ATTACKERS, bytes: Math.round(BODY_MB * 1024 * 1024 / 2) * 2 } });
  return new Promise((resolve, reject) => {
    w.once("message", () => resolve(w));
    w.once("error", reject);
  });
}

function stopAttack(w: Worker): Promise<{ answered: Record<string, number>; closed_without_answer: number }> {
  return new Promise((resolve) => {
    w.once("message", (m) => resolve(m));
    w.postMessage("stop");
  });
}

async function cleanup(): Promise<void> {
  await worker?.terminate();
  worker = null;
  await ctl?.stop();
  ctl = null;
  await redis?.close();
  redis = null;
}

await bounded(LIMIT_S * 1000, cleanup, async () => {
  const machine = machineStart();
  redis = await startRedis();
  ctl = await startControlProcess(
    { REDIS_URL: redis.url, CONTROL_ADMIN_TOKENS: ADMIN, CONTROL_VIEWER_TOKENS: VIEWER, CONTROL_PLUGIN_TOKENS: PLUGIN, PROBE_TICK_MS: "0", DNS_REFRESH_MS: "0", LOG_LEVEL: "warn" },
    { port: await freePort(), label: "control" },
  );
  const api = client(ctl.url);
  for (let k = 0; k < 20; k++) {
    const r = await api("POST", "/v1/models", { body: { name: `bench-model-${k}`, aliases: [`bench-alias-${k}`] } });
    if (r.status !== 201) throw new Error(`model: ${r.status} ${r.text}`);
  }
  await measure(ctl.url, ctl.pid); // warm-up, not reported
  log(`auth-before-body: baseline, ${WINDOW_S} s of viewer GET /v1/models`);
  const baseline = await measure(ctl.url, ctl.pid);
  log(`auth-before-body: ${ATTACKERS} clients sending ${BODY_MB} MiB nested bodies without a token`);
  worker = await startAttack(ctl.url);
  await sleep(200);
  const attacked = await measure(ctl.url, ctl.pid);
  const attack = await stopAttack(worker);
  await worker.terminate();
  worker = null;
  machineEnd(machine);

  const ratio = attacked.p50_ms / baseline.p50_ms;
  const head = ["viewer GET /v1/models", "GETs", "p50 ms", "p99 ms", "max ms", "non-200", "control CPU s"];
  const row = (name: string, w: Window) => [name, String(w.gets), fmt(w.p50_ms, 2), fmt(w.p99_ms, 2), fmt(w.max_ms, 1), String(w.non_200), fmt(w.control_cpu_seconds, 2)];
  const rows = [row("no attack (baseline)", baseline), row(`${ATTACKERS} × ${BODY_MB} MiB unauthenticated bodies`, attacked)];
  const answered = Object.entries(attack.answered).map(([s, c]) => `${c} × ${s}`).join(", ") || "none";
  const lines = [
    ...machineLines(machine),
    "",
    markdownTable(head, rows),
    "",
    `p50 under attack / baseline p50: ${fmt(ratio, 2)}×`,
    `attack requests: answered ${answered}; closed without an answer ${attack.closed_without_answer}`,
  ];
  console.log(lines.join("\n"));
  const file = writeResult("auth-before-body", { date: new Date().toISOString(), machine, settings: { window_s: WINDOW_S, attackers: ATTACKERS, body_mb: BODY_MB }, baseline, attacked, ratio_p50: ratio, attack, table: { head, rows } });
  log(`written: ${file}`);
  if (ctl.errors > 0) log(`control logged ${ctl.errors} errors: ${JSON.stringify(ctl.messages)}`);
});
