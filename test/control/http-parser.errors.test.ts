// Requests Node's HTTP parser refuses never reach Express; they must still get the API's JSON error
// shape (found by the API fuzz: a bare 400 with no body before).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createConnection } from "node:net";
import { startReplica, withRedis, type Replica } from "./harness.js";
import type { RedisServer } from "../support/redis.js";

let redis: RedisServer;
let replica: Replica;

before(async () => {
  redis = await withRedis();
  replica = await startReplica(redis.url);
});
after(async () => {
  await replica.stop();
  await redis.stop();
});

/** Sends raw bytes and returns the whole answer (the server closes the connection after it). */
function raw(url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = createConnection({ host: hostname, port: Number(port) }, () => sock.end(bytes));
    let out = "";
    sock.setEncoding("utf8");
    sock.on("data", (d) => (out += d));
    sock.on("end", () => resolve(out));
    sock.on("error", reject);
  });
}

function parse(answer: string): { status: number; contentType: string; head: string; body: any } {
  const [head, body] = answer.split("\r\n\r\n", 2) as [string, string];
  const status = Number(head.split(" ")[1]);
  const contentType = /content-type: ([^\r\n]+)/i.exec(head)?.[1] ?? "";
  return { status, contentType, head, body: JSON.parse(body) };
}

test("a request line the parser refuses gets 400 with the JSON error shape", async () => {
  const r = parse(await raw(replica.url, "GARBAGE\x01 / HTTP/1.1\r\nhost: x\r\n\r\n"));
  assert.equal(r.status, 400);
  assert.match(r.contentType, /application\/json/);
  assert.equal(r.body.error.code, "malformed_request");
  assert.match(r.head, new RegExp(`x-request-id: ${r.body.error.request_id}`, "i"), "the id is also in the header, as on every other error");
  assert.match(r.body.error.request_id, /^[0-9a-f-]{36}$/);
});

test("oversized headers get 431 with the JSON error shape", async () => {
  const r = parse(await raw(replica.url, `GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(64 * 1024)}\r\n\r\n`));
  assert.equal(r.status, 431);
  assert.equal(r.body.error.code, "headers_too_large");
});
