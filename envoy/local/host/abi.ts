// Proxy-Wasm ABI 0.2.1 numbers, as in the spec (proxy-wasm/spec abi-versions/v0.2.1, "Types") and
// proxy-wasm-cpp-host's enums. Kept in one place so tests and the host use the same names.

/** proxy_status_t (WasmResult in cpp-host). */
export const Status = {
  Ok: 0,
  NotFound: 1,
  BadArgument: 2,
  SerializationFailure: 3,
  ParseFailure: 4,
  BadExpression: 5,
  InvalidMemoryAccess: 6,
  Empty: 7,
  CasMismatch: 8,
  ResultMismatch: 9,
  InternalFailure: 10,
  BrokenConnection: 11,
  Unimplemented: 12,
} as const;
export type StatusCode = (typeof Status)[keyof typeof Status];

export const STATUS_NAMES: readonly string[] = Object.keys(Status);

/** proxy_map_type_t. */
export const MapType = {
  RequestHeaders: 0,
  RequestTrailers: 1,
  ResponseHeaders: 2,
  ResponseTrailers: 3,
  GrpcReceiveInitialMetadata: 4,
  GrpcReceiveTrailingMetadata: 5,
  HttpCallResponseHeaders: 6,
  HttpCallResponseTrailers: 7,
} as const;
export const MAP_TYPE_MAX = 7;

/** proxy_buffer_type_t. */
export const BufferType = {
  HttpRequestBody: 0,
  HttpResponseBody: 1,
  DownstreamData: 2,
  UpstreamData: 3,
  HttpCallResponseBody: 4,
  GrpcReceiveBuffer: 5,
  VmConfiguration: 6,
  PluginConfiguration: 7,
  CallData: 8,
} as const;
export const BUFFER_TYPE_MAX = 8;

/** proxy_action_t as the plugin returns it; cpp-host reads the number as Envoy's filter status. */
export const Action = { Continue: 0, Pause: 1 } as const;

/** cpp-host FilterHeadersStatus (what a headers callback result is converted to). */
export const HeadersStatus = {
  Continue: 0,
  StopIteration: 1,
  ContinueAndEndStream: 2,
  StopAllIterationAndBuffer: 3,
  StopAllIterationAndWatermark: 4,
} as const;

/** cpp-host FilterDataStatus (what a body callback result is converted to). */
export const DataStatus = {
  Continue: 0,
  StopIterationAndBuffer: 1,
  StopIterationAndWatermark: 2,
  StopIterationNoBuffer: 3,
} as const;

/** proxy_stream_type_t. */
export const StreamType = { HttpRequest: 0, HttpResponse: 1, Downstream: 2, Upstream: 3 } as const;

/** proxy_log_level_t. */
export const LogLevel = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, critical: 5 } as const;
export type LogLevelName = keyof typeof LogLevel;
export const LOG_LEVEL_NAMES: readonly LogLevelName[] = ["trace", "debug", "info", "warn", "error", "critical"];

/** proxy_metric_type_t. */
export const MetricType = { Counter: 0, Gauge: 1, Histogram: 2 } as const;
export type MetricTypeName = "counter" | "gauge" | "histogram";
export const METRIC_TYPE_NAMES: readonly MetricTypeName[] = ["counter", "gauge", "histogram"];

/** wasi_errno_t values cpp-host returns. */
export const Errno = { Success: 0, Badf: 8, Fault: 21, Inval: 28, Nosys: 52, Notsup: 58 } as const;
