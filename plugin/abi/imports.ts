// Host functions of proxy-wasm ABI 0.2.1 (module "env") that this binding uses. Only these are
// imported, so Envoy (and the test host) never see a call they do not provide.
// Pointers are linear-memory addresses; `*_ptr_ptr` out-params receive a buffer allocated through our
// exported `malloc`, which the caller owns and must free (see memory.ts).

@external("env", "proxy_log")
export declare function proxy_log(level: u32, msgPtr: usize, msgLen: usize): u32;

@external("env", "proxy_get_log_level")
export declare function proxy_get_log_level(levelPtr: usize): u32;

@external("env", "proxy_set_tick_period_milliseconds")
export declare function proxy_set_tick_period_milliseconds(periodMs: u32): u32;

@external("env", "proxy_get_current_time_nanoseconds")
export declare function proxy_get_current_time_nanoseconds(timePtr: usize): u32;

@external("env", "proxy_get_buffer_bytes")
export declare function proxy_get_buffer_bytes(bufferType: u32, start: u32, maxSize: u32, retPtrPtr: usize, retLenPtr: usize): u32;

@external("env", "proxy_get_header_map_value")
export declare function proxy_get_header_map_value(mapType: u32, keyPtr: usize, keyLen: usize, retPtrPtr: usize, retLenPtr: usize): u32;

@external("env", "proxy_get_header_map_pairs")
export declare function proxy_get_header_map_pairs(mapType: u32, retPtrPtr: usize, retLenPtr: usize): u32;

@external("env", "proxy_replace_header_map_value")
export declare function proxy_replace_header_map_value(mapType: u32, keyPtr: usize, keyLen: usize, valuePtr: usize, valueLen: usize): u32;

@external("env", "proxy_remove_header_map_value")
export declare function proxy_remove_header_map_value(mapType: u32, keyPtr: usize, keyLen: usize): u32;

@external("env", "proxy_send_local_response")
export declare function proxy_send_local_response(
  statusCode: u32, detailsPtr: usize, detailsLen: usize, bodyPtr: usize, bodyLen: usize,
  headersPtr: usize, headersLen: usize, grpcStatus: i32): u32;

@external("env", "proxy_http_call")
export declare function proxy_http_call(
  upstreamPtr: usize, upstreamLen: usize, headersPtr: usize, headersLen: usize, bodyPtr: usize, bodyLen: usize,
  trailersPtr: usize, trailersLen: usize, timeoutMs: u32, tokenPtr: usize): u32;

@external("env", "proxy_define_metric")
export declare function proxy_define_metric(metricType: u32, namePtr: usize, nameLen: usize, retIdPtr: usize): u32;

@external("env", "proxy_increment_metric")
export declare function proxy_increment_metric(metricId: u32, offset: i64): u32;

@external("env", "proxy_record_metric")
export declare function proxy_record_metric(metricId: u32, value: u64): u32;

@external("env", "proxy_get_shared_data")
export declare function proxy_get_shared_data(keyPtr: usize, keyLen: usize, retPtrPtr: usize, retLenPtr: usize, casPtr: usize): u32;

@external("env", "proxy_set_shared_data")
export declare function proxy_set_shared_data(keyPtr: usize, keyLen: usize, valuePtr: usize, valueLen: usize, cas: u32): u32;

@external("env", "proxy_get_property")
export declare function proxy_get_property(pathPtr: usize, pathLen: usize, retPtrPtr: usize, retLenPtr: usize): u32;

@external("env", "proxy_call_foreign_function")
export declare function proxy_call_foreign_function(
  namePtr: usize, nameLen: usize, argsPtr: usize, argsLen: usize, retPtrPtr: usize, retLenPtr: usize): u32;

@external("env", "proxy_register_shared_queue")
export declare function proxy_register_shared_queue(namePtr: usize, nameLen: usize, tokenPtr: usize): u32;

@external("env", "proxy_resolve_shared_queue")
export declare function proxy_resolve_shared_queue(vmIdPtr: usize, vmIdLen: usize, namePtr: usize, nameLen: usize, tokenPtr: usize): u32;

@external("env", "proxy_enqueue_shared_queue")
export declare function proxy_enqueue_shared_queue(token: u32, dataPtr: usize, dataLen: usize): u32;

@external("env", "proxy_dequeue_shared_queue")
export declare function proxy_dequeue_shared_queue(token: u32, retPtrPtr: usize, retLenPtr: usize): u32;

@external("env", "proxy_set_buffer_bytes")
export declare function proxy_set_buffer_bytes(bufferType: u32, start: u32, length: u32, dataPtr: usize, dataLen: usize): u32;
