/**
 * fastai v1's `cnn_learner` for one replica: a torchvision ResNet body + the fastai head, three layer groups,
 * freeze/unfreeze (rebuilding the optimizer, as fastai), and one training step = forward, backward, AdamW.
 *
 * The step is split in two so a distributed worker can all-reduce in between:
 * ```ts
 * const g = learner.computeGradients(x, y, rng);   // forward + backward on this worker's slice
 * // … all-reduce g.grads (average) across workers …
 * learner.applyGradients(g, hyper);                 // AdamW with the coordinator's lrs/momentum, then BN stats
 * ```
 * `trainStep` does both for a single process. No epoch loop or data handling here.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TrainerError } from '../errors.js';
import type { Rng } from '../data/rng.js';
import type { BnUpdates, ResNet } from '../model/resnet.js';
import { AdamW, type AdamWOptions } from './adamw.js';
import { layerGroups, trainableNames } from './groups.js';
import { createHead, type Head, type HeadOptions } from './head.js';
import { crossEntropy } from './loss.js';
import type { StepHyper } from '../plan/schedule.js';

/** Options of {@link cnnLearner}; all optional. */
export interface CnnLearnerOptions {
  /** Head options (hidden width, dropout ps, init seed). */
  readonly head?: HeadOptions;
  /** AdamW hyper-parameters (the trainable set is managed by freeze/unfreeze). */
  readonly adamw?: Omit<AdamWOptions, 'trainable'>;
  /** Start frozen (fastai freezes right after creating a learner on a pretrained body). Default true. */
  readonly frozen?: boolean;
}

/** The result of {@link CnnLearner.computeGradients}; owned by the caller until passed to `applyGradients`. */
export interface StepGradients {
  /** Mean cross-entropy of the batch, in nats. */
  readonly loss: number;
  /** Gradient of the mean loss per trainable parameter name, same shapes as the parameters. */
  readonly grads: Map<string, tf.Tensor>;
  /** New BN running statistics from this forward pass (body and head). */
  readonly bnUpdates: BnUpdates;
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

  /**
   * Forward + backward of the mean cross-entropy in training mode, for the trainable parameters only.
   *
   * @param x - `[batch, height, width, 3] float32, NHWC`, batch ≥ 2
   * @param labels - `[batch] int32` class indices
   * @param rng - uniform generator for this step's dropout masks (seed it per step/replica)
   * @throws TrainerError ERR_DATA on bad inputs (see the loss and forward functions)
   */
  computeGradients(x: tf.Tensor4D, labels: tf.Tensor1D, rng: Rng): StepGradients {
    this.checkAlive();
    const bnUpdates: BnUpdates = new Map();
    const names = [...this.opt.trainable];
    const vars = names.map((n) => this.params.get(n)!);
    try {
      const { value, grads } = tf.variableGrads(
        () => crossEntropy(this.forward(x, true, { rng, bnUpdates }), labels), vars);
      const loss = value.dataSync()[0]!;
      value.dispose();
      const byName = new Map<string, tf.Tensor>();
      names.forEach((n, i) => {
        const g = grads[vars[i]!.name];
        if (g) byName.set(n, g);
      });
      return { loss, grads: byName, bnUpdates };
    } catch (err) {
      tf.dispose([...bnUpdates.values()]);
      throw err;
    }
  }

  /**
   * Applies (possibly all-reduced) gradients with AdamW, then the BN running statistics; disposes the
   * gradients and the BN tensors.
   *
   * @param step - from {@link computeGradients} (its `grads` may have been replaced by averaged ones)
   * @param hyper - lr per layer group (3) and momentum for this step, e.g. `oneCycle(...)`
   * @throws TrainerError ERR_INTERNAL as {@link AdamW.step}; nothing is modified then, and nothing is disposed
   */
  applyGradients(step: StepGradients, hyper: StepHyper): void {
    this.checkAlive();
    this.opt.step(step.grads, hyper);
    tf.dispose([...step.grads.values()]);
    step.grads.clear();
    this.head.applyBnUpdates(step.bnUpdates);
    this.body.applyBnUpdates(step.bnUpdates);
  }

  /**
   * One single-process training step: {@link computeGradients} then {@link applyGradients}.
   *
   * @returns the batch's mean cross-entropy before the update, in nats
   */
  trainStep(x: tf.Tensor4D, labels: tf.Tensor1D, hyper: StepHyper, rng: Rng): number {
    const step = this.computeGradients(x, labels, rng);
    try {
      this.applyGradients(step, hyper);
    } catch (err) {
      tf.dispose([...step.grads.values(), ...step.bnUpdates.values()]);
      throw err;
    }
    return step.loss;
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
