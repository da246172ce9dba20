// Free-port helpers for the launcher, the demo's mock engines and tests.
import { createServer } from "node:net";

/** A TCP port that was free on `host` a moment ago (the OS picks it; closed again before returning). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
