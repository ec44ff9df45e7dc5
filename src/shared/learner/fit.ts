/**
 * fastai v1's `Learner` in one process, over one {@link Replica}: `fitOneCycle`, `fit`, `freeze`/`unfreeze`,
 * `validate`, `lrFind`, `save`/`load`, `predict`, printing the epoch table as fastai does.
 *
 * Data order and schedule come from `plan.ts` with world size 1 (one rank, accum 1), so this loop reads exactly the
 * items the distributed runtime reads at the same step: data epoch e (counted over the learner's whole life, so
 * successive fits see new shuffles: {@link Learner.epochsDone}) uses `epochOrder(train, seed, e)`, step k reads
 * `microBatchItems(order, {stepInEpoch: k, microBatch: 0, microBatches: 1, bs})`, and step hyper-parameters are
 * `stepHyper(stage, step)`. Dropout seeds are `hashSeed(seed, e, k, DROPOUT_SALT)`.
 *
 * train_loss in the table is fastai's: the smoothed (β = 0.98, debiased) batch loss at the end of the epoch, the
 * smoother running over the whole fit (fastai `Recorder.on_train_begin`).
 */
import { performance } from 'node:perf_hooks';
import { TrainerError } from '../errors.js';
import type { StageConfig } from '../config.js';
import type { DataBunch } from '../data/databunch.js';
import { decodeRgb } from '../data/decode.js';
import { BatchLoader, type Batch } from '../data/loader.js';
import type { ImagePool } from '../data/pool.js';
import { hashSeed } from '../data/rng.js';
import { shardPlan, type ShardPlan } from '../data/shard.js';
import { CENTRE_CROP, DEFAULT_TRANSFORMS, IMAGENET_MEAN, IMAGENET_STD, renderItem, transformProblem, type TransformSettings } from '../data/transforms.js';
import { epochOrder, microBatchItems, planStages, stepHyper, type StagePlan } from '../plan.js';
import { runLrFind, type LrFindResult } from './lr-find.js';
import type { Replica } from './replica.js';
import { loadModel, saveModel, type SavedModelMeta } from './save.js';
import { SmoothedLoss, type LrFindOptions, type LrSpec } from './schedule.js';
import { EpochProgress, formatEpochHeader, formatEpochRow, type EpochRow, type ProgressMode } from './table.js';

/** Salt of the per-step dropout seeds. */
export const DROPOUT_SALT = 0xd409;

/** Options of {@link Learner}; all optional. */
export interface LearnerOptions {
  /** Images per step, integer ≥ 2 (fastai bs 64). */
  readonly bs?: number;
  /** Image side in pixels (fastai size 224). */
  readonly size?: number;
  /** Seed of the data order, augmentation and dropout (integer). */
  readonly seed?: number;
  /** Folder holding `models/` for save/load. */
  readonly dir?: string;
  /** Batches prepared ahead by the loader, integer ≥ 1. */
  readonly prefetchBatches?: number;
  /**
   * Training augmentation (fastai `get_transforms(...)`): default fastai's ({@link DEFAULT_TRANSFORMS}); null trains
   * on centre crops, as validation (fastai `ds_tfms=None`).
   */
  readonly transforms?: TransformSettings | null;
  /** In-epoch progress display. */
  readonly progress?: ProgressMode;
  /** Where the table and plain progress lines go; default stdout. */
  readonly log?: (line: string) => void;
}

/** Resolved {@link LearnerOptions}. */
export type ResolvedLearnerOptions = Required<LearnerOptions>;

/** Defaults: the tutorial's bs 64 and size 224, seed 42, `.` as dir, prefetch 2, progress auto, fastai's augmentation, stdout. */
export const DEFAULT_LEARNER: ResolvedLearnerOptions = Object.freeze({
  bs: 64, size: 224, seed: 42, dir: '.', prefetchBatches: 2, progress: 'auto', transforms: DEFAULT_TRANSFORMS,
  log: (line: string) => { process.stdout.write(`${line}\n`); },
});

function resolveOptions(o: LearnerOptions): ResolvedLearnerOptions {
  const r = { ...DEFAULT_LEARNER, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) } as ResolvedLearnerOptions;
  if (!Number.isInteger(r.bs) || r.bs < 2) throw new TrainerError('ERR_BAD_FLAG', `--bs must be an integer ≥ 2, got ${r.bs}`);
  if (!Number.isInteger(r.size) || r.size < 32) throw new TrainerError('ERR_BAD_FLAG', `--size must be an integer ≥ 32, got ${r.size}`);
  if (!Number.isSafeInteger(r.seed)) throw new TrainerError('ERR_BAD_FLAG', `--seed must be an integer, got ${r.seed}`);
  const problem = r.transforms === null ? null : transformProblem({ ...r.transforms });
  if (problem !== null) throw new TrainerError('ERR_BAD_CONFIG', `Learner transforms: ${problem}`);
  return Object.freeze(r);
}

/** Validation result: mean loss and error rate over the real items (padding excluded). */
export interface ValidationResult {
  /** Mean cross-entropy, nats. */
  readonly validLoss: number;
  /** 1 − accuracy (fastai error_rate, weighted by batch size = per item). */
  readonly errorRate: number;
  /** Items counted. */
  readonly count: number;
}

