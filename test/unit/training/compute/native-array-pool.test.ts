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
import { registerTfjsGradients } from '../../../../src/training/compute/kernels/gradients.js';
import { mulberry32 } from '../../../../src/contract/plan/rng.js';
import { Replica } from '../../../../src/training/learner/replica.js';
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
  assert.equal(poolBytes({}), 1024 * 2 ** 20);
  assert.equal(poolBytes({ PETS_NATIVE_POOL_MIB: '0' }), 0);
  assert.equal(poolBytes({ PETS_NATIVE_POOL_MIB: '64' }), 64 * 2 ** 20);
});

test('ArrayPool.giveBack: a read-out array returns once no storage entry or view holds it; foreign or moved ones never', () => {
  const pool = new ArrayPool(64);
  // Read out (escaped), then its tensor disposed: given back, and the next output of its length reuses it.
  const read = pool.take(16);
  pool.onWrite(read);
  pool.escape(read);
  pool.onDispose(read);
  assert.equal(pool.take(16) === read, false, 'a read-out array must not come back by itself');
  assert.equal(pool.giveBack(read), true);
  assert.equal(pool.take(16), read);
  // A view of it still stored as a tensor's values (e.g. a gradient tensor over a subarray): refused until disposed.
  const flat = pool.take(16);
  pool.onWrite(flat);
  pool.escape(flat);
  pool.onDispose(flat);
  const view = flat.subarray(4, 8);
  pool.onWrite(view);
  assert.equal(pool.giveBack(flat), false);
  pool.onDispose(view);
  assert.equal(pool.giveBack(flat), true);
  assert.equal(pool.giveBack(flat), false, 'an array already in the free list is not added twice');
  // Still stored (its tensor alive), not the pool's, moved to another backend, or a view: refused.
  const alive = pool.take(4);
  pool.onWrite(alive);
  pool.escape(alive);
  assert.equal(pool.giveBack(alive), false);
  assert.equal(pool.giveBack(new Float32Array(4)), false);
  const moved = pool.take(4);
  pool.onWrite(moved);
  pool.onMove(moved);
  pool.onDispose(moved);
  assert.equal(pool.giveBack(moved), false);
  assert.equal(pool.giveBack(flat.subarray(0, 4)), false);
  // It may take the free bytes over the bound (64 here: flat's 64 bytes are free), which disposals never do.
  const over = pool.take(8);
  pool.onWrite(over);
  pool.escape(over);
  pool.onDispose(over);
  assert.equal(pool.giveBack(over), true);
  assert.equal(pool.stats().freeBytes, 96);
  const off = new ArrayPool(0);
  const none = off.take(4);
  off.onWrite(none);
  off.escape(none);
  off.onDispose(none);
  assert.equal(off.giveBack(none), false, 'a pool with reuse off takes nothing back');
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

test('native backend: a read-out gradient given back is reused only after its tensors are gone; values stay right', { skip }, async () => {
  const prev = tf.getBackend();
  await tf.setBackend(NATIVE_BACKEND);
  try {
    const start = tf.memory().numTensors;
    const a = tf.tensor1d(lcg(3001, 1));
    const b = tf.tensor1d(lcg(3001, 2));
    const sum = tf.add(a, b);
    const flat = await sum.data() as Float32Array;
    const expected = Float32Array.from(flat);
    sum.dispose();
    // As Replica.applyGradients does: a tensor over a view of the flat gradient. While it lives, flat stays.
    const part = tf.tensor1d(flat.subarray(1000, 2000));
    assert.equal(nativePool().giveBack(flat), false);
    const other = tf.mul(a, b);
    assert.notEqual(other.dataSync(), flat);
    assert.deepEqual(flat, expected);
    part.dispose();
    assert.equal(nativePool().giveBack(flat), true);
    const next = tf.sub(a, b);
    const got = next.dataSync();
    assert.equal(got, flat, 'the given-back array was not reused for the next output of its length');
    assert.deepEqual(got, tf.tidy(() => tf.sub(tf.tensor1d(lcg(3001, 1)), tf.tensor1d(lcg(3001, 2))).dataSync()));
    tf.dispose([a, b, other, next]);
    assert.equal(tf.memory().numTensors, start);
  } finally {
    await tf.setBackend(prev ?? 'cpu');
  }
});

test('Replica on native: a released flat gradient holds the next step\'s gradient, bit-identical to fresh arrays', { skip }, async () => {
  const prev = tf.getBackend();
  await tf.setBackend(NATIVE_BACKEND);
  await registerTfjsGradients();
  const hyper = { lrs: [1e-3, 1e-3, 1e-2], momentum: 0.9 };
  const options = { arch: { block: 'basic', layers: [1, 1, 1, 1] } as const, numClasses: 5, seed: 3, pretrained: null,
    frozen: false, head: { hidden: 16 } };
  const rng = mulberry32(9);
  const x = Float32Array.from({ length: 4 * 32 * 32 * 3 }, () => rng() * 2 - 1);
  const y = Int32Array.from([0, 1, 2, 3]);
  // Three steps each; `released` gives every flat gradient back, `kept` keeps copies of its own.
  const steps = async (release: boolean): Promise<{ grads: Float32Array[]; same: boolean; checksum: string }> => {
    const r = await Replica.create(options);
    const grads: Float32Array[] = [];
    const arrays: Float32Array[] = [];
    try {
      for (let k = 0; k < 3; k++) {
        await r.accumulate(x, y, null, k);
        const g = await r.takeGradients();
        arrays.push(g);
        grads.push(Float32Array.from(g));
        r.applyGradients(g, hyper);
        if (release) r.releaseGradients(g);
      }
      return { grads, same: arrays[1] === arrays[0] && arrays[2] === arrays[0], checksum: await r.weightsChecksum() };
    } finally {
      r.dispose();
    }
  };
  try {
    const start = tf.memory().numTensors;
    const released = await steps(true);
    const kept = await steps(false);
    assert.ok(released.same, 'a released gradient array was not reused for the next step');
    assert.ok(!kept.same);
    for (let k = 0; k < 3; k++) assert.deepEqual(released.grads[k], kept.grads[k], `step ${k} gradient`);
    assert.equal(released.checksum, kept.checksum);
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

test('Replica on native in its steady state: no new arrays, parameters updated in their own arrays, tensor count flat', { skip }, async () => {
  // The whole step as the bench and a single worker run it (accumulate, take, AdamW, release). After two steps
  // (the pool filled, every parameter and moment copied once into a pool array it owns) a step must allocate no
  // array through the pool, leave every parameter in the array it had (AdamW in place: else 3 new arrays per
  // parameter and step reach V8's external memory) and leave the tensor count where it was.
  const prev = tf.getBackend();
  await tf.setBackend(NATIVE_BACKEND);
  await registerTfjsGradients();
  const backend = tf.backend() as NativeBackend;
  const hyper = { lrs: [1e-3, 1e-3, 1e-2], momentum: 0.9 };
  const r = await Replica.create({ arch: { block: 'basic', layers: [1, 1, 1, 1] }, numClasses: 5, seed: 4, pretrained: null,
    frozen: false, head: { hidden: 16 } });
  const rng = mulberry32(11);
  const x = Float32Array.from({ length: 4 * 32 * 32 * 3 }, () => rng() * 2 - 1);
  const y = Int32Array.from([0, 1, 2, 4]);
  const storage = (): Float32Array[] => [...r.learner.params.values()].map((p) => backend.data.get(p.dataId).values as Float32Array);
  const step = async (k: number): Promise<void> => {
    await r.accumulate(x, y, null, k);
    const g = await r.takeStepGradients({ reduced: false });
    r.applyGradients(g, hyper);
    r.releaseStepGradients(g);
  };
  try {
    await step(0);
    await step(1);
    const created = backend.pool.stats().created;
    const tensors = tf.memory().numTensors;
    const arrays = storage();
    const before = arrays.map((a) => Float32Array.from(a));
    for (let k = 2; k < 5; k++) {
      await step(k);
      assert.equal(backend.pool.stats().created, created, `step ${k + 1}: the pool created no array`);
      assert.equal(tf.memory().numTensors, tensors, `step ${k + 1}: tensor count flat`);
      storage().forEach((a, i) => assert.equal(a, arrays[i], `step ${k + 1}: parameter ${i} keeps its array`));
    }
    assert.ok(arrays.every((a, i) => a.some((v, j) => v !== before[i]![j])), 'every parameter changed (else this checks nothing)');
  } finally {
    r.dispose();
    await tf.setBackend(prev ?? 'cpu');
  }
});
