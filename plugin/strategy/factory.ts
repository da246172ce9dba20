// Chooses the picker for a deployment when a table is compiled.
import { Picker } from "./picker";
import { RoundRobin } from "./round_robin";
import { SmoothWeightedRoundRobin } from "./weighted_round_robin";
import { Failover } from "./failover";
import { HOT_LA, HOT_LAT, HOT_LR, LoadPicker } from "./load";
import { isLoadAware, StrategyKind } from "../table/document";

function allEqual(w: StaticArray<i32>, n: i32): bool {
  for (let i = 1; i < n; i++) if (unchecked(w[i]) != unchecked(w[0])) return false;
  return true;
}

/**
 * weights/priorities/slots (stats records): of the candidates, in candidate order (for failover,
 * least_request and latency already sorted by priority, stable). start: the worker's sequence number.
 * seedUs/seedStamp: latency's probation value carried over from the deployment's previous block.
 */
export function makePicker(kind: u8, weights: StaticArray<i32>, priorities: StaticArray<i32>, start: u32,
  slots: StaticArray<i32>, seedUs: f64, seedStamp: u64): Picker {
  const n = weights.length;
  if (kind == StrategyKind.WeightedRoundRobin) return new SmoothWeightedRoundRobin(weights, start);
  if (isLoadAware(kind) && n > 0) {
    // The lowest tier present is picked from; the others are fallbacks in failover's order.
    let tier = 1;
    while (tier < n && unchecked(priorities[tier]) == unchecked(priorities[0])) tier++;
    const tw = new StaticArray<i32>(tier);
    const ts = new StaticArray<i32>(tier);
    for (let i = 0; i < tier; i++) { unchecked(tw[i] = weights[i]); unchecked(ts[i] = slots[i]); }
    const inner = new LoadPicker(kind == StrategyKind.LeastRequest ? HOT_LR : kind == StrategyKind.LoadAware ? HOT_LA : HOT_LAT, tw, ts, start, seedUs, seedStamp);
    return new Failover(n, tier, inner);
  }
  if (kind == StrategyKind.Failover && n > 0) {
    let tier = 1;
    while (tier < n && unchecked(priorities[tier]) == unchecked(priorities[0])) tier++;
    const tw = new StaticArray<i32>(tier);
    for (let i = 0; i < tier; i++) unchecked(tw[i] = weights[i]);
    const inner: Picker = allEqual(tw, tier) ? new RoundRobin(tier, start) : new SmoothWeightedRoundRobin(tw, start);
    return new Failover(n, tier, inner);
  }
  return new RoundRobin(n, start);
}
