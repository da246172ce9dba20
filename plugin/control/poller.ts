// Polls the control service for the routing table (long poll with ETag). At most one call in flight
// per VM; only the lease holder calls (see lease.ts). Failures keep the last table and back off:
// 100 ms, doubling, up to poll_interval_ms (the root ticks faster than that until its first table).
// Each poll names this Envoy (`x-gateway-node: <node.id>`) when it has a usable node id, so the control
// service sends only what this Envoy has ACKed over xDS (issue 17; control/src/routing-table/node-view.ts).
import { Config } from "../config";
import { ByteWriter, utf8 } from "../abi/bytes";
import { callToken, httpCall } from "../abi/http_call";
import { Status } from "../abi/types";

const METHOD = utf8(":method");
const GET = utf8("GET");
const PATH = utf8(":path");
const AUTHORITY = utf8(":authority");
const AUTHORIZATION = utf8("authorization");
const IF_NONE_MATCH = utf8("if-none-match");
const ACCEPT = utf8("accept");
const NODE = utf8("x-gateway-node");
/** The control service looks up at most this much of a node id (control/xds/nodes.ts). */
const MAX_NODE_ID: i32 = 1024;

/**
 * The node id as a header value, or null when it cannot be one: empty, longer than MAX_NODE_ID, or with a
 * byte outside visible ASCII (a space, a control or non-ASCII byte: Envoy's header checks, and trimming by
 * HTTP, would make it another id). Without it the control service sends the complete table.
 */
export function nodeHeaderValue(id: ArrayBuffer | null): ArrayBuffer | null {
  if (id === null) return null;
  const n = id.byteLength;
  if (n == 0 || n > MAX_NODE_ID) return null;
  const p = changetype<usize>(id);
  for (let i = 0; i < n; i++) {
    const c = load<u8>(p + <usize>i);
    if (c < 0x21 || c > 0x7e) return null;
  }
  return id;
}
const JSON_TYPE = utf8("application/json");

/** Grace beyond the call timeout before a lost response stops blocking new polls. */
const LOST_CALL_GRACE_MS: u64 = 5000;
const FIRST_RETRY_MS: u64 = 100;

export class Poller {
  inFlight: bool = false;
  token: u32 = 0;
  sentAt: u64 = 0;
  /** Consecutive failed polls, and when the next may start. */
  failures: i32 = 0;
  retryAt: u64 = 0;
  private path: ArrayBuffer;
  private authority: ArrayBuffer;
  private bearer: ArrayBuffer | null = null;
  /** This Envoy's node id (validated by nodeHeaderValue), sent as x-gateway-node; null: not sent. */
  private node: ArrayBuffer | null = null;

  constructor(private config: Config, node: ArrayBuffer | null = null) {
    this.node = nodeHeaderValue(node);
    this.path = new ByteWriter(64).str(config.tablePath).str("?wait=").uint(<u64>config.longPollSeconds).toBuffer();
    this.authority = utf8(config.controlAuthority);
    const tok = config.controlToken;
    if (tok !== null) this.bearer = new ByteWriter(16 + tok.length).str("Bearer ").str(tok).toBuffer();
  }

  /** Starts a poll unless one is in flight. Returns the host status (Ok when started or busy). */
  maybePoll(version: u64, nowMs: u64): u32 {
    if (this.inFlight) {
      if (nowMs < this.sentAt + <u64>this.config.controlTimeoutMs + LOST_CALL_GRACE_MS) return Status.Ok;
      this.inFlight = false; // the host never answered: stop waiting for it
      this.failed(nowMs);
    }
    if (nowMs < this.retryAt) return Status.Ok;
    const pairs: ArrayBuffer[] = [METHOD, GET, PATH, this.path, AUTHORITY, this.authority, ACCEPT, JSON_TYPE];
    const bearer = this.bearer;
    if (bearer !== null) { pairs.push(AUTHORIZATION); pairs.push(bearer); }
    const node = this.node;
    if (node !== null) { pairs.push(NODE); pairs.push(node); }
    if (version > 0) {
      pairs.push(IF_NONE_MATCH);
      pairs.push(new ByteWriter(24).byte(0x22).uint(version).byte(0x22).toBuffer());
    }
    const st = httpCall(this.config.controlClusterBytes, pairs, null, <u32>this.config.controlTimeoutMs);
    if (st == Status.Ok) {
      this.inFlight = true;
      this.token = callToken;
      this.sentAt = nowMs;
    } else this.failed(nowMs);
    return st;
  }

  /** A poll failed (refused, no answer, or an answer other than 200/304): wait before the next. */
  failed(nowMs: u64): void {
    if (this.failures < 16) this.failures++;
    let wait = FIRST_RETRY_MS << <u64>(this.failures - 1);
    const cap = <u64>this.config.pollIntervalMs;
    if (wait > cap) wait = cap;
    this.retryAt = nowMs + wait;
  }

  succeeded(): void {
    this.failures = 0;
    this.retryAt = 0;
  }

  /** Is this response the answer to our call? Clears the in-flight state if so. */
  accept(token: u32): bool {
    if (!this.inFlight || token != this.token) return false;
    this.inFlight = false;
    return true;
  }
}
