// A deployment's hot block (`Deployment.hot`): everything a routed request reads after the model
// lookup, and everything on_log reads to find the instance Envoy used, in one buffer. Header and picker
// state first (strategy/hot.ts), then one entry per pick position, each starting on a 64-byte line
// (the request touches its header line, maybe the picker state, and its own entry's one or two lines):
//
//   0 u32 offset (in the block) of the position's header values     4 u32 endpoint list length
//   8 u16 cluster, 10 u16 deployment id, 12 u16 instance id lengths
//   14 u8 flags: 1 rewrite :path, 2 the pick has an authorization value, 4 the deployment is reached by
//        names other than the one its engine serves (the body's "model" may need a rewrite), 8 the
//        deployment forwards client credentials
//   15 u8 hosts in the endpoint list (pick + fallbacks, ≤ 9)          16 u32 picks not yet collected
//   20 u32 the pick's address length (the endpoint list's first entry) 24 i32 the pick's stats slot
//   28 u32 offset of the fallbacks: (hosts − 1) × (i32 stats slot, u32 address length), in list order
//   32.. the header values back to back (endpoint list, cluster, deployment id, instance id); with
//        flag 2, the authorization (u32 address of the Instance's authorizationBytes, u32 length:
//        the 8 bytes right before the fallbacks); then the fallbacks.
//
// The authorization value is pointed at, not copied: it may be 4200 bytes, and the stride is the
// largest entry of the block. The bytes belong to the Instance, which lives as long as its Deployment
// (so as long as any hot block of it); a table without authorization values has the same entries as
// before.
//
// The stats slots are telemetry/stats.ts records: on_log counts into them without touching a Position,
// Instance or InstanceStats object. A slot stays its instance's while a stream can still count into
// it (stats.ts, "Slot lifetime").
import { HOT_AFFINITY, HOT_N, HOT_RECORDS, HOT_REQUESTS, HOT_STATE, HOT_STRIDE } from "../strategy/hot";
import { AffinityPlan } from "../strategy/affinity";
import { Picker } from "../strategy/picker";
import { Deployment, Position } from "./routing_table";

export namespace HotRec {
  @inline export const VALUES: usize = 0;
  @inline export const ENDPOINT_LEN: usize = 4;
  @inline export const CLUSTER_LEN: usize = 8;
  @inline export const DEPLOYMENT_LEN: usize = 10;
  @inline export const INSTANCE_LEN: usize = 12;
  /** Flags (HotFlag). */
  @inline export const FLAGS: usize = 14;
  @inline export const HOSTS: usize = 15;
  @inline export const PICKS: usize = 16;
  @inline export const PICK_LEN: usize = 20;
  @inline export const SLOT: usize = 24;
  @inline export const FALLBACKS: usize = 28;
  /** Size of the fixed part; the values follow. */
  @inline export const SIZE: usize = 32;
  /** With HotFlag.AUTHORIZATION: the authorization's address and length, 8 bytes before FALLBACKS. */
  @inline export const AUTHORIZATION_BEFORE_FALLBACKS: usize = 8;
}

export namespace HotFlag {
  @inline export const REWRITE: u8 = 1;
  @inline export const AUTHORIZATION: u8 = 2;
  @inline export const RENAMES: u8 = 4;
  @inline export const FORWARD_CREDENTIALS: u8 = 8;
}

/** The entry of position `pos` in the hot block at `b`; callers keep `pos` in [0, n) of that block. */
@inline export function hotRecord(b: usize, pos: i32): usize {
  return b + <usize>load<u32>(b, HOT_RECORDS) + <usize>pos * <usize>load<u32>(b, HOT_STRIDE);
}

