/**
 * One model replica (ResNet body + fastai head + AdamW) behind a plain-array API, used identically by the
 * single-process {@link Learner} (`learner.ts`) and by every distributed worker:
 *
 * ```ts
 * const r = await Replica.create({ arch: 'resnet34', numClasses: 37, seed: 42, pretrained: path, frozen: true });
 * for (const mb of microBatches) await r.accumulate(mb.x, mb.y, mb.valid, dropoutSeed); // forward + backward, BN stats
 * const g = await r.takeGradients();        // mean over the micro-batches; all-reduce it across workers here
 * r.applyGradients(g, stepHyper(stage, k)); // AdamW with the step's per-group lrs and momentum
 * ```
 *
 * Gradients live in one flat float32 array in {@link Replica.gradientLayout} order (the trainable parameters in
 * the model's parameter order: body then head), identical on every replica with the same frozen flag.
 *
 * Device residency (WebGPU, and any backend): the gradient sum over micro-batches stays a backend tensor; it is
 * read to the CPU once per step ({@link Replica.takeGradients}, an asynchronous read) and the all-reduced result
 * is uploaded once ({@link Replica.applyGradients}; on WebGPU AdamW reads each parameter's part at its offset, no
 * split; host-memory backends take one tensor per parameter). Every read is asynchronous (`await data()`):
 * tfjs-backend-webgpu cannot read synchronously under Node (`dataSync` needs OffscreenCanvas).
 * With one rank the all-reduce is the identity (PyTorch DDP does nothing with world size 1), so where
 * {@link Replica.keepsGradientsOnDevice} (WebGPU) the step skips the round trip: {@link Replica.takeGradientsOnDevice}
 * hands the mean gradient over as a backend tensor and {@link Replica.applyGradients} takes it as it is.
 *
 * BatchNorm and micro-batches: as PyTorch, each training-mode forward updates the running statistics at once
 * (momentum 0.1). A micro-batch larger than `maxMicroBatch` is split into balanced chunks whose gradients are
 * weighted by their share of the valid items, so the summed gradient is the gradient of the mean loss over the
 * whole micro-batch EXCEPT that each chunk's BatchNorm layers normalise with that chunk's own batch statistics and
 * update the running statistics once per chunk (as DDP does per worker, and as gradient accumulation does).
 * Padded items (`valid[i] = 0`) are excluded from the loss, the gradient and the counts, but they do take part in
 * the BatchNorm batch statistics of their chunk.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TrainerError } from '../../contract/errors.js';
import { mulberry32, type Rng } from '../../contract/plan/rng.js';
import type { BnUpdates } from '../model/resnet.js';
import { createResNet, type ResNetArch, type ResNetConfig } from '../model/resnet.js';
import { resolveResNetConfig } from '../../contract/resnet-spec.js';
import { loadTorchWeightsFile } from '../model/torch-weights.js';
import type { AdamWState } from './adamw.js';
import type { HeadOptions } from './head.js';
import { cnnLearner, type CnnLearner } from './cnn-learner.js';
import { perItemCrossEntropy } from './loss.js';
import type { StepHyper } from '../../contract/plan/schedule.js';
import { defaultMaxMicroBatch, splitChunks } from './micro-batch.js';
import { flattenOnDevice } from '../compute/webgpu/flatten.js';
import { WeightsHash } from './state-codec.js';

/** Options of {@link Replica.create}. */
export interface ReplicaOptions {
  /** `resnet18|resnet34|resnet50` or a config such as `{ block: 'basic', layers: [1, 1, 1, 1] }`. */
  readonly arch: ResNetArch | ResNetConfig;
  /** Classes of the head, integer ≥ 1 (37 for Pets). */
  readonly numClasses: number;
  /** Seed of the random initialisation (body when not pretrained, and head); same seed → same weights. */
  readonly seed: number;
  /** Safetensors file of torchvision weights for the body (`fc.*` ignored), or null for a random body. */
  readonly pretrained: string | null;
  /** Start frozen (fastai freezes a pretrained learner right after creation). */
  readonly frozen: boolean;
  /** Largest chunk of images per forward/backward, integer ≥ 2; default {@link defaultMaxMicroBatch}. */
  readonly maxMicroBatch?: number;
  /** Head width and dropout (fastai: hidden 512, ps [0.25, 0.5]); the head's init seed is `seed`. */
  readonly head?: Omit<HeadOptions, 'seed'>;
}

