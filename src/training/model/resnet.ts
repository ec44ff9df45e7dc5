/**
 * torchvision-compatible ResNet built from raw tfjs ops on `tf.Variable`s, NHWC inside.
 *
 * Parameter names are torchvision's (`conv1.weight`, `layer2.0.downsample.1.bias`, `fc.weight`, …); layouts are
 * tfjs's: conv weights `[k, k, in, out]` (HWIO), `fc.weight` `[in, out]`. See `torch-weights.ts` for the conversion.
 *
 * BatchNorm and gradients: in training mode a BN normalises with the batch mean and the biased batch variance over
 * `[batch, height, width]` (eps 1e-5), exactly as PyTorch's `BatchNorm2d`. Updating the running statistics is a side
 * effect that does not belong on the gradient tape, so `forward`/`features` never assign: when a {@link BnUpdates}
 * map is passed, each BN puts the NEW running mean and variance there (`tf.keep`-ed, so they survive the
 * `tf.tidy`/`tf.variableGrads` around the call), and the caller applies them after the step:
 *
 * ```ts
 * const updates: BnUpdates = new Map();
 * const { value, grads } = tf.variableGrads(() => lossFn(model.forward(x, true, updates), y));
 * optimizer.apply(grads);            // the gradient step
 * model.applyBnUpdates(updates);     // running_mean/var ← new values; disposes them; clears the map
 * ```
 *
 * Running-stat rule (PyTorch `BatchNorm2d`, momentum 0.1): `running ← (1 − 0.1)·running + 0.1·batch`, with the
 * UNBIASED batch variance (`· n/(n−1)`, `n = batch·height·width`) for `running_var`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { batchNormInfer, batchNormTrain, updateRunningStat } from '../compute/batch-norm.js';
import { TrainerError } from '../../contract/errors.js';
import {
  describeConfig, layoutModules, resnetLayout,
  type BatchNormSpec, type BlockSpec, type ConvSpec, type ResNetArch, type ResNetConfig, type ResNetLayout,
} from '../../contract/resnet-spec.js';

export type { ResNetArch, ResNetConfig, ResNetLayout } from '../../contract/resnet-spec.js';

/** BatchNorm epsilon added to the variance (PyTorch default). */
export const BN_EPS = 1e-5;
/** BatchNorm running-stat momentum (PyTorch convention: weight of the NEW batch statistic). */
export const BN_MOMENTUM = 0.1;

/**
 * New running statistics collected by a training-mode forward pass: buffer name (`layer1.0.bn1.running_mean`,
 * `….running_var`) → `[channels] float32`. Owned by the caller; {@link ResNet.applyBnUpdates} consumes them.
 */
export type BnUpdates = Map<string, tf.Tensor1D>;

/** Options of {@link createResNet}. */
export interface ResNetOptions {
  /** Classes of the `fc` layer (integer ≥ 1), or null for a body without avgpool/fc (`forward` then throws). */
  numClasses?: number | null;
  /** Seed of the initialisation (integer ≥ 0). Same seed → same initial weights on the same backend. */
  seed?: number;
}

/** Resolved {@link ResNetOptions}. */
export type ResolvedResNetOptions = Required<ResNetOptions>;

/** Defaults of {@link ResNetOptions}: no classifier, seed 0. */
export const DEFAULT_RESNET: Readonly<ResolvedResNetOptions> = Object.freeze({ numClasses: null, seed: 0 });

function seedFor(seed: number, index: number): number {
  // Distinct per (seed, parameter) and never 0: tfjs treats a falsy seed as "unseeded" (Math.random).
  return seed * 100_003 + index + 1;
}

