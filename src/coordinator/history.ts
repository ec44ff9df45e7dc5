/**
 * What a run has done so far, kept by the coordinator, stored in every checkpoint and used for the report:
 * per-stage epoch rows and per-step training losses and learning rates, lr_find sweeps, the position in the plan,
 * and the smoothed training loss (fastai's β = 0.98 debiased average) so a resumed run prints the same numbers.
 */
import type { EpochRow } from '../shared/learner/table.js';
import type { SmoothState } from '../shared/plan/smoothing.js';

/** Where the run is: the next step to run. */
export interface RunPosition {
  /** Stage index in the plan. */
  readonly stageIndex: number;
  /** Optimizer steps of this stage already committed. */
  readonly stepInStage: number;
  /** Run-wide steps committed (all-reduce tags and dropout seeds derive from it). */
  readonly globalStep: number;
}

/** History of one stage. */
export interface StageHistory {
  readonly name: string;
  readonly kind: 'one_cycle' | 'fit' | 'lr_find';
  readonly epochs: EpochRow[];
  /** Per committed step: mean training loss over the global batch and lr per group. */
  readonly steps: { loss: number; lrs: number[] }[];
  /** lr_find only: the smoothed losses by step (lrs are in `steps`), and why it stopped. */
  lrFind?: { smoothed: number[]; stop: string; suggestion: number | null; minLossDiv10: number | null };
  /** Running smoothed loss state for the epoch table (`plan/smoothing.ts`). */
  smooth: SmoothState;
  /** Sums of the current epoch, for the epoch row when it ends. */
  epochSums: { startedAtMs: number; elapsedSeconds: number };
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
