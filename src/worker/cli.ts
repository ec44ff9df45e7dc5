/**
 * `worker` command line: parses flags, validates them before anything starts, and runs the job.
 */
import { Command, CommanderError } from 'commander';
import { initBackend, parseBackendRequest } from '../shared/compute/backend.js';
import { isTrainerError } from '../shared/errors.js';

/**
 * Entry point of `npx worker`.
 * @param argv - arguments after the program name
 * @returns the process exit code (0 on success, 2 on a bad flag, 1 on a failed run)
 */
export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command('worker')
    .description('Distributed trainer worker process')
    .option('--backend <name>', 'compute backend: auto|tensorflow|wasm|cpu', 'auto')
    .exitOverride();
  try {
    program.parse([...argv], { from: 'user' });
    const opts = program.opts<{ backend: string }>();
    const choice = await initBackend(parseBackendRequest(opts.backend));
    console.log(choice.summary);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (isTrainerError(err, 'ERR_BAD_FLAG')) {
      console.error(`worker: ${err.message}`);
      return 2;
    }
    console.error(`worker: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
