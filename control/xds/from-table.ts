/**
 * Contract 4 input from what the control service already has when it publishes a routing table:
 * the table (contract 1: deployments, instances, addresses, states, same version) plus, per
 * deployment, the stored settings the table leaves out (health check; each instance's URL scheme and
 * host → TLS). Using the very table the plugin gets keeps both views of one state identical.
 *
 * Structural input types: no dependency on control/src.
 */
import { isIP } from "node:net";
import type { RoutingTable } from "../contracts/routing-table.js";
import type { XdsSnapshotInputRaw } from "./contract.js";

export interface StoredDeploymentLike {
  id: string;
  health_check: { interval_seconds: number; timeout_seconds: number; unhealthy_threshold?: number; healthy_threshold: number; path: string };
  instances: readonly { id: string; scheme: "http" | "https"; host: string }[];
}

/**
 * The table's deployments, each with its stored health check and, for https instances, TLS (SNI =
 * the URL's hostname; none for an IP-literal URL). A table deployment without a stored one gets no
 * health_check, so buildXdsSnapshot() refuses the snapshot naming it (never silently drops a
 * cluster: CDS would remove it from Envoy).
 */
export function xdsSnapshotFromTable(table: Pick<RoutingTable, "version" | "deployments">, stored: readonly StoredDeploymentLike[]): XdsSnapshotInputRaw {
  const byId = new Map(stored.map((d) => [d.id, d]));
  return {
    version: table.version,
    deployments: table.deployments.map((td) => {
      const sd = byId.get(td.id);
      const urls = new Map((sd?.instances ?? []).map((i) => [i.id, i]));
      return {
        ...td,
        health_check: sd?.health_check as StoredDeploymentLike["health_check"],
        instances: td.instances.map((ti) => {
          const u = urls.get(ti.id);
          if (u?.scheme !== "https") return { ...ti };
          return { ...ti, tls: isIP(u.host) !== 0 ? {} : { sni: u.host.toLowerCase() } };
        }),
      };
    }),
  };
}
