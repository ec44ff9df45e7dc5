/**
 * fastai v1 `lr_find(start_lr=1e-7, end_lr=10, num_it=100, stop_div=True)` over any {@link StepTransport}: the one
 * sweep of the single-process {@link Learner} and of the coordinator.
 *
 * Source: fastai 1.0.61 `train.lr_find` and `callbacks/lr_finder.LRFinder`: save the model, train one batch per
 * learning rate `start·(end/start)^(i/num_it)` (every layer group the same lr, momentum 0.9), record the smoothed
 * loss (β = 0.98, debiased), stop when done, when smooth > 4 × best or on NaN, no validation; then load the model
 * back (weights AND optimizer state). Where the sweep reads its data is the transport's business (`plan.ts`: one long
 * pass over repeated data epochs).
 */
import { performance } from 'node:perf_hooks';
import { N_LAYER_GROUPS, type StagePlan } from '../../contract/plan/plan.js';
import { DEFAULT_LR_FIND, lrFindLr, lrFindStep, suggestLr, type LrFindOptions, type LrFindStop, type LrSuggestion } from '../../contract/plan/schedule.js';
import { SMOOTHING_BETA, SmoothedLoss } from '../../contract/plan/smoothing.js';
import { stepLoss, type StepTransport } from './loop.js';
import { EpochProgress, type ProgressMode } from './table.js';

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
  /** fastai's suggestions (steepest descent, min/10), or null when too few points were recorded. */
  readonly suggestion: LrSuggestion | null;
  /** Why there is no suggestion (null when there is one). */
  readonly noSuggestion: string | null;
  /** Wall time of the sweep and the restore, seconds. */
  readonly seconds: number;
}

/** Where the sweep's lines go and what it asks between steps. */
export interface LrFindHooks {
  /** Progress display. */
  readonly progress: ProgressMode;
  readonly out: (line: string) => void;
  /** Progress lines (default stderr, as the fit's: `FitHooks.progressOut`). */
  readonly progressOut?: (line: string) => void;
  /** Checked after each step that did not end the sweep: true stops it (the weights are restored first). */
  stopRequested?(): boolean;
  /**
   * Whether to restore the snapshot when a step throws (default true). A distributed run that fails mid-sweep
   * ends, and its checkpoint holds the weights from before the sweep; talking to a broken cluster would only delay
   * the error.
   */
  readonly restoreAfterError?: boolean;
}

/**
 * Runs the sweep (at most `stage.totalSteps` steps) and restores the transport's state exactly.
 *
 * @param options - fastai's start/end lr; `numIt` is the stage's step count
 * @returns the record, or null when a stop was requested mid-sweep (the state is restored)
 * @throws TrainerError ERR_BAD_FLAG on bad options (before anything changes)
 */
export async function lrFindStage<D>(transport: StepTransport<D>, stage: StagePlan, hooks: LrFindHooks,
  options: Omit<LrFindOptions, 'numIt'> = {}): Promise<LrFindResult | null> {
  const o = { ...DEFAULT_LR_FIND, ...options, numIt: stage.totalSteps };
  lrFindLr(0, o); // validates the options before anything changes
  const t0 = performance.now();
  const saved = await transport.snapshot();
  const smooth = new SmoothedLoss(SMOOTHING_BETA);
  const rec = { lrs: [] as number[], losses: [] as number[], rawLosses: [] as number[] };
  let best = Number.NaN;
  let stop: LrFindStop = null;
  const progress = new EpochProgress(stage.totalSteps, 'lr_find', hooks.progress, hooks.progressOut);
  try {
    for (let k = 0; k < stage.totalSteps && stop === null; k++) {
      const lr = lrFindLr(k, o);
      const raw = stepLoss(await transport.step(stage, k, { lrs: new Array<number>(N_LAYER_GROUPS).fill(lr), momentum: 0.9 }));
      const s = smooth.add(raw);
      rec.lrs.push(lr);
      rec.rawLosses.push(raw);
      rec.losses.push(s);
      progress.tick(s);
      ({ best, stop } = lrFindStep(k, s, best, o.numIt));
      if (stop === null && hooks.stopRequested?.()) {
        progress.stop();
        await transport.restore(saved);
        return null;
      }
    }
  } catch (err) {
    progress.stop();
    if (hooks.restoreAfterError ?? true) await transport.restore(saved);
    throw err;
  }
  progress.stop();
  await transport.restore(saved);
  let suggestion: LrSuggestion | null = null;
  let noSuggestion: string | null = null;
  try {
    suggestion = suggestLr(rec.lrs, rec.losses);
  } catch (err) {
    noSuggestion = (err as Error).message;
  }
  return { ...rec, stop: stop ?? 'done', suggestion, noSuggestion, seconds: (performance.now() - t0) / 1000 };
}
