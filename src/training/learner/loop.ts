/**
 * The training loop, written once for one process and for N workers (fastai v1 `basic_train.fit` with its
 * `Recorder` and `OneCycleScheduler` callbacks; PyTorch Lightning's strategies): a fit stage runs optimizer steps
 * with the stage's schedule (`stepHyper`), smooths the loss (fastai's β = 0.98), validates at each epoch end and
 * prints fastai's table row. What differs between the single-process {@link Learner} and the coordinator is the
 * {@link StepTransport} (a replica with a local identity all-reduce, or a collective step over the cluster) and
 * the {@link FitHooks} around it — never a second copy of the loop. lr_find's sweep over the same transport is
 * `lr-find.ts`.
 */
import { performance } from 'node:perf_hooks';
import { TrainerError } from '../../contract/errors.js';
import { stepHyper, type StagePlan } from '../../contract/plan/plan.js';
import type { StepHyper } from '../../contract/plan/schedule.js';
import { SMOOTHING_BETA, SmoothedLoss, type SmoothState } from '../../contract/plan/smoothing.js';
import { EpochProgress, formatEpochHeader, formatEpochRow, type EpochRow, type ProgressMode } from './table.js';

/** What one committed optimizer step reports: sums over the global batch and the transport's own details. */
export interface StepOutcome<D> {
  /** Sum of the per-item cross-entropies over the step's decoded items, nats. */
  readonly lossSum: number;
  /** Decoded items of the step (0 when every item failed to decode). */
  readonly count: number;
  /** Wall time of the step, seconds (data wait, compute, all-reduce, optimizer). */
  readonly seconds: number;
  /** Whatever the transport wants its hooks to see (e.g. the workers' replies). */
  readonly detail: D;
}

/** Loss and error rate over the whole validation set. */
export interface ValidationOutcome {
  /** Mean cross-entropy, nats. */
  readonly validLoss: number;
  /** 1 − accuracy. */
  readonly errorRate: number;
}

/**
 * How the loop runs a step, a validation and a save/restore: the narrow interface between the one loop and a
 * process layout (Lightning's `Strategy`). `step` must be committed when it returns (every rank applied it).
 */
export interface StepTransport<D = unknown, S = unknown> {
  /**
   * Runs optimizer step `stepInStage` of `stage` with `hyper` (lr per layer group, momentum).
   * @throws whatever the transport cannot recover from
   */
  step(stage: StagePlan, stepInStage: number, hyper: StepHyper): Promise<StepOutcome<D>>;
  /** Evaluates the whole validation set (eval mode, centre crops). */
  validate(): Promise<ValidationOutcome>;
  /** Weights, BatchNorm statistics and optimizer state now (lr_find restores them afterwards). */
  snapshot(): Promise<S>;
  /** Puts a {@link snapshot} back exactly. */
  restore(state: S): Promise<void>;
}

/** The mean loss of a step, nats; NaN when none of its items could be decoded (nothing to average). */
export function stepLoss(outcome: { lossSum: number; count: number }): number {
  return outcome.count === 0 ? Number.NaN : outcome.lossSum / outcome.count;
}

/**
 * The error that stops a fit whose loss became NaN or ±Infinity, as fastai's `TerminateOnNaNCallback` ends `fit` at
 * the first such batch ("Invalid loss, terminating training") and Lightning's `EarlyStopping(check_finite=True)` at
 * such a monitored value: every later step would only train on (and checkpoint) broken weights.
 * @param where - `training loss of step 7 of 9` or `validation loss after epoch 2`
 * @param value - the non-finite loss
 */
export function divergedError(stage: StagePlan, where: string, value: number): TrainerError {
  const lr = stage.config.kind === 'lr_find' ? '' : ` (max_lr ${stage.config.maxLr})`;
  const shown = Number.isNaN(value) ? 'nan' : value > 0 ? 'inf' : '-inf';
  return new TrainerError('ERR_DIVERGED', `${stage.config.name}: the ${where} is ${shown}: the training diverged and stops here, as fastai's TerminateOnNaNCallback stops fit; the learning rate is likely too high for it${lr}`);
}

/** What a fit stage has recorded (JSON: the coordinator stores it in every checkpoint and resumes from it). */
export interface StageRecord {
  /** One row per finished epoch. */
  readonly epochs: EpochRow[];
  /** Per committed step: mean training loss over the global batch (NaN: nothing decoded) and lr per group. */
  readonly steps: { loss: number; lrs: number[] }[];
  /** The smoothed training loss so far (fastai `Recorder`: reset when a fit begins). */
  smooth: SmoothState;
  /** Sums of the current epoch, for its row: wall-clock start, and seconds of its steps so far. */
  epochSums: { startedAtMs: number; elapsedSeconds: number };
}

