// The proxy-wasm ABI 0.2.1 entry points. Thin: find the context, call its method. Unknown context
// ids (e.g. a second on_done, or a callback for a context we never created) get the neutral answer,
// never a trap.
import { Action } from "./types";
import { createRoot, findRoot, removeRoot, addStream, findStream, removeStream } from "./registry";
import { refreshLogLevel } from "./log";

export { malloc } from "./memory";

export function proxy_abi_version_0_2_1(): void {}

export function proxy_on_context_create(contextId: u32, parentContextId: u32): void {
  if (parentContextId == 0) {
    createRoot(contextId);
    return;
  }
  const root = findRoot(parentContextId);
  if (root === null) return;
  const ctx = root.newStream(contextId);
  if (ctx !== null) {
    ctx.id = contextId;
    addStream(contextId, ctx, root);
  }
}

export function proxy_on_vm_start(rootContextId: u32, vmConfigurationSize: u32): u32 {
  refreshLogLevel();
  const root = findRoot(rootContextId);
  if (root === null) return 1;
  return root.onVmStart(<usize>vmConfigurationSize) ? 1 : 0;
}

export function proxy_on_configure(rootContextId: u32, pluginConfigurationSize: u32): u32 {
  refreshLogLevel();
  const root = findRoot(rootContextId);
  if (root === null) return 0;
  return root.onConfigure(<usize>pluginConfigurationSize) ? 1 : 0;
}

export function proxy_on_tick(rootContextId: u32): void {
  const root = findRoot(rootContextId);
  if (root !== null) root.onTick();
}

export function proxy_on_http_call_response(rootContextId: u32, token: u32, numHeaders: u32, bodySize: u32, numTrailers: u32): void {
  const root = findRoot(rootContextId);
  if (root !== null) root.onHttpCallResponse(token, numHeaders, <usize>bodySize, numTrailers);
}

export function proxy_on_queue_ready(rootContextId: u32, token: u32): void {
  const root = findRoot(rootContextId);
  if (root !== null) root.onQueueReady(token);
}

export function proxy_on_request_headers(contextId: u32, numHeaders: u32, endOfStream: u32): u32 {
  const ctx = findStream(contextId);
  return ctx === null ? Action.Continue : ctx.onRequestHeaders(numHeaders, endOfStream != 0);
}

export function proxy_on_request_body(contextId: u32, bodySize: u32, endOfStream: u32): u32 {
  const ctx = findStream(contextId);
  return ctx === null ? Action.Continue : ctx.onRequestBody(<usize>bodySize, endOfStream != 0);
}

export function proxy_on_request_trailers(contextId: u32, numTrailers: u32): u32 {
  const ctx = findStream(contextId);
  return ctx === null ? Action.Continue : ctx.onRequestTrailers(numTrailers);
}

export function proxy_on_response_headers(contextId: u32, numHeaders: u32, endOfStream: u32): u32 {
  const ctx = findStream(contextId);
  return ctx === null ? Action.Continue : ctx.onResponseHeaders(numHeaders, endOfStream != 0);
}

export function proxy_on_response_body(contextId: u32, bodySize: u32, endOfStream: u32): u32 {
  const ctx = findStream(contextId);
  return ctx === null ? Action.Continue : ctx.onResponseBody(<usize>bodySize, endOfStream != 0);
}

export function proxy_on_response_trailers(contextId: u32, numTrailers: u32): u32 {
  const ctx = findStream(contextId);
  return ctx === null ? Action.Continue : ctx.onResponseTrailers(numTrailers);
}

export function proxy_on_log(contextId: u32): void {
  const ctx = findStream(contextId);
  if (ctx !== null) ctx.onLog();
}

/** true = done now; false = the context will call proxy_done later (we never need that). */
export function proxy_on_done(contextId: u32): u32 {
  const ctx = findStream(contextId);
  if (ctx !== null) return ctx.onDone() ? 1 : 0;
  const root = findRoot(contextId);
  if (root !== null) return root.onDone() ? 1 : 0;
  return 1;
}

export function proxy_on_delete(contextId: u32): void {
  if (findStream(contextId) !== null) {
    removeStream(contextId);
    return;
  }
  const root = findRoot(contextId);
  if (root !== null) {
    root.onDelete();
    removeRoot(contextId);
  }
}
