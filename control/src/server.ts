/** Entry point: `npm run start:control`. Configuration comes from the environment (see README.md). */
import { loadConfig } from "./config.js";
import { startControl } from "./control.js";

const loaded = loadConfig(process.env);
if (!loaded.ok) {
  process.stderr.write("control: invalid configuration\n");
  for (const i of loaded.issues) process.stderr.write(`  ${i.path || "(env)"}: ${i.message}\n`);
  process.exit(2);
}
const config = loaded.config;
if (config.generatedAdminToken) {
  // Local use only: printed once, never logged again.
  process.stderr.write(`control: no CONTROL_ADMIN_TOKENS configured; generated an admin token for this run:\n  ${config.generatedAdminToken}\n`);
}
const control = await startControl(config);
let stopping = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    control.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
