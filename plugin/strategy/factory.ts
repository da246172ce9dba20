// Chooses the picker for a deployment when a table is compiled.
import { Picker } from "./picker";
import { RoundRobin } from "./round_robin";
import { SmoothWeightedRoundRobin } from "./weighted_round_robin";
import { Failover } from "./failover";
import { StrategyKind } from "../table/document";

function allEqual(w: StaticArray<i32>, n: i32): bool {
  for (let i = 1; i < n; i++) if (unchecked(w[i]) != unchecked(w[0])) return false;
  return true;
}

/**
 * weights/priorities: of the candidates, in candidate order (for failover already sorted by
 * priority, stable). start: the worker's sequence number.
 */
export function makePicker(kind: u8, weights: StaticArray<i32>, priorities: StaticArray<i32>, start: u32): Picker {
  const n = weights.length;
  if (kind == StrategyKind.WeightedRoundRobin) return new SmoothWeightedRoundRobin(weights, start);
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
