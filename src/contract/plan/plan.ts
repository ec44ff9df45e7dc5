/**
 * The run plan: how many optimizer steps each stage has, which items every micro-batch of every step reads, and the
 * learning rate per layer group and momentum of every step. Pure functions of (dataset sizes, seed, stage config,
 * world size, per-worker batch, accumulation), so the coordinator, every worker and a resumed run compute the same
 * plan without talking to each other.
 *
 * Data order is defined per GLOBAL step and per MICRO-BATCH, never per rank: epoch e is a permutation of the
 * training items seeded by (seed, e); global step k of the epoch reads positions [k·G, (k+1)·G) of it (G = global
 * batch = bs × M, with M = workers × accum micro-batches per step); micro-batch m (0 ≤ m < M) of the step reads
 * positions k·G + m + i·M for i < bs, and rank r runs micro-batches m = a·W + r at accumulation slot a. Which
 * items form a micro-batch (and so a BatchNorm batch), in which order, and every random draw of it (augmentation
 * per (seed, epoch, item), dropout per (seed, step, m)) are therefore functions of (seed, step, m) alone: W workers
 * × accum A and W' × A' with W·A = W'·A' compute the same micro-batches, only on other processes. With accum 1
 * (M = W, m = r) this is exactly PyTorch's DistributedSampler (rank r takes r, r+W, …; checked in the tests
 * against `shardPlan`). A replacement worker, a resumed run on another worker count or an elastic ring with fewer
 * workers (and a larger accum, same G) reads exactly the micro-batches the undisturbed run would have read.
 */
import { TrainerError } from '../errors.js';
import type { StageConfig } from '../config.js';
import { hashSeed, permutation } from './rng.js';
import { DEFAULT_LR_FIND, lrFindLr, lrSpread, oneCycle, parseLrSpec, type StepHyper } from './schedule.js';

/** Layer groups of every model here: [conv1…layer2], [layer3, layer4], [head] (fastai). */
export const N_LAYER_GROUPS = 3;

/** Salt of the per-epoch shuffle (shared with `data/shard.ts`'s DistributedSampler plan). */
export const EPOCH_SHUFFLE_SALT = 0x5a4d;

/** A stage with its step counts resolved. */
export interface StagePlan {
  readonly index: number;
  readonly config: StageConfig;
  /** Max learning rate per layer group after the scale-out factor (empty for lr_find). */
  readonly maxLrs: readonly number[];
  /** Optimizer steps per epoch (for lr_find: the sweep's iterations in total). */
  readonly stepsPerEpoch: number;
  /** Optimizer steps in the stage. */
  readonly totalSteps: number;
}

/** Inputs of {@link planStages}. */
export interface PlanInput {
  readonly stages: readonly StageConfig[];
  /** Training items (after the split). */
  readonly trainCount: number;
  /** Images per optimizer step over all workers and accumulation steps. */
  readonly globalBs: number;
  /** Factor from the lr scaling rule (1 for none). */
  readonly lrFactor: number;
  /** lr_find iterations (fastai num_it = 100). */
  readonly lrFindIterations?: number;
}

/**
 * Resolves every stage's step counts and max learning rates.
 * @throws TrainerError ERR_BAD_CONFIG when the training set cannot fill one global batch
 */
export function planStages(input: PlanInput): StagePlan[] {
  const stepsPerEpoch = Math.floor(input.trainCount / input.globalBs);
  if (stepsPerEpoch < 1) {
    throw new TrainerError('ERR_BAD_CONFIG',
      `the training set (${input.trainCount} items) must hold at least one global batch of ${input.globalBs} (bs × workers × accum); lower --bs or use fewer workers`);
  }
  return input.stages.map((config, index) => {
    if (config.kind === 'lr_find') {
      const n = input.lrFindIterations ?? DEFAULT_LR_FIND.numIt;
      return { index, config, maxLrs: [], stepsPerEpoch: n, totalSteps: n };
    }
    const maxLrs = lrSpread(parseLrSpec(config.maxLr, `stages[${index}].maxLr`), N_LAYER_GROUPS).map((lr) => lr * input.lrFactor);
    return { index, config, maxLrs, stepsPerEpoch, totalSteps: stepsPerEpoch * config.epochs };
  });
}

/**
 * The hyper-parameters of step `step` (0-based within the stage): fastai's one-cycle, a constant `fit`
 * (momentum 0.9), or lr_find's exponential sweep (same lr for every group, momentum 0.9 as fastai's default moms
 * outside one-cycle).
 */
export function stepHyper(stage: StagePlan, step: number): StepHyper {
  switch (stage.config.kind) {
    case 'one_cycle':
      return oneCycle({ step, totalSteps: stage.totalSteps, maxLrs: stage.maxLrs });
    case 'fit':
      return { lrs: [...stage.maxLrs], momentum: 0.9 };
    case 'lr_find': {
      const lr = lrFindLr(step, { numIt: stage.totalSteps });
      return { lrs: new Array<number>(N_LAYER_GROUPS).fill(lr), momentum: 0.9 };
    }
  }
}

