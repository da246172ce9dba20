// Mock upstream listeners of the bench child processes: n servers on 127.0.0.1 ephemeral ports, and a
// close that does not wait for the load generator's keep-alive connections.
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

export async function listenAll(n: number, make: (i: number) => Server): Promise<{ servers: Server[]; ports: number[] }> {
  const servers: Server[] = [];
  const ports: number[] = [];
  for (let i = 0; i < n; i++) {
    const srv = make(i);
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    servers.push(srv);
    ports.push((srv.address() as AddressInfo).port);
  }
  return { servers, ports };
}

export async function closeAll(servers: Server[]): Promise<void> {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}
