// What Envoy links a module against (proxy-wasm-cpp-host WasmBase::registerCallbacks for ABI 0.2.1):
// every env.proxy_* host function, env.pthread_equal / env.emscripten_notify_memory_growth, and the
// WASI functions of FOR_ALL_WASI_FUNCTIONS under both wasi_unstable and wasi_snapshot_preview1.
// Signatures are cpp-host's (Word = i32 on wasm32; int64_t/uint64_t = i64).

const i32x = (n: number) => Array(n).fill("i32").join(",");
const fn = (params: number, result = true) => `${i32x(params)}->${result ? "i32" : ""}`;

export const ENV_SIGNATURES: Readonly<Record<string, string>> = {
  proxy_log: fn(3),
  proxy_get_log_level: fn(1), // ABI 0.2.1 only
  proxy_get_status: fn(3),
  proxy_set_property: fn(4),
  proxy_get_property: fn(4),
  proxy_send_local_response: fn(8),
  proxy_get_shared_data: fn(5),
  proxy_set_shared_data: fn(5),
  proxy_register_shared_queue: fn(3),
  proxy_resolve_shared_queue: fn(5),
  proxy_dequeue_shared_queue: fn(3),
  proxy_enqueue_shared_queue: fn(3),
  proxy_get_header_map_value: fn(5),
  proxy_add_header_map_value: fn(5),
  proxy_replace_header_map_value: fn(5),
  proxy_remove_header_map_value: fn(3),
  proxy_get_header_map_pairs: fn(3),
  proxy_set_header_map_pairs: fn(3),
  proxy_get_header_map_size: fn(2),
  proxy_get_buffer_status: fn(3),
  proxy_get_buffer_bytes: fn(5),
  proxy_set_buffer_bytes: fn(5),
  proxy_http_call: fn(10),
  proxy_grpc_call: fn(12),
  proxy_grpc_stream: fn(9),
  proxy_grpc_close: fn(1),
  proxy_grpc_cancel: fn(1),
  proxy_grpc_send: fn(4),
  proxy_set_tick_period_milliseconds: fn(1),
  proxy_get_current_time_nanoseconds: fn(1),
  proxy_define_metric: fn(4),
  proxy_increment_metric: "i32,i64->i32",
  proxy_record_metric: "i32,i64->i32",
  proxy_get_metric: fn(2),
  proxy_set_effective_context: fn(1),
  proxy_done: fn(0),
  proxy_call_foreign_function: fn(6),
  // ABI 0.2.x specific
  proxy_continue_stream: fn(1),
  proxy_close_stream: fn(1),
  pthread_equal: fn(2),
  emscripten_notify_memory_growth: fn(1, false),
};

export const WASI_SIGNATURES: Readonly<Record<string, string>> = {
  fd_write: fn(4),
  fd_read: fn(4),
  fd_seek: "i32,i64,i32,i32->i32",
  fd_close: fn(1),
  fd_fdstat_get: fn(2),
  environ_get: fn(2),
  environ_sizes_get: fn(2),
  args_get: fn(2),
  args_sizes_get: fn(2),
  clock_time_get: "i32,i64,i32->i32",
  random_get: fn(2),
  proc_exit: fn(1, false),
  path_open: "i32,i32,i32,i32,i32,i64,i64,i32,i32->i32",
  fd_prestat_get: fn(2),
  fd_prestat_dir_name: fn(3),
};

export const WASI_MODULES = ["wasi_snapshot_preview1", "wasi_unstable"] as const;

/** Host calls allowed while _initialize/main/_start runs (cpp-host WasmBase::startVm restricted list). */
export const ALLOWED_DURING_START: ReadonlySet<string> = new Set([
  "env.proxy_log",
  ...WASI_MODULES.flatMap((m) =>
    ["fd_write", "args_sizes_get", "args_get", "environ_sizes_get", "environ_get", "fd_prestat_get", "fd_prestat_dir_name", "clock_time_get", "random_get"].map((f) => `${m}.${f}`),
  ),
]);

/** Host calls allowed while the module's allocator runs (cpp-host WasmBase::allocMemory). */
export const ALLOWED_DURING_MALLOC: ReadonlySet<string> = new Set([
  "env.proxy_log",
  ...WASI_MODULES.flatMap((m) => ["fd_write", "clock_time_get"].map((f) => `${m}.${f}`)),
]);