/** A fresh {@link StageRecord}. */
export function newStageRecord(): StageRecord {
  return { epochs: [], steps: [], smooth: { mov: 0, n: 0 }, epochSums: { startedAtMs: Date.now(), elapsedSeconds: 0 } };
}

/** Where the loop's lines go and what it calls around the steps (fastai callbacks); all hooks optional. */
export interface FitHooks<D> {
  /** In-epoch progress display. */
  readonly progress: ProgressMode;
  /** The table (results: stdout in the CLIs). */
  readonly out: (line: string) => void;
  /** Progress lines (default stderr, `table.ts` `writeProgressLine`: kept out of the results on stdout, as tqdm does). */
  readonly progressOut?: (line: string) => void;
  /** Printed with the table header, on the line above it (e.g. the stage's name and schedule). */
  readonly heading?: string;
  /** After a finished epoch's validation and row (metrics, checkpoints, data-epoch counters). */
  afterEpoch?(stage: StagePlan, row: EpochRow): Promise<void> | void;
  /** After every step (and after the epoch end it completes). Returns true to stop the fit there. */
  afterStep?(stage: StagePlan, stepInStage: number, outcome: StepOutcome<D>, loss: number, hyper: StepHyper): Promise<boolean> | boolean;
}

/**
 * Runs (or continues) a one-cycle or constant-lr stage from step `from` to its end: fastai's `fit` loop.
 *
 * Per step k: `stepHyper(stage, k)` → `transport.step` → the loss is smoothed (a step without decoded items is not)
 * and recorded; at each epoch end the whole validation set is evaluated and the row printed, its seconds being the
 * epoch's step times plus the validation's (time spent in hooks, e.g. checkpoints, is not counted).
 *
 * @param record - the stage's record so far (a resumed stage continues its smoothing and epoch sums)
 * @param from - first step to run, 0 ≤ from ≤ stage.totalSteps
 * @returns the epoch rows added, and false when a hook asked to stop
 * @throws TrainerError ERR_DIVERGED ({@link divergedError}) at the first step whose training loss, or the first epoch
 *   whose validation loss, is NaN or ±Infinity, before its hooks run (so nothing checkpoints the broken weights)
 */
export async function fitStage<D>(transport: StepTransport<D>, stage: StagePlan, record: StageRecord, from: number,
  hooks: FitHooks<D>): Promise<{ rows: EpochRow[]; completed: boolean }> {
  const per = stage.stepsPerEpoch;
  const rows: EpochRow[] = [];
  hooks.out(hooks.heading === undefined ? formatEpochHeader() : `${hooks.heading}\n${formatEpochHeader()}`);
  let progress: EpochProgress | null = null;
  try {
    for (let k = from; k < stage.totalSteps; k++) {
      if (k % per === 0 || progress === null) {
        progress = new EpochProgress(per, `epoch ${Math.floor(k / per)}`, hooks.progress, hooks.progressOut).startAt(k % per);
        if (k % per === 0) record.epochSums = { startedAtMs: Date.now(), elapsedSeconds: 0 };
      }
      const hyper = stepHyper(stage, k);
      const outcome = await transport.step(stage, k, hyper);
      const loss = stepLoss(outcome);
      // Checked before anything records, validates or checkpoints the step (count 0, nothing decoded, is NaN too).
      if (outcome.count > 0 && !Number.isFinite(loss)) throw divergedError(stage, `training loss of step ${k + 1} of ${stage.totalSteps}`, loss);
      const smoother = new SmoothedLoss(SMOOTHING_BETA, record.smooth);
      if (outcome.count > 0) smoother.add(loss);
      record.smooth = smoother.state;
      record.steps.push({ loss, lrs: hyper.lrs });
      record.epochSums.elapsedSeconds += outcome.seconds;
      progress.tick(smoother.value);
      if ((k + 1) % per === 0) {
        progress.stop();
        const t0 = performance.now();
        const v = await transport.validate();
        const row: EpochRow = { epoch: Math.floor(k / per), trainLoss: smoother.value, validLoss: v.validLoss, errorRate: v.errorRate,
          seconds: record.epochSums.elapsedSeconds + (performance.now() - t0) / 1000 };
        record.epochs.push(row);
        rows.push(row);
        hooks.out(formatEpochRow(row));
        // The row is printed (fastai's table shows nan too), but the epoch's hooks (its checkpoint) do not run.
        if (!Number.isFinite(v.validLoss)) throw divergedError(stage, `validation loss after epoch ${row.epoch}`, v.validLoss);
        await hooks.afterEpoch?.(stage, row);
      }
      if (await hooks.afterStep?.(stage, k, outcome, loss, hyper)) return { rows, completed: false };
    }
  } finally {
    progress?.stop();
  }
  return { rows, completed: true };
}
