// assembleTable: one deployment's problem stays that deployment's (pure; see hardening.table-limits for the service).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { RoutingTable, TABLE_LIMITS } from "../../control/contracts/routing-table.js";
import { assembleTable, type TableEntry } from "../../control/src/routing-table/assemble.js";
import { tableEntries } from "../../control/src/routing-table/builder.js";
import { dep, inst, model } from "./documents.js";

const entry = (id: string, names: string[], instances = 1): TableEntry => ({
  deployment: {
    id, cluster: `gw.${id}`, strategy: "round_robin", on_unavailable: "fail",
    instances: Array.from({ length: instances }, (_, k) => ({ id: `i${k}`, address: `10.0.${Math.floor(k / 250)}.${1 + (k % 250)}:8000`, base_path: "/v1", weight: 1, priority: 0, region: "", state: "active" as const })),
  },
  names,
});
const lastGoodOf = (entries: TableEntry[]) => new Map(entries.map((e) => [e.deployment.id, e]));

describe("assembleTable", () => {
  test("all valid: the same table buildRoutingTable describes, nothing held", () => {
    const entries = tableEntries([model("m1", "llama", ["l"]), model("m2", "qwen")], [dep("b", "m2", [inst("x", "active")]), dep("a", "m1", [inst("y", "active")])]);
    const { table, held } = assembleTable(3, entries, new Map());
    assert.deepEqual(held, []);
    assert.ok(RoutingTable.safeParse(table).success);
    assert.deepEqual(table.models, { l: "a", llama: "a", qwen: "b" });
    assert.deepEqual(table.deployments.map((d) => d.id), ["a", "b"]);
  });

  test("a deployment over the instance cap keeps its last good entry; the others publish their new state", () => {
    const prev = [entry("a", ["x"], 2), entry("b", ["y"], 1)];
    const now = [entry("a", ["x"], TABLE_LIMITS.maxInstancesPerDeployment + 1), entry("b", ["y"], 3)];
    const { table, held } = assembleTable(9, now, lastGoodOf(prev));
    assert.ok(RoutingTable.safeParse(table).success);
    assert.equal(table.deployments.find((d) => d.id === "a")!.instances.length, 2);
    assert.equal(table.deployments.find((d) => d.id === "b")!.instances.length, 3);
    assert.deepEqual(held.map((h) => [h.deployment, h.serving]), [["a", "last_good"]]);
    assert.match(held[0]!.reasons[0]!, /instances/);
  });

  test("without a last good entry it is left out, and its names with it", () => {
    const { table, held } = assembleTable(2, [entry("a", ["x"], TABLE_LIMITS.maxInstancesPerDeployment + 1), entry("b", ["y"])], new Map());
    assert.deepEqual(table.deployments.map((d) => d.id), ["b"]);
    assert.deepEqual(table.models, { y: "b" });
    assert.deepEqual(held.map((h) => [h.deployment, h.serving]), [["a", "none"]]);
  });

  test("over the name cap: what was serving stays, the new deployment is held (not the whole table)", () => {
    const half = TABLE_LIMITS.maxModelNames / 2;
    const names = (p: string, n: number) => Array.from({ length: n }, (_, k) => `${p}${k}`).sort();
    const serving = [entry("a", names("a", half)), entry("c", names("c", half))];
    const { table, held } = assembleTable(5, [...serving, entry("b", names("b", 1))].sort((x, y) => x.deployment.id.localeCompare(y.deployment.id)), lastGoodOf(serving));
    assert.ok(RoutingTable.safeParse(table).success);
    assert.deepEqual(table.deployments.map((d) => d.id), ["a", "c"]);
    assert.equal(Object.keys(table.models).length, TABLE_LIMITS.maxModelNames);
    assert.deepEqual(held.map((h) => [h.deployment, h.serving]), [["b", "none"]]);
    assert.match(held[0]!.reasons[0]!, /at most 50000 model names/);
  });

  test("a held deployment's old names never take a name another deployment now has", () => {
    // 'a' used to be reachable as "x"; now it is invalid, and "x" belongs to 'b'.
    const prev = [entry("a", ["x"])];
    const { table, held } = assembleTable(4, [entry("a", ["z"], TABLE_LIMITS.maxInstancesPerDeployment + 1), entry("b", ["x"])], lastGoodOf(prev));
    assert.equal(table.models.x, "b");
    assert.deepEqual(held.map((h) => [h.deployment, h.serving]), [["a", "none"]]);
    assert.ok(RoutingTable.safeParse(table).success);
  });
});
