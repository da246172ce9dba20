// Base classes for root and stream contexts. Plugins extend them and override what they need; the
// defaults are the ABI's neutral answers (Continue, true), so an unhandled callback is harmless.
import { Action } from "./types";

export class RootContext {
  constructor(public id: u32) {}

  onVmStart(configurationSize: usize): bool { return true; }
  onConfigure(configurationSize: usize): bool { return true; }
  onTick(): void {}
  onHttpCallResponse(token: u32, numHeaders: u32, bodySize: usize, numTrailers: u32): void {}
  onQueueReady(token: u32): void {}
  /** Stream context for a new request, or null to let the request through untouched. */
  newStream(id: u32): StreamContext | null { return null; }
  /** Called when a stream context is deleted (e.g. to pool it). */
  releaseStream(ctx: StreamContext): void {}
  onDone(): bool { return true; }
  onDelete(): void {}
}

export class StreamContext {
  id: u32 = 0;

  onRequestHeaders(numHeaders: u32, endOfStream: bool): u32 { return Action.Continue; }
  onRequestBody(bodySize: usize, endOfStream: bool): u32 { return Action.Continue; }
  onRequestTrailers(numTrailers: u32): u32 { return Action.Continue; }
  onResponseHeaders(numHeaders: u32, endOfStream: bool): u32 { return Action.Continue; }
  onResponseBody(bodySize: usize, endOfStream: bool): u32 { return Action.Continue; }
  onResponseTrailers(numTrailers: u32): u32 { return Action.Continue; }
  onLog(): void {}
  onDone(): bool { return true; }
}
