/**
 * The project's one error class and its closed set of codes (house style: one base error with `code` and
 * `cause`, messages say expected vs actual).
 */

/** Stable error codes. Callers branch on these, never on message text. */
export type TrainerErrorCode =
  | 'ERR_BAD_FLAG'
  | 'ERR_BAD_CONFIG'
  | 'ERR_BACKEND'
  | 'ERR_WEIGHTS'
  | 'ERR_CHECKSUM'
  | 'ERR_DOWNLOAD'
  | 'ERR_OFFLINE'
  | 'ERR_BAD_IMAGE'
  | 'ERR_DATA'
  /** The data under --data cannot be trained as given (nothing labelled, an empty split, a class of bad files…). */
  | 'ERR_BAD_DATA'
  | 'ERR_PROTOCOL'
  | 'ERR_WORKER_LOST'
  | 'ERR_TIMEOUT'
  | 'ERR_REPLICA_MISMATCH'
  | 'ERR_CHECKPOINT'
  | 'ERR_PORT_IN_USE'
  /** The run's report (pictures, JSON, index.html) could not be written (disk full, I/O); the trained model stays. */
  | 'ERR_REPORT'
  /** A training or validation loss became NaN or ±Infinity (fastai's `TerminateOnNaNCallback`): the lr is too high. */
  | 'ERR_DIVERGED'
  /** Compiled code (dist/) of another build than its sources or than its coordinator's: `npm run build`, restart. */
  | 'ERR_STALE_BUILD'
  /**
   * A worker refused an input of its own (its `ERR_BAD_FLAG`, `ERR_BAD_CONFIG` or `ERR_BAD_DATA`: e.g. a
   * `PETS_TRAINER_WEIGHTS_DIR` it cannot create) and the run could not go on without it: the run failed (exit 1), as
   * opposed to the coordinator's own bad input (exit 2, nothing started). See `fromWorker` in `coordinator/cluster.ts`.
   */
  | 'ERR_WORKER_INPUT'
  | 'ERR_INTERNAL';

/**
 * Base error of the trainer.
 *
 * @example throw new TrainerError('ERR_BAD_FLAG', '--workers must be an integer ≥ 1, got 0')
 */
export class TrainerError extends Error {
  /** Stable, machine-readable code. */
  readonly code: TrainerErrorCode;

  /**
   * @param code - one of {@link TrainerErrorCode}
   * @param message - human message naming the input and the rule, with expected vs actual
   * @param options - `cause`: the underlying error, if any
   */
  constructor(code: TrainerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TrainerError';
    this.code = code;
  }
}

/**
 * The codes of a failure that recovery can redo (the one list; house style rule 15): a worker was lost or a
 * collective timed out, so re-forming the ring (respawn or elastic) and running the operation again can succeed.
 * Anything else (bad data, a replica mismatch, a protocol error, a worker's own failure) stops the run.
 */
export const RETRYABLE_CODES: readonly TrainerErrorCode[] = Object.freeze(['ERR_WORKER_LOST', 'ERR_TIMEOUT']);

/** True when `err` is a {@link TrainerError} whose code is in {@link RETRYABLE_CODES}. */
export function isRetryable(err: unknown): err is TrainerError {
  return isTrainerError(err) && RETRYABLE_CODES.includes(err.code);
}

/** True when `err` is a {@link TrainerError}, optionally with the given code. */
export function isTrainerError(err: unknown, code?: TrainerErrorCode): err is TrainerError {
  return err instanceof TrainerError && (code === undefined || err.code === code);
}