/** A torchvision ResNet's parameters and running statistics, with its forward pass. Create with {@link createResNet}. */
export class ResNet {
  /** The layer layout (convs, BNs, blocks, feature width, classes). */
  readonly layout: ResNetLayout;
  /** Trainable parameters by torch name, tfjs layouts (conv HWIO, fc.weight `[in, out]`), float32. */
  readonly params: ReadonlyMap<string, tf.Variable>;
  /** Non-trainable BN buffers by torch name (`*.running_mean`, `*.running_var`), `[channels] float32`. */
  readonly buffers: ReadonlyMap<string, tf.Variable>;
  /** Channels of layer4's output (= `features()` last dim): 512 (basic) or 2048 (bottleneck). */
  readonly featureChannels: number;
  /** Classes of `fc`, or null when the model has no classifier. */
  readonly numClasses: number | null;
  /** Training-mode BN updates applied so far (torch's `num_batches_tracked`, shared by every BN here). */
  numBatchesTracked = 0;
  /**
   * Diagnostics hook (PyTorch parity): called in a training-mode forward with every fused ReLU's output, named by
   * its BatchNorm (`bn1`, `layer1.0.bn2`, …; torchvision applies that ReLU right after this BN, or after the
   * residual add that follows the block's last BN). Runs inside the forward's `tf.tidy`: copy what you need
   * (`dataSync`) or `tf.keep` it. Null (default): not called.
   */
  reluProbe: ((bnName: string, y: tf.Tensor4D) => void) | null = null;
  private disposed = false;

  /** @internal use {@link createResNet}. */
  constructor(layout: ResNetLayout, params: Map<string, tf.Variable>, buffers: Map<string, tf.Variable>) {
    this.layout = layout;
    this.params = params;
    this.buffers = buffers;
    this.featureChannels = layout.featureChannels;
    this.numClasses = layout.numClasses;
  }

  /**
   * Body: conv1, bn1, relu, maxpool, layer1..layer4.
   *
   * @param x - `[batch, height, width, 3] float32, NHWC`, normalised as the weights expect (ImageNet mean/std)
   * @param training - true: BN uses batch statistics (and fills `bnUpdates` if given); false: running statistics
   * @param bnUpdates - where training mode puts the new running statistics (see module doc); ignored in eval
   * @returns `[batch, ⌈height/32⌉, ⌈width/32⌉, featureChannels] float32` (exact sizes follow torch's conv arithmetic)
   * @throws TrainerError ERR_DATA when `x` is not rank 4 with 3 channels, or a training-mode BN sees one value per channel
   * @throws TrainerError ERR_INTERNAL after {@link dispose}
   */
  features(x: tf.Tensor4D, training: boolean, bnUpdates?: BnUpdates): tf.Tensor4D {
    this.checkInput(x);
    return tf.tidy(() => {
      const [stemConv, stemBn] = this.layout.stem;
      let h = this.bn(this.conv(x, stemConv), stemBn, training, bnUpdates, true);
      h = tf.maxPool(h, 3, 2, 1);
      for (const block of this.layout.blocks) h = this.block(h, block, training, bnUpdates);
      return h;
    });
  }

  /**
   * Full network: {@link features}, global average pool, `fc`.
   *
   * @param x - `[batch, height, width, 3] float32, NHWC`
   * @returns logits `[batch, numClasses] float32`
   * @throws TrainerError ERR_BAD_CONFIG when the model was created without a classifier; see {@link features}
   */
  forward(x: tf.Tensor4D, training: boolean, bnUpdates?: BnUpdates): tf.Tensor2D {
    if (this.numClasses === null) {
      throw new TrainerError('ERR_BAD_CONFIG', 'ResNet.forward needs a classifier: create the model with numClasses ≥ 1 (or use features())');
    }
    return tf.tidy(() => {
      const pooled = tf.mean(this.features(x, training, bnUpdates), [1, 2]) as tf.Tensor2D;
      return tf.add(tf.matMul(pooled, this.params.get('fc.weight')!), this.params.get('fc.bias')!);
    });
  }

