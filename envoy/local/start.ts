/**
 * `npm start`: Redis (REDIS_URL, or a local redis-server with append-only data in .data/redis/), the
 * control service, and a data plane (Envoy ≥ 1.35 if installed, else the local data plane). Ctrl-C stops
 * everything. See envoy/local/README.md.
 */
import { banner, launch, LaunchError, stopOnSignals } from "./launcher.js";

try {
  const gw = await launch({ redisMode: "persistent" });
  stopOnSignals(() => gw.stop());
  process.stdout.write(banner(gw) + "\n");
  process.stdout.write(
    [
      "Register a model and a deployment (OpenAI-compatible instances you run), then send requests:",
      `  export TOKEN=${gw.adminTokenGenerated ? gw.adminToken : "<your admin token>"}`,
      `  curl -s ${gw.controlUrl}/v1/models -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"name":"llama-3-8b"}'`,
      `  curl -s ${gw.controlUrl}/v1/deployments -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \\`,
      `    -d '{"model":"llama-3-8b","instances":[{"url":"http://127.0.0.1:8000/v1"}]}'`,
      `  curl -s ${gw.url}/v1/chat/completions -H 'content-type: application/json' -d '{"model":"llama-3-8b","messages":[{"role":"user","content":"hi"}]}'`,
      "",
      "Each instance is tested before the deployment is stored: when none answers, the create is refused (422",
      'connectivity_failed, with what each test saw); add "allow_unreachable":true to store it anyway.',
      `The dashboard (${gw.signInUrl ? "the sign-in link above" : gw.dashboardUrl}) does all of this too.`,
      "",
      "Or try `npm run demo` (starts mock instances and registers them for you). Ctrl-C stops everything.",
      "",
    ].join("\n"),
  );
} catch (e) {
  process.stderr.write(`\nnpm start: ${e instanceof LaunchError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
}
