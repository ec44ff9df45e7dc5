/**
 * fastai v1 `lr_find(start_lr=1e-7, end_lr=10, num_it=100, stop_div=True)` on a single-process {@link Learner}.
 *
 * Source: fastai 1.0.61 `train.lr_find` and `callbacks/lr_finder.LRFinder`: save the model, train one batch per
 * learning rate `start·(end/start)^(i/num_it)` (every layer group the same lr, momentum 0.9), record the smoothed
 * loss (β = 0.98, debiased), stop when done, when smooth > 4 × best or on NaN, no validation; then load the model
 * back (weights AND optimizer state). The sweep reads data as plan.ts's lr_find stage: one long pass over repeated
 * data epochs, starting at the learner's current data epoch (which it does not advance).
 */
import { stepPosition } from '../plan/plan.js';
import type { Learner } from './fit.js';
import { SmoothedLoss } from '../plan/smoothing.js';
import { lrFindLr, lrFindStep, suggestLr, DEFAULT_LR_FIND, type LrFindOptions, type LrFindStop, type LrSuggestion } from '../plan/schedule.js';

/** What an lr_find sweep recorded. */
export interface LrFindResult {
  /** Learning rate of each batch run. */
  readonly lrs: number[];
  /** Smoothed loss after each batch, nats (what fastai plots). */
  readonly losses: number[];
  /** Raw batch losses, nats. */
  readonly rawLosses: number[];
  /** Why the sweep ended. */
  readonly stop: Exclude<LrFindStop, null>;
  /** fastai's suggestions (steepest descent, min/10), or null when fewer than 17 points were recorded. */
  readonly suggestion: LrSuggestion | null;
}

/**
 * Runs the sweep on `learner` and restores its replica exactly.
 *
 * @throws TrainerError ERR_BAD_FLAG on bad options; the replica is restored even when a step throws
 */
export async function runLrFind(learner: Learner, options: LrFindOptions = {}): Promise<LrFindResult> {
  const o = { ...DEFAULT_LR_FIND, ...options };
  lrFindLr(0, o); // validates the options before anything changes
  const stage = learner.planStage({ kind: 'lr_find', name: 'lr_find', epochs: 0, maxLr: '0', frozen: learner.replica.frozen }, o.numIt);
  const perDataEpoch = Math.floor(learner.data.train.length / learner.options.bs);
  const saved = await learner.replica.exportState();
  const smooth = new SmoothedLoss(0.98);
  const rec = { lrs: [] as number[], losses: [] as number[], rawLosses: [] as number[] };
  let best = Number.NaN;
  let stop: LrFindStop = null;
  try {
    while (stop === null) {
      const i0 = rec.lrs.length;
      const { epoch, stepInEpoch } = stepPosition(stage, i0, perDataEpoch);
      const dataEpoch = learner.epochsDone + epoch;
      const count = Math.min(perDataEpoch - stepInEpoch, o.numIt - i0);
      await learner.forEachTrainBatch(dataEpoch, stepInEpoch, count, async (batch, k) => {
        const i = rec.lrs.length;
        const lr = lrFindLr(i, o);
        const raw = await learner.trainStep(batch, dataEpoch, k, { lrs: [lr, lr, lr], momentum: 0.9 });
        const s = smooth.add(raw);
        rec.lrs.push(lr);
        rec.rawLosses.push(raw);
        rec.losses.push(s);
        ({ best, stop } = lrFindStep(i, s, best, o.numIt));
        return stop === null;
      });
    }
  } finally {
    learner.replica.importState(saved);
  }
  const suggestion = rec.losses.length >= 17 ? suggestLr(rec.lrs, rec.losses) : null;
  return { ...rec, stop: stop as Exclude<LrFindStop, null>, suggestion };
}