  /**
   * Assigns the running statistics collected by a training-mode pass to {@link buffers}, disposes them, clears the
   * map and increments {@link numBatchesTracked}. Call once per training step, after the gradient step.
   *
   * @throws TrainerError ERR_INTERNAL when the map names an unknown buffer or has a wrong shape
   */
  applyBnUpdates(bnUpdates: BnUpdates): void {
    if (bnUpdates.size === 0) return;
    for (const [name, t] of bnUpdates) {
      const buf = this.buffers.get(name);
      if (!buf || buf.shape[0] !== t.shape[0]) {
        throw new TrainerError('ERR_INTERNAL', `BN update ${name} [${t.shape}] does not match a buffer${buf ? ` [${buf.shape}]` : ''}`);
      }
      buf.assign(t);
      t.dispose();
    }
    bnUpdates.clear();
    this.numBatchesTracked += 1;
  }

  /** Frees every variable. Idempotent; the model is unusable afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.params.values()) v.dispose();
    for (const v of this.buffers.values()) v.dispose();
  }

  private checkInput(x: tf.Tensor): void {
    if (this.disposed) throw new TrainerError('ERR_INTERNAL', 'ResNet used after dispose()');
    if (x.rank !== 4 || x.shape[3] !== 3 || x.dtype !== 'float32') {
      throw new TrainerError('ERR_DATA', `ResNet input must be [batch, height, width, 3] float32 (NHWC), got [${x.shape}] ${x.dtype}`);
    }
  }

  private conv(x: tf.Tensor4D, spec: ConvSpec): tf.Tensor4D {
    const w = this.params.get(`${spec.name}.weight`) as tf.Variable<tf.Rank.R4>;
    return tf.conv2d(x, w, spec.stride, spec.pad === 0 ? 'valid' : spec.pad);
  }

  private block(x: tf.Tensor4D, spec: BlockSpec, training: boolean, updates?: BnUpdates): tf.Tensor4D {
    const identity = spec.downsample
      ? this.bn(this.conv(x, spec.downsample[0]), spec.downsample[1], training, updates)
      : x;
    let h = x;
    const last = spec.convs.length - 1;
    // relu(bn(conv) + identity) of the last conv runs as one fused op (same values as the separate add and relu).
    spec.convs.forEach((c, i) => {
      h = this.bn(this.conv(h, c), spec.bns[i], training, updates, true, i === last ? identity : null);
    });
    return h;
  }

  /**
   * BatchNorm, plus `residual` when given, then a ReLU when `relu`. Training mode uses the fused op of
   * `compute/batch-norm.ts` (batch statistics, hand-written gradient; fused kernels on WASM, native and WebGPU),
   * identical in value to PyTorch's formula; eval mode and the running-statistic update use its `batchNormInfer` and
   * `updateRunningStat` (one kernel each on WebGPU, tfjs ops elsewhere).
   */
  private bn(x: tf.Tensor4D, spec: BatchNormSpec, training: boolean, updates?: BnUpdates, relu = false,
    residual: tf.Tensor4D | null = null): tf.Tensor4D {
    const gamma = this.params.get(`${spec.name}.weight`) as tf.Variable<tf.Rank.R1>;
    const beta = this.params.get(`${spec.name}.bias`) as tf.Variable<tf.Rank.R1>;
    const runningMean = this.buffers.get(`${spec.name}.running_mean`) as tf.Variable<tf.Rank.R1>;
    const runningVar = this.buffers.get(`${spec.name}.running_var`) as tf.Variable<tf.Rank.R1>;
    if (!training) return batchNormInfer(x, runningMean, runningVar, gamma, beta, { eps: BN_EPS, relu, residual });
    const n = x.shape[0] * x.shape[1] * x.shape[2];
    if (n < 2) {
      throw new TrainerError('ERR_DATA', `${spec.name}: training-mode BatchNorm needs more than 1 value per channel, got input [${x.shape}]`);
    }
    const { y, mean, variance } = batchNormTrain(x, gamma, beta, { eps: BN_EPS, relu, residual });
    try {
      if (updates) {
        const m = BN_MOMENTUM;
        updates.set(`${spec.name}.running_mean`, tf.keep(updateRunningStat(runningMean, mean, m)));
        updates.set(`${spec.name}.running_var`, tf.keep(updateRunningStat(runningVar, variance, m, n / (n - 1))));
      }
    } finally {
      tf.dispose([mean, variance]);
    }
    if (relu) this.reluProbe?.(spec.name, y);
    return y;
  }
}

