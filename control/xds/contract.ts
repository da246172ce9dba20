/**
 * Contract 4 — what the xDS builder (control/xds/build.ts) takes: one versioned snapshot of every
 * deployment Envoy must know, as the control service reads it from Redis.
 *
 *   snapshot = { version, deployments: XdsDeployment[] }
 *   XdsDeployment = the routing-table deployment (contract 1, TableDeployment: id, cluster, strategy,
 *                   on_unavailable, instances[] with address ip:port, weight, priority, region, state)
 *                 + health_check { interval_seconds, timeout_seconds, unhealthy_threshold,
 *                                  healthy_threshold, path }
 *                 + per instance, optional `tls` (the instance URL was https).
 *
 * Defined once here (zod schema = validation + types); the producer is the control service
 * (control/src/, from the same Redis snapshot as the routing table, with the same `version`), the
 * consumer is buildXdsSnapshot(). The routing table and the xDS resources are two views of one
 * state: the same version must give the same deployments, clusters and addresses in both, or the
 * plugin writes addresses into x-gateway-destination-endpoint that the cluster does not have
 * (override_host then skips them and falls back).
 */
import { z } from "zod";
import { TABLE_LIMITS, TableDeployment, TableInstance } from "../contracts/routing-table.js";

export const XDS_CONTRACT = 4;

/** A DNS name as sent in TLS SNI and matched against the certificate's DNS SAN. */
export const Hostname = z
  .string()
  .min(1)
  .max(253)
  .regex(/^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/, "a DNS hostname (no IP literal, no port)")
  // RFC 6066: SNI never carries an IP literal.
  .refine((h) => !/^[0-9.]+$/.test(h), "an IP literal is not sent as SNI: omit sni for IP URLs");

/**
 * The instance is reached over TLS (its URL was https). Envoy then verifies the server certificate
 * against `ca_file` (the instance must present a chain to it) and its subject alternative name:
 * the DNS name `sni` when the URL had a hostname, else the instance's IP address.
 */
export const XdsTls = z
  .object({
    /** The URL's hostname: sent as SNI, required in the certificate's DNS SANs, and used as Host of the health check. Absent when the URL was an IP literal. */
    sni: Hostname.optional(),
    /** PEM bundle of trusted CAs on the Envoy host. Default: the Debian/Ubuntu system bundle. */
    ca_file: z.string().min(1).max(1024).regex(/^\/[^\0]*$/, "an absolute path").optional(),
  })
  .strict();

/** Active health checking of the deployment's instances (Envoy probes each one). */
export const XdsHealthCheck = z
  .object({
    interval_seconds: z.number().min(0.05).max(3_600),
    timeout_seconds: z.number().min(0.05).max(600),
    /** Consecutive failed probes before Envoy stops sending fallback traffic to the instance. */
    unhealthy_threshold: z.number().int().min(1).max(100).default(3),
    /** Consecutive passed probes before it gets fallback traffic (again). */
    healthy_threshold: z.number().int().min(1).max(100),
    /** Absolute path, printable ASCII, no query or fragment (vLLM/SGLang/TGI: /health; Ollama: /). */
    path: z
      .string()
      .max(256)
      .regex(/^\/[\x21-\x22\x24-\x3e\x40-\x7e]*$/, "absolute path of printable ASCII without query or fragment"),
  })
  .strict();

export const XdsInstance = TableInstance.extend({
  /** Absent: plaintext HTTP. */
  tls: XdsTls.optional(),
});

export const XdsDeployment = TableDeployment.extend({
  instances: z.array(XdsInstance).max(TABLE_LIMITS.maxInstancesPerDeployment),
  health_check: XdsHealthCheck,
});

/**
 * The snapshot. Beyond the per-field rules: deployment ids and cluster names unique, instance ids
 * and addresses unique within a deployment. build.ts's checkSnapshot() adds the rules that depend
 * on Envoy (e.g. at most 129 failover tiers) and on the build options (the control cluster's name).
 */
export const XdsSnapshotInput = z
  .object({
    /** Monotonic, ≥ 1: the routing table's version for the same state. Becomes version_info. */
    version: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    deployments: z.array(XdsDeployment).max(TABLE_LIMITS.maxDeployments),
  })
  .strict()
  .superRefine((s, ctx) => {
    const ids = new Set<string>();
    const clusters = new Set<string>();
    s.deployments.forEach((d, i) => {
      if (ids.has(d.id)) ctx.addIssue({ code: "custom", path: ["deployments", i, "id"], message: `duplicate deployment id ${d.id}` });
      ids.add(d.id);
      if (clusters.has(d.cluster)) ctx.addIssue({ code: "custom", path: ["deployments", i, "cluster"], message: `duplicate cluster name ${d.cluster}` });
      clusters.add(d.cluster);
      const instanceIds = new Set<string>();
      const addresses = new Set<string>();
      d.instances.forEach((inst, j) => {
        if (instanceIds.has(inst.id)) ctx.addIssue({ code: "custom", path: ["deployments", i, "instances", j, "id"], message: `duplicate instance id ${inst.id}` });
        instanceIds.add(inst.id);
        // Envoy keys a cluster's hosts by address: two instances on one ip:port would merge into one
        // host, and the plugin could not tell Envoy which of them it picked.
        const a = inst.address.toLowerCase();
        if (addresses.has(a)) ctx.addIssue({ code: "custom", path: ["deployments", i, "instances", j, "address"], message: `address ${inst.address} used by two instances` });
        addresses.add(a);
      });
    });
  });

export type XdsTls = z.infer<typeof XdsTls>;
export type XdsHealthCheck = z.infer<typeof XdsHealthCheck>;
export type XdsInstance = z.infer<typeof XdsInstance>;
export type XdsDeployment = z.infer<typeof XdsDeployment>;
/** After parsing (defaults applied). */
export type XdsSnapshotInput = z.infer<typeof XdsSnapshotInput>;
/** What a producer may pass (defaults may be omitted). */
export type XdsSnapshotInputRaw = z.input<typeof XdsSnapshotInput>;
