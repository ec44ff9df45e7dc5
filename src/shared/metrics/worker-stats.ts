/**
 * The small stats record a worker sends with each step result over the control plane, so that worker metrics
 * reach Prometheus through the coordinator (one scrape target per run; see docs/metrics.md).
 */
import { TrainerError } from '../errors.js';

/** Seconds a worker spent in each phase of one step. */
export interface StepPhaseSeconds {
  /** Waiting for the loader to hand over the batch, seconds ≥ 0. */
  readonly dataWaitSeconds: number;
  /** Forward and backward pass on the worker's slice of the batch, seconds ≥ 0. */
  readonly forwardBackwardSeconds: number;
  /** Gradient all-reduce, seconds ≥ 0. */
  readonly allreduceSeconds: number;
  /** Optimizer update of the local replica, seconds ≥ 0. */
  readonly optimizerSeconds: number;
}

/** One worker's stats for one step (a few numbers; msgpack-encoded it is under 200 bytes). */
export interface WorkerStepStats {
  /** Training images this worker processed in the step, integer ≥ 0. */
  readonly images: number;
  /** Wall time of the whole step on this worker, seconds > 0 (images / stepSeconds = throughput). */
  readonly stepSeconds: number;
  /** Per-phase durations, seconds. */
  readonly phases: StepPhaseSeconds;
  /** Bytes this worker sent during the step's all-reduce, integer ≥ 0. */
  readonly allreduceBytes: number;
  /** Decoded batches waiting in the loader queue at the end of the step, integer ≥ 0. */
  readonly loaderQueueDepth: number;
  /** `tf.memory().numBytes` at the end of the step, bytes ≥ 0. */
  readonly tfjsBytes: number;
  /** `tf.memory().numTensors` at the end of the step, integer ≥ 0. */
  readonly tfjsTensors: number;
  /** `process.memoryUsage().rss` of the worker, bytes ≥ 0. */
  readonly rssBytes: number;
}

const PHASE_FIELDS = ['dataWaitSeconds', 'forwardBackwardSeconds', 'allreduceSeconds', 'optimizerSeconds'] as const;
const COUNT_FIELDS = ['images', 'allreduceBytes', 'loaderQueueDepth', 'tfjsBytes', 'tfjsTensors', 'rssBytes'] as const;

function readNumber(record: Record<string, unknown>, field: string, path: string, integer: boolean): number {
  const value = record[field];
  const ok = typeof value === 'number' && Number.isFinite(value) && value >= 0 && (!integer || Number.isInteger(value));
  if (!ok) {
    const rule = integer ? 'an integer ≥ 0' : 'a finite number ≥ 0';
    throw new TrainerError('ERR_PROTOCOL', `worker stats ${path}${field} must be ${rule}, got ${JSON.stringify(value)}`);
  }
  return value as number;
}

function asRecord(value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TrainerError('ERR_PROTOCOL', `worker stats ${path || 'record'} must be an object, got ${JSON.stringify(value)}`);
  }
  return value as Record<string, unknown>;
}

/**
 * Validates a decoded stats record from the wire.
 * @param value - the decoded value (untrusted)
 * @returns the same data, typed and frozen
 * @throws TrainerError `ERR_PROTOCOL` naming the first bad field and the rule, e.g.
 *   "worker stats phases.allreduceSeconds must be a finite number ≥ 0, got -1"
 */
export function parseWorkerStepStats(value: unknown): WorkerStepStats {
  const record = asRecord(value, '');
  const phasesRecord = asRecord(record.phases, 'phases');
  const phases = {} as Record<(typeof PHASE_FIELDS)[number], number>;
  for (const field of PHASE_FIELDS) phases[field] = readNumber(phasesRecord, field, 'phases.', false);
  const counts = {} as Record<(typeof COUNT_FIELDS)[number], number>;
  for (const field of COUNT_FIELDS) counts[field] = readNumber(record, field, '', true);
  const stepSeconds = readNumber(record, 'stepSeconds', '', false);
  if (stepSeconds === 0) throw new TrainerError('ERR_PROTOCOL', 'worker stats stepSeconds must be > 0, got 0');
  return Object.freeze({ ...counts, stepSeconds, phases: Object.freeze(phases) });
}
