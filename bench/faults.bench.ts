// `npm run bench:faults`: issue 20's fault table, long form (the short form runs in CI: test/faults/).
// Real Redis primary + 2 replicas + 3 sentinels, 3 control replicas, 2 local data planes, 4 mock instances,
// steady traffic (openai SDK, no client retries) and API writes; faults one at a time (test/faults/fleet.ts).
import { LONG, runFleet } from "../test/faults/fleet.js";
import { bounded, machineEnd, machineLines, machineStart, markdownTable, writeResult } from "./support.js";

const ms = (x: number) => (x <= 0 ? "—" : `${(x / 1000).toFixed(1)} s`);

await bounded(10 * 60_000, async () => undefined, async () => {
  const machine = machineStart();
  const t0 = Date.now();
  const r = await runFleet({ ...LONG, log: (l) => console.error(l) });
  machineEnd(machine);
  const head = ["fault", "client requests", "failed", "write attempts failed", "longest write", "all writers OK again", "every instance probed again", "data planes on the store's table"];
  const rows = r.rows.map((x) => [
    x.fault,
    String(x.requests),
    String(x.failed),
    `${x.writeFailures} of ${x.writeAttempts}`,
    ms(x.longestWriteMs),
    x.writeFailures === 0 ? "never failed" : `after ${ms(x.writesBackMs)}`,
    `after ${ms(x.probesBackMs)}`,
    `after ${ms(x.tablesBackMs)}${x.fault.includes("cut") ? " (from the restore)" : ""}`,
  ]);
  console.log(
    `faults: Redis 1 primary + 2 replicas + 3 sentinels (down-after 500 ms), 3 control replicas (lease ${LONG.leaseMs / 1000} s, WAIT auto), ` +
      `2 local data planes × ${LONG.clientsPerDataPlane} client loops, ${LONG.writers} API writers, 4 instances probed every 1 s; ` +
      `${LONG.steadyMs / 1000} s steady before each fault, cut ${LONG.cutMs / 1000} s; wall ${((Date.now() - t0) / 1000).toFixed(0)} s`,
  );
  for (const l of machineLines(machine)) console.log(l);
  console.log(markdownTable(head, rows));
  console.log(
    `acknowledged writes ${r.acknowledged}, lost ${r.lost.length}; unexpected API answers ${r.unexpected.length}; ` +
      `store table v${r.storeVersion}, data planes ${r.dataPlaneVersions.map((v) => `v${v}`).join(", ")} (${r.convergedMs} ms after writes stopped); client requests ${r.totalRequests}`,
  );
  console.log("Write attempts fail while Redis elects a primary (503, retried with the same Idempotency-Key on the next replica) and, after a replica dies, while the claim of a create that was in flight on it runs out (409 in progress, ≤ 5 s).");
  const file = writeResult("faults", { bench: "faults", date: new Date().toISOString(), machine, options: LONG, table: { head, rows }, result: r });
  console.log(`results: ${file}`);
  if (r.lost.length > 0 || r.unexpected.length > 0 || r.rows.some((x) => x.failed > 0)) throw new Error(`goal missed: lost ${r.lost.join(", ")} unexpected ${r.unexpected.join(" | ")}`);
});
