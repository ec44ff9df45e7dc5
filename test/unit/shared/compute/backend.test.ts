import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { gpuVisible, initBackend, parseBackendRequest } from '../../../../src/shared/compute/backend.js';
import { isTrainerError } from '../../../../src/shared/errors.js';

test('parseBackendRequest accepts the five names and names the flag on anything else', () => {
  for (const name of ['auto', 'tensorflow', 'native', 'wasm', 'cpu']) assert.equal(parseBackendRequest(name), name);
  assert.throws(() => parseBackendRequest('gpu'), (err: unknown) =>
    isTrainerError(err, 'ERR_BAD_FLAG') && /--backend must be one of auto\|tensorflow\|native\|wasm\|cpu, got "gpu"/.test(err.message));
});

test('gpuVisible honours CUDA_VISIBLE_DEVICES=-1 and empty', () => {
  assert.equal(gpuVisible({ CUDA_VISIBLE_DEVICES: '-1' }), false);
  assert.equal(gpuVisible({ CUDA_VISIBLE_DEVICES: '' }), false);
});

test('auto picks a working backend and explains every rejected one', async () => {
  const choice = await initBackend('auto');
  assert.equal(tf.getBackend(), choice.tfName);
  assert.match(choice.summary, /^backend: /);
  if (choice.kind === 'wasm' || choice.kind === 'native') {
    // On a machine without tfjs-node, both TensorFlow backends must be listed with a reason.
    assert.ok(choice.rejected.some((r) => r.includes('tensorflow-gpu') || r.includes('tfjs-node-gpu')));
    assert.ok(choice.rejected.some((r) => r.includes('@tensorflow/tfjs-node')));
  }
  // WASM only when the oneDNN addon is unusable, and then the line says why.
  if (choice.kind === 'wasm') assert.ok(choice.rejected.some((r) => r.includes('native')));
  const y = tf.tidy(() => tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])));
  assert.deepEqual(Array.from(await y.data()), [4, 6]);
  y.dispose();
});

test('an explicit cpu request activates cpu', async () => {
  const choice = await initBackend('cpu');
  assert.equal(choice.kind, 'cpu');
  assert.equal(tf.getBackend(), 'cpu');
});