/** One named float32 tensor of {@link ReplicaState}, row-major in the model's (tfjs) layout. */
export interface NamedArray {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Everything needed to continue training bit-identically: weights, BN statistics, optimizer state, frozen flag. */
export interface ReplicaState {
  readonly version: 1;
  readonly frozen: boolean;
  /** Parameters and BatchNorm running statistics of body and head, sorted by name. */
  readonly tensors: readonly NamedArray[];
  /** AdamW moments and step counts (see `adamw.ts`). */
  readonly optimizer: AdamWState;
  /** Training-mode BN updates applied so far (torch `num_batches_tracked`): body and head. */
  readonly bnSteps: { readonly body: number; readonly head: number };
}

/** Sums of one micro-batch or evaluation over its valid items. */
export interface BatchSums {
  /** Sum of the per-item cross-entropies, nats (mean = lossSum / count). */
  readonly lossSum: number;
  /** Valid items whose argmax is the label. */
  readonly correct: number;
  /** Valid items. */
  readonly count: number;
}

/** {@link BatchSums} plus the predicted probabilities. */
export interface EvalResult extends BatchSums {
  /** Softmax probabilities `[n × numClasses]` float32, row-major, for every item (padded ones included). */
  readonly probs: Float32Array;
}

/** A model replica with its optimizer and gradient accumulator. Create with {@link Replica.create}. */
export class Replica {
  private layout: { name: string; size: number }[] = [];
  private total = 0;
  /** `[total] float32` backend tensor: the sum of the accumulated micro-batch gradients, or null when none. */
  private sum: tf.Tensor1D | null = null;
  private accumulated = 0;
  private disposed = false;

  private constructor(private readonly model: CnnLearner, readonly numClasses: number,
    private readonly maxMicroBatchOption: number | null) {
    this.resetLayout();
  }

  /**
   * Largest chunk of images per forward pass for `size`-pixel images: the `maxMicroBatch` option, else
   * {@link defaultMaxMicroBatch} for this arch, size and the active backend.
   */
  maxMicroBatch(size: number): number {
    return this.maxMicroBatchOption ?? defaultMaxMicroBatch(this.model.body.layout.config, size, tf.getBackend());
  }

  /**
   * Builds the body (torchvision init with `seed`, then the pretrained weights if any) and the fastai head.
   *
   * @throws TrainerError ERR_BAD_CONFIG for a bad arch, numClasses, seed or maxMicroBatch; ERR_WEIGHTS when the
   *   pretrained file is unreadable or does not fit `arch`
   */
  static async create(options: ReplicaOptions): Promise<Replica> {
    const config = resolveResNetConfig(options.arch);
    const max = options.maxMicroBatch ?? null;
    if (max !== null && (!Number.isInteger(max) || max < 2)) {
      throw new TrainerError('ERR_BAD_CONFIG', `maxMicroBatch must be an integer ≥ 2, got ${max}`);
    }
    const body = createResNet(config, { numClasses: null, seed: options.seed });
    try {
      if (options.pretrained !== null) await loadTorchWeightsFile(body, options.pretrained, { fc: 'ignore' });
    } catch (err) {
      body.dispose();
      throw err;
    }
    const model = cnnLearner(body, options.numClasses, { frozen: options.frozen, head: { ...options.head, seed: options.seed } });
    return new Replica(model, options.numClasses, max);
  }

  /** True while only the head and the BatchNorm parameters train (fastai `freeze()`). */
  get frozen(): boolean {
    return this.model.frozen;
  }

  /** The underlying model (body, head, optimizer), for inspection and tests. */
  get learner(): CnnLearner {
    return this.model;
  }

  /**
   * fastai `freeze()` / `unfreeze()`: changes the trainable set, resets the optimizer state (fastai rebuilds the
   * optimizer) and discards any accumulated gradient (the layout changes).
   */
  setFrozen(frozen: boolean): void {
    this.checkAlive();
    if (frozen) this.model.freeze();
    else this.model.unfreeze();
    this.resetLayout();
  }

