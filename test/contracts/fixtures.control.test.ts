// The control side of contracts 1–3: the zod schemas accept exactly the valid fixtures.
// The plugin side runs the same fixtures through the wasm (test/plugin/contracts.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { RoutingTable } from "../../control/contracts/routing-table.js";
import { PluginConfig } from "../../control/contracts/plugin-config.js";
import { TelemetryBatch } from "../../control/contracts/telemetry.js";
import { contractFixtures } from "../support/fixtures.js";

function parses(schema: { safeParse(v: unknown): { success: boolean } }, text: string): boolean {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return false;
  }
  return schema.safeParse(value).success;
}

for (const [contract, schema] of [
  ["routing-table", RoutingTable],
  ["plugin-config", PluginConfig],
  ["telemetry", TelemetryBatch],
] as const) {
  for (const f of contractFixtures(contract)) {
    test(`${contract} ${f.name} is ${f.valid ? "accepted" : "refused"} by the zod schema`, () => {
      assert.equal(parses(schema, f.text), f.valid);
    });
  }
}

test("plugin-config defaults are filled in from the schema", () => {
  const c = PluginConfig.parse({ control_cluster: "c" });
  assert.equal(c.model_header, "x-model");
  assert.equal(c.unknown_model, "passthrough");
  assert.equal(c.endpoint_header, "x-gateway-destination-endpoint");
  assert.ok(c.control_timeout_ms > c.long_poll_seconds * 1000);
});
