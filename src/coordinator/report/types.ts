/**
 * What the run report needs, as plain data the training runtime fills in as it goes. No tensors, no classes
 * besides the interpretation.
 */
import type { DataAccountJson } from '../../training/data/accounting.js';
import type { ClassificationInterpretation } from '../interpret/interpretation.js';

/** One row of a stage's epoch table, as fastai prints it after each epoch. */
export interface EpochRow {
  /** 0-based epoch index within the stage. */
  readonly epoch: number;
  /** Smoothed train loss at the end of the epoch, nats. */
  readonly trainLoss: number;
  /** Mean validation cross-entropy, nats. */
  readonly validLoss: number;
  /** Validation error rate, 1 − accuracy, in [0, 1]. */
  readonly errorRate: number;
  /** Wall time of the epoch (train + validation), seconds. */
  readonly timeSeconds: number;
}

/** One optimiser step of training. */
export interface StepRecord {
  /** Train loss of the step's batch, nats (raw, not smoothed). */
  readonly loss: number;
  /** Learning rate applied per layer group at this step, `[groups]`, in group order (body … head). */
  readonly lrs: readonly number[];
}

/** One training stage: a `fit_one_cycle` call (e.g. "stage-1 frozen", "stage-2 unfrozen"). */
export interface StageRecord {
  /** Display name, e.g. `stage-1 (frozen)`. */
  readonly name: string;
  /** Epoch table rows, in order. */
  readonly epochs: readonly EpochRow[];
  /** Every optimiser step of the stage, in order; its length should be a multiple of `epochs.length`. */
  readonly steps: readonly StepRecord[];
}

/** The record of one lr_find run. */
export interface LrFindRecord {
  /** Display name, e.g. `before stage-1`. */
  readonly name: string;
  /** lr per iteration, `[iterations]`, ascending. */
  readonly lrs: readonly number[];
  /** Smoothed loss per iteration (mov / (1 − 0.98^k)), `[iterations]`, nats. */
  readonly smoothedLosses: readonly number[];
}

/** Everything a run report shows; every part is optional except the title. */
export interface RunReportInput {
  /** Report heading. */
  readonly title: string;
  /** When set, a banner shown under the title (e.g. "Rendering demo with synthetic numbers — not results"). */
  readonly notice?: string;
  /** Run configuration, shown as a key/value table (nested values shown as JSON). */
  readonly config?: Readonly<Record<string, unknown>>;
  /** Training stages in the order they ran. */
  readonly stages?: readonly StageRecord[];
  /** lr_find runs, in order. */
  readonly lrFinds?: readonly LrFindRecord[];
  /** Validation interpretation of the final model. */
  readonly interpretation?: ClassificationInterpretation;
  /** Where every file under --data went (`data.json`); `writeRunReport` reads it from the run directory when absent. */
  readonly data?: DataAccountJson;
}
