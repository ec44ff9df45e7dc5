/** `profileKernels`: per-kernel call counts (exact) and times (only checked to be finite and ≥ 0, sorted). */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { batchNormTrain } from '../../../../src/training/compute/batch-norm.js';
import { profileKernels, profileKernelsCpu } from '../../../../src/training/compute/kernel-profile.js';

before(async () => {
  await initBackend('wasm');
});

test('counts each kernel call by name, flags the custom-gradient op as composite, sorts by time', async () => {
  const x = tf.ones([2, 8, 8, 3]) as tf.Tensor4D;
  const w = tf.ones([3, 3, 3, 4]) as tf.Tensor4D;
  const g = tf.ones([4]) as tf.Tensor1D;
  const b = tf.zeros([4]) as tf.Tensor1D;
  const kernels = await profileKernels(() => {
    tf.tidy(() => {
      const y = tf.conv2d(x, w, 1, 'same');
      tf.relu(tf.conv2d(y, tf.ones([3, 3, 4, 4]), 1, 'same'));
      const r = batchNormTrain(y, g, b, { relu: true });
      tf.dispose([r.mean, r.variance]);
    });
  });
  const byName = new Map(kernels.map((k) => [k.name, k]));
  assert.equal(byName.get('Conv2D')?.calls, 2);
  assert.equal(byName.get('Relu')?.calls, 1);
  assert.equal(byName.get('PetsBatchNormTrain')?.calls, 1);
  assert.equal(byName.get('Conv2D')?.composite, false);
  assert.ok(kernels.some((k) => k.composite), 'the customGrad op is listed as composite');
  for (let i = 0; i < kernels.length; i++) {
    assert.ok(Number.isFinite(kernels[i]!.ms) && kernels[i]!.ms >= 0);
    if (i > 0) assert.ok(kernels[i - 1]!.ms >= kernels[i]!.ms, 'sorted by time, largest first');
  }
  tf.dispose([x, w, g, b]);
});

test('profileKernelsCpu: exact call counts, CPU totals that add up, and the kernels restored afterwards (also on a throw)', async () => {
  const x = tf.ones([2, 8, 8, 3]) as tf.Tensor4D;
  const w = tf.ones([3, 3, 3, 4]) as tf.Tensor4D;
  const conv = tf.getKernel('Conv2D', tf.getBackend())!.kernelFunc;
  const p = await profileKernelsCpu(() => {
    tf.tidy(() => {
      const y = tf.conv2d(x, w, 1, 'same');
      tf.relu(tf.conv2d(y, tf.ones([3, 3, 4, 4]), 1, 'same'));
    });
  });
  const byName = new Map(p.kernels.map((k) => [k.name, k]));
  assert.equal(byName.get('Conv2D')?.calls, 2);
  assert.equal(byName.get('Relu')?.calls, 1);
  const sum = p.kernels.reduce((a, k) => a + k.ms, 0);
  assert.ok(p.totalCpuMs >= 0 && Math.abs(p.totalCpuMs - sum - p.outsideKernelsMs) < 1e-9);
  for (let i = 1; i < p.kernels.length; i++) assert.ok(p.kernels[i - 1]!.ms >= p.kernels[i]!.ms, 'sorted by time');
  assert.equal(tf.getKernel('Conv2D', tf.getBackend())!.kernelFunc, conv, 'original kernel restored');
  await assert.rejects(profileKernelsCpu(() => { throw new Error('boom'); }), /boom/);
  assert.equal(tf.getKernel('Conv2D', tf.getBackend())!.kernelFunc, conv, 'restored after a throw');
  tf.dispose([x, w]);
});
