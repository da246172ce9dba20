import assert from "node:assert/strict";
import { test } from "node:test";
import { buildFixture, startFixture } from "./build-fixture.js";
import { HostError, ProxyWasmHost } from "../../envoy/local/host/index.js";

test("a module importing a function Envoy does not provide is refused, naming the import", async () => {
  await assert.rejects(startFixture("missing-import"), (err: unknown) => {
    assert.ok(err instanceof HostError);
    assert.match(err.message, /missing import: env\.proxy_dictionary_get/);
    return true;
  });
});

test("an import declared with the wrong signature is refused like V8 refuses to link it", async () => {
  await assert.rejects(startFixture("wrong-signature"), (err: unknown) => {
    assert.ok(err instanceof HostError);
    assert.match(err.message, /import type mismatch: env\.proxy_increment_metric is \(i32,i32->i32\), Envoy provides \(i32,i64->i32\)/);
    return true;
  });
});

test("the same module as a precompiled WebAssembly.Module loads (signatures are then not checked)", async () => {
  const module = new WebAssembly.Module(await buildFixture("wrong-signature"));
  const host = await ProxyWasmHost.start({ wasm: module });
  assert.equal(host.workers.length, 1);
});

test("a host call other than logging/clock/random during _initialize fails start loudly", async () => {
  await assert.rejects(startFixture("start-hostcall"), (err: unknown) => {
    assert.ok(err instanceof HostError);
    assert.match(err.message, /env\.proxy_get_property during module start/);
    // proxy_log just before it was allowed and is in the report.
    assert.match(err.message, /top level: logging is allowed/);
    return true;
  });
});

test("on_configure returning false fails start with the plugin's own explanation", async () => {
  await assert.rejects(startFixture("probe", { configuration: "fail" }), (err: unknown) => {
    assert.ok(err instanceof HostError);
    assert.match(err.message, /proxy_on_configure returned false/);
    assert.match(err.message, /invalid configuration; expected \{"control_cluster": string\}/);
    assert.equal(err.logs.at(-1)?.level, "error");
    return true;
  });
});

test("bytes that are not wasm are refused", async () => {
  await assert.rejects(ProxyWasmHost.start({ wasm: new Uint8Array([1, 2, 3]) }), /Failed to load Wasm bytecode/);
});

test("configurations reach on_vm_start (buffer 6) and on_configure (buffer 7)", async () => {
  const host = await startFixture("probe", { configuration: "metrics", vmConfiguration: "vm-cfg" });
  assert.deepEqual(
    host.logs.map((l) => l.message),
    ["vm start vm_config=vm-cfg", "configured worker-seq=0 config=metrics"],
  );
  assert.deepEqual(host.refusals, []);
});

test("a module without the proxy_abi_version_0_2_1 marker is refused", async () => {
  await assert.rejects(startFixture("no-abi-version"), /Missing or unknown Proxy-Wasm ABI version/);
});

test("a module without malloc or proxy_on_memory_allocate is refused", async () => {
  await assert.rejects(startFixture("no-allocator"), /missing malloc function/);
});
