// PyTorch parity of the tfjs ResNet on the `cpu` backend (reference kernels; the WASM run is parity-wasm.test.ts).
// Expected values: ../shared/fixtures/resnet-tiny/case.safetensors, recorded with PyTorch 1.13 / torchvision 0.14.
// Tolerances (relative, max|a−b|/max|b|): eval logits 1e-4, train loss 1e-5, gradients 1e-3.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { createResNet } from '../../../../src/training/model/resnet.js';
import type { SafetensorsFile } from '../../../../src/training/model/safetensors.js';
import { loadTorchStateDict } from '../../../../src/training/model/torch-weights.js';
import {
  MASKED_GRAD_TOLERANCE, caseTolerances, checkParity, fp32ErrorsFromMetadata, maxRelativeError, recordReluMasks,
} from '../../../../src/training/model/parity.js';
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

test('a case\'s recorded PyTorch fp32 errors raise a gradient\'s tolerance to 2x that error, never a logit\'s', async () => {
  const m = createResNet(TINY, { numClasses: 37 });
  try {
    loadTorchStateDict(m, weights.tensors);
    const subset = new Map([...kase.tensors].filter(([k]) => !k.startsWith('grad.') || k === 'grad.fc.bias'));
    const report = await checkParity(m, subset, { fp32Errors: { 'grad.fc.bias': 0.01, logits_eval: 0.5 } });
    const bias = report.entries.find((e) => e.name === 'grad.fc.bias')!;
    assert.equal(bias.tolerance, 0.02);
    assert.equal(bias.torchFp32Error, 0.01);
    const logits = report.entries.find((e) => e.name === 'logits_eval')!;
    assert.equal(logits.tolerance, 1e-4);
    assert.equal(report.entries.find((e) => e.name === 'loss_train')!.torchFp32Error, null);
    // A tiny recorded error leaves the 1e-3 floor.
    const floor = await checkParity(m, subset, { fp32Errors: { 'grad.fc.bias': 1e-7 } });
    assert.equal(floor.entries.find((e) => e.name === 'grad.fc.bias')!.tolerance, 1e-3);
  } finally {
    m.dispose();
  }
});

test('case metadata: torch_fp32_rel_error is parsed and checked; mask-matched cases get the 1e-4 gradient floor', () => {
  assert.deepEqual(fp32ErrorsFromMetadata({}), {});
  assert.deepEqual(fp32ErrorsFromMetadata({ torch_fp32_rel_error: '{"grad.a": 0.002}' }), { 'grad.a': 0.002 });
  for (const bad of ['not json', '[1]', '{"grad.a": -1}', '{"grad.a": "x"}']) {
    assert.throws(() => fp32ErrorsFromMetadata({ torch_fp32_rel_error: bad }), (err: unknown) => isTrainerError(err, 'ERR_WEIGHTS'), bad);
  }
  assert.equal(caseTolerances({ relu_masks: 'forced' }).grad, MASKED_GRAD_TOLERANCE);
  assert.equal(caseTolerances({}).grad, undefined);
});

test('recordReluMasks: one NCHW 0/1 mask per fused ReLU, named by its BN, in torchvision order; no leaks', () => {
  const m = createResNet(TINY, { numClasses: 37 });
  try {
    loadTorchStateDict(m, weights.tensors);
    const before0 = tf.memory().numTensors;
    const masks = recordReluMasks(m, kase.tensors);
    assert.equal(tf.memory().numTensors, before0);
    assert.equal(m.reluProbe, null);
    const blocks = ['layer1.0', 'layer2.0', 'layer3.0', 'layer4.0'].flatMap((b) => [`${b}.bn1`, `${b}.bn2`]);
    assert.deepEqual([...masks.keys()], ['bn1', ...blocks]);
    assert.deepEqual(masks.get('bn1')!.shape, [4, 64, 32, 32]); // 64 px input, stem stride 2
    assert.deepEqual(masks.get('layer4.0.bn2')!.shape, [4, 512, 2, 2]);
    for (const [name, { data }] of masks) {
      assert.ok(data.every((v) => v === 0 || v === 1), `${name}: values other than 0/1`);
      assert.ok(data.includes(0) && data.includes(1), `${name}: a ReLU that clips nothing or everything`);
    }
  } finally {
    m.dispose();
  }
});
