/**
 * `npm run demo`: everything `npm start` runs (with a throwaway Redis unless REDIS_URL is set) plus 4 mock
 * OpenAI-compatible instances on 127.0.0.1, registered as one round-robin deployment of the model
 * `demo-llama` over the control API. Prints a curl that works. Ctrl-C stops everything.
 */
import { startMockOpenAI, type MockOpenAI } from "./mock-openai.js";
import { banner, launch, LaunchError, stopOnSignals, type Gateway } from "./launcher.js";

export const DEMO_MODEL = "demo-llama";
export const DEMO_DEPLOYMENT = "demo-llama";

const say = (l: string) => process.stderr.write(l + "\n");
const mocks: MockOpenAI[] = [];
let gw: Gateway | null = null;
const stopAll = async () => {
  await gw?.stop();
  for (const m of mocks) await m.close();
};

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any; text: string }> {
  const r = await fetch(gw!.controlUrl + path, {
    method,
    headers: { authorization: `Bearer ${gw!.adminToken}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  return { status: r.status, body: parsed, text };
}

try {
  for (let i = 0; i < 4; i++) mocks.push(await startMockOpenAI({ model: DEMO_MODEL, reply: `Hello from mock instance ${i + 1} of 4!` }));
  say(`mocks      ${mocks.map((m) => m.url).join(" ")}`);
  gw = await launch({ redisMode: "ephemeral", say });
  stopOnSignals(stopAll, say);

  // Register (idempotent against a Redis that already has the demo from an earlier run).
  const m = await api("POST", "/v1/models", { name: DEMO_MODEL, display_name: "Demo Llama (mock instances)" });
  if (m.status !== 201 && m.status !== 409) throw new LaunchError(`registering the model failed: ${m.status} ${m.text}`);
  const old = await api("DELETE", `/v1/deployments/${DEMO_DEPLOYMENT}`);
  if (old.status !== 204 && old.status !== 200 && old.status !== 404) throw new LaunchError(`removing the old demo deployment failed: ${old.status} ${old.text}`);
  const d = await api("POST", "/v1/deployments", {
    id: DEMO_DEPLOYMENT,
    model: DEMO_MODEL,
    strategy: "round_robin",
    instances: mocks.map((mock, i) => ({ id: `mock-${i + 1}`, url: mock.url })),
  });
  if (d.status !== 201) throw new LaunchError(`creating the deployment failed: ${d.status} ${d.text}`);
  const table = await api("GET", "/v1/routing-table");
  const cluster = (table.body.deployments as { id: string; cluster: string }[]).find((x) => x.id === DEMO_DEPLOYMENT)?.cluster;
  await gw.waitForTable(table.body.version as number, { cluster, hosts: mocks.length });

  process.stdout.write(banner(gw) + "\n");
  process.stdout.write(
    [
      `Demo: model "${DEMO_MODEL}" is served by 4 mock instances (${mocks.map((x) => `127.0.0.1:${x.port}`).join(", ")}), round robin.`,
      "Try it (run it a few times: the answer names the instance):",
      "",
      `  curl ${gw.url}/v1/chat/completions -H 'content-type: application/json' -d '{"model":"${DEMO_MODEL}","messages":[{"role":"user","content":"Hello!"}]}'`,
      "",
      "Streaming:",
      `  curl -N ${gw.url}/v1/chat/completions -H 'content-type: application/json' -d '{"model":"${DEMO_MODEL}","stream":true,"messages":[{"role":"user","content":"Hello!"}]}'`,
      "",
      "The deployment, its instances and their health — in the dashboard:",
      `  ${gw.signInUrl ?? `${gw.dashboardUrl} (sign in with your admin token)`}`,
      "or over the API:",
      `  curl -s ${gw.controlUrl}/v1/deployments/${DEMO_DEPLOYMENT} -H 'authorization: Bearer ${gw.adminTokenGenerated ? gw.adminToken : "<your admin token>"}'`,
      "",
      "Ctrl-C stops everything.",
      "",
    ].join("\n"),
  );
} catch (e) {
  say(`\nnpm run demo: ${e instanceof LaunchError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  await stopAll().catch(() => undefined);
  process.exit(1);
}
