/**
 * The run plan: how many optimizer steps each stage has, which items every micro-batch of every step reads, and the
 * learning rate per layer group and momentum of every step. Pure functions of (dataset sizes, seed, stage config,
 * world size, per-worker batch, accumulation), so the coordinator, every worker and a resumed run compute the same
 * plan without talking to each other.
 *
 * Data order is defined per GLOBAL step, not per rank: epoch e is a permutation of the training items seeded by
 * (seed, e); global step k of the epoch reads positions [k·G, (k+1)·G) of it (G = global batch = bs × world × accum),
 * and rank r at accumulation index a reads positions k·G + a·W·bs + i·W + r for i < bs. With accum = 1 that is
 * exactly PyTorch's DistributedSampler (rank r takes r, r+W, …; checked in the tests against `shardPlan`). Because
 * it is anchored on global steps, a replacement worker, a resumed run or an elastic ring with fewer workers (and a
 * larger accum, same G) reads exactly the items the undisturbed run would have read at that step.
 */
import { TrainerError } from './errors.js';
import type { StageConfig } from './config.js';
import { hashSeed, permutation } from './data/rng.js';
import { lrFindLr, lrSpread, oneCycle, parseLrSpec, type StepHyper } from './learner/schedule.js';

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
      const n = input.lrFindIterations ?? 100;
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

/** The shuffled order of the training items in an epoch: `[trainCount]` int32 item indices. */
export function epochOrder(trainCount: number, seed: number, epoch: number): Int32Array {
  return permutation(trainCount, hashSeed(seed, epoch, EPOCH_SHUFFLE_SALT));
}

/** Which micro-batch of a global step a worker reads. */
export interface MicroBatchRef {
  /** Optimizer step within the epoch. */
  readonly stepInEpoch: number;
  /** Accumulation index, 0 ≤ a < accum. */
  readonly accumIndex: number;
  readonly rank: number;
  readonly worldSize: number;
  /** Per-worker batch. */
  readonly bs: number;
  readonly accum: number;
}

/**
 * Item indices of one micro-batch: positions k·G + a·W·bs + i·W + r (i < bs) of the epoch order.
 * @param order - from {@link epochOrder}
 * @returns `[bs]` int32 item indices
 */
export function microBatchItems(order: Int32Array, ref: MicroBatchRef): Int32Array {
  const G = ref.bs * ref.worldSize * ref.accum;
  const base = ref.stepInEpoch * G + ref.accumIndex * ref.worldSize * ref.bs + ref.rank;
  if (base + (ref.bs - 1) * ref.worldSize >= order.length) {
    throw new TrainerError('ERR_INTERNAL', `micro-batch step ${ref.stepInEpoch} accum ${ref.accumIndex} rank ${ref.rank} is past the epoch (${order.length} items)`);
  }
  const out = new Int32Array(ref.bs);
  for (let i = 0; i < ref.bs; i++) out[i] = order[base + i * ref.worldSize]!;
  return out;
}
