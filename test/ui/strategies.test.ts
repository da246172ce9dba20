// The dashboard offers exactly the strategies contract 1 knows (one list in the contract, one in the page).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Strategy } from "../../control/contracts/routing-table.js";

test("the dashboard's strategy list is the contract's", () => {
  const src = readFileSync(new URL("../../control/ui/views.js", import.meta.url), "utf8");
  const block = /export const STRATEGIES = [^[]*\(\[([\s\S]*?)\]\);/.exec(src)?.[1] ?? "";
  const offered = [...block.matchAll(/\["([a-z_]+)",/g)].map((m) => m[1]);
  assert.deepEqual([...offered].sort(), [...Strategy.options].sort());
});
