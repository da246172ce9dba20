// The benchmark floor: a proxy-wasm filter on the same binding (plugin/abi/) that does nothing.
// Every request still crosses the ABI (context create, headers, done, delete) and returns Continue.
import { RootContext, StreamContext } from "../../plugin/abi/context";
import { setRootFactory } from "../../plugin/abi/registry";

export * from "../../plugin/abi/exports";

/** Stateless, so one instance serves every stream. */
const NOOP_STREAM = new StreamContext();

class NoopRoot extends RootContext {
  newStream(id: u32): StreamContext | null {
    return NOOP_STREAM;
  }
}

function newRoot(id: u32): RootContext {
  return new NoopRoot(id);
}

setRootFactory(newRoot);
