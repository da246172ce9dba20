/** A GET /v1/events client for tests: keeps every frame (fetch streaming, as the dashboard reads it). */
import type { StreamEvent } from "../../control/src/events/schemas.js";
import { waitFor } from "./harness.js";

export interface Frame {
  id?: string;
  event?: string;
  data?: string;
  retry?: number;
  comment?: string;
  /** performance.now() when the frame was read. */
  receivedAt: number;
}

/** A stream client that keeps every frame (fetch streaming; the page does the same). */
export async function stream(base: string, token: string | null, headers: Record<string, string> = {}) {
  const ac = new AbortController();
  const res = await fetch(`${base}/v1/events`, { headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers }, signal: ac.signal });
  const frames: Frame[] = [];
  let buf = "";
  const pump = (async () => {
    if (!res.ok || !res.body) return;
    const dec = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true });
      let k;
      while ((k = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, k);
        buf = buf.slice(k + 2);
        const f: Frame = { receivedAt: performance.now() };
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) f.comment = line.slice(1).trim();
          else {
            const c = line.indexOf(":");
            const [field, value] = [line.slice(0, c), line.slice(c + 1).replace(/^ /, "")];
            if (field === "id") f.id = value;
            else if (field === "event") f.event = value;
            else if (field === "data") f.data = value;
            else if (field === "retry") f.retry = Number(value);
          }
        }
        frames.push(f);
      }
    }
  })().catch(() => undefined);
  const events = () => frames.filter((f) => f.data !== undefined).map((f) => JSON.parse(f.data!) as StreamEvent & Record<string, unknown>);
  return {
    res,
    frames,
    events,
    /** The last id the client has seen (what it would send as Last-Event-ID). */
    lastId: () => [...frames].reverse().find((f) => f.id !== undefined)?.id,
    async until(pred: (e: StreamEvent & Record<string, unknown>) => boolean, what: string, ms = 5_000) {
      await waitFor(() => events().some(pred), ms, what);
      return events().find(pred)!;
    },
    async close() {
      ac.abort();
      await pump;
    },
  };
}
