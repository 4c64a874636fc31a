// A free loopback port for servers the tests and benches start (mosquitto, nats-server, receivers).
import net from 'node:net';

/** A port nothing listens on right now (the OS's pick, released at once). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
