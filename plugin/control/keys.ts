// Shared-data keys (process-wide per vm_id). Only this folder knows them.
import { utf8 } from "../abi/bytes";

/** The adopted table: 8-byte little-endian version, then the JSON document. Written with CAS. */
export const TABLE_BYTES_KEY = utf8("gateway.table.bytes");
/** The adopted table's version as decimal ASCII: the small key every worker polls on its tick. */
export const TABLE_VERSION_KEY = utf8("gateway.table.version");
/** Poll lease: "<holder> <expires_ms>" (decimal). */
export const POLL_LEASE_KEY = utf8("gateway.control.poll_lease");
/** Worker sequence counter (decimal): staggers round robin and names lease holders. */
export const WORKER_SEQ_KEY = utf8("gateway.worker.seq");
/** Root contexts that want a nudge when a new table lands: their worker sequences, decimal, space-separated. */
export const TABLE_LISTENERS_KEY = utf8("gateway.table.listeners");
/** Queue name prefix; the root with sequence N listens on "<prefix>N". */
export const TABLE_QUEUE_PREFIX = "gateway.table.notify.";