  private resetLayout(): void {
    const trainable = this.model.optimizer.trainable;
    this.layout = [...this.model.params].filter(([n]) => trainable.has(n)).map(([name, v]) => ({ name, size: v.size }));
    this.total = this.layout.reduce((a, l) => a + l.size, 0);
    this.sum?.dispose();
    this.sum = null;
    this.accumulated = 0;
  }

  /** The trainable parameters in flat-gradient order, with their element counts. */
  gradientLayout(): readonly { name: string; size: number }[] {
    return this.layout;
  }

  /** Number of float32 values of a flat gradient. */
  get gradientSize(): number {
    return this.total;
  }

  /**
   * Forward + backward of one micro-batch in training mode; adds its gradient (of the mean cross-entropy over
   * the valid items) to the accumulator and applies the BatchNorm running-statistic updates.
   *
   * @param x - `[n, size, size, 3] float32, NHWC`, ImageNet-normalised, flattened
   * @param y - `[n] int32` labels in [0, numClasses)
   * @param valid - `[n] uint8`, 0 = padding (excluded), or null when all items are real
   * @param dropoutSeed - seed of this micro-batch's dropout masks (derive it from run seed, step, rank, accum)
   * @returns sums over the valid items (read asynchronously: the gradients stay on the backend); a micro-batch
   *   without valid items adds nothing and is not counted
   * @throws TrainerError ERR_DATA on inconsistent lengths, labels outside [0, numClasses) or fewer than 2 items;
   *   ERR_INTERNAL after dispose
   */
  async accumulate(x: Float32Array, y: Int32Array, valid: Uint8Array | null, dropoutSeed: number): Promise<BatchSums> {
    this.checkAlive();
    const n = this.checkBatch(x, y, valid);
    if (n < 2) throw new TrainerError('ERR_DATA', `a training micro-batch needs at least 2 items (BatchNorm), got ${n}`);
    const count = valid === null ? n : valid.reduce((a, v) => a + (v ? 1 : 0), 0);
    if (count === 0) return { lossSum: 0, correct: 0, count: 0 };
    const rng = mulberry32(dropoutSeed);
    // The chunks' sums are read together at the end, so the device never waits for the CPU between chunks.
    const sums: tf.Tensor1D[] = [];
    let values: Float32Array;
    try {
      for (const [start, end] of splitChunks(n, this.maxMicroBatch(this.side(x, n)))) {
        sums.push(this.chunkBackward(x, y, valid, start, end, count, rng));
      }
      const all = tf.stack(sums);
      try {
        values = await all.data() as Float32Array;
      } finally {
        all.dispose();
      }
    } finally {
      tf.dispose(sums);
    }
    let lossSum = 0;
    let correct = 0;
    for (let i = 0; i < sums.length; i++) {
      lossSum += values[2 * i]!;
      correct += Math.round(values[2 * i + 1]!);
    }
    this.accumulated += 1;
    return { lossSum, correct, count };
  }

  private checkBatch(x: Float32Array, y: Int32Array, valid: Uint8Array | null): number {
    const n = y.length;
    if (n === 0 || x.length % n !== 0 || !Number.isInteger(Math.sqrt(x.length / n / 3))) {
      throw new TrainerError('ERR_DATA', `x must hold [${n}, size, size, 3] float32 values for ${n} labels, got ${x.length} values`);
    }
    if (valid !== null && valid.length !== n) {
      throw new TrainerError('ERR_DATA', `valid must have one entry per item (${n}), got ${valid.length}`);
    }
    // Checked here, on the CPU array, so the loss never has to read the labels back from the backend.
    const bad = y.find((v) => !(v >= 0 && v < this.numClasses));
    if (bad !== undefined) throw new TrainerError('ERR_DATA', `labels must be in [0, ${this.numClasses}), got ${bad}`);
    return n;
  }

  private side(x: Float32Array, n: number): number {
    return Math.sqrt(x.length / n / 3);
  }

  private inputs(x: Float32Array, y: Int32Array, start: number, end: number): { xs: tf.Tensor4D; ys: tf.Tensor1D } {
    const side = this.side(x, y.length);
    const per = side * side * 3;
    return {
      xs: tf.tensor4d(x.subarray(start * per, end * per), [end - start, side, side, 3]),
      ys: tf.tensor1d(y.subarray(start, end), 'int32'),
    };
  }

