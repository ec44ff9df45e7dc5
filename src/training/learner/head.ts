/**
 * fastai v1's classifier head (`create_head(nf, nc)` as `cnn_learner` builds it) on top of a body's features:
 *
 * | index | module (fastai 1.0.61 `nn.Sequential`)     | here                                        |
 * |-------|--------------------------------------------|---------------------------------------------|
 * | 0     | AdaptiveConcatPool2d                       | concat(global MAX pool, global AVG pool)    |
 * | 1     | Flatten                                    | → `[b, 2C]`                                 |
 * | 2     | BatchNorm1d(2C)                            | `head.2.{weight,bias,running_mean,running_var}` |
 * | 3     | Dropout(0.25)                              | mask from the caller's seeded RNG           |
 * | 4     | Linear(2C, 512)                            | `head.4.weight [2C, 512]`, `head.4.bias`    |
 * | 5     | ReLU                                       |                                             |
 * | 6     | BatchNorm1d(512)                           | `head.6.*`                                  |
 * | 7     | Dropout(0.5)                               |                                             |
 * | 8     | Linear(512, nClasses)                      | `head.8.weight [512, n]`, `head.8.bias`     |
 *
 * Layouts follow the model's (`src/training/model/resnet.ts`): Linear weights are `[in, out]` (the transpose of
 * torch's `[out, in]`), BN vectors unchanged. Names are `head.<index>.<param>` (fastai's would be `1.<index>.…`
 * inside `nn.Sequential(body, head)`).
 *
 * Init (fastai `cnn_learner` → `apply_init(head, nn.init.kaiming_normal_)`): Linear weights N(0, 2/fan_in)
 * (kaiming-normal, fan_in, gain √2), biases 0; BN weight 1, bias 0, running mean 0, running var 1.
 * BatchNorm1d (PyTorch): training normalises with the batch mean and the biased variance (eps 1e-5) and reports
 * new running stats `(1 − 0.1)·running + 0.1·batch` with the UNBIASED variance; eval uses the running stats.
 * Dropout (PyTorch): zero with probability p, scale survivors by 1/(1 − p); masks come from an RNG the caller
 * seeds per step, so replicas can reproduce each other's masks.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TrainerError } from '../../contract/errors.js';
import { batchNormInfer, batchNormTrain, updateRunningStat } from '../compute/batch-norm.js';
import type { Rng } from '../../contract/plan/rng.js';
import { BN_EPS, BN_MOMENTUM, type BnUpdates } from '../model/resnet.js';

/** Indices of the head's BatchNorm1d modules in fastai's `nn.Sequential` (their params train when frozen). */
export const HEAD_BN_INDICES: readonly number[] = Object.freeze([2, 6]);
/** Indices of the head's Linear modules. */
export const HEAD_LINEAR_INDICES: readonly number[] = Object.freeze([4, 8]);
/** Parameter-name prefix of every head parameter and buffer. */
export const HEAD_PREFIX = 'head.';

/** Options of {@link createHead}; all optional. */
export interface HeadOptions {
  /** Width of the hidden Linear layer (fastai `lin_ftrs=[512]`). */
  readonly hidden?: number;
  /** Dropout probabilities before the two Linear layers, each in [0, 1) (fastai ps=0.5 → [0.25, 0.5]). */
  readonly ps?: readonly [number, number];
  /** Seed of the kaiming-normal init (integer). */
  readonly seed?: number;
}

/** Resolved {@link HeadOptions}. */
export interface ResolvedHeadOptions {
  readonly hidden: number;
  readonly ps: readonly [number, number];
  readonly seed: number;
}

/** fastai v1 defaults: hidden 512, ps [0.25, 0.5], seed 0. */
export const DEFAULT_HEAD: ResolvedHeadOptions = Object.freeze({ hidden: 512, ps: Object.freeze([0.25, 0.5] as const), seed: 0 });

/** Per-call options of {@link Head.forward}. */
export interface HeadForwardOptions {
  /** Uniform [0, 1) generator for the dropout masks; required in training when a dropout p > 0. */
  readonly rng?: Rng;
  /** Where training mode puts the new BN running stats (`head.2.running_mean`, …); see the model's BnUpdates. */
  readonly bnUpdates?: BnUpdates;
}

/** The fastai head's parameters, buffers and forward pass. Create with {@link createHead}. */
export class Head {
  /** Trainable parameters by name (`head.2.weight`, `head.4.weight` `[in, out]`, …), float32. */
  readonly params: ReadonlyMap<string, tf.Variable>;
  /** BN running statistics by name (`head.2.running_mean`, …), `[channels] float32`. */
  readonly buffers: ReadonlyMap<string, tf.Variable>;
  /** Training-mode BN updates applied so far (torch's `num_batches_tracked`). */
  numBatchesTracked = 0;
  private disposed = false;

  /** @internal use {@link createHead}. */
  constructor(readonly inChannels: number, readonly numClasses: number, readonly options: ResolvedHeadOptions,
    params: Map<string, tf.Variable>, buffers: Map<string, tf.Variable>) {
    this.params = params;
    this.buffers = buffers;
  }

