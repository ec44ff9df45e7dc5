/** Test support for numeric comparisons of kernels (not a test file). */
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { batchNormTrain } from '../../../../src/training/compute/batch-norm.js';

/** Padding forms of tfjs's convolutions, as the kernel tests pass them. */
export type Pad = 'same' | 'valid' | number | [[0, 0], [number, number], [number, number], [0, 0]];

/** Runs `fn` on backend `name` and returns its outputs as plain arrays (tensors disposed). */
export async function on(name: string, fn: () => tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(name);
  const outs = tf.tidy(fn);
  const values = outs.map((t) => t.dataSync() as Float32Array);
  tf.dispose(outs);
  return values;
}

/** Deterministic values in [−0.5, 0.5) (32-bit LCG, Numerical Recipes constants). */
export function lcg(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let s = seed >>> 0;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

/** max|actual − expected| / max|expected|; fails when the reference is all zeros (a vacuous comparison). */
export function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length, 'element count');
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  assert.ok(scale > 0, 'reference is all zeros: the comparison would be vacuous');
  return diff / scale;
}

/**
 * Float64 training-mode BatchNorm + residual + ReLU and its gradients for the loss Σ y·dy (PyTorch `BatchNorm2d`
 * formula, biased variance, eps 1e-5; Ioffe & Szegedy 2015 §3): [y, dx, dγ, dβ, dr].
 */
export function batchNorm64(x: Float32Array, g: Float32Array, b: Float32Array, r: Float32Array, dyIn: Float32Array, c: number): Float64Array[] {
  const p = x.length / c;
  const mean = new Float64Array(c);
  const variance = new Float64Array(c);
  for (let i = 0; i < x.length; i++) mean[i % c]! += x[i]! / p;
  for (let i = 0; i < x.length; i++) variance[i % c]! += (x[i]! - mean[i % c]!) ** 2 / p;
  const invStd = variance.map((v) => 1 / Math.sqrt(v + 1e-5));
  const y = new Float64Array(x.length);
  const d = new Float64Array(x.length);
  const dBeta = new Float64Array(c);
  const dGamma = new Float64Array(c);
  for (let i = 0; i < x.length; i++) {
    const k = i % c;
    const xHat = (x[i]! - mean[k]!) * invStd[k]!;
    const v = g[k]! * xHat + b[k]! + r[i]!;
    y[i] = Math.max(v, 0);
    d[i] = v > 0 ? dyIn[i]! : 0;
    dBeta[k]! += d[i]!;
    dGamma[k]! += d[i]! * xHat;
  }
  const dx = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const k = i % c;
    const xHat = (x[i]! - mean[k]!) * invStd[k]!;
    dx[i] = g[k]! * invStd[k]! * (d[i]! - dBeta[k]! / p - xHat * dGamma[k]! / p);
  }
  return [y, dx, dGamma, dBeta, d];
}

/**
 * The tensors {@link batchNorm64} is the reference of, on the active backend: `[y, dx, dgamma, dbeta, dresidual]` of
 * BatchNorm(+residual, +ReLU) in training mode with upstream gradient dy, all float32, shapes as x's or `[C]`.
 * Call inside `tf.tidy`.
 */
export function batchNormWithGrads(x: Float32Array, g: Float32Array, b: Float32Array, r: Float32Array, dy: Float32Array,
  shape: [number, number, number, number]): tf.Tensor[] {
  const dyt = tf.tensor4d(dy, shape);
  let y: tf.Tensor = tf.scalar(0);
  const grads = tf.grads((xs: tf.Tensor, gs: tf.Tensor, bs: tf.Tensor, rs: tf.Tensor) => {
    const o = batchNormTrain(xs, gs as tf.Tensor1D, bs as tf.Tensor1D, { relu: true, residual: rs });
    tf.dispose([o.mean, o.variance]);
    y = tf.keep(tf.clone(o.y));
    return tf.sum(tf.mul(o.y, dyt));
  })([tf.tensor4d(x, shape), tf.tensor1d(g), tf.tensor1d(b), tf.tensor4d(r, shape)]);
  return [y, ...grads];
}
