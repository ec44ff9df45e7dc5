/** Process entry of a worker (used by `bin/worker.js` and by the coordinator when it spawns local workers). */
import { main } from './cli.js';

const code = await main(process.argv.slice(2));
process.exitCode = code;
// main() resolved: sockets, heartbeat thread, pools and backend are closed, so the process ends by itself. Should a
// handle still hold the event loop, end anyway after 10 s (an unref'd timer: it never delays a clean exit).
setTimeout(() => {
  console.error(`[worker ${process.pid}] exit: the event loop is still held 10 s after closing; exiting with code ${code}`);
  process.exit(code);
}, 10_000).unref();
