// Child-process entry of the mock fleet (fleet.ts): options as JSON in argv[2]; driven over IPC.
//   → {type: "reset"}                      ← {type: "reset"}: forget every instance's last request
//   → {type: "open", instances}            opens a measurement window over the first `instances`
//   → {type: "close"}                      ← {type: "report", report: WindowReport}
//   → {type: "total"}                      ← {type: "total", total}
//   → {type: "mark"}                       ← {type: "marked"}: record each instance's first request from now
//   → {type: "markReport"}                 ← {type: "markReport", report: MarkReport}
//   ← {type: "ready"} once every listener is up, {type: "error", message} if one cannot listen.
import { Fleet, type FleetOptions } from "./fleet.js";

const opts = JSON.parse(process.argv[2] ?? "{}") as FleetOptions;
const fleet = new Fleet(opts);
const send = (m: unknown) => process.send?.(m);

process.on("message", (m: { type: string; instances?: number }) => {
  if (m.type === "reset") {
    fleet.resetLast();
    send({ type: "reset" });
  } else if (m.type === "open") {
    fleet.openWindow(m.instances ?? opts.count);
    send({ type: "opened" });
  } else if (m.type === "close") send({ type: "report", report: fleet.closeWindow() });
  else if (m.type === "total") send({ type: "total", total: fleet.total });
  else if (m.type === "mark") {
    fleet.mark();
    send({ type: "marked" });
  } else if (m.type === "markReport") send({ type: "markReport", report: fleet.markReport() });
});
process.on("disconnect", () => process.exit(0)); // the bench went away: never linger

try {
  await fleet.listen();
  send({ type: "ready" });
} catch (e) {
  send({ type: "error", message: e instanceof Error ? e.message : String(e) });
  process.exit(1);
}
