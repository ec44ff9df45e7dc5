/**
 * Training-mode BatchNorm (+ optional ReLU) as one differentiable op with a hand-written gradient
 * (`tf.customGrad`): on the `wasm` and `native` backends it runs the fused kernels of `kernels/batch-norm.ts` /
 * `native/`, on `webgpu` the WGSL kernels of `webgpu/batch-norm.ts`; on any other backend the same formulas as a
 * few tfjs ops. Also the running-statistic update and eval-mode BatchNorm, fused on webgpu. Either way the gradient tape holds only x, y and the per-channel
 * statistics instead of every intermediate of the textbook composition.
 *
 * Formulas and sources: see `kernels/batch-norm.ts` (Ioffe & Szegedy 2015; PyTorch `BatchNorm2d` conventions:
 * normalisation with the biased batch variance).
 */
import * as tf from '@tensorflow/tfjs-core';
import { TrainerError } from '../../contract/errors.js';
import {
  BN_INFER_KERNEL, BN_RUNNING_UPDATE_KERNEL, BN_TRAIN_GRAD_KERNEL, BN_TRAIN_KERNEL, type BatchNormTrainAttrs, type RunningUpdateAttrs,
} from './kernels/batch-norm.js';

/** Options of {@link batchNormTrain}; all optional. */
export interface BatchNormTrainOptions {
  /** Added to the variance, > 0. */
  readonly eps?: number;
  /** Apply a ReLU to the output (fused: one less full-size tensor and op). */
  readonly relu?: boolean;
  /** Added to the normalised output before the ReLU (a ResNet block's identity branch), shape of x; differentiable. */
  readonly residual?: tf.Tensor | null;
}

/** Defaults of {@link BatchNormTrainOptions}: PyTorch's eps 1e-5, no ReLU. */
export const DEFAULT_BATCH_NORM_TRAIN: Readonly<Required<BatchNormTrainOptions>> = Object.freeze({
  eps: 1e-5, relu: false, residual: null,
});

/** Output of {@link batchNormTrain}. */
export interface BatchNormTrainResult<T extends tf.Tensor> {
  /** Normalised (and ReLU-ed) output, same shape as x, float32. */
  readonly y: T;
  /** Batch mean per channel `[C] float32`, `tf.keep`-ed (the caller disposes it); no gradient flows through it. */
  readonly mean: tf.Tensor1D;
  /** Biased batch variance per channel `[C] float32`, `tf.keep`-ed (the caller disposes it); no gradient. */
  readonly variance: tf.Tensor1D;
}

function fusedAvailable(): boolean {
  const name = tf.getBackend();
  return tf.getKernel(BN_TRAIN_KERNEL, name) !== undefined && tf.getKernel(BN_TRAIN_GRAD_KERNEL, name) !== undefined;
}

function forwardOps(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, a: BatchNormTrainAttrs, r?: tf.Tensor): tf.Tensor[] {
  const axes = x.shape.map((_, i) => i).slice(0, -1);
  const mean = tf.mean(x, axes);
  const centred = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centred), axes);
  const normed = tf.add(tf.mul(centred, tf.mul(gamma, tf.rsqrt(tf.add(variance, a.eps)))), beta);
  const y = r === undefined ? normed : tf.add(normed, r);
  return [a.relu ? tf.relu(y) : y, mean, variance];
}

function backwardOps(saved: tf.Tensor[], dy: tf.Tensor, a: BatchNormTrainAttrs): tf.Tensor[] {
  const [x, y, gamma, mean, variance] = saved as [tf.Tensor, tf.Tensor, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D];
  const axes = x.shape.map((_, i) => i).slice(0, -1);
  const p = x.size / gamma.size;
  const d = a.relu ? tf.mul(dy, tf.cast(tf.greater(y, 0), 'float32')) : dy;
  const invStd = tf.rsqrt(tf.add(variance, a.eps));
  const xHat = tf.mul(tf.sub(x, mean), invStd);
  const dBeta = tf.sum(d, axes);
  const dGamma = tf.sum(tf.mul(d, xHat), axes);
  const inner = tf.sub(tf.sub(d, tf.div(dBeta, p)), tf.mul(xHat, tf.div(dGamma, p)));
  const grads = [tf.mul(inner, tf.mul(gamma, invStd)), dGamma, dBeta];
  return a.residual ? [...grads, d] : grads;
}

