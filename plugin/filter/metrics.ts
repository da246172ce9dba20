// Metric names (Envoy stats; Envoy may prefix them, e.g. "wasmcustom."). Fixed metrics are defined
// at configure time; per-deployment/instance ones lazily on first use, their ids cached in the
// compiled table objects (defineMetric also caches by name, so a new table version reuses ids).
import { defineMetric, incrementMetric, NO_METRIC } from "../abi/metrics";
import { MetricType } from "../abi/types";
import { Deployment, RoutingTable } from "../table/routing_table";
import { collectPicks } from "../table/hot_block";
import { HOT_REQUESTS } from "../strategy/hot";

export class GatewayMetrics {
  unknownModel: u32 = NO_METRIC;
  noModel: u32 = NO_METRIC;
  badRequest: u32 = NO_METRIC;
  bodyTooLarge: u32 = NO_METRIC;
  tableRejected: u32 = NO_METRIC;
  tableAdopted: u32 = NO_METRIC;
  tableVersion: u32 = NO_METRIC;
  controlPolls: u32 = NO_METRIC;
  controlFailures: u32 = NO_METRIC;
  controlNotModified: u32 = NO_METRIC;
  modelsEndpoint: u32 = NO_METRIC;
  noTable: u32 = NO_METRIC;
  pathRefused: u32 = NO_METRIC;

  define(): void {
    this.unknownModel = defineMetric(MetricType.Counter, "gateway.unknown_model");
    this.noModel = defineMetric(MetricType.Counter, "gateway.no_model");
    this.badRequest = defineMetric(MetricType.Counter, "gateway.bad_request_body");
    this.bodyTooLarge = defineMetric(MetricType.Counter, "gateway.body_too_large");
    this.tableRejected = defineMetric(MetricType.Counter, "gateway.table.rejected");
    this.tableAdopted = defineMetric(MetricType.Counter, "gateway.table.adopted");
    this.tableVersion = defineMetric(MetricType.Gauge, "gateway.table.version");
    this.controlPolls = defineMetric(MetricType.Counter, "gateway.control.polls");
    this.controlFailures = defineMetric(MetricType.Counter, "gateway.control.failures");
    this.controlNotModified = defineMetric(MetricType.Counter, "gateway.control.not_modified");
    this.modelsEndpoint = defineMetric(MetricType.Counter, "gateway.models_endpoint");
    this.noTable = defineMetric(MetricType.Counter, "gateway.table_not_loaded");
    this.pathRefused = defineMetric(MetricType.Counter, "gateway.path_refused");
  }
}

function defineDeployment(d: Deployment): void {
  const prefix = "gateway.deployment." + d.id + ".";
  d.requestsMetric = defineMetric(MetricType.Counter, prefix + "requests");
  d.noEligibleMetric = defineMetric(MetricType.Counter, prefix + "no_eligible_instance");
  d.panicMetric = defineMetric(MetricType.Counter, prefix + "panic");
  d.metricsDefined = true;
}

/**
 * Routed requests and picks are counted in wasm memory and added to the Envoy counters on the next
 * tick (and before a table is replaced, and at shutdown): two fewer host calls per request, at the
 * price of stats lagging by at most one poll interval (Envoy flushes stats to sinks every 5 s anyway).
 * Picks are counted in the deployment's hot block (router.ts); a pick always follows countRequest, so
 * a deployment with uncollected picks is always in `dirtyDeployments`.
 */
export function countRequest(t: RoutingTable, d: Deployment): void {
  if (d.pendingRequests == 0) t.dirtyDeployments.push(d);
  d.pendingRequests++;
}

/**
 * countRequest for a request routed from the hot block `b` alone: counted in the block (collectPicks
 * moves it to `d`). The first count of a block lists `d`, which may list it twice (e.g. after a
 * rebuild): flushCounts skips a deployment already flushed.
 */
@inline export function countRequestHot(t: RoutingTable, d: Deployment, b: usize): void {
  const n = load<u32>(b, HOT_REQUESTS);
  if (n == 0) t.dirtyDeployments.push(d);
  store<u32>(b, n + 1, HOT_REQUESTS);
}

/** Rare outcomes are counted at once. */
export function countNoEligible(d: Deployment, panic: bool): void {
  if (!d.metricsDefined) defineDeployment(d);
  incrementMetric(d.noEligibleMetric);
  if (panic) incrementMetric(d.panicMetric);
}

export function flushCounts(t: RoutingTable): void {
  const ds = t.dirtyDeployments;
  for (let k = 0; k < ds.length; k++) {
    const d = unchecked(ds[k]);
    if (!d.metricsDefined) defineDeployment(d);
    collectPicks(d);
    if (d.pendingRequests == 0) continue; // listed twice: flushed already
    incrementMetric(d.requestsMetric, d.pendingRequests);
    d.pendingRequests = 0;
    const is = d.instances;
    for (let j = 0; j < is.length; j++) {
      const i = unchecked(is[j]);
      if (i.pendingPicks == 0) continue;
      if (!i.picksMetricDefined) {
        i.picksMetric = defineMetric(MetricType.Counter, "gateway.deployment." + i.deploymentId + ".instance." + i.id + ".picks");
        i.picksMetricDefined = true;
      }
      incrementMetric(i.picksMetric, i.pendingPicks);
      i.pendingPicks = 0;
    }
  }
  ds.length = 0;
}
