// Issue 16, item 11: region, display_name and url refuse what is not text (CR, LF, NUL, lone surrogates),
// port 0 and an empty authority; the API answers 400 naming the field. Every URL here is on loopback or is
// refused before any connection.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { RedisServer } from "../support/redis.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { InstanceCreate, InstanceUpdate, parseInstanceUrl } from "../../control/src/deployments/schemas.js";
import { ModelCreate, ModelUpdate } from "../../control/src/models/schemas.js";
import { registerModel, startReplica, withRedis, type Replica, type Res } from "./harness.js";

const BAD_TEXT = ["us\r\neast", "us\neast", "us\reast", "us\0east", "us\ud800east", "us\udc00", "\ud83d", "a\x7fb", "a\x85b"];

describe("labels: pure schemas", () => {
  for (const s of BAD_TEXT) {
    test(`region ${JSON.stringify(s)} is refused (create and update)`, () => {
      assert.equal(InstanceCreate.safeParse({ url: "http://10.0.0.5:8000/v1", region: s }).success, false);
      assert.equal(InstanceUpdate.safeParse({ region: s }).success, false);
    });
    test(`display_name ${JSON.stringify(s)} is refused (create and update)`, () => {
      assert.equal(ModelCreate.safeParse({ name: "m", display_name: s }).success, false);
      assert.equal(ModelUpdate.safeParse({ display_name: s }).success, false);
    });
  }
  test("ordinary text and paired surrogates stay accepted", () => {
    assert.equal(InstanceCreate.safeParse({ url: "http://10.0.0.5:8000/v1", region: "eu-west 1 — Zürich 🚀" }).success, true);
    assert.equal(ModelCreate.safeParse({ name: "m", display_name: "Llama 3.1 8B — Instruct 🦙" }).success, true);
  });
});

describe("instance URLs: pure", () => {
  const refused = [
    "http://10.0.0.5:0/v1",
    "https://10.0.0.5:0",
    "http:///v1",
    "http:////10.0.0.5/v1",
    "http:\\\\10.0.0.5/v1",
    "http:10.0.0.5/v1",
    "http://10.0.0.5:8000/v\r\n1",
    "http://10.0.0.5:8000/v1\n",
    "http://10.0.0.5\r:8000/v1",
    " http://10.0.0.5:8000/v1",
    "http://10.0.0.5:8000/v1\t",
    "http://10.0.0.5:8000/v\x001",
    "http://10.0.0.5:8000/v\ud8001",
  ];
  for (const u of refused) {
    test(`${JSON.stringify(u)} is refused`, () => {
      assert.equal(typeof parseInstanceUrl(u), "string");
      assert.equal(InstanceCreate.safeParse({ url: u }).success, false);
    });
  }
  test("ordinary URLs stay accepted", () => {
    assert.deepEqual(parseInstanceUrl("http://10.0.0.5:8000/v1"), { scheme: "http", host: "10.0.0.5", port: 8000, base_path: "/v1" });
    assert.deepEqual(parseInstanceUrl("HTTPS://[fd00::7]/openai/v1/"), { scheme: "https", host: "fd00::7", port: 443, base_path: "/openai/v1" });
    assert.deepEqual(parseInstanceUrl("http://llm.internal:65535"), { scheme: "http", host: "llm.internal", port: 65535, base_path: "" });
  });
});

describe("API: 400 naming the field", () => {
  let redis: RedisServer;
  let c: Replica;
  let mock: MockOpenAI;
  const paths = (r: Res): string[] => (r.body?.error?.issues ?? []).map((i: { path: string }) => i.path);

  before(async () => {
    redis = await withRedis();
    mock = await startMockOpenAI({ model: "m1" });
    c = await startReplica(redis.url);
    await registerModel(c.api, "m1");
    const r = await c.api("POST", "/v1/deployments", { body: { id: "d1", model: "m1", instances: [{ id: "a", url: mock.url }] } });
    assert.equal(r.status, 201, r.text);
  });
  after(async () => {
    await c.stop();
    await mock.close();
    await redis.close();
  });

  test("model display_name with CR/LF, NUL or a lone surrogate", async () => {
    for (const s of ["x\r\ny", "x\0y", "x\ud800y"]) {
      const r = await c.api("POST", "/v1/models", { body: { name: "m9", display_name: s } });
      assert.equal(r.status, 400, r.text);
      assert.deepEqual(paths(r), ["display_name"]);
    }
    const m = (await c.api("GET", "/v1/models/m1")).body;
    const r = await c.api("PATCH", `/v1/models/${m.id}`, { body: { display_name: "a\nb" }, headers: { "if-match": `"${m.revision}"` } });
    assert.equal(r.status, 400, r.text);
    assert.deepEqual(paths(r), ["display_name"]);
  });

  test("instance region with CR/LF, NUL or a lone surrogate; url with CR/LF; port 0", async () => {
    for (const region of ["eu\r\nwest", "eu\0", "eu\udfff"]) {
      const r = await c.api("POST", "/v1/deployments/d1/instances", { body: { id: "b", url: mock.url, region } });
      assert.equal(r.status, 400, r.text);
      assert.deepEqual(paths(r), ["region"]);
    }
    const p = await c.api("PATCH", "/v1/deployments/d1/instances/a", { body: { region: "x\ny" } });
    assert.equal(p.status, 400, p.text);
    assert.deepEqual(paths(p), ["region"]);
    const port = new URL(mock.url).port;
    for (const url of [`http://127.0.0.1:${port}/v\r\n1`, "http://127.0.0.1:0/v1"]) {
      const r = await c.api("POST", "/v1/deployments/d1/instances", { body: { id: "b", url, allow_unreachable: true } });
      assert.equal(r.status, 400, r.text);
      assert.deepEqual(paths(r), ["url"]);
    }
    const d = (await c.api("GET", "/v1/deployments/d1")).body;
    assert.deepEqual(d.instances.map((i: { id: string }) => i.id), ["a"]);
  });
});
