/**
 * How a command line program (`coordinator`, `npm run learn`) ends on an error: one line on stderr,
 * `<program>: <code>: <message>`, with the error's stable code ({@link TrainerErrorCode}) so a user or a script can
 * tell the kinds apart without reading the words, and the exit code that says whether the input must change.
 */
import { CommanderError } from 'commander';
import { isTrainerError, type TrainerErrorCode } from './errors.js';
import { errorText } from './log-text.js';

/** Exit codes shared by the command line programs (the coordinator's `COORDINATOR_EXIT` has these and more). */
export const CLI_EXIT = Object.freeze({
  ok: 0,
  /** The work failed (data that could not be downloaded, a backend that would not start, a bug…). */
  failed: 1,
  /** A bad flag, configuration or data set that cannot be trained: the input must change; nothing was started. */
  badInput: 2,
});

/**
 * The codes of an input the user must change (exit {@link CLI_EXIT}.badInput): a bad flag or configuration, and data
 * that cannot be trained as given (ERR_BAD_DATA: nothing labelled, an empty split…), found before any work starts.
 */
const INPUT_CODES: ReadonlySet<TrainerErrorCode> = new Set<TrainerErrorCode>(['ERR_BAD_FLAG', 'ERR_BAD_CONFIG', 'ERR_BAD_DATA']);

/** Whether `code` means "the input must change" ({@link CLI_EXIT}.badInput) when the program itself raises it. */
export function isInputCode(code: TrainerErrorCode): boolean {
  return INPUT_CODES.has(code);
}

/**
 * The code an error is reported with: a {@link TrainerError}'s own, else `ERR_INTERNAL` (an error no check of this
 * project named: a bug, or a system error nothing wrapped), as a worker reports one to its coordinator.
 */
export function errorCode(err: unknown): TrainerErrorCode {
  return isTrainerError(err) ? err.code : 'ERR_INTERNAL';
}

/**
 * The line a program prints for the error it ends on: `<program>: <code>: <message>`, the message on one line
 * (`errorText`: file names and labels escaped), except a message written as several lines by design (ERR_OFFLINE).
 * @param program - e.g. `coordinator`, `learn`
 * @example errorLine('learn', new TrainerError('ERR_BAD_FLAG', '--epochs must be an integer ≥ 1, got 0'))
 *   === 'learn: ERR_BAD_FLAG: --epochs must be an integer ≥ 1, got 0'
 */
export function errorLine(program: string, err: unknown): string {
  const code = errorCode(err);
  return `${program}: ${code}: ${errorText(code, err instanceof Error ? err.message : String(err))}`;
}

/**
 * Ends a program on `err`: prints {@link errorLine} (commander has printed its own errors already, and `--help` /
 * `--version` are not errors) and returns the exit code.
 * @param print - where the line goes (default stderr)
 * @returns {@link CLI_EXIT}: 0 for `--help`/`--version`, 2 for a commander error or an input error, else 1
 */
export function errorExit(program: string, err: unknown, print: (line: string) => void = console.error): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? CLI_EXIT.ok : CLI_EXIT.badInput;
  print(errorLine(program, err));
  return INPUT_CODES.has(errorCode(err)) ? CLI_EXIT.badInput : CLI_EXIT.failed;
}