/**
 * Training-mode BatchNorm over all axes but the last: `y = γ·(x − mean)/√(var + eps) + β (+ residual)` with the
 * batch mean and biased batch variance, then `max(y, 0)` when `relu`. Differentiable w.r.t. x, γ, β (and the
 * residual) with the fused gradient.
 *
 * @param x - `[batch, height, width, C] float32, NHWC` (any rank ≥ 2 with channels last)
 * @param gamma - `[C] float32`; @param beta - `[C] float32`
 * @throws TrainerError ERR_DATA when there is only one value per channel; ERR_BAD_CONFIG on eps ≤ 0;
 *   ERR_INTERNAL when the residual's shape differs from x's
 */
export function batchNormTrain<T extends tf.Tensor>(x: T, gamma: tf.Tensor1D, beta: tf.Tensor1D,
  options: BatchNormTrainOptions = {}): BatchNormTrainResult<T> {
  const resolved = { ...DEFAULT_BATCH_NORM_TRAIN, ...options };
  const residual = resolved.residual ?? null;
  const attrs: BatchNormTrainAttrs = { eps: resolved.eps, relu: resolved.relu, residual: residual !== null };
  if (!(attrs.eps > 0)) throw new TrainerError('ERR_BAD_CONFIG', `BatchNorm eps must be > 0, got ${attrs.eps}`);
  if (x.size / (x.shape[x.rank - 1] ?? 1) < 2) {
    throw new TrainerError('ERR_DATA', `training-mode BatchNorm needs more than 1 value per channel, got input [${x.shape}]`);
  }
  if (residual !== null && !tf.util.arraysEqual(residual.shape, x.shape)) {
    throw new TrainerError('ERR_INTERNAL', `BatchNorm residual must have the input's shape [${x.shape}], got [${residual.shape}]`);
  }
  const fused = fusedAvailable();
  const named = attrs as unknown as tf.NamedAttrMap;
  let stats: tf.Tensor[] = [];
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [xs, g, b, r] = args as tf.Tensor[];
    const inputs: tf.NamedTensorMap = r === undefined ? { x: xs!, gamma: g!, beta: b! } : { x: xs!, gamma: g!, beta: b!, residual: r };
    const [y, mean, variance] = fused
      ? tf.engine().runKernel(BN_TRAIN_KERNEL, inputs, named) as tf.Tensor[]
      : forwardOps(xs!, g as tf.Tensor1D, b as tf.Tensor1D, attrs, r);
    save([xs!, y!, g!, mean!, variance!]);
    stats = [tf.keep(mean!), tf.keep(variance!)];
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
      if (!fused) return backwardOps(saved, dy, attrs);
      const [sx, sy, sg, sm, sv] = saved;
      return tf.engine().runKernel(BN_TRAIN_GRAD_KERNEL,
        { x: sx!, y: sy!, dy, gamma: sg!, mean: sm!, variance: sv! }, named) as tf.Tensor[];
    };
    return { value: y!, gradFunc };
  });
  const y = (residual === null ? op(x, gamma, beta) : op(x, gamma, beta, residual)) as T;
  return { y, mean: stats[0] as tf.Tensor1D, variance: stats[1] as tf.Tensor1D };
}

/**
 * PyTorch's running-statistic update `running·(1 − momentum) + batch·(momentum·scale)` (`scale` = 1 for the mean,
 * n/(n − 1) for the variance, which PyTorch keeps unbiased). One fused kernel where the backend has it (webgpu),
 * else these tfjs ops. No gradient.
 *
 * @param running - `[C] float32`; @param batch - `[C] float32`, the batch statistic
 * @param momentum - in [0, 1] (PyTorch 0.1); @param scale - > 0, default 1
 * @returns a new `[C] float32` tensor (the caller owns it)
 */
