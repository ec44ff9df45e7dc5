/**
 * fastai v1's `Learner` in one process, over one {@link Replica}: `fitOneCycle`, `fit`, `freeze`/`unfreeze`,
 * `validate`, `lrFind`, `save`/`load`, `predict`, printing the epoch table as fastai does.
 *
 * The loop is the one every process runs (`loop.ts` `fitStage`, `lr-find.ts` `lrFindStage`) over a local
 * transport: the replica's step with an identity all-reduce (`LocalAllReducer`), as Lightning's
 * `SingleDeviceStrategy`. Data order and schedule come from `plan/` with world size 1 (one rank, accum 1), so this
 * loop reads exactly the items the distributed runtime reads at the same step: data epoch e (counted over the
 * learner's whole life, so successive fits see new shuffles: {@link Learner.epochsDone}) uses
 * `epochOrder(train, seed, e)` and step k reads `rankBatches`' micro-batch (the worker's {@link TrainFeed}), and step
 * hyper-parameters are `stepHyper(stage, step)`. Dropout masks are seeded as a worker's (`plan.ts` `dropoutSeed`):
 * (seed, global step g, micro-batch 0), g counting every step of the learner's life, lr_find's too, as the
 * coordinator's global step does ({@link Learner.stepsDone}); so a 1-worker run draws the same masks.
 *
 * train_loss in the table is fastai's: the smoothed (β = 0.98, debiased) batch loss at the end of the epoch, the
 * smoother running over the whole fit (fastai `Recorder.on_train_begin`).
 */
import { performance } from 'node:perf_hooks';
import { LocalAllReducer } from '../allreduce/local.js';
import { TrainerError } from '../../contract/errors.js';
import { LR_FIND_STAGE_NAME, checkBatchSize, checkSize, type StageConfig } from '../../contract/config.js';
import type { DataBunch } from '../data/databunch.js';
import { dataWentAwayError } from '../data/accounting.js';
import { decodeRgb } from '../data/decode.js';
import { TrainFeed } from '../data/feed.js';
import type { ImagePool } from '../data/pool.js';
import { CENTRE_CROP, IMAGENET_MEAN, IMAGENET_STD, renderItem } from '../data/transforms.js';
import { DEFAULT_TRANSFORMS, transformProblem, type TransformSettings } from '../../contract/transform-settings.js';
import { dropoutSeed, microBatchOf, planStages, stepPosition, validationBatches, type StagePlan } from '../../contract/plan/plan.js';
import type { LrFindOptions, LrSpec, StepHyper } from '../../contract/plan/schedule.js';
import { lrFindStage, type LrFindResult } from './lr-find.js';
import { fitStage, newStageRecord, type StepOutcome, type StepTransport, type ValidationOutcome } from './loop.js';
import type { Replica, ReplicaState } from './replica.js';
import { loadModel, saveModel, type SavedModelMeta } from './save.js';
import { writeProgressLine, type EpochRow, type ProgressMode } from './table.js';
import { validateBatches } from './validate.js';

export type { LrFindResult } from './lr-find.js';

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
  /** Where the epoch table goes (results); default stdout. */
  readonly log?: (line: string) => void;
  /** Where plain progress lines go; default stderr (as tqdm and Lightning), so stdout holds only results. */
  readonly progressLog?: (line: string) => void;
}

/** Resolved {@link LearnerOptions}. */
export type ResolvedLearnerOptions = Required<LearnerOptions>;

/** Defaults: the tutorial's bs 64 and size 224, seed 42, `.` as dir, prefetch 2, progress auto, fastai's augmentation, table on stdout, progress on stderr. */
export const DEFAULT_LEARNER: ResolvedLearnerOptions = Object.freeze({
  bs: 64, size: 224, seed: 42, dir: '.', prefetchBatches: 2, progress: 'auto', transforms: DEFAULT_TRANSFORMS,
  log: (line: string) => { process.stdout.write(`${line}\n`); },
  progressLog: writeProgressLine,
});

