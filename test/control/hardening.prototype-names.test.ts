// Issue 16, item 12: model names that are Object.prototype property names ("__proto__", "constructor") are
// ordinary names on both sides. z.record dropped "__proto__" from its output, so control counted one name
// fewer than the plugin (which refuses a table at the name cap) and never checked its target.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { RoutingTable, TABLE_LIMITS } from "../../control/contracts/routing-table.js";
import { buildValidTable } from "../../control/src/routing-table/builder.js";
import { FIXTURES } from "../support/fixtures.js";
import { dep, inst, model } from "./documents.js";

const own = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

test("the prototype-names fixture keeps every name through the zod schema", () => {
  const text = readFileSync(join(FIXTURES, "routing-table/valid/prototype-model-names.json"), "utf8");
  const r = RoutingTable.safeParse(JSON.parse(text));
  assert.ok(r.success);
  assert.deepEqual(Object.keys(r.data.models).sort(), ["__proto__", "constructor", "hasOwnProperty", "toString"]);
  assert.ok(own(r.data.models, "__proto__"));
  assert.equal(Object.getOwnPropertyDescriptor(r.data.models, "__proto__")?.value, "proto-dep");
});

test('"__proto__" counts towards the model-name cap (as the plugin counts it)', () => {
  const models: Record<string, string> = {};
  for (let i = 0; i < TABLE_LIMITS.maxModelNames; i++) models[`m${i}`] = "d";
  const atCap = { schema: 1, version: 1, models, deployments: [{ id: "d", cluster: "gw.d", strategy: "round_robin", on_unavailable: "fail", instances: [] }] };
  assert.equal(RoutingTable.safeParse(atCap).success, true);
  const over = JSON.parse(JSON.stringify(atCap).replace('"models":{', '"models":{"__proto__":"d",')) as unknown;
  const r = RoutingTable.safeParse(over);
  assert.equal(r.success, false, "50,001 names including __proto__ is over the cap");
  assert.ok(r.error!.issues.some((i) => i.path.join(".") === "models" && /more than/.test(i.message)));
});

test('a "__proto__" name pointing nowhere is refused (its target is checked)', () => {
  const r = RoutingTable.safeParse(JSON.parse('{"schema":1,"version":1,"models":{"__proto__":"nowhere"},"deployments":[]}'));
  assert.equal(r.success, false);
  assert.deepEqual(r.error!.issues[0]!.path, ["models", "__proto__"]);
});

test('the prototype is never replaced: models is a plain object whose "__proto__" is data', () => {
  const r = RoutingTable.safeParse(JSON.parse('{"schema":1,"version":1,"models":{"__proto__":"d"},"deployments":[{"id":"d","cluster":"gw.d","strategy":"round_robin","on_unavailable":"fail","instances":[]}]}'));
  assert.ok(r.success);
  assert.equal(Object.getPrototypeOf(r.data.models), Object.prototype);
});

test('control builds and validates a table with models named "__proto__" and "constructor" without losing them', () => {
  const models = [model("m1", "__proto__", ["constructor"]), model("m2", "toString")];
  const deps = [dep("d1", "m1", [inst("a", "active", "10.0.0.1:8000")]), dep("d2", "m2", [inst("b", "active", "10.0.0.2:8000")])];
  const built = buildValidTable(5, models, deps);
  assert.ok(built.ok, built.ok ? "" : built.issues.join("; "));
  const t = built.table;
  assert.ok(own(t.models, "__proto__"));
  assert.equal(Object.getOwnPropertyDescriptor(t.models, "__proto__")?.value, "d1");
  const wire = JSON.parse(JSON.stringify(t)) as { models: object };
  assert.deepEqual(Object.keys(wire.models), ["__proto__", "constructor", "toString"]);
  const again = RoutingTable.safeParse(wire);
  assert.ok(again.success);
  assert.equal(Object.keys(again.data.models).length, 3);
});