export function updateRunningStat(running: tf.Tensor1D, batch: tf.Tensor1D, momentum: number, scale = 1): tf.Tensor1D {
  if (tf.getKernel(BN_RUNNING_UPDATE_KERNEL, tf.getBackend()) !== undefined) {
    const attrs: RunningUpdateAttrs = { momentum, scale };
    return tf.engine().runKernel(BN_RUNNING_UPDATE_KERNEL, { running, batch }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor1D;
  }
  return tf.tidy(() => tf.add(tf.mul(running, 1 - momentum), tf.mul(batch, momentum * scale)));
}

/**
 * Eval-mode BatchNorm with the running statistics: `y = γ·(x − mean)/√(variance + eps) + β (+ residual)`, then
 * `max(y, 0)` when `relu`. One fused kernel where the backend has it (webgpu: one dispatch), else tfjs's
 * `batchNorm` (+ `add`, + `relu`). Differentiable w.r.t. x, γ, β and the residual (mean and variance are constants).
 *
 * @param x - `[..., C] float32` (channels last); @param mean, variance, gamma, beta - `[C] float32`
 * @throws TrainerError ERR_BAD_CONFIG on eps ≤ 0; ERR_INTERNAL when the residual's shape differs from x's
 */
export function batchNormInfer<T extends tf.Tensor>(x: T, mean: tf.Tensor1D, variance: tf.Tensor1D, gamma: tf.Tensor1D,
  beta: tf.Tensor1D, options: BatchNormTrainOptions = {}): T {
  const resolved = { ...DEFAULT_BATCH_NORM_TRAIN, ...options };
  const residual = resolved.residual ?? null;
  const { eps, relu } = resolved;
  if (!(eps > 0)) throw new TrainerError('ERR_BAD_CONFIG', `BatchNorm eps must be > 0, got ${eps}`);
  if (residual !== null && !tf.util.arraysEqual(residual.shape, x.shape)) {
    throw new TrainerError('ERR_INTERNAL', `BatchNorm residual must have the input's shape [${x.shape}], got [${residual.shape}]`);
  }
  if (tf.getKernel(BN_INFER_KERNEL, tf.getBackend()) === undefined) {
    return tf.tidy(() => {
      const normed = tf.batchNorm(x, mean, variance, beta, gamma, eps);
      const y = residual === null ? normed : tf.add(normed, residual);
      return (relu ? tf.relu(y) : y) as T;
    });
  }
  const attrs = { eps, relu, residual: residual !== null } as unknown as tf.NamedAttrMap;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [xs, g, b, r] = args as tf.Tensor[];
    const inputs: tf.NamedTensorMap = { x: xs!, mean, variance, gamma: g!, beta: b!, ...(r === undefined ? {} : { residual: r }) };
    const y = tf.engine().runKernel(BN_INFER_KERNEL, inputs, attrs) as tf.Tensor;
    save([xs!, y, g!]);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
      const [sx, sy, sg] = saved as [tf.Tensor, tf.Tensor, tf.Tensor1D];
      const axes = sx.shape.map((_, i) => i).slice(0, -1);
      const d = relu ? tf.mul(dy, tf.cast(tf.greater(sy, 0), 'float32')) : dy;
      const invStd = tf.rsqrt(tf.add(variance, eps));
      const grads = [tf.mul(d, tf.mul(sg, invStd)), tf.sum(tf.mul(d, tf.mul(tf.sub(sx, mean), invStd)), axes), tf.sum(d, axes)];
      return r === undefined ? grads : [...grads, d];
    };
    return { value: y, gradFunc };
  });
  return (residual === null ? op(x, gamma, beta) : op(x, gamma, beta, residual)) as T;
}
