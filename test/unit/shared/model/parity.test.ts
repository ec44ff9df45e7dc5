// PyTorch parity of the tfjs ResNet on the `cpu` backend (reference kernels; the WASM run is parity-wasm.test.ts).
// Expected values: ../shared/fixtures/resnet-tiny/case.safetensors, recorded with PyTorch 1.13 / torchvision 0.14.
// Tolerances (relative, max|a−b|/max|b|): eval logits 1e-4, train loss 1e-5, gradients 1e-3.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/shared/compute/backend.js';
import { isTrainerError } from '../../../../src/shared/errors.js';
import { createResNet } from '../../../../src/shared/model/resnet.js';
import type { SafetensorsFile } from '../../../../src/shared/model/safetensors.js';
import { loadTorchStateDict } from '../../../../src/shared/model/torch-weights.js';
import { checkParity, maxRelativeError } from '../../../../src/shared/model/parity.js';
import { TINY, checkTinyParity, readTinyFixture } from './tiny-parity.js';

let weights: SafetensorsFile;
let kase: SafetensorsFile;

before(async () => {
  await initBackend('cpu');
  ({ weights, kase } = await readTinyFixture());
});

test('maxRelativeError is max|a−b| / max|b|', () => {
  assert.equal(maxRelativeError([1, 2, 3], [1, 2, 4]), 0.25);
  assert.equal(maxRelativeError([0, 0], [0, 0]), 0);
  assert.equal(maxRelativeError([-2, 0], [-4, 1]), 0.5);
  assert.throws(() => maxRelativeError([1], [1, 2]), (err: unknown) => isTrainerError(err, 'ERR_DATA'));
});

test('tiny ResNet on cpu matches PyTorch: eval logits, train logits, loss and 7 gradients; no leaked tensors', async () => {
  await checkTinyParity(weights, kase);
});

test('a 1 % change of one BN scale is detected beyond tolerance (the check can fail)', async () => {
  const m = createResNet(TINY, { numClasses: 37 });
  try {
    loadTorchStateDict(m, weights.tensors);
    const gamma = m.params.get('layer2.0.bn1.weight')!;
    gamma.assign(tf.tidy(() => tf.mul(gamma, 1.01)));
    const noGrads = new Map([...kase.tensors].filter(([k]) => !k.startsWith('grad.')));
    const report = await checkParity(m, noGrads);
    assert.equal(report.ok, false);
    assert.ok(report.entries.find((e) => e.name === 'logits_eval')!.relError > 1e-4);
  } finally {
    m.dispose();
  }
});
