// Logging through proxy_log (never WASI stdout). The host's level is cached (refreshed on configure
// and tick), so filtered-out messages cost one comparison and no string building when callers check
// `logEnabled` first.
import { proxy_get_log_level, proxy_log } from "./imports";
import { LogLevel, Status } from "./types";

let currentLevel: u32 = LogLevel.Info;
const LEVEL_OUT: usize = memory.data(4);

export function refreshLogLevel(): void {
  store<u32>(LEVEL_OUT, LogLevel.Info);
  if (proxy_get_log_level(LEVEL_OUT) == Status.Ok) currentLevel = load<u32>(LEVEL_OUT);
}

@inline export function logEnabled(level: u32): bool {
  return level >= currentLevel;
}

export function log(level: u32, message: string): void {
  if (level < currentLevel) return;
  const b = String.UTF8.encode(message);
  proxy_log(level, changetype<usize>(b), <usize>b.byteLength);
}

export function logDebug(message: string): void { log(LogLevel.Debug, message); }
export function logInfo(message: string): void { log(LogLevel.Info, message); }
export function logWarn(message: string): void { log(LogLevel.Warn, message); }
export function logError(message: string): void { log(LogLevel.Error, message); }
