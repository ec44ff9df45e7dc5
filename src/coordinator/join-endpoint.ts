/**
 * The control-plane address printed in the `npx worker --connect …` command that remote workers are told to run.
 */
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';

/**
 * The endpoint a worker on another machine connects to. A coordinator bound to every interface (`--bind
 * tcp://0.0.0.0:5555` or `tcp://*:5555`) listens on `tcp://127.0.0.1:<port>` for its local workers, and the join
 * command it printed said so, which no other machine can reach; it names this host's first non-loopback IPv4 address
 * instead (as `hostname -I` lists them), or a placeholder when there is none.
 * @param bind the `--bind` endpoint as given, e.g. `tcp://0.0.0.0:5555`
 * @param endpoint the endpoint the control plane listens on, port resolved, e.g. `tcp://127.0.0.1:5555`
 * @param nets this host's interfaces (`os.networkInterfaces()`; a parameter for tests)
 * @returns `endpoint` unchanged unless `bind`'s host is `0.0.0.0` or `*`
 */
export function remoteJoinEndpoint(bind: string, endpoint: string,
  nets: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string {
  const host = /^tcp:\/\/([^:]+):/.exec(bind)?.[1];
  if (host !== '0.0.0.0' && host !== '*') return endpoint;
  const port = /:(\d+)$/.exec(endpoint)?.[1] ?? '?';
  const address = Object.values(nets).flatMap((list) => list ?? []).find((n) => n.family === 'IPv4' && !n.internal)?.address;
  return `tcp://${address ?? "<this host's address>"}:${port}`;
}
