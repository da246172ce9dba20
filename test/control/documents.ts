// Stored documents for pure tests of the control service (builders, state machines): complete and typed,
// so a test states only what it is about.
import { HEALTH_DEFAULTS, type Deployment, type Instance } from "../../control/src/deployments/schemas.js";
import type { Model } from "../../control/src/models/schemas.js";

export const T = "2026-01-01T00:00:00.000Z";

export const model = (id: string, name: string, aliases: string[] = []): Model => ({ id, name, aliases, display_name: name, served_name: null, family: null, context_length: null, revision: 1, created_at: T, updated_at: T });

export const inst = (id: string, state: Instance["state"], address: string | null = "10.0.0.1:8000"): Instance => ({
  id, url: "http://h/v1", scheme: "http", host: "h", port: 8000, base_path: "/v1", address, weight: 1, priority: 0, region: "", gpu_count: null, gpu_memory_gb: null, has_api_key: false, state, last_check: null, created_at: T, updated_at: T,
});

export const dep = (id: string, modelId: string, instances: Instance[]): Deployment => ({
  id, model_id: modelId, strategy: "round_robin", on_unavailable: "fail", forward_client_credentials: false, extra_paths: [], health_check: { ...HEALTH_DEFAULTS }, instances, migrations: [], revision: 1, created_at: T, updated_at: T,
});
