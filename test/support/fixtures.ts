import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const FIXTURES = fileURLToPath(new URL("../fixtures/", import.meta.url));

/** Every fixture of a contract: `valid/*.json` must be accepted and `invalid/*.json` refused by both sides. */
export function contractFixtures(contract: "routing-table" | "plugin-config" | "telemetry"): { name: string; valid: boolean; text: string }[] {
  const out: { name: string; valid: boolean; text: string }[] = [];
  for (const kind of ["valid", "invalid"] as const) {
    const dir = join(FIXTURES, contract, kind);
    for (const file of readdirSync(dir).sort()) {
      if (file.endsWith(".json")) out.push({ name: `${kind}/${file}`, valid: kind === "valid", text: readFileSync(join(dir, file), "utf8") });
    }
  }
  return out;
}