  private weights(valid: Uint8Array | null, start: number, end: number, scale: number): Float32Array {
    return Float32Array.from({ length: end - start }, (_, i) => (valid === null || valid[start + i] ? scale : 0));
  }

  /** Forward + backward of items [start, end); returns `[2] float32` (loss sum, correct count), not yet read. */
  private chunkBackward(x: Float32Array, y: Int32Array, valid: Uint8Array | null, start: number, end: number,
    count: number, rng: Rng): tf.Tensor1D {
    const { xs, ys } = this.inputs(x, y, start, end);
    const mask = tf.tensor1d(this.weights(valid, start, end, 1));
    const bnUpdates: BnUpdates = new Map();
    const vars = this.layout.map((l) => this.model.params.get(l.name)!);
    let kept: tf.Tensor[] = [];
    try {
      const { value, grads } = tf.variableGrads(() => {
        const logits = this.model.forward(xs, true, { rng, bnUpdates });
        const per = perItemCrossEntropy(logits, ys, { labelsChecked: true });
        kept = [tf.keep(tf.mul(per, mask)), tf.keep(tf.mul(tf.cast(tf.equal(tf.argMax(logits, 1), ys), 'float32'), mask))];
        return tf.div(tf.sum(kept[0]!), count) as tf.Scalar;
      }, vars);
      value.dispose();
      this.addGradients(vars, grads);
      this.model.head.applyBnUpdates(bnUpdates);
      this.model.body.applyBnUpdates(bnUpdates);
      return tf.tidy(() => tf.stack([tf.sum(kept[0]!), tf.sum(kept[1]!)]) as tf.Tensor1D);
    } finally {
      tf.dispose([xs, ys, mask, ...kept, ...bnUpdates.values()]);
    }
  }

  /**
   * Adds one chunk's gradients to the device-resident flat sum (one flatten and one add; nothing is read). On WebGPU
   * the flatten is buffer copies (`compute/webgpu/flatten.ts`), elsewhere a tfjs concat.
   */
  private addGradients(vars: tf.Variable[], grads: tf.NamedTensorMap): void {
    try {
      const next = tf.tidy(() => {
        // A parameter the loss does not reach (e.g. frozen paths) has no gradient: zeros keep the layout.
        const flat = flattenOnDevice(vars.map((v) => grads[v.name]), this.layout.map((l) => l.size)) ?? tf.concat(vars.map((v, i) => {
          const g = grads[v.name];
          return g === undefined ? tf.zeros([this.layout[i]!.size]) : tf.reshape(g, [-1]);
        }), 0) as tf.Tensor1D;
        return this.sum === null ? flat : tf.add(this.sum, flat) as tf.Tensor1D;
      });
      this.sum?.dispose();
      this.sum = next;
    } finally {
      tf.dispose(Object.values(grads));
    }
  }

  /**
   * The mean gradient over the micro-batches accumulated since the last take (sum / number of micro-batches,
   * each micro-batch's gradient being the mean over its valid items), then resets the accumulator. All zeros when
   * nothing was accumulated.
   *
   * @returns a new `[gradientSize]` float32 array in {@link gradientLayout} order (one asynchronous read)
   */
  async takeGradients(): Promise<Float32Array> {
    this.checkAlive();
    const sum = this.sum;
    const k = this.accumulated;
    this.sum = null;
    this.accumulated = 0;
    if (sum === null) return new Float32Array(this.total);
    let out: Float32Array;
    try {
      const read = await sum.data() as Float32Array;
      // The read-out array is handed out as is where no one else holds it: on WebGPU it is the read's own (a fresh
      // copy of the staging buffer, cached only by `sum`, disposed below; a second copy of the whole gradient would
      // add ≈ 55 ms of main-thread CPU for ResNet34's 83 MiB, see docs/performance-gpu.md); on `native` it is the
      // tensor's own storage, never reused once read (array-pool.ts) and shared with no live tensor (sum is a
      // concat/add output), saving an 87 MB copy and allocation per step and the major GC it triggers. Other
      // host-memory backends may hand out their storage: a fast copy (Float32Array.from iterates).
      const backend = tf.getBackend();
      out = backend === 'webgpu' || backend === 'native' ? read : read.slice();
    } finally {
      sum.dispose();
    }
    // Divided here in float32 (each quotient correctly rounded), identically on every backend.
    if (k > 1) for (let i = 0; i < out.length; i++) out[i]! /= k;
    return out;
  }

