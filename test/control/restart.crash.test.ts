// A control process killed (SIGKILL) in the middle of background work: its leases expire and another
// replica finishes the work from Redis — a pending connectivity test and a migration.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { freePort, type RedisServer } from "../support/redis.js";
import { ADMIN, PLUGIN, VIEWER, client, registerModel, startReplica, table, waitFor, withRedis, type Api } from "./harness.js";

describe("control killed mid-work", () => {
  let redis: RedisServer;
  let proc: ChildProcess;
  let api: Api;
  const mocks: MockOpenAI[] = [];

  before(async () => {
    redis = await withRedis({ appendonly: true });
    const port = await freePort();
    proc = spawn(process.execPath, ["--import", "tsx", "control/src/server.ts"], {
      env: {
        PATH: process.env.PATH ?? "",
        CONTROL_PORT: String(port),
        REDIS_URL: redis.url,
        CONTROL_ADMIN_TOKENS: ADMIN,
        CONTROL_VIEWER_TOKENS: VIEWER,
        CONTROL_PLUGIN_TOKENS: PLUGIN,
        CREATE_WAIT_MS: "50",
        CONNECTIVITY_TIMEOUT_MS: "2000",
        WORKER_INTERVAL_MS: "20",
        LEASE_MS: "600",
        LOG_LEVEL: "error",
      },
      stdio: ["ignore", "ignore", "inherit"],
    });
    api = client(`http://127.0.0.1:${port}`);
    await waitFor(async () => (await api("GET", "/healthz", { token: null }).catch(() => null))?.status === 200, 15_000, "control process up");
  });
  after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    for (const m of mocks) await m.close();
    await redis.close();
  });

  test("pending test and running migration survive a SIGKILL of the control process", async () => {
    const slow = await startMockOpenAI({ model: "crash-model", latencyMs: 500 });
    const old = await startMockOpenAI({ model: "crash-model" });
    const neu = await startMockOpenAI({ model: "crash-model", mode: "unhealthy" });
    mocks.push(slow, old, neu);
    await registerModel(api, "crash-model");
    await registerModel(api, "crash-model-2", { served_name: "crash-model" });

    // A migration in progress (new endpoint failing its probes for now)…
    const d = await api("POST", "/v1/deployments", { body: { id: "mig", model: "crash-model-2", health_check: { interval_seconds: 0.05, healthy_threshold: 2, unhealthy_threshold: 100 }, instances: [{ id: "old", url: old.url }] } });
    assert.ok(d.status === 201 || d.status === 202, d.text);
    await waitFor(async () => (await api("GET", "/v1/deployments/mig")).body.instances[0].state === "active", 5000, "old active");
    const start = await api("POST", "/v1/deployments/mig/migrations", { body: { instance_id: "old", url: neu.url, new_instance_id: "new", drain_timeout_seconds: 0.1 } });
    assert.equal(start.status, 202);
    const loc = start.headers.get("location")!;
    await waitFor(async () => (await api("GET", loc)).body.probes >= 2, 5000, "probing");

    // …and a connectivity test in flight.
    const created = await api("POST", "/v1/deployments", { body: { id: "pend", model: "crash-model", allow_unreachable: true, instances: [{ id: "p1", url: slow.url }] } });
    assert.equal(created.status, 202);
    assert.equal(created.body.instances[0].state, "pending");

    proc.kill("SIGKILL");
    await new Promise((r) => proc.once("exit", r));
    neu.set({ mode: "ok" });

    const b = await startReplica(redis.url, { REPLICA_ID: "survivor", LEASE_MS: "600", CONNECTIVITY_TIMEOUT_MS: "2000" });
    try {
      await waitFor(async () => (await b.api("GET", "/v1/deployments/pend")).body.instances[0].state === "active", 8000, "pending test finished by the survivor");
      await waitFor(async () => (await b.api("GET", loc)).body.phase === "succeeded", 8000, "migration finished by the survivor");
      const ids = (t: any, dep: string) => t.deployments.find((x: { id: string }) => x.id === dep).instances.map((i: { id: string }) => i.id).join(",");
      await waitFor(async () => ids(await table(b.api), "mig") === "new", 2000, "table: migration done");
      const t = await table(b.api);
      assert.deepEqual(t.deployments.find((x: { id: string }) => x.id === "mig").instances.map((i: { id: string }) => i.id), ["new"]);
      assert.deepEqual(t.deployments.find((x: { id: string }) => x.id === "pend").instances.map((i: { id: string }) => i.id), ["p1"]);
    } finally {
      await b.stop();
    }
  });
});