/** Epoch and step-in-epoch of a stage step. lr_find treats its sweep as one long pass over repeated epochs. */
export function stepPosition(stage: StagePlan, step: number, stepsPerDataEpoch: number): { epoch: number; stepInEpoch: number } {
  const per = stage.config.kind === 'lr_find' ? stepsPerDataEpoch : stage.stepsPerEpoch;
  return { epoch: Math.floor(step / per), stepInEpoch: step % per };
}

/** First data epoch of lr_find's own range: far past any fit's epochs, so a sweep never reads a fit's shuffles. */
export const LR_FIND_FIRST_DATA_EPOCH = 1_000_000;
/** Data epochs reserved for each lr_find stage (a sweep of 100 steps needs one or a few). */
export const LR_FIND_DATA_EPOCHS_PER_STAGE = 1_000;

/**
 * The data epoch (shuffle and augmentation epoch) where stage `stageIndex` starts reading. A fit stage continues
 * after the fit epochs of the stages before it (lr_find stages use none), so successive fits see new shuffles as
 * fastai's successive `fit_one_cycle` calls do; lr_find stage i reads its own range from
 * {@link LR_FIND_FIRST_DATA_EPOCH} + {@link LR_FIND_DATA_EPOCHS_PER_STAGE}·i, so a sweep (whose weights are thrown
 * away) leaves the data the fits read unchanged whether or not it runs. Past the last stage: every fit epoch.
 *
 * @param stages - the run's stage plans, in order
 * @param stageIndex - 0 ≤ stageIndex ≤ stages.length
 */
export function stageDataEpochBase(stages: readonly StagePlan[], stageIndex: number): number {
  const stage = stages[stageIndex];
  if (stage?.config.kind === 'lr_find') return LR_FIND_FIRST_DATA_EPOCH + stage.index * LR_FIND_DATA_EPOCHS_PER_STAGE;
  return stages.slice(0, stageIndex).reduce((s, p) => s + (p.config.kind === 'lr_find' ? 0 : p.config.epochs), 0);
}

/** The shuffled order of the training items in an epoch: `[trainCount]` int32 item indices. */
export function epochOrder(trainCount: number, seed: number, epoch: number): Int32Array {
  return permutation(trainCount, hashSeed(seed, epoch, EPOCH_SHUFFLE_SALT));
}

/** One micro-batch of a global step. */
export interface MicroBatchRef {
  /** Optimizer step within the epoch. */
  readonly stepInEpoch: number;
  /** Micro-batch index within the step, 0 ≤ microBatch < microBatches. */
  readonly microBatch: number;
  /** Micro-batches per optimizer step, M = global batch / bs = workers × accum. */
  readonly microBatches: number;
  /** Items per micro-batch (the per-worker batch). */
  readonly bs: number;
}

/**
 * Item indices of one micro-batch: positions k·G + m + i·M (i < bs, G = bs·M) of the epoch order. Depends on the
 * split of the global batch only through M (fixed by the global batch and bs), never on the worker count.
 * @param order - from {@link epochOrder}
 * @returns `[bs]` int32 item indices
 * @throws TrainerError ERR_INTERNAL when the micro-batch index is out of range or the step is past the epoch
 */
export function microBatchItems(order: Int32Array, ref: MicroBatchRef): Int32Array {
  const M = ref.microBatches;
  if (!Number.isInteger(ref.microBatch) || ref.microBatch < 0 || ref.microBatch >= M) {
    throw new TrainerError('ERR_INTERNAL', `micro-batch ${ref.microBatch} must be an integer in [0, ${M - 1}]`);
  }
  const base = ref.stepInEpoch * ref.bs * M + ref.microBatch;
  if (base + (ref.bs - 1) * M >= order.length) {
    throw new TrainerError('ERR_INTERNAL', `micro-batch ${ref.microBatch} of step ${ref.stepInEpoch} is past the epoch (${order.length} items)`);
  }
  const out = new Int32Array(ref.bs);
  for (let i = 0; i < ref.bs; i++) out[i] = order[base + i * M]!;
  return out;
}

/**
 * The micro-batch that `rank` runs at accumulation slot `slot` (0 ≤ slot < accum): m = slot·W + rank. Every
 * m in [0, W·accum) is run by exactly one rank.
 */
export function microBatchOf(rank: number, slot: number, worldSize: number): number {
  return slot * worldSize + rank;
}

/** A position in a rank's stream of micro-batches: the one `rank` runs at slot `accumIndex` of a step. */
export interface FeedPosition {
  /** Data epoch (shuffle and augmentation epoch). */
  readonly epoch: number;
  /** Optimizer step within the data epoch. */
  readonly stepInEpoch: number;
  /** Accumulation slot, 0 ≤ accumIndex < accum. */
  readonly accumIndex: number;
  /** Micro-batches a rank runs per step, integer ≥ 1. */
  readonly accum: number;
  readonly rank: number;
  readonly worldSize: number;
}

