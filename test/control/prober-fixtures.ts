// Deployments for prober tests that drive createProber with stub stores (no Redis, no HTTP): `instances`
// active instances on distinct fake hosts (unique in the process, so probes can be told apart by host).
import { HEALTH_DEFAULTS, type Deployment } from "../../control/src/deployments/schemas.js";

export const AT = "2026-01-01T00:00:00.000Z";
let hosts = 0;

export function fakeDeployment(id: string, instances: number, intervalSeconds: number): Deployment {
  return {
    id,
    model_id: `${id}-m`,
    strategy: "round_robin",
    on_unavailable: "fail",
    forward_client_credentials: false,
    extra_paths: [],
    health_check: { ...HEALTH_DEFAULTS, interval_seconds: intervalSeconds, timeout_seconds: 0.5 },
    instances: Array.from({ length: instances }, (_, k) => {
      const n = hosts++;
      const host = `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
      return {
        id: `i${k}`, url: `http://${host}:8000/v1`, scheme: "http" as const, host, port: 8000, base_path: "/v1", address: `${host}:8000`,
        weight: 1, priority: 0, region: "", gpu_count: null, gpu_memory_gb: null, has_api_key: false, state: "active" as const, last_check: null,
        created_at: AT, updated_at: AT,
      };
    }),
    migrations: [],
    revision: 1,
    created_at: AT,
    updated_at: AT,
  };
}
