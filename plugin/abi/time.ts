// Clock and tick period.
import { proxy_get_current_time_nanoseconds, proxy_set_tick_period_milliseconds } from "./imports";
import { Status } from "./types";

const TIME_OUT: usize = memory.data(8);

/** Wall-clock milliseconds as the host sees them (0 if unavailable). */
export function nowMs(): u64 {
  store<u64>(TIME_OUT, 0);
  if (proxy_get_current_time_nanoseconds(TIME_OUT) != Status.Ok) return 0;
  return load<u64>(TIME_OUT) / 1_000_000;
}

/** Wall-clock nanoseconds as the host sees them (0 if unavailable). */
export function nowNs(): u64 {
  store<u64>(TIME_OUT, 0);
  if (proxy_get_current_time_nanoseconds(TIME_OUT) != Status.Ok) return 0;
  return load<u64>(TIME_OUT);
}

export function setTickPeriod(ms: u32): u32 {
  return proxy_set_tick_period_milliseconds(ms);
}
