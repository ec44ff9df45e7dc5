/**
 * fastai v1's `cnn_learner` for one replica: a torchvision ResNet body + the fastai head, three layer groups, and
 * freeze/unfreeze (rebuilding the optimizer, as fastai). The training step is {@link Replica}'s (`accumulate` →
 * `takeGradients` → all-reduce → `applyGradients`), the one step every process runs; no step, epoch loop or data
 * handling here.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TrainerError } from '../../contract/errors.js';
import type { Rng } from '../../contract/plan/rng.js';
import type { BnUpdates, ResNet } from '../model/resnet.js';
import { AdamW, type AdamWOptions } from './adamw.js';
import { layerGroups, trainableNames } from './groups.js';
import { createHead, type Head, type HeadOptions } from './head.js';

/** Options of {@link cnnLearner}; all optional. */
export interface CnnLearnerOptions {
  /** Head options (hidden width, dropout ps, init seed). */
  readonly head?: HeadOptions;
  /** AdamW hyper-parameters (the trainable set is managed by freeze/unfreeze). */
  readonly adamw?: Omit<AdamWOptions, 'trainable'>;
  /** Start frozen (fastai freezes right after creating a learner on a pretrained body). Default true. */
  readonly frozen?: boolean;
}

/** A ResNet body + fastai head with its optimizer. Create with {@link cnnLearner}. */
export class CnnLearner {
  /** Parameter names per layer group: [conv1…layer2], [layer3, layer4], [head]. */
  readonly groups: string[][];
  /** Every trainable-capable parameter of body and head by name. */
  readonly params: ReadonlyMap<string, tf.Variable>;
  private opt: AdamW;
  private isFrozen: boolean;
  private disposed = false;

  /** @internal use {@link cnnLearner}. */
  constructor(readonly body: ResNet, readonly head: Head, private readonly adamwOptions: Omit<AdamWOptions, 'trainable'>,
    frozen: boolean) {
    this.params = new Map([...body.params, ...head.params]);
    this.groups = layerGroups(this.params.keys());
    this.isFrozen = frozen;
    this.opt = this.buildOptimizer();
  }

  /** True while only the head and BatchNorm parameters train. */
  get frozen(): boolean {
    return this.isFrozen;
  }

  /** The current optimizer (replaced by {@link freeze}/{@link unfreeze}). */
  get optimizer(): AdamW {
    return this.opt;
  }

  private buildOptimizer(): AdamW {
    const trainable = trainableNames(this.params.keys(), { frozen: this.isFrozen });
    return new AdamW(this.params, this.groups, { ...this.adamwOptions, trainable });
  }

  /** fastai `freeze()`: train the head and every BatchNorm; the optimizer state is reset. */
  freeze(): void {
    this.setFrozen(true);
  }

  /** fastai `unfreeze()`: train everything; the optimizer state is reset. */
  unfreeze(): void {
    this.setFrozen(false);
  }

  private setFrozen(frozen: boolean): void {
    this.checkAlive();
    this.opt.dispose();
    this.isFrozen = frozen;
    this.opt = this.buildOptimizer();
  }

  /**
   * Body + head forward pass.
   *
   * @param x - `[batch, height, width, 3] float32, NHWC`, ImageNet-normalised
   * @param training - batch-stat BN and dropout (needs `rng`) when true
   * @returns logits `[batch, numClasses] float32`
   * @throws TrainerError as the model's `features` and {@link Head.forward}
   */
  forward(x: tf.Tensor4D, training: boolean, opts: { rng?: Rng; bnUpdates?: BnUpdates } = {}): tf.Tensor2D {
    this.checkAlive();
    return tf.tidy(() => this.head.forward(this.body.features(x, training, opts.bnUpdates), training, opts));
  }

  /** Frees the optimizer state, the head and the body. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.opt.dispose();
    this.head.dispose();
    this.body.dispose();
  }

  private checkAlive(): void {
    if (this.disposed) throw new TrainerError('ERR_INTERNAL', 'CnnLearner used after dispose()');
  }
}

/**
 * fastai `cnn_learner(data, arch)` on an existing body: adds the head for `numClasses`, splits the three layer
 * groups and (by default) freezes. The learner owns the body from now on (`dispose()` frees it).
 *
 * @param body - a ResNet created with `numClasses: null` (no avgpool/fc), pretrained or random
 * @param numClasses - classes, integer ≥ 1
 * @throws TrainerError ERR_BAD_CONFIG when the body has a classifier, or on bad head/optimizer options
 */
export function cnnLearner(body: ResNet, numClasses: number, options: CnnLearnerOptions = {}): CnnLearner {
  if (body.numClasses !== null) {
    throw new TrainerError('ERR_BAD_CONFIG', `cnnLearner needs a body without classifier (createResNet(arch, { numClasses: null })), got numClasses ${body.numClasses}`);
  }
  const head = createHead(body.featureChannels, numClasses, options.head);
  try {
    return new CnnLearner(body, head, options.adamw ?? {}, options.frozen ?? true);
  } catch (err) {
    head.dispose();
    throw err;
  }
}
