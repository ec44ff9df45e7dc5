/**
 * Learning-rate and momentum schedules of fastai v1 (1.0.61): discriminative learning rates (`slice`), the
 * one-cycle policy, and the lr_find sweep with its stop rule and suggestions.
 *
 * Everything here is a pure function of its arguments, so the coordinator can evaluate the schedule for any global
 * step and resume anywhere (the smoothed loss, fastai's other piece of state, is in `smoothing.ts`).
 *
 * Sources: fastai 1.0.61 `callbacks/one_cycle.py` (OneCycleScheduler), `callback.py` (Scheduler, annealing_cos,
 * annealing_exp, SmoothenValue), `callbacks/lr_finder.py` (LRFinder), `basic_train.py` (Learner.lr_range,
 * Recorder.plot). Leslie Smith, "A disciplined approach to neural network hyper-parameters" (arXiv:1803.09820).
 */
import { TrainerError } from '../errors.js';

/** A maximum learning rate as fastai accepts it: one number, or `slice(start?, end)`. */
export type LrSpec = number | { readonly start?: number; readonly end: number };

function checkLr(value: number, what: string): void {
  if (!Number.isFinite(value) || value <= 0) {
    throw new TrainerError('ERR_BAD_FLAG', `${what} must be a finite number > 0, got ${value}`);
  }
}

function checkInt(value: number, what: string, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new TrainerError('ERR_BAD_FLAG', `${what} must be an integer ≥ ${min}, got ${value}`);
  }
}

/**
 * Spreads a max learning rate over layer groups, as fastai's `Learner.lr_range`.
 *
 * - number `x` → `[x, …, x]`;
 * - `slice(a, b)` → group i of n gets `a·(b/a)^(i/(n−1))` (geometric, fastai `even_mults`); n = 1 gives `[b]`;
 * - `slice(b)` → `[b/10, …, b/10, b]`.
 *
 * @param maxLr - learning rate(s), each > 0
 * @param nGroups - number of layer groups, integer ≥ 1
 * @returns one learning rate per group, first group first
 * @throws TrainerError ERR_BAD_FLAG when a rate is not a finite positive number or nGroups is not an integer ≥ 1
 */
export function lrSpread(maxLr: LrSpec, nGroups: number): number[] {
  checkInt(nGroups, 'number of layer groups', 1);
  if (typeof maxLr === 'number') {
    checkLr(maxLr, 'max_lr');
    return new Array<number>(nGroups).fill(maxLr);
  }
  checkLr(maxLr.end, 'slice end');
  if (maxLr.start === undefined) {
    const out = new Array<number>(nGroups).fill(maxLr.end / 10);
    out[nGroups - 1] = maxLr.end;
    return out;
  }
  const { start, end } = maxLr;
  checkLr(start, 'slice start');
  if (nGroups === 1) return [end];
  const step = end / start;
  return Array.from({ length: nGroups }, (_, i) => start * step ** (i / (nGroups - 1)));
}

const NUMBER = String.raw`[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?`;
const SLICE_RE = new RegExp(String.raw`^slice\(\s*(${NUMBER})\s*(?:,\s*(${NUMBER})\s*)?\)$`);
const NUMBER_RE = new RegExp(`^${NUMBER}$`);

/**
 * Parses a learning-rate flag: `"3e-3"`, `"slice(1e-6,1e-4)"` or `"slice(3e-3)"`.
 *
 * @param text - the flag value
 * @param flag - the flag's name for error messages (default `--lr`)
 * @throws TrainerError ERR_BAD_FLAG naming the flag, the accepted forms and the value received
 */
