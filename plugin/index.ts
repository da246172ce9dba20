// Entry point of build/plugin.wasm: the proxy-wasm ABI exports and the gateway's root context.
import { RootContext } from "./abi/context";
import { setRootFactory } from "./abi/registry";
import { GatewayRoot } from "./filter/root";

export * from "./abi/exports";

function newRoot(id: u32): RootContext {
  return new GatewayRoot(id);
}

setRootFactory(newRoot);
