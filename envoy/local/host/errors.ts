import type { LogEntry } from "./types.js";

/** Envoy would refuse to load or start the plugin (bad module, failed on_vm_start/on_configure, ...). */
export class HostError extends Error {
  override readonly name = "HostError";
  constructor(
    message: string,
    /** The plugin's log lines up to the failure, so a test failure shows why the plugin said no. */
    readonly logs: readonly LogEntry[] = [],
  ) {
    super(logs.length === 0 ? message : `${message}\nplugin logs:\n${logs.map((l) => `  [w${l.worker} ${l.level}] ${l.message}`).join("\n")}`);
  }
}

/** A callback trapped (unreachable, abort, out-of-bounds, ...). The VM is failed from then on, as in Envoy. */
export class WasmTrap extends Error {
  override readonly name = "WasmTrap";
  constructor(
    readonly callback: string,
    readonly worker: number,
    readonly trapMessage: string,
    readonly logs: readonly LogEntry[] = [],
  ) {
    super(`wasm trap in ${callback} on worker ${worker}: ${trapMessage}` + (logs.length ? `\nlast plugin logs:\n${logs.map((l) => `  [${l.level}] ${l.message}`).join("\n")}` : ""));
  }
}