function resolveOptions(o: LearnerOptions): ResolvedLearnerOptions {
  const r = { ...DEFAULT_LEARNER, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) } as ResolvedLearnerOptions;
  // The coordinator's rules (one table, contract/config.ts): the same sizes and batch sizes in both CLIs.
  checkBatchSize(r.bs);
  checkSize(r.size);
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
  /**
   * Optimizer steps run so far, lr_find sweeps included: the global step of the next step (the coordinator's
   * `history.position.globalStep`), which seeds its dropout masks.
   */
  stepsDone = 0;
  /** Mean loss of every training batch of every fit so far (not lr_find), nats, unsmoothed (for charts). */
  readonly batchLosses: number[] = [];

  /**
   * @throws TrainerError ERR_BAD_CONFIG for a `bs` or `size` outside the coordinator's rules (contract/config.ts
   *   BS_RANGE, SIZE_RANGE) or bad transforms; ERR_BAD_FLAG for a seed that is not an integer
   */
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
    const transport = this.transport(this.epochsDone);
    try {
      const { rows } = await fitStage(transport, stage, newStageRecord(), 0, {
        progress: this.options.progress, out: this.options.log, progressOut: this.options.progressLog,
        afterEpoch: () => { this.epochsDone += 1; },
        afterStep: (_stage, _k, _outcome, loss) => { this.batchLosses.push(loss); return false; },
      });
      return rows;
    } finally {
      await transport.close();
    }
  }

  /**
   * The training micro-batches this Learner reads, as rank 0 of a world of one (the same {@link TrainFeed} and batch
   * rule as a worker), augmented with the `transforms` option. The caller closes it.
   */
  trainFeed(): TrainFeed {
    const { bs, size, seed, prefetchBatches, transforms } = this.options;
    return new TrainFeed({ pool: this.pool, paths: this.data.paths, labels: this.data.labels, train: this.data.train, size, bs, seed,
      skipLog: this.data.skipLog, prefetchBatches, transforms });
  }

  /**
   * The local transport (one rank, identity all-reduce) of a stage whose data epochs start at `firstDataEpoch`.
   * A step reads its micro-batch from the feed, runs forward + backward (`accumulate`), all-reduces the gradient
   * (identity) and applies AdamW. A step whose items all failed to decode is not applied and ends the run with
   * ERR_DATA ({@link dataWentAwayError}), as in the distributed run (`coordinator/stage-runner.ts`).
   */
  private transport(firstDataEpoch: number): StepTransport<null, ReplicaState> & { close(): Promise<void> } {
    const { bs, seed } = this.options;
    const feed = this.trainFeed();
    const reducer = new LocalAllReducer();
    const stepsPerDataEpoch = Math.floor(this.data.train.length / bs);
    const replica = this.replica;
    return {
      step: async (stage: StagePlan, k: number, hyper: StepHyper): Promise<StepOutcome<null>> => {
        const t0 = performance.now();
        const { epoch, stepInEpoch } = stepPosition(stage, k, stepsPerDataEpoch);
        const dataEpoch = firstDataEpoch + epoch;
        const batch = await feed.next({ epoch: dataEpoch, stepInEpoch, accumIndex: 0, accum: 1, rank: 0, worldSize: 1 });
        // Rank 0 of a world of one, accumulation slot 0: micro-batch 0 of the step.
        const s = await replica.accumulate(batch.x, batch.y, batch.valid, dropoutSeed(seed, this.stepsDone, microBatchOf(0, 0, 1)));
        // World size 1: on WebGPU the gradient stays on the device (the identity all-reduce needs no copy on the CPU).
        const grads = await replica.takeStepGradients({ reduced: false });
        try {
          if (s.count === 0) throw dataWentAwayError(`training step ${this.stepsDone + 1}`, 'the step was not applied: restore the data and run again');
          replica.applyGradients(grads instanceof Float32Array ? await reducer.allReduce(grads, { step: k, bucket: 0 }, { average: true }) : grads, hyper);
        } finally {
          replica.releaseStepGradients(grads);
        }
        this.stepsDone += 1;
        return { lossSum: s.lossSum, count: s.count, seconds: (performance.now() - t0) / 1000, detail: null };
      },
      validate: (): Promise<ValidationOutcome> => this.validate(),
      snapshot: () => replica.exportState(),
      restore: (state: ReplicaState) => Promise.resolve(replica.importState(state)),
      close: () => feed.close(),
    };
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
    const { size, seed, prefetchBatches, bs } = this.options;
    const { lossSum, correct, count } = await validateBatches(this.replica, {
      pool: this.pool, paths: this.data.paths, labels: this.data.labels, split: this.data.valid, size, seed, skipLog: this.data.skipLog,
      prefetchBatches,
    }, validationBatches(n, bs, 0, 1), false);
    if (count === 0) throw dataWentAwayError('validation', 'nothing was trained since the last epoch: restore the data and run again');
    return { validLoss: lossSum / count, errorRate: 1 - correct / count, count };
  }

  /**
   * fastai `lr_find()`: exponential lr sweep, one batch per lr, no validation; weights, BN statistics and
   * optimizer state are restored exactly afterwards. The sweep reads the data from the learner's current data
   * epoch on (one long pass over repeated epochs) and does not advance it. See `lr-find.ts`.
   *
   * @throws TrainerError ERR_BAD_FLAG on bad lr_find options; the replica is restored even when a step throws
   */
  async lrFind(options: LrFindOptions = {}): Promise<LrFindResult> {
    const { numIt, ...lrs } = options;
    const stage = this.planStage({ kind: 'lr_find', name: LR_FIND_STAGE_NAME, epochs: 0, maxLr: '0', frozen: this.replica.frozen }, numIt);
    const transport = this.transport(this.epochsDone);
    try {
      return (await lrFindStage(transport, stage, { progress: this.options.progress, out: this.options.log, progressOut: this.options.progressLog }, lrs))!;
    } finally {
      await transport.close();
    }
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
