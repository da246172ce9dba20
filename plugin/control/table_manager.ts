// A worker's routing table: validates and compiles candidate documents (from the control service or
// from shared data), adopts only whole valid documents with a newer version, keeps the previous table
// otherwise, counts refusals and logs each distinct refusal once.
import { Config } from "../config";
import { tableError, validateTable } from "../table/document";
import { compileTable, RoutingTable } from "../table/routing_table";
import { flushCounts, GatewayMetrics } from "../filter/metrics";
import { incrementMetric, recordMetric } from "../abi/metrics";
import { logInfo } from "../abi/log";
import { OnceLog } from "./once_log";
import { sharedLen, sharedPtr, sharedRelease } from "../abi/shared_data";
import { StatsRegistry } from "../telemetry/stats";
import { nowMs } from "../abi/time";
import { publishTable, readSharedTable, readSharedVersion } from "./shared_table";

export class TableManager {
  table: RoutingTable | null = null;
  /** Last shared version this worker tried (adopted or refused): not re-parsed until it changes. */
  private sharedTried: u64 = 0;
  private problems: OnceLog = new OnceLog();

  constructor(private config: Config, private metrics: GatewayMetrics, private workerSeq: u32, private registry: StatsRegistry) {}

  get version(): u64 {
    const t = this.table;
    return t === null ? 0 : t.version;
  }

  private refuse(reason: string): void {
    incrementMetric(this.metrics.tableRejected);
    this.problems.warn("routing table refused: " + reason + "; keeping " +
      (this.table === null ? "no table" : "version " + this.version.toString()));
  }

  private build(ptr: usize, len: usize, source: string): RoutingTable | null {
    const doc = validateTable(ptr, len, <usize>this.config.maxTableBytes);
    if (doc === null) {
      this.refuse(source + ": " + tableError);
      return null;
    }
    if (doc.version <= this.version) {
      this.refuse(source + ": version " + doc.version.toString() + " is not newer than " + this.version.toString());
      return null;
    }
    return compileTable(doc, this.config.apiPrefix, this.config.maxFallbacks, this.workerSeq, this.registry, nowMs());
  }

  private adopt(t: RoutingTable, source: string): void {
    this.flushCounts();
    this.table = t;
    this.registry.adopt(t);
    this.problems.clear();
    incrementMetric(this.metrics.tableAdopted);
    recordMetric(this.metrics.tableVersion, t.version);
    logInfo("adopted routing table version " + t.version.toString() + " from " + source + " (" +
      t.deployments.length.toString() + " deployments, " + t.instanceCount.toString() + " instances)");
  }

  /** Adds the batched request/pick counts to the Envoy counters. */
  flushCounts(): void {
    const t = this.table;
    if (t !== null) flushCounts(t);
  }

  /** A 200 body from the control service: adopt and publish it, or refuse it. */
  offerFromControl(ptr: usize, len: usize): bool {
    const t = this.build(ptr, len, "control service");
    if (t === null) return false;
    this.adopt(t, "control service");
    publishTable(t.version, ptr, len);
    this.sharedTried = t.version;
    return true;
  }

  /** Rejects a body without parsing it (e.g. larger than max_table_bytes). */
  refuseFromControl(reason: string): void {
    this.refuse("control service: " + reason);
  }

  /** Every tick: one small read; the full table only when its version moved past ours. */
  syncFromShared(): void {
    const v = readSharedVersion();
    if (v == 0 || v <= this.version || v == this.sharedTried) return;
    this.sharedTried = v;
    const bv = readSharedTable();
    if (bv == 0) return;
    if (bv <= this.version) { sharedRelease(); return; }
    const t = this.build(sharedPtr + 8, sharedLen - 8, "shared data");
    sharedRelease();
    if (t !== null) this.adopt(t, "shared data");
  }
}
