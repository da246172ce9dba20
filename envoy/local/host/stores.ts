import { Status, type MetricTypeName } from "./abi.js";
import type { MetricSnapshot } from "./types.js";

const utf8 = new TextEncoder();

/**
 * Process-wide shared data, one key space per vm_id, like cpp-host's SharedData: a set on an existing
 * key with a non-zero cas that differs from the stored one is CasMismatch; cas 0 (or a new key, whatever
 * cas is given) always succeeds; every successful set takes the next value of one process-wide cas
 * counter (starting at 1, skipping 0 on wrap). A vm_id's space is deleted when the last VM holding that
 * vm_id is gone (cpp-host VmIdHandle → SharedData::deleteByVmId): hosts attach while they run.
 */
export class SharedData {
  private readonly spaces = new Map<string, Map<string, { value: Uint8Array; cas: number }>>();
  private readonly holders = new Map<string, number>();
  private nextCasValue = 1;

  /** A (base) VM of `vmId` starts: the space lives at least as long as it does. */
  attach(vmId = ""): void {
    this.holders.set(vmId, (this.holders.get(vmId) ?? 0) + 1);
  }

  /** A holder of `vmId` is gone; the last one deletes the space. Returns true when it was deleted. */
  detach(vmId = ""): boolean {
    const n = (this.holders.get(vmId) ?? 0) - 1;
    if (n > 0) {
      this.holders.set(vmId, n);
      return false;
    }
    this.holders.delete(vmId);
    this.spaces.delete(vmId);
    return true;
  }

  get(key: string, vmId = ""): { value: Uint8Array; cas: number } | undefined {
    return this.spaces.get(vmId)?.get(key);
  }

  /** Returns a proxy_status_t (Ok or CasMismatch). */
  set(key: string, value: Uint8Array | string, cas = 0, vmId = ""): number {
    let space = this.spaces.get(vmId);
    if (!space) this.spaces.set(vmId, (space = new Map()));
    const existing = space.get(key);
    if (existing && cas !== 0 && cas !== existing.cas) return Status.CasMismatch;
    space.set(key, { value: typeof value === "string" ? utf8.encode(value) : value.slice(), cas: this.nextCas() });
    return Status.Ok;
  }

  keys(vmId = ""): string[] {
    return [...(this.spaces.get(vmId)?.keys() ?? [])];
  }

  private nextCas(): number {
    const cas = this.nextCasValue;
    this.nextCasValue = (this.nextCasValue + 1) >>> 0;
    if (this.nextCasValue === 0) this.nextCasValue = 1;
    return cas;
  }
}

/** Shared queues (proxy_register/resolve/enqueue/dequeue_shared_queue), process-wide like cpp-host's. */
export class SharedQueues {
  private readonly tokens = new Map<string, number>();
  /** By token: the items, and the owner: the thread (worker index, or -1 for the main thread) and root context id. */
  readonly queues = new Map<number, { items: Uint8Array[]; worker: number; contextId: number }>();
  private nextToken = 1;

  register(vmId: string, name: string, worker: number, contextId: number): number {
    const key = `${vmId}\0${name}`;
    let token = this.tokens.get(key);
    if (token === undefined) this.tokens.set(key, (token = this.nextToken++));
    const q = this.queues.get(token);
    if (q) {
      q.worker = worker;
      q.contextId = contextId;
    } else this.queues.set(token, { items: [], worker, contextId });
    return token;
  }

  resolve(vmId: string, name: string): number {
    return this.tokens.get(`${vmId}\0${name}`) ?? 0;
  }

  /** The vm_id's last VM is gone: its queues (and their data) go too (cpp-host deleteByVmId). */
  deleteVmId(vmId: string): void {
    for (const [key, token] of this.tokens) {
      if (key.slice(0, key.indexOf("\0")) !== vmId) continue;
      this.tokens.delete(key);
      this.queues.delete(token);
    }
  }
}

/**
 * Envoy's stats store: a metric is one stat per name (and type), shared by every worker's VM, so
 * counters defined by 4 workers under one name add up, and a gauge set by one worker is seen by all.
 */
export class Metrics {
  private readonly byKey = new Map<string, MetricSnapshot>();

  stat(type: MetricTypeName, name: string): MetricSnapshot {
    const key = `${type}\0${name}`;
    let m = this.byKey.get(key);
    if (!m) this.byKey.set(key, (m = { type, value: 0, samples: [] }));
    return m;
  }

  /** The metric by the name the plugin defined (counter, then gauge, then histogram). */
  get(name: string): MetricSnapshot | undefined {
    return this.byKey.get(`counter\0${name}`) ?? this.byKey.get(`gauge\0${name}`) ?? this.byKey.get(`histogram\0${name}`);
  }

  names(): string[] {
    return [...this.byKey.keys()].map((k) => k.slice(k.indexOf("\0") + 1));
  }
}
