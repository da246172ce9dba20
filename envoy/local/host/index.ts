// Public surface of the proxy-wasm test host (see API.md).
export { ProxyWasmHost, DEFAULT_NOW_MS } from "./host.js";
export { WorkerVm, RootContext } from "./worker.js";
export { HttpStream } from "./stream.js";
export { HostError, WasmTrap } from "./errors.js";
export { SharedData, Metrics } from "./stores.js";
export { HeaderMap, serializePairs, parsePairs, pairsSize } from "./header-map.js";
export * from "./abi.js";
export type * from "./types.js";