/**
 * The micro-batches `from.rank` runs from `from` to the end of the data epoch, in order: for each step k and slot
 * a, micro-batch m = {@link microBatchOf}(rank, a, W) of M = W·accum ({@link microBatchItems}); an epoch has
 * ⌊trainCount / (bs·M)⌋ steps (the last partial global batch is dropped, as fastai's `drop_last` training loader).
 * The one batch plan of every process: the worker's feed and the single-process Learner (W = 1, accum 1).
 *
 * @param order - the epoch's order, from {@link epochOrder}
 * @param bs - items per micro-batch
 * @returns batches of training-split positions, every item real
 */
export function rankBatches(order: Int32Array, bs: number, from: FeedPosition): { indices: Int32Array; real: Uint8Array }[] {
  const microBatches = from.worldSize * from.accum;
  const stepsPerEpoch = Math.floor(order.length / (bs * microBatches));
  const batches: { indices: Int32Array; real: Uint8Array }[] = [];
  for (let k = from.stepInEpoch; k < stepsPerEpoch; k++) {
    for (let a = k === from.stepInEpoch ? from.accumIndex : 0; a < from.accum; a++) {
      const indices = microBatchItems(order, { stepInEpoch: k, microBatch: microBatchOf(from.rank, a, from.worldSize), microBatches, bs });
      batches.push({ indices, real: new Uint8Array(indices.length).fill(1) });
    }
  }
  return batches;
}

/** Salt of {@link trainingSeed}'s mix for a run started from a loaded model. */
export const LOADED_RUN_SALT = 0x4c4f4144;

/**
 * Seed of a run's training randomness (epoch shuffles, augmentation, dropout: {@link epochOrder}, the loader's
 * per-item augmentation, {@link dropoutSeed}); the validation split keeps the run's own `--seed`.
 * A run started from a loaded model (`--load`) mixes the loaded file's sha256 into it: its data epochs and global
 * steps count from 0 again, so with the run's `--seed` it replayed exactly the batches (order, crops, dropout masks)
 * the loaded model was trained on, and its first epoch's train_loss was the memorised one (tryout: 0.1 against a
 * valid_loss of 4.5). fastai's `learn.load(); fit_one_cycle()` draws new shuffles; so does this. Deterministic (the
 * sha256 is in the run's config.json and checkpoints), so `--resume` of such a run replays its own order.
 * @param seed - the run's `--seed` (integer)
 * @param loadedSha256 - hex sha256 of the `--load`ed file, or null for a run not started from a loaded model
 * @returns `seed` itself when `loadedSha256` is null, else an unsigned 32-bit seed
 * @throws TrainerError ERR_BAD_CONFIG when `loadedSha256` is not at least 8 hex digits
 */
export function trainingSeed(seed: number, loadedSha256: string | null): number {
  if (loadedSha256 === null) return seed;
  if (!/^[0-9a-f]{8}/i.test(loadedSha256)) throw new TrainerError('ERR_BAD_CONFIG', `a loaded model's sha256 must be hex, got ${JSON.stringify(loadedSha256)}`);
  return hashSeed(seed, Number.parseInt(loadedSha256.slice(0, 8), 16), Number.parseInt(loadedSha256.slice(8, 16) || '0', 16), LOADED_RUN_SALT);
}

/**
 * Seed of the dropout masks of micro-batch `microBatch` at global step `globalStep`: hashSeed(seed, step, m, 0).
 * (The trailing 0 was the accumulation index when seeds were per (rank, slot): runs with accum 1, where m = rank,
 * keep the masks they had.)
 */
export function dropoutSeed(seed: number, globalStep: number, microBatch: number): number {
  return hashSeed(seed, globalStep, microBatch, 0);
}

/**
 * The validation batches `rank` evaluates: the validation split in order, cut into batches of `bs` (the last one
 * shorter), batch j going to rank j mod W. Each batch, and so each item's logits and each batch's float32 loss sum,
 * is the same whatever the worker count (a shard of a padded DistributedSampler would group items by W). Ranks may
 * get one batch more than others; validation is no collective, so that cannot deadlock.
 *
 * @returns batches of split positions (all real: nothing is padded)
 */
export function validationBatches(count: number, bs: number, rank: number, worldSize: number): { indices: Int32Array; real: Uint8Array }[] {
  const out: { indices: Int32Array; real: Uint8Array }[] = [];
  for (let j = rank; j * bs < count; j += worldSize) {
    const start = j * bs;
    const end = Math.min(count, start + bs);
    out.push({ indices: Int32Array.from({ length: end - start }, (_, i) => start + i), real: new Uint8Array(end - start).fill(1) });
  }
  return out;
}