  /**
   * Head forward pass.
   *
   * @param features - body output `[batch, height, width, inChannels] float32, NHWC`
   * @param training - true: batch-stat BN (fills `bnUpdates`) and dropout; false: running stats, no dropout
   * @returns logits `[batch, numClasses] float32`
   * @throws TrainerError ERR_DATA on a wrong input shape, or batch < 2 in training (BatchNorm1d needs 2 values)
   * @throws TrainerError ERR_INTERNAL when training with dropout but no `rng`, or after {@link dispose}
   */
  forward(features: tf.Tensor4D, training: boolean, opts: HeadForwardOptions = {}): tf.Tensor2D {
    this.checkInput(features, training, opts);
    return tf.tidy(() => {
      const pooled = tf.concat([tf.max(features, [1, 2]), tf.mean(features, [1, 2])], 1) as tf.Tensor2D;
      let h = this.bn(pooled, 2, training, opts.bnUpdates);
      h = this.dropout(h, this.options.ps[0], training, opts.rng);
      h = tf.relu(this.linear(h, 4));
      h = this.bn(h, 6, training, opts.bnUpdates);
      h = this.dropout(h, this.options.ps[1], training, opts.rng);
      return this.linear(h, 8);
    });
  }

  /**
   * Assigns the head's entries of `bnUpdates` (names starting with `head.`) to {@link buffers}, disposes and
   * DELETES them from the map, leaving the body's entries for the model's `applyBnUpdates`. Increments
   * {@link numBatchesTracked} when it applied anything.
   *
   * @throws TrainerError ERR_INTERNAL when a `head.` entry names no buffer or has the wrong shape
   */
  applyBnUpdates(bnUpdates: BnUpdates): void {
    const mine = [...bnUpdates.keys()].filter((k) => k.startsWith(HEAD_PREFIX));
    for (const name of mine) {
      const buf = this.buffers.get(name);
      const t = bnUpdates.get(name)!;
      if (!buf || buf.shape[0] !== t.shape[0]) {
        throw new TrainerError('ERR_INTERNAL', `BN update ${name} [${t.shape}] does not match a head buffer${buf ? ` [${buf.shape}]` : ''}`);
      }
    }
    for (const name of mine) {
      const t = bnUpdates.get(name)!;
      this.buffers.get(name)!.assign(t);
      t.dispose();
      bnUpdates.delete(name);
    }
    if (mine.length > 0) this.numBatchesTracked += 1;
  }