  /**
   * Hands back a flat gradient from {@link takeGradients} that the caller no longer uses (after
   * {@link applyGradients}, or when the step is dropped): on `native` its memory then holds a later step's gradient
   * instead of a fresh 87 MB allocation per resnet34 step (`ArrayPool.giveBack`; taken back only when no tensor
   * still views it). Elsewhere nothing happens. The caller must not read or write `flat` afterwards.
   *
   * @param flat - an array returned by this replica's {@link takeGradients}
   */
  releaseGradients(flat: Float32Array): void {
    (tf.backend() as { pool?: { giveBack(array: Float32Array): boolean } }).pool?.giveBack(flat);
  }

  /**
   * Whether a step whose all-reduce is the identity (world size 1) should keep the gradient on the device
   * ({@link takeGradientsOnDevice}, then {@link applyGradients} with the tensor): true on WebGPU, where reading
   * the 83 MiB flat gradient of ResNet34 to the CPU and uploading it again was ≈ 200 ms of a step's ≈ 260 ms of
   * main-thread time (docs/performance-gpu.md). False on the backends that compute in host memory (wasm, cpu,
   * tfjs-node, native), whose array path is already the fastest there.
   */
  get keepsGradientsOnDevice(): boolean {
    return tf.getBackend() === 'webgpu';
  }

  /**
   * The mean gradient without reading it: the accumulated sum divided on the device by `over` (the sum itself when
   * `over` ≤ 1), then resets the accumulator. For a step whose all-reduce is the identity (world size 1), in place
   * of {@link takeGradients}: nothing leaves the device. The division is tfjs's float32 `div` on the backend, each
   * quotient rounded once as in {@link takeGradients} (WGSL only promises 2.5 ULP for f32 division; IEEE-exact
   * on lavapipe, where the two paths give the same bits).
   *
   * @param over - micro-batches the mean is over, integer ≥ the accumulated ones (a micro-batch that added nothing,
   *   all its items undecodable, counts as zeros); default: the accumulated ones
   * @returns a new `[gradientSize] float32` backend tensor in {@link gradientLayout} order, owned by the caller
   *   (dispose it; {@link applyGradients} does not); zeros when nothing was accumulated
   * @throws TrainerError ERR_INTERNAL when `over` is not an integer ≥ the accumulated micro-batches, or after dispose
   */
  takeGradientsOnDevice(over: number = this.accumulated): tf.Tensor1D {
    this.checkAlive();
    if (!Number.isInteger(over) || over < this.accumulated) {
      throw new TrainerError('ERR_INTERNAL', `the mean gradient must be over an integer ≥ ${this.accumulated} micro-batches (those accumulated), got ${over}`);
    }
    const sum = this.sum;
    this.sum = null;
    this.accumulated = 0;
    if (sum === null) return tf.zeros([this.total], 'float32');
    if (over <= 1) return sum;
    try {
      return tf.div(sum, over);
    } finally {
      sum.dispose();
    }
  }

  /**
   * The step's mean gradient in the form its all-reduce takes — the one rule of the trainer's worker, the
   * single-process Learner and the step benchmark: when the step reduces nothing across processes (`reduced` false:
   * world size 1, whose all-reduce is the identity, as DDP with one process) on a backend that
   * {@link keepsGradientsOnDevice} (WebGPU), a backend tensor ({@link takeGradientsOnDevice}: nothing is read to the
   * CPU); otherwise a host array ({@link takeGradients}, one asynchronous read) for the all-reduce to reduce in place.
   *
   * @param options.reduced - whether the gradient goes through an all-reduce across processes (world size > 1)
   * @param options.over - micro-batches the mean is over (integer ≥ those accumulated; default those accumulated): a
   *   micro-batch that added nothing (all its items undecodable) counts as zeros, so the scale is that of any split.
   *   On the array path the mean over the accumulated ones is scaled by accumulated / over (each value rounded to
   *   float32), on the device path the sum is divided by `over` once.
   * @returns `[gradientSize] float32` in {@link gradientLayout} order, owned by the caller: give it to
   *   {@link applyGradients}, then to {@link releaseStepGradients}
   * @throws TrainerError ERR_INTERNAL on a bad `over` (device path), or after dispose
   */
  async takeStepGradients(options: { readonly reduced: boolean; readonly over?: number }): Promise<Float32Array | tf.Tensor1D> {
    if (!options.reduced && this.keepsGradientsOnDevice) return this.takeGradientsOnDevice(options.over);
    const ran = this.accumulated;
    const over = options.over ?? ran;
    const read = await this.takeGradients();
    if (ran > 0 && ran < over) for (let i = 0; i < read.length; i++) read[i] = Math.fround(read[i]! * ran / over);
    return read;
  }

