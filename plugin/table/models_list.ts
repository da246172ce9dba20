// The `GET {api_prefix}/models` listing (OpenAI format), built once per compiled table:
//   {"object":"list","data":[{"id":…,"object":"model","created":0,"owned_by":<deployment id>},…]}
// Every model name/alias whose deployment has at least one instance, sorted by name (bytes; names
// are printable ASCII). Each model object is a span of the same body, so `…/models/{name}` answers
// with a slice of it (binary search over the sorted names): no allocation per request.
import { ByteWriter } from "../abi/bytes";

export class ModelsList {
  /** The whole listing (the 200 body). */
  body: ArrayBuffer;
  /** Listed names (UTF-8), sorted bytewise. */
  names: StaticArray<ArrayBuffer>;
  /** Per listed name: start, length of its object in `body`. */
  spans: StaticArray<i32>;

  constructor(body: ArrayBuffer, names: StaticArray<ArrayBuffer>, spans: StaticArray<i32>) {
    this.body = body;
    this.names = names;
    this.spans = spans;
  }

  /** Index of the name (raw bytes) among the listed names, or -1. */
  find(ptr: usize, len: usize): i32 {
    let lo = 0;
    let hi = this.names.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareBytes(unchecked(this.names[mid]), ptr, len);
      if (c == 0) return mid;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  @inline spanStart(i: i32): usize { return changetype<usize>(this.body) + <usize>unchecked(this.spans[i << 1]); }
  @inline spanLen(i: i32): usize { return <usize>unchecked(this.spans[(i << 1) + 1]); }
}

/** Bytewise order of a buffer against raw bytes (shorter prefix first). */
function compareBytes(a: ArrayBuffer, ptr: usize, len: usize): i32 {
  const al = <usize>a.byteLength;
  const n = al < len ? al : len;
  const c = n == 0 ? 0 : memory.compare(changetype<usize>(a), ptr, n);
  if (c != 0) return c;
  return al < len ? -1 : al > len ? 1 : 0;
}

function compareBuffers(a: ArrayBuffer, b: ArrayBuffer): i32 {
  return compareBytes(a, changetype<usize>(b), <usize>b.byteLength);
}

/**
 * names[i] (UTF-8) → owners[i] (deployment id); listed[i] false leaves a name out (its deployment has
 * no instance). Names are unique (the table's model keys).
 */
export function buildModelsList(names: ArrayBuffer[], owners: string[], listed: bool[]): ModelsList {
  const order = new Array<i32>();
  for (let i = 0; i < names.length; i++) if (unchecked(listed[i])) order.push(i);
  // Sort indexes by name bytes (the comparator reads a module-level array: AS has no closures).
  sortNames = names;
  order.sort((a: i32, b: i32): i32 => compareBuffers(unchecked(sortNames[a]), unchecked(sortNames[b])));
  sortNames = [];
  const n = order.length;
  const sorted = new StaticArray<ArrayBuffer>(n);
  const spans = new StaticArray<i32>(n << 1);
  const w = new ByteWriter(64 + n * 96);
  w.str('{"object":"list","data":[');
  for (let k = 0; k < n; k++) {
    const i = unchecked(order[k]);
    if (k > 0) w.byte(0x2c);
    const start = w.len;
    w.str('{"id":').jsonString(String.UTF8.decode(unchecked(names[i])))
      .str(',"object":"model","created":0,"owned_by":').jsonString(unchecked(owners[i])).byte(0x7d);
    unchecked(sorted[k] = unchecked(names[i]));
    unchecked(spans[k << 1] = start);
    unchecked(spans[(k << 1) + 1] = w.len - start);
  }
  w.str("]}");
  return new ModelsList(w.toBuffer(), sorted, spans);
}

let sortNames: ArrayBuffer[] = [];

/** No table compiled yet / an empty table. */
export function emptyModelsList(): ModelsList {
  return buildModelsList([], [], []);
}
