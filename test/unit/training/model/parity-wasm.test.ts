// PyTorch parity of the tfjs ResNet on the WASM backend (XNNPACK forward, the project's WASM training kernels for conv gradients).
// Expected values: ../shared/fixtures/resnet-tiny/case.safetensors, recorded with PyTorch 1.13 / torchvision 0.14.
// Tolerances (relative, max|a−b|/max|b|): eval logits 1e-4, train loss 1e-5, gradients 1e-3.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/training/compute/backend.js';
import type { SafetensorsFile } from '../../../../src/training/model/safetensors.js';
import { checkTinyParity, readTinyFixture } from './tiny-parity.js';

let weights: SafetensorsFile;
let kase: SafetensorsFile;

before(async () => {
  await initBackend('wasm');
  assert.equal(tf.getBackend(), 'wasm');
  ({ weights, kase } = await readTinyFixture());
});

test('tiny ResNet on wasm matches PyTorch: eval logits, train logits, loss and 7 gradients; no leaked tensors', async () => {
  await checkTinyParity(weights, kase);
});