export function parseLrSpec(text: string, flag = '--lr'): LrSpec {
  const trimmed = text.trim();
  const bad = (why: string): TrainerError => new TrainerError('ERR_BAD_FLAG',
    `${flag} must be a number or slice(start,end) or slice(end) with positive values (${why}), got ${JSON.stringify(text)}`);
  let spec: LrSpec;
  if (NUMBER_RE.test(trimmed)) {
    spec = Number(trimmed);
  } else {
    const m = SLICE_RE.exec(trimmed);
    if (!m) throw bad('unrecognised form');
    spec = m[2] === undefined ? { end: Number(m[1]) } : { start: Number(m[1]), end: Number(m[2]) };
  }
  const values = typeof spec === 'number' ? [spec] : [spec.start ?? spec.end, spec.end];
  if (values.some((v) => !Number.isFinite(v) || v <= 0)) throw bad('values must be finite and > 0');
  return spec;
}

/**
 * Cosine annealing from `start` to `end` as `pct` goes 0 → 1: `end + (start − end)/2 · (cos(π·pct) + 1)`.
 * Source: fastai 1.0.61 `callback.annealing_cos`.
 */
export function annealCos(start: number, end: number, pct: number): number {
  return end + ((start - end) / 2) * (Math.cos(Math.PI * pct) + 1);
}

/** Options of {@link oneCycle}; all optional except the step, the length and the max rates. */
export interface OneCycleOptions {
  /** Global 0-based batch index within this fit, 0 ≤ step < totalSteps. */
  readonly step: number;
  /** Batches in the whole fit: batches per epoch × epochs, integer ≥ 1. */
  readonly totalSteps: number;
  /** Maximum learning rate per layer group (see {@link lrSpread}). */
  readonly maxLrs: readonly number[];
  /** Fraction of the steps spent warming up, 0 ≤ pctStart < 1 (fastai 0.3). */
  readonly pctStart?: number;
  /** Warm-up starts at maxLr / divFactor (fastai 25). */
  readonly divFactor?: number;
  /** Cool-down ends at maxLr / finalDiv (fastai: divFactor · 1e4 = 25e4). */
  readonly finalDiv?: number;
  /** Momentum (Adam beta1) at the start and at the peak: [0.95, 0.85] in fastai. */
  readonly moms?: readonly [number, number];
}

/** Defaults of {@link oneCycle}, those of fastai 1.0.61 `fit_one_cycle`. `finalDiv` defaults to divFactor·1e4. */
export const DEFAULT_ONE_CYCLE = Object.freeze({
  pctStart: 0.3,
  divFactor: 25,
  moms: Object.freeze([0.95, 0.85] as const),
});

/** Hyper-parameters for one optimizer step: a learning rate per layer group and the momentum (Adam beta1). */
export interface StepHyper {
  /** Learning rate per layer group, same order as the groups. */
  readonly lrs: number[];
  /** Momentum, used as Adam's beta1 for this step. */
  readonly momentum: number;
}

function validateOneCycle(o: OneCycleOptions, pctStart: number, divFactor: number, finalDiv: number): void {
  checkInt(o.totalSteps, 'one-cycle totalSteps', 1);
  checkInt(o.step, 'one-cycle step', 0);
  if (o.step >= o.totalSteps) {
    throw new TrainerError('ERR_BAD_FLAG', `one-cycle step must be < totalSteps (${o.totalSteps}), got ${o.step}`);
  }
  if (!(pctStart >= 0 && pctStart < 1)) {
    throw new TrainerError('ERR_BAD_FLAG', `pct_start must be in [0, 1), got ${pctStart}`);
  }
  checkLr(divFactor, 'div_factor');
  checkLr(finalDiv, 'final_div');
  if (o.maxLrs.length === 0) throw new TrainerError('ERR_BAD_FLAG', 'one-cycle maxLrs must not be empty');
  o.maxLrs.forEach((lr, i) => checkLr(lr, `one-cycle maxLrs[${i}]`));
}

