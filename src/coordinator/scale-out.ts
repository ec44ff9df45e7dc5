/**
 * Scaling out the batch: global batch = per-worker batch × workers × accumulation steps, and the learning-rate
 * scaling rule applied to every layer group's max lr when the global batch differs from the batch the rates
 * were tuned for.
 *
 * Linear rule: Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour"
 * (https://arxiv.org/abs/1706.02677) — multiply the batch by k, multiply the lr by k, with a warm-up (one-cycle's
 * phase 1 is one). Square-root rule: common for Adam-type optimizers (Krizhevsky 2014, "One weird trick",
 * https://arxiv.org/abs/1404.5997; Hoffer et al. 2017).
 */
import { TrainerError } from '../contract/errors.js';
import type { LrScale } from '../contract/config.js';

/** Inputs of {@link planScaleOut}. */
export interface ScaleOutInput {
  /** Images per worker per micro-step. */
  readonly bs: number;
  /** Workers in the ring (world size), ≥ 1. */
  readonly worldSize: number;
  /** Accumulation steps requested (ignored when `globalBs` is set). */
  readonly accum: number;
  /** Wanted global batch, or null. Must be a multiple of bs × worldSize. */
  readonly globalBs: number | null;
  readonly lrScale: LrScale;
  /** Batch the stage learning rates were tuned for. */
  readonly baseBs: number;
}

/** The resolved scale-out: what every step uses. */
export interface ScaleOut {
  readonly accum: number;
  /** bs × worldSize × accum, images per optimizer step. */
  readonly globalBs: number;
  /** Factor applied to every group's max lr (1 when `lrScale` is none). */
  readonly lrFactor: number;
}

/**
 * Resolves accumulation, global batch and lr factor.
 * @throws TrainerError ERR_BAD_CONFIG when `globalBs` is not a positive multiple of bs × worldSize
 */
export function planScaleOut(input: ScaleOutInput): ScaleOut {
  const perStep = input.bs * input.worldSize;
  let accum = input.accum;
  if (input.globalBs !== null) {
    if (input.globalBs % perStep !== 0 || input.globalBs < perStep) {
      throw new TrainerError('ERR_BAD_CONFIG',
        `--global-bs must be a positive multiple of bs × workers = ${input.bs} × ${input.worldSize} = ${perStep}, got ${input.globalBs}`);
    }
    accum = input.globalBs / perStep;
  }
  const globalBs = perStep * accum;
  return { accum, globalBs, lrFactor: lrScaleFactor(input.lrScale, globalBs, input.baseBs) };
}

/**
 * The scale-out of a resumed run, which keeps its global batch (its plan) on another world size: accumulation
 * absorbs the change when bs × workers divides the global batch.
 * @param runGlobalBs - the run's global batch, from its checkpoint
 * @throws TrainerError ERR_BAD_FLAG (exit 2: the --workers/--expect given, not the checkpoint, is at fault; it was
 *   ERR_CHECKPOINT, exit 1, a failed run) naming the run's global batch, the world size asked for and those that divide
 *   it (it said '--global-bs must be a positive multiple of …', a flag the user had not given)
 */
export function planResumedScaleOut(input: Omit<ScaleOutInput, 'globalBs' | 'accum'>, runGlobalBs: number): ScaleOut {
  if (runGlobalBs % (input.bs * input.worldSize) === 0) return planScaleOut({ ...input, accum: 1, globalBs: runGlobalBs });
  const fits = Array.from({ length: runGlobalBs / input.bs }, (_, i) => i + 1).filter((w) => runGlobalBs % (input.bs * w) === 0);
  throw new TrainerError('ERR_BAD_FLAG', `--resume: this run's global batch of ${runGlobalBs} cannot be split over ${input.worldSize} worker(s) × bs ${input.bs} ` +
    `(accumulation must be a whole number, so that the run goes on with the same batches); resume with --workers (or --expect) ${fits.join(', ')}`);
}

/** lr multiplier for a rule: linear k, sqrt √k, none 1, with k = globalBs / baseBs. */
export function lrScaleFactor(rule: LrScale, globalBs: number, baseBs: number): number {
  const k = globalBs / baseBs;
  return rule === 'linear' ? k : rule === 'sqrt' ? Math.sqrt(k) : 1;
}