/** A prediction for one image. */
export interface Prediction {
  readonly className: string;
  readonly index: number;
  /** `[classes]` softmax probabilities. */
  readonly probs: Float32Array;
}

/** Renders an LrSpec as the flag syntax plan.ts parses (`3e-3`, `slice(3e-3)`, `slice(1e-6,1e-4)`). */
export function lrSpecText(lr: LrSpec | string): string {
  if (typeof lr === 'string') return lr;
  if (typeof lr === 'number') return String(lr);
  return lr.start === undefined ? `slice(${lr.end})` : `slice(${lr.start},${lr.end})`;
}

/** Single-process fastai Learner. The data pool and the replica belong to the caller (close/dispose them). */
export class Learner {
  /** Resolved options. */
  readonly options: ResolvedLearnerOptions;
  /** Data epochs trained so far (the shuffle/augmentation epoch of the next epoch). */
  epochsDone = 0;
  /** Mean loss of every training batch of every fit so far (not lr_find), nats, unsmoothed (for charts). */
  readonly batchLosses: number[] = [];

  constructor(readonly data: DataBunch, readonly pool: ImagePool, readonly replica: Replica, options: LearnerOptions = {}) {
    this.options = resolveOptions(options);
    if (replica.numClasses !== data.classes.length) {
      throw new TrainerError('ERR_BAD_CONFIG', `the replica has ${replica.numClasses} classes, the data ${data.classes.length}`);
    }
  }

  /** fastai `freeze()`: only the head and BatchNorm train; optimizer state reset. */
  freeze(): void {
    this.replica.setFrozen(true);
  }

  /** fastai `unfreeze()`: everything trains; optimizer state reset. */
  unfreeze(): void {
    this.replica.setFrozen(false);
  }

  /**
   * fastai `fit_one_cycle(epochs, max_lr)` (default max_lr `slice(3e-3)`); prints the table.
   *
   * @throws TrainerError ERR_BAD_FLAG (bad lr/epochs), ERR_BAD_CONFIG (train set smaller than one batch)
   */
  fitOneCycle(epochs: number, maxLr: LrSpec | string = 'slice(3e-3)'): Promise<EpochRow[]> {
    return this.runStage({ kind: 'one_cycle', name: 'fit_one_cycle', epochs, maxLr: lrSpecText(maxLr), frozen: this.replica.frozen });
  }

  /** fastai `fit(epochs, lr)`: constant learning rate(s), momentum 0.9; prints the table. */
  fit(epochs: number, lr: LrSpec | string): Promise<EpochRow[]> {
    return this.runStage({ kind: 'fit', name: 'fit', epochs, maxLr: lrSpecText(lr), frozen: this.replica.frozen });
  }

  /** The stage plan of a config for this data and batch size (world size 1). */
  planStage(config: StageConfig, lrFindIterations?: number): StagePlan {
    if (config.kind !== 'lr_find' && (!Number.isInteger(config.epochs) || config.epochs < 1)) {
      throw new TrainerError('ERR_BAD_FLAG', `--epochs must be an integer ≥ 1, got ${config.epochs}`);
    }
    return planStages({ stages: [config], trainCount: this.data.train.length, globalBs: this.options.bs, lrFactor: 1, lrFindIterations })[0]!;
  }

  private async runStage(config: StageConfig): Promise<EpochRow[]> {
    const stage = this.planStage(config);
    const smooth = new SmoothedLoss(0.98);
    const rows: EpochRow[] = [];
    this.options.log(formatEpochHeader());
    for (let e = 0; e < config.epochs; e++) {
      const t0 = performance.now();
      const progress = new EpochProgress(stage.stepsPerEpoch, `epoch ${e}`, this.options.progress, this.options.log);
      try {
        await this.forEachTrainBatch(this.epochsDone, 0, stage.stepsPerEpoch, async (batch, k) => {
          this.batchLosses.push(await this.trainStep(batch, this.epochsDone, k, stepHyper(stage, e * stage.stepsPerEpoch + k), smooth));
          progress.tick(smooth.value);
          return true;
        });
      } finally {
        progress.stop();
      }
      this.epochsDone += 1;
      const v = await this.validate();
      const row = { epoch: e, trainLoss: smooth.value, validLoss: v.validLoss, errorRate: v.errorRate, seconds: (performance.now() - t0) / 1000 };
      rows.push(row);
      this.options.log(formatEpochRow(row));
    }
    return rows;
  }

  /**
   * One optimizer step on one batch: accumulate, take, apply. Returns the batch's mean loss over its valid
   * items and adds it to `smooth`; a batch without valid items (all failed to decode) is skipped (NaN).
   */
  async trainStep(batch: Batch, dataEpoch: number, stepInEpoch: number, hyper: { lrs: number[]; momentum: number }, smooth?: SmoothedLoss): Promise<number> {
    const s = await this.replica.accumulate(batch.x, batch.y, batch.valid, hashSeed(this.options.seed, dataEpoch, stepInEpoch, DROPOUT_SALT));
    if (s.count === 0) {
      await this.replica.takeGradients();
      return Number.NaN;
    }
    this.replica.applyGradients(await this.replica.takeGradients(), hyper);
    const loss = s.lossSum / s.count;
    smooth?.add(loss);
    return loss;
  }

