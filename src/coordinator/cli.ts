/**
 * `coordinator` command line:
 * - `coordinator [train] [flags]` — the default: runs the plan (see `options.ts` for every flag);
 * - `coordinator predict <run-dir | model.safetensors> <image…>` — breed and probability per image;
 * - `coordinator interpret <run-dir | model.safetensors> [--data …]` — top losses, confusion matrix, report;
 * - `coordinator show-batch [--data …] [--rows 3] [--size 224] [--out show-batch.png]` — fastai's `show_batch`.
 * Bad flags and data that cannot be trained stop the run before any worker starts (exit code 2).
 */
import { CommanderError } from 'commander';
import { isTrainerError } from '../shared/errors.js';
import { resumeCommand, type ResumePoint } from './checkpoints.js';
import { Coordinator } from './driver.js';
import { parseTrainArgs, type TrainCommand } from './options.js';
import { runInterpretCommand, runPredictCommand } from './inference.js';
import { runShowBatchCommand } from './show-batch.js';

function errorExit(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
  const code = isTrainerError(err) ? err.code : null;
  console.error(`coordinator: ${code ? `${code}: ` : ''}${err instanceof Error ? err.message : String(err)}`);
  // ERR_BAD_DATA: the data cannot be trained as given (nothing labelled, an empty split, a class of bad files):
  // like a bad flag, the input must change, and it is found before any worker starts.
  return code === 'ERR_BAD_FLAG' || code === 'ERR_BAD_CONFIG' || code === 'ERR_BAD_DATA' ? 2 : 1;
}

async function train(argv: readonly string[]): Promise<number> {
  let cmd: TrainCommand;
  let point: ResumePoint | null = null;
  try {
    cmd = parseTrainArgs(argv);
    if (cmd.runtime.resume) ({ cmd, point } = resumeCommand(cmd, (line) => console.error(line)));
  } catch (err) {
    return errorExit(err);
  }
  const io = { out: (line: string) => console.log(line), log: (line: string) => console.error(`[coordinator] ${line}`) };
  const coordinator = new Coordinator(cmd, io, point);
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      io.log(`${sig}: finishing the current step, then checkpointing and stopping (again to exit at once)`);
      coordinator.requestStop();
    } else {
      io.log(`${sig} again: exiting now`);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const result = await coordinator.run();
    return result.stopped ? 0 : 0;
  } catch (err) {
    return errorExit(err);
  } finally {
    await coordinator.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * Entry point of `npx coordinator`.
 * @param argv - arguments after the program name
 * @returns the process exit code (0 success or clean stop, 2 bad flag, config or data, 1 failed run)
 */
export async function main(argv: readonly string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === 'help') return train(['--help']);
  if (first === 'predict') return runPredictCommand(rest).catch(errorExit);
  if (first === 'interpret') return runInterpretCommand(rest).catch(errorExit);
  if (first === 'show-batch') return runShowBatchCommand(rest).catch(errorExit);
  return train(first === 'train' ? rest : argv);
}
