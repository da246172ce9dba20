// Metrics (become Envoy stats). Envoy hands out a new id on every define even for a known name, so
// ids are cached per VM by name; callers cache the id in their own objects for the hot path.
import { proxy_define_metric, proxy_increment_metric, proxy_record_metric } from "./imports";
import { Status } from "./types";

export const NO_METRIC: u32 = 0xffffffff;
const ID_OUT: usize = memory.data(4);
const byName = new Map<string, u32>();

export function defineMetric(metricType: u32, name: string): u32 {
  if (byName.has(name)) return byName.get(name);
  const b = String.UTF8.encode(name);
  store<u32>(ID_OUT, 0);
  const st = proxy_define_metric(metricType, changetype<usize>(b), <usize>b.byteLength, ID_OUT);
  const id = st == Status.Ok ? load<u32>(ID_OUT) : NO_METRIC;
  byName.set(name, id);
  return id;
}

@inline export function incrementMetric(id: u32, delta: i64 = 1): void {
  if (id != NO_METRIC) proxy_increment_metric(id, delta);
}

@inline export function recordMetric(id: u32, value: u64): void {
  if (id != NO_METRIC) proxy_record_metric(id, value);
}
