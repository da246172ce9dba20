/**
 * RFC 9112 §9.6 for a reply sent before the client finished its request (a 401 or 413 while it uploads, a
 * page answered without reading the body it was sent): with `connection: close` Node closes the socket as
 * soon as the response is flushed (socket.destroySoon()), with request bytes still unread — the kernel then
 * resets the connection, and a client still writing gets EPIPE / ECONNRESET, often before it has read the
 * reply. Instead, once the response is out, keep reading (discarding, never parsing) the rest of the request
 * until it ends — or `idleMs` pass without data, `maxBytes` arrive, `maxMs` pass — then half-close, and close
 * once the client has (at most `idleMs` later). What Envoy's `delayed_close_timeout` does.
 *
 * Used by the control service (http/body.ts) and the local data plane (envoy/local/dataplane.ts).
 */
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";

export interface LingerLimits {
  idleMs: number;
  maxBytes: number;
  maxMs: number;
}

/**
 * Arms `req`'s socket to close gracefully once its response is out. `lingering`: where the sockets doing so
 * are kept until they close (a server's close() can end them); each is armed once.
 */
export function lingerClose(req: IncomingMessage, limits: LingerLimits, lingering?: Set<Socket>): void {
  const sock = req.socket as Socket & { destroySoon: () => void; [ARMED]?: true };
  if (sock[ARMED]) return;
  sock[ARMED] = true;
  if (lingering) {
    lingering.add(sock);
    sock.once("close", () => lingering.delete(sock));
  }
  sock.destroySoon = () => {
    let bytes = 0;
    const timers: NodeJS.Timeout[] = [];
    const onData = (c: Buffer) => {
      bytes += c.length;
      if (bytes > limits.maxBytes) close();
      else timers[0]?.refresh();
    };
    const close = () => {
      for (const t of timers) clearTimeout(t);
      req.off("data", onData);
      req.off("end", close);
      if (sock.destroyed) return;
      sock.end();
      const t = setTimeout(() => sock.destroy(), limits.idleMs).unref();
      sock.once("close", () => clearTimeout(t));
    };
    if (req.complete) return close();
    req.on("data", onData);
    req.once("end", close);
    req.resume();
    timers.push(setTimeout(close, limits.idleMs).unref(), setTimeout(close, limits.maxMs).unref());
  };
}

const ARMED = Symbol("lingerClose armed");
