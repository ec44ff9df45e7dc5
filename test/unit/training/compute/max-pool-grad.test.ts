/**
 * The WASM `MaxPoolGrad` kernel (JavaScript, `kernels/max-pool-grad.ts`) against tfjs's reference `cpu` backend,
 * through `tf.grad` of `tf.maxPool`. Inputs are small integers so that windows contain ties (the first maximum in
 * window order must receive the gradient, as on cpu). Tolerance: relative error ≤ 1e-6 (sums of a few float32).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { relError } from './numeric.js';

interface PoolCase {
  readonly name: string;
  readonly x: [number, number, number, number];
  readonly k: number;
  readonly s: number;
  readonly pad: 'same' | 'valid' | number;
}

const CASES: readonly PoolCase[] = [
  { name: 'ResNet stem 3x3/2 p1, even', x: [2, 8, 8, 3], k: 3, s: 2, pad: 1 },
  { name: '3x3/2 p1, odd', x: [2, 9, 7, 4], k: 3, s: 2, pad: 1 },
  { name: "3x3/2 'same'", x: [1, 8, 8, 2], k: 3, s: 2, pad: 'same' },
  { name: "2x2/2 'valid'", x: [2, 6, 6, 3], k: 2, s: 2, pad: 'valid' },
  { name: '3x3/1 p1 (overlapping windows)', x: [1, 5, 5, 2], k: 3, s: 1, pad: 1 },
];

/** Small integers 0..4 (many ties) from a 32-bit LCG (Numerical Recipes constants). */
function ints(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let st = seed >>> 0;
  for (let i = 0; i < size; i++) {
    st = (Math.imul(st, 1664525) + 1013904223) >>> 0;
    out[i] = st % 5;
  }
  return out;
}

async function poolGrad(backend: string, c: PoolCase): Promise<Float32Array> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const x = tf.tensor4d(ints(tf.util.sizeFromShape(c.x), 7), c.x);
    const y0 = tf.maxPool(x, c.k, c.s, c.pad);
    const w = tf.tensor(Float32Array.from({ length: y0.size }, (_, i) => 1 + (i % 7) / 8), y0.shape);
    const dx = tf.grad((xs: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(xs as tf.Tensor4D, c.k, c.s, c.pad), w)))(x);
    return dx.dataSync() as Float32Array;
  });
}

before(async () => {
  await initBackend('wasm');
});

for (const c of CASES) {
  test(`MaxPoolGrad matches cpu: ${c.name}`, async () => {
    const expected = await poolGrad('cpu', c);
    const actual = await poolGrad('wasm', c);
    const err = relError(actual, expected);
    assert.ok(err <= 1e-6, `relative error ${err.toExponential(2)} > 1e-6`);
  });
}

test('MaxPoolGrad on wasm leaks no tensors', async () => {
  await poolGrad('wasm', CASES[0]!);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) await poolGrad('wasm', CASES[0]!);
  assert.equal(tf.memory().numTensors, before);
});