  /** The training plan of one data epoch, steps [first, first + count): world size 1, accum 1. */
  trainPlan(dataEpoch: number, first: number, count: number): ShardPlan {
    const order = epochOrder(this.data.train.length, this.options.seed, dataEpoch);
    const bs = this.options.bs;
    const batches = Array.from({ length: count }, (_, i) => ({
      indices: microBatchItems(order, { stepInEpoch: first + i, microBatch: 0, microBatches: 1, bs }),
      real: new Uint8Array(bs).fill(1),
    }));
    return { batches, itemsPerRank: count * bs };
  }

  /**
   * Loads training batches of data epoch `dataEpoch`, steps [first, first + count), augmented, and calls `step`
   * for each with its step-in-epoch; stops early when `step` returns false. The loader is always closed.
   */
  async forEachTrainBatch(dataEpoch: number, first: number, count: number, step: (b: Batch, k: number) => boolean | Promise<boolean>): Promise<void> {
    const loader = this.loader(this.trainPlan(dataEpoch, first, count), this.data.train, true, dataEpoch);
    try {
      for await (const batch of loader) {
        if (!(await step(batch, first + batch.batchIndex))) break;
      }
    } finally {
      await loader.close();
    }
  }

  private loader(plan: ShardPlan, split: Int32Array, augment: boolean, epoch: number): BatchLoader {
    const { size, seed, prefetchBatches, transforms } = this.options;
    const augmented = augment && transforms !== null;
    return new BatchLoader({ pool: this.pool, paths: this.data.paths, labels: this.data.labels, split, plan, size,
      augment: augmented, ...(augmented ? { transforms } : {}), seed, epoch, prefetchBatches, skipLog: this.data.skipLog });
  }

  /**
   * fastai `validate()`: eval-mode loss and error rate over the validation set (in order, centre crops, last
   * partial batch kept, items that fail to decode excluded).
   *
   * @throws TrainerError ERR_DATA when the validation set is empty or no item could be decoded
   */
  async validate(): Promise<ValidationResult> {
    const n = this.data.valid.length;
    if (n === 0) throw new TrainerError('ERR_DATA', 'validation needs at least one validation item, got 0 (check --valid-pct)');
    const plan = shardPlan({ itemCount: n, seed: this.options.seed, epoch: 0, worldSize: 1, rank: 0, batchSize: this.options.bs, shuffle: false, mode: 'pad' });
    const loader = this.loader(plan, this.data.valid, false, 0);
    let lossSum = 0;
    let correct = 0;
    let count = 0;
    try {
      for await (const b of loader) {
        const r = await this.replica.evaluate(b.x, b.y, b.valid);
        lossSum += r.lossSum;
        correct += r.correct;
        count += r.count;
      }
    } finally {
      await loader.close();
    }
    if (count === 0) throw new TrainerError('ERR_DATA', 'no validation item could be decoded');
    return { validLoss: lossSum / count, errorRate: 1 - correct / count, count };
  }

  /**
   * fastai `lr_find()`: exponential lr sweep, one batch per lr, no validation; weights, BN statistics and
   * optimizer state are restored exactly afterwards. See `lr-find.ts`.
   */
  lrFind(options: LrFindOptions = {}): Promise<LrFindResult> {
    return runLrFind(this, options);
  }

  /** fastai `save(name)`: `<dir>/models/<name>.safetensors` + `.json`. @throws TrainerError ERR_BAD_FLAG, ERR_CHECKPOINT */
  save(name: string): Promise<{ weights: string; meta: string }> {
    return saveModel(this.replica, {
      arch: this.replica.learner.body.layout.config, classes: this.data.classes, size: this.options.size,
      normalize: { mean: IMAGENET_MEAN, std: IMAGENET_STD },
    }, this.options.dir, name);
  }

  /** fastai `load(name)`: weights, BN statistics, optimizer state, frozen flag. @throws TrainerError ERR_CHECKPOINT */
  load(name: string): Promise<SavedModelMeta> {
    return loadModel(this.replica, this.options.dir, name, this.data.classes);
  }

  /**
   * fastai `predict(img)`: the validation transform (shorter side → size, centre crop, ImageNet normalisation),
   * eval-mode forward, softmax.
   *
   * @throws TrainerError ERR_BAD_IMAGE when the file cannot be decoded
   */
  async predict(imagePath: string): Promise<Prediction> {
    const { size } = this.options;
    const img = await decodeRgb(imagePath, { shorterSide: size });
    const pixels = new Float32Array(size * size * 3);
    renderItem(img, CENTRE_CROP, size, pixels);
    const { probs } = await this.replica.evaluate(pixels, new Int32Array(1), null);
    let index = 0;
    for (let i = 1; i < probs.length; i++) if (probs[i]! > probs[index]!) index = i;
    return { className: this.data.classes[index]!, index, probs };
  }
}
