/**
 * `coordinator` command line:
 * - `coordinator [train] [flags]` — the default: runs the plan (see `options.ts` for every flag);
 * - `coordinator predict <run-dir | model.safetensors> <image…>` — breed and probability per image;
 * - `coordinator interpret <run-dir | model.safetensors> [--data …]` — top losses, confusion matrix, report;
 * - `coordinator show-batch [--data …] [--rows 3] [--size 224] [--out show-batch.png]` — fastai's `show_batch`.
 * Bad flags, `PETS_*` settings (`contract/env-settings.ts`) and data that cannot be trained stop the run before any
 * worker starts (exit code 2).
 */
import { CLI_EXIT, errorExit as endOnError } from '../contract/cli-error.js';
import { checkEnvSettings } from '../contract/env-settings.js';
import { autoResumeCommand, resumeCommand, type ResumePoint } from './checkpoint-store.js';
import { Coordinator } from './driver.js';
import { parseTrainArgs, type TrainCommand } from './options.js';
import { runInterpretCommand, runPredictCommand } from './inference.js';
import { runShowBatchCommand } from './show-batch.js';
import { ignoreBrokenPipes } from '../training/broken-pipe.js';

/** Prints the error the command ends on (`coordinator: CODE: message`) and returns its exit code (contract/cli-error.ts). */
function errorExit(err: unknown): number {
  return endOnError('coordinator', err);
}

async function train(argv: readonly string[]): Promise<number> {
  let cmd: TrainCommand;
  let point: ResumePoint | null = null;
  const io = { out: (line: string) => console.log(line), log: (line: string) => console.error(`[coordinator] ${line}`), progress: (line: string) => console.error(line) };
  try {
    cmd = autoResumeCommand(parseTrainArgs(argv), io.log);
    // Through the log too (it was bare console.error): "--resume: keeping this run's …" and the skipped-checkpoint
    // lines were the only stderr lines of a run without the "[coordinator] " every other one has.
    if (cmd.runtime.resume) ({ cmd, point } = resumeCommand(cmd, io.log));
  } catch (err) {
    return errorExit(err);
  }
  const coordinator = new Coordinator(cmd, io, point);
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      io.log(`${sig}: finishing the current step, then checkpointing and stopping (again to exit at once)`);
      coordinator.requestStop();
    } else if (signals === 2) {
      io.log(`${sig} again: exiting now (workers get SIGTERM; no checkpoint of this step)`);
      // The pending run() may hold timers for minutes: once everything is closed (no thread holds a socket in
      // this process), exiting here is safe.
      void coordinator.closeNow().finally(() => process.exit(COORDINATOR_EXIT.secondSignal));
    }
  };
  // An error nothing caught: the run cannot go on, but its workers still get a clean close (SIGTERM) and the
  // process a chosen code, rather than Node's crash with the workers SIGKILLed by the exit handler.
  let crashed = false;
  ignoreBrokenPipes();
  const onUncaught = (err: unknown): void => {
    if (crashed) return;
    crashed = true;
    io.log(`ERR_INTERNAL: uncaught: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    void coordinator.closeNow().finally(() => process.exit(COORDINATOR_EXIT.failed));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  let code: number = COORDINATOR_EXIT.ok;
  let failure: unknown;
  try {
    await coordinator.run();
  } catch (err) {
    failure = err;
    code = errorExit(err);
  }
  await coordinator.close(failure);
  process.off('uncaughtException', onUncaught);
  process.off('unhandledRejection', onUncaught);
  // The signal handlers stay until the process ends: a signal during the last moments changes nothing.
  return code;
}

/**
 * Exit codes of the coordinator (docs/fault-tolerance.md, "Shutdown order and exit codes"). Every ending closes
 * the workers, sockets, servers and pools first ({@link Coordinator.close}).
 */
export const COORDINATOR_EXIT = Object.freeze({
  /** The run finished, or stopped cleanly on a first SIGINT/SIGTERM (checkpointed; `--resume` continues). */
  ok: CLI_EXIT.ok,
  /**
   * The run failed: a failed step, workers lost beyond `--max-restarts` or not replaced within `--rejoin-timeout-s`
   * (checkpointed first), replicas that differ, data or ports.
   */
  failed: CLI_EXIT.failed,
  /** A bad flag, configuration or data set that cannot be trained (ERR_BAD_DATA): nothing was started. */
  badFlag: CLI_EXIT.badInput,
  /** A second SIGINT/SIGTERM: abandoned at once (128 + SIGINT's 2, as a shell reports Ctrl-C). */
  secondSignal: 130,
});

/**
 * Entry point of `npx coordinator`.
 * @param argv - arguments after the program name
 * @returns the process exit code ({@link COORDINATOR_EXIT}: 0 success or clean stop, 1 failed run, 2 bad flag,
 *   config or data, 130 a second signal)
 */
export async function main(argv: readonly string[]): Promise<number> {
  const [first, ...rest] = argv;
  // `coordinator help predict`, as git's and npm's `help <command>`: it showed the training flags whatever followed.
  if (first === 'help') return rest[0] === undefined || rest[0] === 'train' ? train(['--help']) : main([rest[0], '--help']);
  // PETS_NATIVE_THREADS=abc ran on one thread, saying nothing; read only in the workers, it would end them as lost.
  // --help and --version start nothing: they answer whatever the environment holds.
  const asksHelp = argv.some((a) => a === '--help' || a === '-h' || a === '--version' || a === '-V');
  try {
    if (!asksHelp) checkEnvSettings(process.env);
  } catch (err) {
    return errorExit(err);
  }
  if (first === 'predict') return runPredictCommand(rest).catch(errorExit);
  if (first === 'interpret') return runInterpretCommand(rest).catch(errorExit);
  if (first === 'show-batch') return runShowBatchCommand(rest).catch(errorExit);
  return train(first === 'train' ? rest : argv);
}
