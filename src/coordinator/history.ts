/**
 * What a run has done so far, kept by the coordinator, stored in every checkpoint and used for the report:
 * per-stage epoch rows and per-step training losses and learning rates, lr_find sweeps, the position in the plan,
 * and the smoothed training loss (fastai's β = 0.98 debiased average) so a resumed run prints the same numbers.
 */
import type { StageRecord } from '../training/learner/loop.js';

/** Where the run is: the next step to run. */
export interface RunPosition {
  /** Stage index in the plan. */
  readonly stageIndex: number;
  /** Optimizer steps of this stage already committed. */
  readonly stepInStage: number;
  /** Run-wide steps committed (all-reduce tags and dropout seeds derive from it). */
  readonly globalStep: number;
}

/** History of one stage: what the training loop records (`StageRecord`), plus its name, kind and lr_find result. */
export interface StageHistory extends StageRecord {
  readonly name: string;
  readonly kind: 'one_cycle' | 'fit' | 'lr_find';
  /** lr_find only: the smoothed losses by step (lrs are in `steps`), and why it stopped. */
  lrFind?: { smoothed: number[]; stop: string; suggestion: number | null; minLossDiv10: number | null };
}

/** The whole history (JSON-serialisable). */
export interface RunHistory {
  stages: StageHistory[];
  position: RunPosition;
}

/** Empty history at the start of the plan. */
export function newHistory(): RunHistory {
  return { stages: [], position: { stageIndex: 0, stepInStage: 0, globalStep: 0 } };
}
