// Local replies with OpenAI-style error bodies:
//   {"error":{"message":…,"type":…,"param":…,"code":…}}
import { ByteWriter, utf8 } from "../abi/bytes";
import { serializeHeaders } from "../abi/headers";
import { sendLocalResponse } from "../abi/local_response";
import { Config } from "../config";

const CONTENT_TYPE = utf8("content-type");
const JSON_TYPE = utf8("application/json");
const RETRY_AFTER = utf8("retry-after");

export function errorBody(message: string, type: string, param: string | null, code: string): ArrayBuffer {
  const w = new ByteWriter(128 + message.length);
  w.str('{"error":{"message":').jsonString(message).str(',"type":').jsonString(type).str(',"param":');
  if (param === null) w.str("null"); else w.jsonString(param);
  w.str(',"code":').jsonString(code).str("}}");
  return w.toBuffer();
}

/** Sends a JSON error reply; retryAfter < 0 → no retry-after header. */
export function replyError(status: u32, details: string, body: ArrayBuffer, retryAfter: i32 = -1): void {
  const pairs: ArrayBuffer[] = [CONTENT_TYPE, JSON_TYPE];
  if (retryAfter >= 0) {
    pairs.push(RETRY_AFTER);
    pairs.push(new ByteWriter(8).uint(<u64>retryAfter).toBuffer());
  }
  sendLocalResponse(status, utf8(details), body, serializeHeaders(pairs));
}

const DETAILS_NO_TABLE = utf8("gateway_table_not_loaded");
const NO_TABLE_BODY = errorBody("the gateway has not loaded its routing table yet; retry shortly",
  "server_error", null, "table_not_loaded");
/** 503 headers (content-type + retry-after), rebuilt only when retry_after_seconds changes. */
let noTableHeaders: ArrayBuffer = new ArrayBuffer(0);
let noTableRetryAfter: i32 = -1;

/**
 * 503 table_not_loaded with retry-after: no routing table yet (cold start), so a request for a model
 * cannot be told apart from one for a model we do not manage. Never a silent passthrough then.
 */
export function replyNoTable(c: Config): void {
  if (noTableRetryAfter != c.retryAfterSeconds) {
    noTableHeaders = serializeHeaders([CONTENT_TYPE, JSON_TYPE, RETRY_AFTER,
      new ByteWriter(8).uint(<u64>c.retryAfterSeconds).toBuffer()]);
    noTableRetryAfter = c.retryAfterSeconds;
  }
  sendLocalResponse(503, DETAILS_NO_TABLE, NO_TABLE_BODY, noTableHeaders);
}
