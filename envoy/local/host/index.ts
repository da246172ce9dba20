// Public surface of the proxy-wasm host (see API.md).
export { ProxyWasmHost, DEFAULT_NOW_MS, type ClusterState } from "./host.js";
export { WorkerVm, RootContext, MAIN_THREAD, CANARY } from "./worker.js";
export { PluginGeneration } from "./plugin.js";
export { HttpStream } from "./stream.js";
export { HostError, WasmTrap } from "./errors.js";
export { SharedData, Metrics } from "./stores.js";
export { HeaderMap, serializePairs, parsePairs, pairsSize, PAIRS_MAX_BYTES, PAIRS_MAX_COUNT } from "./header-map.js";
export * from "./abi.js";
export type * from "./types.js";