  /** Frees every variable. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.params.values()) v.dispose();
    for (const v of this.buffers.values()) v.dispose();
  }

  private checkInput(x: tf.Tensor, training: boolean, opts: HeadForwardOptions): void {
    if (this.disposed) throw new TrainerError('ERR_INTERNAL', 'Head used after dispose()');
    if (x.rank !== 4 || x.shape[3] !== this.inChannels || x.dtype !== 'float32') {
      throw new TrainerError('ERR_DATA', `head input must be [batch, height, width, ${this.inChannels}] float32, got [${x.shape}] ${x.dtype}`);
    }
    if (training && x.shape[0] < 2) {
      throw new TrainerError('ERR_DATA', `training-mode BatchNorm1d needs a batch of at least 2, got ${x.shape[0]}`);
    }
    if (training && opts.rng === undefined && this.options.ps.some((p) => p > 0)) {
      throw new TrainerError('ERR_INTERNAL', 'Head.forward in training mode needs an rng for the dropout masks');
    }
  }

  private linear(x: tf.Tensor2D, index: number): tf.Tensor2D {
    return tf.add(tf.matMul(x, this.params.get(`head.${index}.weight`)!), this.params.get(`head.${index}.bias`)!);
  }

  private bn(x: tf.Tensor2D, index: number, training: boolean, updates?: BnUpdates): tf.Tensor2D {
    const name = `head.${index}`;
    const gamma = this.params.get(`${name}.weight`)!;
    const beta = this.params.get(`${name}.bias`)!;
    const runningMean = this.buffers.get(`${name}.running_mean`)!;
    const runningVar = this.buffers.get(`${name}.running_var`)!;
    // The fused BatchNorm ops of compute/batch-norm.ts, as the body's (one kernel each way on wasm, native, webgpu).
    if (!training) return batchNormInfer(x, runningMean as tf.Tensor1D, runningVar as tf.Tensor1D, gamma as tf.Tensor1D, beta as tf.Tensor1D, { eps: BN_EPS });
    const n = x.shape[0];
    const { y, mean, variance } = batchNormTrain(x, gamma as tf.Tensor1D, beta as tf.Tensor1D, { eps: BN_EPS });
    try {
      if (updates) {
        const m = BN_MOMENTUM;
        updates.set(`${name}.running_mean`, tf.keep(updateRunningStat(runningMean as tf.Tensor1D, mean, m)));
        updates.set(`${name}.running_var`, tf.keep(updateRunningStat(runningVar as tf.Tensor1D, variance, m, n / (n - 1))));
      }
    } finally {
      tf.dispose([mean, variance]);
    }
    return y;
  }

  private dropout(x: tf.Tensor2D, p: number, training: boolean, rng?: Rng): tf.Tensor2D {
    if (!training || p === 0) return x;
    return tf.mul(x, dropoutMask(x.shape[0], x.shape[1], p, rng!));
  }
}

/**
 * A PyTorch-style dropout mask: each element is 0 with probability p, else 1/(1 − p). Drawn row-major, one
 * `rng()` per element, so the same RNG state gives the same mask on every backend.
 *
 * @returns `[rows, cols] float32`
 */
export function dropoutMask(rows: number, cols: number, p: number, rng: Rng): tf.Tensor2D {
  const values = new Float32Array(rows * cols);
  const keep = 1 / (1 - p);
  for (let i = 0; i < values.length; i += 1) values[i] = rng() < p ? 0 : keep;
  return tf.tensor2d(values, [rows, cols]);
}

function validateHead(inChannels: number, numClasses: number, o: ResolvedHeadOptions): void {
  const int = (v: number, what: string): void => {
    if (!Number.isSafeInteger(v) || v < 1) throw new TrainerError('ERR_BAD_CONFIG', `${what} must be an integer ≥ 1, got ${v}`);
  };
  int(inChannels, 'head inChannels');
  int(numClasses, 'head numClasses');
  int(o.hidden, 'head hidden');
  if (!Number.isSafeInteger(o.seed)) throw new TrainerError('ERR_BAD_CONFIG', `head seed must be an integer, got ${o.seed}`);
  o.ps.forEach((p, i) => {
    if (!(p >= 0 && p < 1)) throw new TrainerError('ERR_BAD_CONFIG', `head ps[${i}] must be in [0, 1), got ${p}`);
  });
}

/**
 * The name and tfjs-layout shape of every head tensor (parameters and BatchNorm running statistics) that
 * {@link createHead} makes for `inChannels` features and `numClasses` outputs: the table above, Linear weights
 * `[in, out]`. No tensor is made, so a coordinator can check a saved state against it before any worker starts.
 * @param inChannels - the body's feature channels C (the head's BatchNorm1d has 2C: max and average pools)
 * @param hidden - width of the hidden Linear layer (fastai `lin_ftrs=[512]`, {@link DEFAULT_HEAD})
 */
export function headTensorShapes(inChannels: number, numClasses: number, hidden = DEFAULT_HEAD.hidden): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const bn = (index: number, channels: number): void => {
    for (const p of ['weight', 'bias', 'running_mean', 'running_var']) out.set(`${HEAD_PREFIX}${index}.${p}`, [channels]);
  };
  bn(2, 2 * inChannels);
  out.set(`${HEAD_PREFIX}4.weight`, [2 * inChannels, hidden]);
  out.set(`${HEAD_PREFIX}4.bias`, [hidden]);
  bn(6, hidden);
  out.set(`${HEAD_PREFIX}8.weight`, [hidden, numClasses]);
  out.set(`${HEAD_PREFIX}8.bias`, [numClasses]);
  return out;
}

/**
 * Creates the fastai head for a body with `inChannels` feature channels (512 for ResNet18/34, 2048 for ResNet50),
 * initialised as fastai's `cnn_learner` does (see module doc).
 *
 * @param inChannels - channels of the body's features, C (the first Linear sees 2C)
 * @param numClasses - classes, integer ≥ 1 (37 for Pets)
 * @throws TrainerError ERR_BAD_CONFIG on a non-integer size or seed, or a dropout p outside [0, 1)
 */
export function createHead(inChannels: number, numClasses: number, options: HeadOptions = {}): Head {
  const o: ResolvedHeadOptions = Object.freeze({ ...DEFAULT_HEAD, ...options });
  validateHead(inChannels, numClasses, o);
  const params = new Map<string, tf.Variable>();
  const buffers = new Map<string, tf.Variable>();
  const addBn = (index: number, c: number): void => {
    params.set(`head.${index}.weight`, tf.variable(tf.ones([c])));
    params.set(`head.${index}.bias`, tf.variable(tf.zeros([c])));
    buffers.set(`head.${index}.running_mean`, tf.variable(tf.zeros([c]), false));
    buffers.set(`head.${index}.running_var`, tf.variable(tf.ones([c]), false));
  };
  const addLinear = (index: number, fanIn: number, out: number): void => {
    // nn.init.kaiming_normal_(w) defaults: a=0, mode='fan_in', leaky_relu gain √2 → std = √2/√fan_in.
    const std = Math.SQRT2 / Math.sqrt(fanIn);
    params.set(`head.${index}.weight`, tf.variable(tf.randomNormal([fanIn, out], 0, std, 'float32', o.seed * 16 + index)));
    params.set(`head.${index}.bias`, tf.variable(tf.zeros([out])));
  };
  tf.tidy(() => {
    addBn(2, 2 * inChannels);
    addLinear(4, 2 * inChannels, o.hidden);
    addBn(6, o.hidden);
    addLinear(8, o.hidden, numClasses);
  });
  return new Head(inChannels, numClasses, o, params, buffers);
}