  /**
   * Frees a gradient from {@link takeStepGradients} once it is applied or dropped: a backend tensor is disposed (if
   * it is not already), an array goes back to the pool ({@link releaseGradients}). Not to be used afterwards.
   */
  releaseStepGradients(grads: Float32Array | tf.Tensor1D): void {
    if (grads instanceof Float32Array) this.releaseGradients(grads);
    else if (!grads.isDisposed) grads.dispose();
  }

  /** Micro-batches accumulated since the last {@link takeGradients}. */
  get pendingMicroBatches(): number {
    return this.accumulated;
  }

  /**
   * One AdamW step (fastai true_wd, see `adamw.ts`) with per-group learning rates and beta1 = `hyper.momentum`.
   *
   * @param flat - `[gradientSize]` float32 in {@link gradientLayout} order: an array (e.g. all-reduced
   *   {@link takeGradients}), or a backend tensor (e.g. {@link takeGradientsOnDevice}), read where it is, not disposed
   * @param hyper - one lr per layer group (3) and the momentum for this step
   * @throws TrainerError ERR_INTERNAL on a wrong length, a tensor that is not 1-D float32, wrong number of lrs or a
   *   momentum outside [0, 1)
   */
  applyGradients(flat: Float32Array | tf.Tensor1D, hyper: StepHyper): void {
    this.checkAlive();
    const length = flat instanceof Float32Array ? flat.length : flat.size;
    if (length !== this.total) {
      throw new TrainerError('ERR_INTERNAL', `flat gradient must have ${this.total} values (gradientLayout), got ${length}`);
    }
    if (!(flat instanceof Float32Array)) {
      // Already on the backend: AdamW reads it at offsets (WebGPU) or splits it (others); nothing is read or uploaded.
      this.model.optimizer.stepFlat(flat, this.layout, hyper);
      return;
    }
    if (tf.getBackend() === 'webgpu') {
      // On a GPU: one upload of the whole flat gradient, from which each parameter's AdamW update reads its part at
      // its offset (no per-tensor transfers, no split on the device).
      const whole = tf.tensor1d(flat, 'float32');
      try {
        this.model.optimizer.stepFlat(whole, this.layout, hyper);
      } finally {
        whole.dispose();
      }
      return;
    }
    // On backends that compute in host memory (wasm, cpu, tfjs-node) a tensor per parameter is one copy, and the fastest.
    const grads = new Map<string, tf.Tensor>();
    try {
      let offset = 0;
      for (const { name, size } of this.layout) {
        grads.set(name, tf.tensor(flat.subarray(offset, offset + size), this.model.params.get(name)!.shape, 'float32'));
        offset += size;
      }
      this.model.optimizer.step(grads, hyper);
    } finally {
      tf.dispose([...grads.values()]);
    }
  }

  /**
   * Eval-mode forward (running BN statistics, no dropout), in chunks of at most `maxMicroBatch` images.
   *
   * @param x - `[n, size, size, 3] float32, NHWC`, flattened
   * @param y - `[n] int32` labels
   * @param valid - `[n] uint8`, 0 = padding (excluded from the sums), or null
   * @throws TrainerError ERR_DATA on inconsistent lengths or labels out of range
   */
  async evaluate(x: Float32Array, y: Int32Array, valid: Uint8Array | null): Promise<EvalResult> {
    this.checkAlive();
    const n = this.checkBatch(x, y, valid);
    const probs = new Float32Array(n * this.numClasses);
    let lossSum = 0;
    let correct = 0;
    for (const [start, end] of splitChunks(n, this.maxMicroBatch(this.side(x, n)))) {
      const { xs, ys } = this.inputs(x, y, start, end);
      const mask = tf.tensor1d(this.weights(valid, start, end, 1));
      const [p, l, c] = tf.tidy(() => {
        const logits = this.model.forward(xs, false);
        const hits = tf.cast(tf.equal(tf.argMax(logits, 1), ys), 'float32');
        return [tf.softmax(logits), tf.sum(tf.mul(perItemCrossEntropy(logits, ys, { labelsChecked: true }), mask)), tf.sum(tf.mul(hits, mask))];
      });
      try {
        const [pv, lv, cv] = await Promise.all([p.data(), l.data(), c.data()]);
        probs.set(pv as Float32Array, start * this.numClasses);
        lossSum += lv[0]!;
        correct += Math.round(cv[0]!);
      } finally {
        tf.dispose([xs, ys, mask, p, l, c]);
      }
    }
    const count = valid === null ? n : valid.reduce((a, v) => a + (v ? 1 : 0), 0);
    return { lossSum, correct, count, probs };
  }

