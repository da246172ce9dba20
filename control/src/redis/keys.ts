/**
 * Every Redis key name and the pub/sub channel. Only the stores (…/store.ts) import this module.
 *
 *   <p>table:version        string  monotonic routing-table version (INCR, bumped with each change)
 *   <p>table:changed        channel PUBLISH <version> in the same script as the change
 *   <p>changes              channel PUBLISH [stream events] after a committed change (GET /v1/events)
 *   <p>models               hash    model id → Model JSON
 *   <p>model-names          hash    client-facing name or alias → model id (uniqueness across models)
 *   <p>model-deployment     hash    model id → deployment id (one deployment per model)
 *   <p>deployments          hash    deployment id → the deployment's head: its JSON without the instances (migrations
 *                                   inside) plus `seq`, a counter every write of the deployment bumps (the write guard).
 *                                   Written before per-instance storage: the whole document, `instances` inside, no
 *                                   `seq` — still read, and rewritten in the new form by the next write or at start
 *   <p>deployment-instances:<dep>  hash  instance id → Instance JSON plus `ord` (the instance's place in the list)
 *   <p>instance-api-keys    hash    "<deployment>/<instance>" → upstream API key (write-only secrets)
 *   <p>work                 set     deployment ids with pending background work (tests, migrations)
 *   <p>idem:<scope>         string  Idempotency-Key record (TTL)
 *   <p>lease:<name>         string  lease owner token (PX TTL)
 *   <p>tm:<dep>/<inst>:<t>  hash    traffic + probe statistics of one time bucket starting at <t> ms (TTL)
 *   <p>tm-seen:<source>     zset    telemetry seqs already merged for a sender (last 1024, TTL)
 *   <p>health:<dep>         hash    instance id → prober state JSON (consecutive counts, last probes, reason)
 *   <p>events:<dep>/<inst>  list    instance event timeline, newest first (capped, TTL)
 *   <p>instance-load        hash    <dep>/<inst> → engine load score JSON (health/load.ts)
 *   <p>load-throttle        string  present (PX) while a load-triggered version bump is throttled
 */
export interface Keys {
  version: string;
  channel: string;
  changes: string;
  models: string;
  modelNames: string;
  modelDeployment: string;
  deployments: string;
  deploymentInstances(deployment: string): string;
  apiKeys: string;
  work: string;
  idem(scope: string): string;
  lease(name: string): string;
  telemetryBucket(deployment: string, instance: string, bucketStartMs: number): string;
  telemetrySeen(source: string): string;
  inFlight(deployment: string): string;
  health(deployment: string): string;
  events(deployment: string, instance: string): string;
  load: string;
  loadThrottle: string;
}

export function createKeys(prefix: string): Keys {
  return {
    version: `${prefix}table:version`,
    channel: `${prefix}table:changed`,
    changes: `${prefix}changes`,
    models: `${prefix}models`,
    modelNames: `${prefix}model-names`,
    modelDeployment: `${prefix}model-deployment`,
    deployments: `${prefix}deployments`,
    deploymentInstances: (dep) => `${prefix}deployment-instances:${dep}`,
    apiKeys: `${prefix}instance-api-keys`,
    work: `${prefix}work`,
    idem: (scope) => `${prefix}idem:${scope}`,
    lease: (name) => `${prefix}lease:${name}`,
    telemetryBucket: (dep, inst, t) => `${prefix}tm:${dep}/${inst}:${t}`,
    telemetrySeen: (source) => `${prefix}tm-seen:${source}`,
    inFlight: (dep) => `${prefix}in-flight:${dep}`,
    health: (dep) => `${prefix}health:${dep}`,
    events: (dep, inst) => `${prefix}events:${dep}/${inst}`,
    load: `${prefix}instance-load`,
    loadThrottle: `${prefix}load-throttle`,
  };
}