function convInit(spec: ConvSpec, seed: number): tf.Tensor4D {
  // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu") → N(0, 2 / (out·k·k)).
  const std = Math.sqrt(2 / (spec.outChannels * spec.kernel * spec.kernel));
  return tf.randomNormal([spec.kernel, spec.kernel, spec.inChannels, spec.outChannels], 0, std, 'float32', seed);
}

function addBn(spec: BatchNormSpec, params: Map<string, tf.Variable>, buffers: Map<string, tf.Variable>): void {
  // torchvision: BN weight 1, bias 0; PyTorch: running_mean 0, running_var 1.
  params.set(`${spec.name}.weight`, tf.variable(tf.ones([spec.channels])));
  params.set(`${spec.name}.bias`, tf.variable(tf.zeros([spec.channels])));
  buffers.set(`${spec.name}.running_mean`, tf.variable(tf.zeros([spec.channels]), false));
  buffers.set(`${spec.name}.running_var`, tf.variable(tf.ones([spec.channels]), false));
}

function addFc(inFeatures: number, numClasses: number, seed: number, params: Map<string, tf.Variable>): void {
  // PyTorch nn.Linear.reset_parameters: kaiming_uniform_(a=√5) → U(±1/√in) for the weight, U(±1/√in) for the bias.
  const bound = 1 / Math.sqrt(inFeatures);
  params.set('fc.weight', tf.variable(tf.randomUniform([inFeatures, numClasses], -bound, bound, 'float32', seed)));
  params.set('fc.bias', tf.variable(tf.randomUniform([numClasses], -bound, bound, 'float32', seed + 1)));
}

/**
 * Creates a torchvision ResNet with torchvision's initialisation (convs kaiming-normal fan_out/relu, BN weight 1
 * bias 0, running_mean 0, running_var 1, fc as PyTorch's `nn.Linear` default). Source: torchvision 0.14
 * `ResNet.__init__`. Random draws are tfjs's seeded generators, so values differ from PyTorch's for the same seed.
 *
 * @param arch - `resnet18|resnet34|resnet50` or a config such as `{ block: 'basic', layers: [1, 1, 1, 1] }`
 * @param options - see {@link ResNetOptions}; defaults {@link DEFAULT_RESNET}
 * @throws TrainerError ERR_BAD_CONFIG for an unknown arch, bad layers, numClasses or seed
 */
export function createResNet(arch: ResNetArch | ResNetConfig, options: ResNetOptions = {}): ResNet {
  const resolved: ResolvedResNetOptions = { ...DEFAULT_RESNET, ...options, numClasses: options.numClasses ?? null };
  if (!Number.isSafeInteger(resolved.seed) || resolved.seed < 0 || resolved.seed > 2 ** 32) {
    throw new TrainerError('ERR_BAD_CONFIG', `seed must be an integer in [0, 2^32], got ${resolved.seed}`);
  }
  const layout = resnetLayout(arch, resolved.numClasses);
  const params = new Map<string, tf.Variable>();
  const buffers = new Map<string, tf.Variable>();
  tf.tidy(() => {
    layoutModules(layout).forEach((m, i) => {
      if (m.kind === 'conv') params.set(`${m.name}.weight`, tf.variable(convInit(m, seedFor(resolved.seed, i))));
      else addBn(m, params, buffers);
    });
    if (layout.numClasses !== null) addFc(layout.featureChannels, layout.numClasses, seedFor(resolved.seed, 90_000), params);
  });
  return new ResNet(layout, params, buffers);
}

/** Human name of the model's architecture (`resnet34` or `ResNet(basic, [1,1,1,1])`), for logs and errors. */
export function describeResNet(model: ResNet): string {
  return describeConfig(model.layout.config);
}