/**
 * The one-cycle learning rate per group and momentum for one batch, exactly as fastai 1.0.61's
 * `OneCycleScheduler`.
 *
 * With n = totalSteps, phase 1 has a1 = ⌊pctStart·n⌋ batches and phase 2 the remaining a2 = n − a1. Batch i of
 * a phase of length L uses p = i/L: phase 1 anneals lr maxLr/divFactor → maxLr and momentum moms[0] → moms[1];
 * phase 2 anneals lr maxLr → maxLr/finalDiv and momentum moms[1] → moms[0], both with {@link annealCos}. So the
 * first batch uses maxLr/divFactor and the first batch of phase 2 exactly maxLr. As fastai's `Scheduler`
 * (`n_iter = max(1, n_iter)`), a phase of length 0 still takes one batch: with a1 = 0 batch 0 uses the phase-1
 * start and phase 2 begins at batch 1.
 *
 * @returns `{lrs, momentum}` for batch `step`
 * @throws TrainerError ERR_BAD_FLAG on a step outside [0, totalSteps) or an invalid option (named)
 */
export function oneCycle(options: OneCycleOptions): StepHyper {
  const pctStart = options.pctStart ?? DEFAULT_ONE_CYCLE.pctStart;
  const divFactor = options.divFactor ?? DEFAULT_ONE_CYCLE.divFactor;
  const finalDiv = options.finalDiv ?? divFactor * 1e4;
  const [mom0, mom1] = options.moms ?? DEFAULT_ONE_CYCLE.moms;
  validateOneCycle(options, pctStart, divFactor, finalDiv);
  const a1 = Math.floor(options.totalSteps * pctStart);
  const len1 = Math.max(1, a1);
  const len2 = Math.max(1, options.totalSteps - a1);
  if (options.step < len1) {
    const p = options.step / len1;
    return {
      lrs: options.maxLrs.map((lr) => annealCos(lr / divFactor, lr, p)),
      momentum: annealCos(mom0, mom1, p),
    };
  }
  const p = (options.step - len1) / len2;
  return {
    lrs: options.maxLrs.map((lr) => annealCos(lr, lr / finalDiv, p)),
    momentum: annealCos(mom1, mom0, p),
  };
}

/**
 * A constant schedule (plain `fit(epochs, lr)` in fastai): every step uses `lrs` and `momentum`.
 *
 * @param lrs - learning rate per group, each > 0
 * @param momentum - Adam beta1, in [0, 1) (fastai default 0.9)
 * @throws TrainerError ERR_BAD_FLAG on a non-positive rate or a momentum outside [0, 1)
 */
export function constantSchedule(lrs: readonly number[], momentum = 0.9): StepHyper {
  lrs.forEach((lr, i) => checkLr(lr, `lrs[${i}]`));
  if (!(momentum >= 0 && momentum < 1)) {
    throw new TrainerError('ERR_BAD_FLAG', `momentum must be in [0, 1), got ${momentum}`);
  }
  return { lrs: [...lrs], momentum };
}

/** Options of the lr_find sweep (fastai `lr_find(start_lr=1e-7, end_lr=10, num_it=100)`). */
export interface LrFindOptions {
  /** First learning rate (fastai 1e-7). */
  readonly startLr?: number;
  /** Learning rate the sweep tends to (never reached: the last batch is numIt − 1). fastai 10. */
  readonly endLr?: number;
  /** Number of batches of the sweep, integer ≥ 1 (fastai 100). */
  readonly numIt?: number;
}

/** Defaults of lr_find, those of fastai 1.0.61. */
export const DEFAULT_LR_FIND = Object.freeze({ startLr: 1e-7, endLr: 10, numIt: 100 });

/**
 * The learning rate of lr_find batch `i` (0-based): `startLr·(endLr/startLr)^(i/numIt)` (fastai
 * `annealing_exp` stepped per batch). The same rate goes to every layer group.
 *
 * @throws TrainerError ERR_BAD_FLAG when i is not an integer in [0, numIt) or a rate is not positive
 */
export function lrFindLr(i: number, options: LrFindOptions = {}): number {
  const { startLr, endLr, numIt } = { ...DEFAULT_LR_FIND, ...options };
  checkLr(startLr, 'lr_find start_lr');
  checkLr(endLr, 'lr_find end_lr');
  checkInt(numIt, 'lr_find num_it', 1);
  checkInt(i, 'lr_find iteration', 0);
  if (i >= numIt) throw new TrainerError('ERR_BAD_FLAG', `lr_find iteration must be < num_it (${numIt}), got ${i}`);
  return startLr * (endLr / startLr) ** (i / numIt);
}

