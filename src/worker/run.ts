/** Process entry of a worker (used by `bin/worker.js` and by the coordinator when it spawns local workers). */
import { main } from './cli.js';

process.exitCode = await main(process.argv.slice(2));
