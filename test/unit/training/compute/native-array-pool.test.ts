/**
 * Reuse of the native kernels' output arrays (`compute/native/array-pool.ts`): an array comes back only when no
 * tensor and nothing read out can still see it, and a reused array never changes what a user holds.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadAddon } from '../../../../src/training/compute/native/addon.js';
import { ArrayPool, poolBytes } from '../../../../src/training/compute/native/array-pool.js';
import { NATIVE_BACKEND, registerNativeBackend, type NativeBackend } from '../../../../src/training/compute/native/backend.js';
import { lcg, relError } from './numeric.js';

const load = loadAddon();
const skip = 'addon' in load ? false : `native backend unavailable: ${load.reason}`;

test('ArrayPool: a disposed live array is reused for the same length, not for another', () => {
  const pool = new ArrayPool(1 << 20);
  const a = pool.take(16);
  pool.onWrite(a);
  pool.onDispose(a);
  assert.equal(pool.stats().freeBytes, 64);
  assert.notEqual(pool.take(8), a);
  assert.equal(pool.take(16), a);
  assert.deepEqual({ ...pool.stats(), freeBytes: 0 }, { created: 2, reused: 1, escaped: 0, freeBytes: 0 });
});

test('ArrayPool: read-out, shared, viewed or never-stored arrays are not reused', () => {
  const pool = new ArrayPool(1 << 20);
  const read = pool.take(4);
  pool.onWrite(read);
  pool.escape(read); // dataSync()
  pool.onDispose(read);
  const shared = pool.take(4);
  pool.onWrite(shared);
  pool.onWrite(shared); // a second storage entry with the same array
  pool.onDispose(shared);
  const viewed = pool.take(4);
  pool.onWrite(viewed);
  pool.onWrite(viewed.subarray(1, 3)); // a Slice of it
  pool.onDispose(viewed);
  const taken = pool.take(4);
  pool.onDispose(taken); // never stored: not the pool's to take back
  assert.equal(pool.stats().freeBytes, 0);
  assert.equal(pool.stats().escaped, 3);
  for (const a of [read, shared, viewed, taken]) assert.notEqual(pool.take(4), a);
});

test('ArrayPool: the free bytes stay within the bound; 0 disables reuse; poison fills NaN', () => {
  const pool = new ArrayPool(100);
  const arrays = [pool.take(16), pool.take(16)];
  for (const a of arrays) {
    pool.onWrite(a);
    pool.onDispose(a);
  }
  assert.equal(pool.stats().freeBytes, 64);
  const off = new ArrayPool(0);
  const b = off.take(4);
  off.onWrite(b);
  off.onDispose(b);
  assert.notEqual(off.take(4), b);
  pool.poison = true;
  assert.ok(pool.take(16).every((v) => Number.isNaN(v)));
  assert.equal(poolBytes({}), 512 * 2 ** 20);
  assert.equal(poolBytes({ PETS_NATIVE_POOL_MIB: '0' }), 0);
  assert.equal(poolBytes({ PETS_NATIVE_POOL_MIB: '64' }), 64 * 2 ** 20);
});

before(() => {
  if (!skip) assert.ok('info' in registerNativeBackend());
});

function nativePool(): ArrayPool {
  return (tf.findBackend(NATIVE_BACKEND) as NativeBackend).pool;
}

test('native backend: kernel outputs are reused after dispose; values read out and slices keep their contents', { skip }, async () => {
  const prev = tf.getBackend();
  await tf.setBackend(NATIVE_BACKEND);
  try {
    const start = tf.memory().numTensors;
    const a = tf.tensor1d(lcg(1000, 1));
    const b = tf.tensor1d(lcg(1000, 2));
    const reused0 = nativePool().stats().reused;
    // Reuse happens: a chain of same-size element-wise ops that disposes as it goes recycles its intermediates.
    let chained = tf.add(a, b);
    for (let i = 0; i < 5; i++) {
      const u = tf.add(chained, b);
      chained.dispose();
      chained = tf.tidy(() => tf.mul(u, 0.5));
      u.dispose();
    }
    assert.ok(nativePool().stats().reused > reused0, 'no output array was reused');
    const expect = tf.tidy(() => {
      let t = tf.add(a, b);
      for (let i = 0; i < 5; i++) t = tf.mul(tf.add(t, b), 0.5);
      return t;
    });
    assert.deepEqual(chained.dataSync(), expect.dataSync());
    // A value read out (dataSync hands out the storage array on this backend) survives its tensor's disposal.
    const sum = tf.add(a, b);
    const read = sum.dataSync();
    const copy = Float32Array.from(read);
    sum.dispose();
    const slice = tf.tidy(() => tf.slice(tf.mul(a, b), 100, 100)); // a view of a disposed native output
    const product = tf.mul(a, b);
    const sliceCopy = Float32Array.from(product.dataSync().subarray(100, 200));
    product.dispose();
    const others = tf.tidy(() => [0, 1, 2, 3].map((i) => tf.mul(tf.add(a, i), tf.sub(b, i))));
    assert.deepEqual(read, copy);
    assert.deepEqual(slice.dataSync(), sliceCopy);
    tf.dispose([a, b, chained, expect, slice, ...others]);
    assert.equal(tf.memory().numTensors, start);
  } finally {
    await tf.setBackend(prev ?? 'cpu');
  }
});

test('native backend: a filter array recycled for a new filter is not convolved with the old reordered copy', { skip }, async () => {
  const prev = tf.getBackend();
  const x = lcg(2 * 8 * 8 * 32, 1);
  const w1 = lcg(3 * 3 * 32 * 32, 2);
  const w2 = lcg(3 * 3 * 32 * 32, 3);
  const run = (): Float32Array[] => {
    const xt = tf.tensor4d(x, [2, 8, 8, 32]);
    // Filters made by a kernel (as AdamW makes the parameters), so that they live in pool arrays.
    const f1 = tf.tidy(() => tf.mul(tf.tensor4d(w1, [3, 3, 32, 32]), 1));
    const y1 = tf.tidy(() => tf.conv2d(xt, f1 as tf.Tensor4D, 1, 1));
    f1.dispose();
    const f2 = tf.tidy(() => tf.mul(tf.tensor4d(w2, [3, 3, 32, 32]), 1));
    const y2 = tf.tidy(() => tf.conv2d(xt, f2 as tf.Tensor4D, 1, 1));
    const out = [Float32Array.from(y1.dataSync()), Float32Array.from(y2.dataSync())];
    tf.dispose([xt, f2, y1, y2]);
    return out;
  };
  try {
    await tf.setBackend(NATIVE_BACKEND);
    const reused0 = nativePool().stats().reused;
    const native = run();
    assert.ok(nativePool().stats().reused > reused0);
    await tf.setBackend('cpu');
    const cpu = run();
    assert.ok(relError(native[0]!, cpu[0]!) <= 1e-5);
    assert.ok(relError(native[1]!, cpu[1]!) <= 1e-5, `second filter: relative error ${relError(native[1]!, cpu[1]!)}`);
  } finally {
    await tf.setBackend(prev ?? 'cpu');
  }
});