  /** Parameters and BN buffers of body and head by name (no copies). */
  private namedVariables(): [string, tf.Variable][] {
    const { body, head } = this.model;
    return [...body.params, ...body.buffers, ...head.params, ...head.buffers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** Copies weights, BN statistics, optimizer state and the frozen flag out (exact float32 copies). */
  async exportState(): Promise<ReplicaState> {
    this.checkAlive();
    const tensors: NamedArray[] = [];
    for (const [name, v] of this.namedVariables()) {
      tensors.push({ name, shape: [...v.shape], data: Float32Array.from(await v.data() as Float32Array) });
    }
    const optimizer = await this.model.optimizer.exportState();
    return { version: 1, frozen: this.frozen, tensors, optimizer,
      bnSteps: { body: this.model.body.numBatchesTracked, head: this.model.head.numBatchesTracked } };
  }

  /**
   * Restores a state from {@link exportState} (of a replica of the same arch and classes); discards any
   * accumulated gradient.
   *
   * @throws TrainerError ERR_CHECKPOINT on a wrong version, a missing/unknown tensor or a shape mismatch (checked
   *   before anything changes), or an optimizer state that does not fit
   */
  importState(state: ReplicaState): void {
    this.checkAlive();
    if (state.version !== 1) throw new TrainerError('ERR_CHECKPOINT', `replica state version must be 1, got ${String(state.version)}`);
    const vars = new Map(this.namedVariables());
    const byName = new Map(state.tensors.map((t) => [t.name, t]));
    for (const [name, v] of vars) {
      const t = byName.get(name);
      if (t === undefined) throw new TrainerError('ERR_CHECKPOINT', `replica state lacks ${name}`);
      if (t.data.length !== v.size) throw new TrainerError('ERR_CHECKPOINT', `replica state ${name} has ${t.data.length} values, model has ${v.size}`);
      // As many values in another shape (a conv weight in torch's [out, in, k, k], not HWIO) was taken silently.
      if (t.shape.length !== v.shape.length || t.shape.some((d, i) => d !== v.shape[i])) {
        throw new TrainerError('ERR_CHECKPOINT', `replica state ${name} is [${t.shape.join(', ')}], model has [${v.shape.join(', ')}]`);
      }
    }
    const extra = state.tensors.find((t) => !vars.has(t.name));
    if (extra) throw new TrainerError('ERR_CHECKPOINT', `replica state names ${extra.name}, which the model does not have`);
    for (const [name, v] of vars) tf.tidy(() => v.assign(tf.tensor(byName.get(name)!.data, v.shape, 'float32')));
    this.setFrozen(state.frozen);
    this.model.optimizer.importState(state.optimizer);
    this.model.body.numBatchesTracked = state.bnSteps.body;
    this.model.head.numBatchesTracked = state.bnSteps.head;
  }

  /** SHA-256 (hex) over every parameter and BN buffer: name bytes then float32 bytes, in name order ({@link WeightsHash}). */
  async weightsChecksum(): Promise<string> {
    this.checkAlive();
    const h = new WeightsHash();
    for (const [name, v] of this.namedVariables()) h.add(name, await v.data() as Float32Array);
    return h.digest();
  }

  /** Frees the model and optimizer tensors. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.sum?.dispose();
    this.sum = null;
    this.model.dispose();
  }

  private checkAlive(): void {
    if (this.disposed) throw new TrainerError('ERR_INTERNAL', 'Replica used after dispose()');
  }
}