/** Why lr_find stopped after a batch, or null to continue. */
export type LrFindStop = 'done' | 'diverged' | 'nan' | null;

/**
 * The lr_find stop rule after batch `iteration` (fastai 1.0.61 `LRFinder.on_batch_end`): the best smoothed loss
 * is updated first (it is the first value at iteration 0); then stop when the sweep is done (iteration + 1 ≥
 * numIt), when smooth > 4 × best, or when smooth is NaN.
 *
 * @param iteration - 0-based batch index of the sweep
 * @param smooth - smoothed loss after this batch
 * @param best - best smoothed loss before this batch (ignored at iteration 0)
 * @param numIt - length of the sweep
 * @returns the new best and the stop reason (null = continue)
 */
export function lrFindStep(iteration: number, smooth: number, best: number, numIt: number):
{ best: number; stop: LrFindStop } {
  const newBest = iteration === 0 || smooth < best ? smooth : best;
  if (Number.isNaN(smooth)) return { best: newBest, stop: 'nan' };
  if (smooth > 4 * newBest) return { best: newBest, stop: 'diverged' };
  return { best: newBest, stop: iteration + 1 >= numIt ? 'done' : null };
}

/** The suggestions fastai's `Recorder.plot(suggestion=True)` prints. */
export interface LrSuggestion {
  /** lr at the steepest descent: argmin of the numerical gradient of the (trimmed) smoothed loss. */
  readonly steepest: number;
  /** lr at the minimum (trimmed) smoothed loss, divided by 10. */
  readonly minLossDiv10: number;
  /** Index into the untrimmed arrays of the steepest point. */
  readonly steepestIndex: number;
  /** Index into the untrimmed arrays of the minimum loss. */
  readonly minLossIndex: number;
}

/**
 * numpy.gradient with unit spacing: one-sided differences at the ends, central differences inside; `[0]` for one
 * point and `[]` for none (where numpy raises), so plots of short records still render.
 */
export function numericalGradient(values: readonly number[]): number[] {
  const n = values.length;
  if (n < 2) return n === 1 ? [0] : [];
  return values.map((v, i) => {
    if (i === 0) return values[1]! - v;
    if (i === n - 1) return v - values[n - 2]!;
    return (values[i + 1]! - values[i - 1]!) / 2;
  });
}

function argmin(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i += 1) if (values[i]! < values[best]!) best = i;
  return best;
}

/**
 * lr_find suggestions as fastai 1.0.61 `Recorder.plot(skip_start=10, skip_end=5, suggestion=True)`: trim the
 * first `skipStart` and last `skipEnd` points, then take the argmin of `np.gradient(losses)` (by index, not by
 * lr) and the argmin of the losses (reported /10). Ties go to the first index, as numpy's argmin.
 *
 * @param lrs - learning rate of each recorded batch
 * @param losses - smoothed loss of each recorded batch, same length
 * @throws TrainerError ERR_DATA when the lengths differ or fewer than 2 points remain after trimming
 */
export function suggestLr(lrs: readonly number[], losses: readonly number[], skipStart = 10, skipEnd = 5): LrSuggestion {
  if (lrs.length !== losses.length) {
    throw new TrainerError('ERR_DATA', `lrs and losses must have the same length, got ${lrs.length} and ${losses.length}`);
  }
  const kept = losses.slice(skipStart, skipEnd > 0 ? -skipEnd : undefined);
  if (kept.length < 2) {
    throw new TrainerError('ERR_DATA', `lr_find recorded ${losses.length} points; at least ${skipStart + skipEnd + 2} ` +
      `are needed to suggest a rate after skipping ${skipStart} + ${skipEnd}`);
  }
  const steepestIndex = skipStart + argmin(numericalGradient(kept));
  const minLossIndex = skipStart + argmin(kept);
  return { steepest: lrs[steepestIndex]!, minLossDiv10: lrs[minLossIndex]! / 10, steepestIndex, minLossIndex };
}
