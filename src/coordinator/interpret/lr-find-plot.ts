/**
 * What fastai v1's `Recorder.plot(skip_start=10, skip_end=5, suggestion=True)` shows after `lr_find`: the plotted
 * slice of (lr, smoothed loss) and the two suggestions. Pure maths on plain arrays (fastai 1.0.61
 * `fastai/basic_train.py`, `Recorder.plot`).
 */
import { TrainerError } from '../../contract/errors.js';
import { numericalGradient } from '../../contract/plan/schedule.js';

/** Points fastai's `Recorder.plot` drops from the start of the lr_find record. */
export const LR_FIND_SKIP_START = 10;
/** Points fastai's `Recorder.plot` drops from the end of the lr_find record. */
export const LR_FIND_SKIP_END = 5;

/** The plotted part of an lr_find record and its suggestions. */
export interface LrFindPlotData {
  /** Learning rates of the plotted points (after skipping), ascending. */
  readonly lrs: number[];
  /** Smoothed losses of the plotted points, nats. */
  readonly losses: number[];
  /** Index (into `lrs`) of the steepest descent: argmin of `np.gradient(losses)`; -1 when nothing is plotted. */
  readonly steepestIndex: number;
  /** lr at the steepest descent (fastai `min_grad_lr`); NaN when nothing is plotted. */
  readonly steepestLr: number;
  /** lr at the minimum smoothed loss divided by 10 (fastai's "Min loss divided by 10"); NaN when nothing is plotted. */
  readonly minLossLrDiv10: number;
}

/** Numerical gradient with unit spacing, as `numpy.gradient(y)` (shared with the learner's lr suggestion). */
export { numericalGradient };

function argmin(values: readonly number[]): number {
  let best = -1;
  for (let i = 0; i < values.length; i++) if (best < 0 || values[i] < values[best]) best = i;
  return best;
}

/**
 * Slices an lr_find record as fastai's plot does (drop `skipStart` first and `skipEnd` last points) and computes
 * the steepest-descent lr and min-loss/10 lr on that slice (fastai 1.0.61 `Recorder.plot(suggestion=True)`).
 *
 * @param lrs - learning rate per lr_find iteration, `[iterations]`
 * @param smoothedLosses - smoothed loss per iteration (mov / (1 − 0.98^k)), `[iterations]`, nats
 * @param skipStart - points to drop at the start, integer ≥ 0; default 10
 * @param skipEnd - points to drop at the end, integer ≥ 0; default 5
 * @throws TrainerError `ERR_DATA` when the arrays differ in length or a skip count is not an integer ≥ 0
 */
export function lrFindPlotData(
  lrs: readonly number[],
  smoothedLosses: readonly number[],
  skipStart = LR_FIND_SKIP_START,
  skipEnd = LR_FIND_SKIP_END,
): LrFindPlotData {
  if (lrs.length !== smoothedLosses.length) {
    throw new TrainerError('ERR_DATA', `lr_find: lrs and losses must have the same length, got ${lrs.length} and ${smoothedLosses.length}`);
  }
  for (const [name, v] of [['skipStart', skipStart], ['skipEnd', skipEnd]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new TrainerError('ERR_DATA', `lr_find: ${name} must be an integer ≥ 0, got ${v}`);
  }
  // Python's list[skip_start:-skip_end]; with skip_end = 0 fastai keeps the tail (it slices to len).
  const end = Math.max(skipStart, lrs.length - skipEnd);
  const plotLrs = lrs.slice(skipStart, end);
  const plotLosses = smoothedLosses.slice(skipStart, end);
  const steepestIndex = argmin(numericalGradient(plotLosses));
  const minIndex = argmin(plotLosses);
  return {
    lrs: plotLrs,
    losses: plotLosses,
    steepestIndex,
    steepestLr: steepestIndex < 0 ? Number.NaN : plotLrs[steepestIndex],
    minLossLrDiv10: minIndex < 0 ? Number.NaN : plotLrs[minIndex] / 10,
  };
}
