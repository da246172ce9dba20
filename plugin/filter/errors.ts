// Local replies with OpenAI-style error bodies:
//   {"error":{"message":…,"type":…,"param":…,"code":…}}
import { ByteWriter, utf8 } from "../abi/bytes";
import { serializeHeaders } from "../abi/headers";
import { sendLocalResponse } from "../abi/local_response";

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