/** `affinity`: the session-affinity section, after the picker state (null: none). */
export function buildHot(picker: Picker, positions: StaticArray<Position>, affinity: AffinityPlan | null = null): ArrayBuffer {
  const n = positions.length;
  let stride = HotRec.SIZE;
  for (let k = 0; k < n; k++) {
    const p = unchecked(positions[k]);
    const auth: usize = p.instance.authorizationBytes === null ? 0 : HotRec.AUTHORIZATION_BEFORE_FALLBACKS;
    const e = HotRec.SIZE + <usize>p.values.byteLength + auth + (<usize>(p.hosts.length - 1) << 3);
    if (e > stride) stride = e;
  }
  stride = (stride + 63) & ~<usize>63;
  let head = HOT_STATE + <usize>picker.hotStateBytes();
  let affinityAt: usize = 0;
  if (affinity !== null) {
    affinityAt = (head + 7) & ~<usize>7;
    head = affinityAt + affinity.bytes();
  }
  // The block's own address is only 16-byte aligned: 63 spare bytes let the entries start on a line.
  const hot = new ArrayBuffer(<i32>(head + 63 + <usize>n * stride));
  const b = changetype<usize>(hot);
  const records = ((b + head + 63) & ~<usize>63) - b; // in [head, head + 63]: every entry fits
  picker.writeHot(b);
  if (affinity !== null) {
    affinity.write(b + affinityAt);
    store<u32>(b, <u32>affinityAt, HOT_AFFINITY);
  }
  store<i32>(b, n, HOT_N);
  store<u32>(b, <u32>records, HOT_RECORDS);
  store<u32>(b, <u32>stride, HOT_STRIDE);
  for (let k = 0; k < n; k++) {
    const p = unchecked(positions[k]);
    const rec = b + records + <usize>k * stride;
    const len = <usize>p.values.byteLength;
    const values = records + <usize>k * stride + HotRec.SIZE;
    const hosts = p.hosts;
    store<u32>(rec, <u32>values, HotRec.VALUES);
    store<u32>(rec, <u32>p.endpointLen, HotRec.ENDPOINT_LEN);
    store<u16>(rec, <u16>p.clusterLen, HotRec.CLUSTER_LEN);
    store<u16>(rec, <u16>p.deploymentLen, HotRec.DEPLOYMENT_LEN);
    store<u16>(rec, <u16>p.instanceLen, HotRec.INSTANCE_LEN);
    const authorization = p.instance.authorizationBytes;
    store<u8>(rec, (p.rewrite ? HotFlag.REWRITE : 0) | (authorization !== null ? HotFlag.AUTHORIZATION : 0) |
      (p.instance.deployment.renames ? HotFlag.RENAMES : 0) |
      (p.instance.deployment.forwardCredentials ? HotFlag.FORWARD_CREDENTIALS : 0), HotRec.FLAGS);
    store<u8>(rec, <u8>hosts.length, HotRec.HOSTS);
    store<u32>(rec, <u32>p.pickLen, HotRec.PICK_LEN);
    store<i32>(rec, p.instance.stats.slot, HotRec.SLOT);
    memory.copy(b + values, changetype<usize>(p.values), len);
    let f = b + values + len;
    if (authorization !== null) {
      store<u32>(f, <u32>changetype<usize>(authorization));
      store<u32>(f, <u32>authorization.byteLength, 4);
      f += HotRec.AUTHORIZATION_BEFORE_FALLBACKS;
    }
    store<u32>(rec, <u32>(f - b), HotRec.FALLBACKS);
    for (let i = 1; i < hosts.length; i++, f += 8) {
      const h = unchecked(hosts[i]);
      store<i32>(f, h.stats.slot);
      store<u32>(f, <u32>h.addressBytes.byteLength, 4);
    }
  }
  return hot;
}

/**
 * Moves the requests and picks counted in `d`'s hot block to `d.pendingRequests` and its instances'
 * pendingPicks (before a flush or a rebuild).
 */
export function collectPicks(d: Deployment): void {
  const hot = d.hot;
  if (hot === null) return;
  const b = changetype<usize>(hot);
  d.pendingRequests += <i64>load<u32>(b, HOT_REQUESTS);
  store<u32>(b, 0, HOT_REQUESTS);
  const positions = d.positions;
  const n = load<i32>(b, HOT_N);
  if (n != positions.length) return; // built together; defensive
  for (let k = 0; k < n; k++) {
    const rec = hotRecord(b, k);
    const picks = load<u32>(rec, HotRec.PICKS);
    if (picks == 0) continue;
    unchecked(positions[k]).instance.pendingPicks += <i64>picks;
    store<u32>(rec, 0, HotRec.PICKS);
  }
}
