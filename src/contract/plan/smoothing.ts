/**
 * fastai's smoothed training loss (1.0.61 `callback.SmoothenValue`, used by `Recorder` for the epoch table's
 * train_loss and by `LRFinder` for its stop rule): a debiased exponential moving average,
 * `mov ← β·mov + (1−β)·loss; value = mov / (1 − β^n)` after n losses, β = 0.98.
 *
 * The state is two numbers ({@link SmoothState}), plain JSON, so a checkpoint stores it and a resumed run prints
 * the same train_loss as an undisturbed one.
 */
import { TrainerError } from '../errors.js';

/** fastai's smoothing factor (`Recorder`, `LRFinder`). */
export const SMOOTHING_BETA = 0.98;

/** The serialisable state of a {@link SmoothedLoss}: the biased average and the number of losses added. */
export interface SmoothState {
  /** Biased moving average, nats (0 before the first loss). */
  readonly mov: number;
  /** Losses added so far, integer ≥ 0. */
  readonly n: number;
}

/** The state before any loss. */
export const SMOOTH_START: SmoothState = Object.freeze({ mov: 0, n: 0 });

/**
 * Exponential moving average of the loss with debiasing, as fastai's `SmoothenValue`.
 *
 * @example
 * const s = new SmoothedLoss();          // or new SmoothedLoss(SMOOTHING_BETA, saved.state)
 * s.add(2.3); s.value;                   // 2.3 (debiased)
 */
export class SmoothedLoss {
  private mov: number;
  private count: number;
  private last: number;

  /**
   * @param beta - smoothing factor in [0, 1) (fastai 0.98)
   * @param state - where to continue from (a saved {@link SmoothedLoss.state}); default the start
   * @throws TrainerError ERR_BAD_FLAG when beta is outside [0, 1); ERR_CHECKPOINT when the state is malformed
   */
  constructor(readonly beta = SMOOTHING_BETA, state: SmoothState = SMOOTH_START) {
    if (!(beta >= 0 && beta < 1)) throw new TrainerError('ERR_BAD_FLAG', `beta must be in [0, 1), got ${beta}`);
    if (typeof state.mov !== 'number' || !Number.isInteger(state.n) || state.n < 0) {
      throw new TrainerError('ERR_CHECKPOINT', `smoothed-loss state must be {mov: number, n: integer ≥ 0}, got ${JSON.stringify(state)}`);
    }
    this.mov = state.mov;
    this.count = state.n;
    this.last = this.count === 0 ? Number.NaN : this.mov / (1 - Math.pow(this.beta, this.count));
  }

  /** Adds one batch loss (nats) and returns the new smoothed value. */
  add(loss: number): number {
    this.count += 1;
    this.mov = this.beta * this.mov + (1 - this.beta) * loss;
    this.last = this.mov / (1 - Math.pow(this.beta, this.count));
    return this.last;
  }

  /** The current smoothed value, nats (NaN before the first {@link add}). */
  get value(): number {
    return this.last;
  }

  /** Number of losses added so far. */
  get n(): number {
    return this.count;
  }

  /** The state to store (plain JSON); `new SmoothedLoss(beta, state)` continues from it. */
  get state(): SmoothState {
    return { mov: this.mov, n: this.count };
  }
}
