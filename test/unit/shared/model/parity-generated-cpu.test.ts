// PyTorch parity of torchvision's ResNet(BasicBlock, [1,1,1,1]) at 224 px on the `cpu` backend (issue #19): tfjs's
// JavaScript kernels and the project's tfjs-op BatchNorm gradient, with the 7×7 last-stage maps of resnet18/34 at
// about half of resnet18's cost (the cpu backend is slow). A case generated here by scripts/parity/make-case.py
// (seed 0, 4 images, 1000 classes, float64 references), checked twice — against float64 (logits ≤ 1e-4, loss ≤
// 1e-5) and against float64 with our ReLU decisions (every gradient ≤ 1e-4). See generated-parity.ts. Skipped,
// saying so, when python3-torch/python3-torchvision are not installed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/shared/compute/backend.js';
import { checkGeneratedCase, generateCase, summary, torchPython, type GeneratedCase } from './generated-parity.js';

let python: string | null = null;
let kase: GeneratedCase | null = null;

before(async () => {
  await initBackend('cpu');
  assert.equal(tf.getBackend(), 'cpu');
  python = await torchPython();
  if (python !== null) kase = await generateCase(python, 'tiny', 224);
});

after(async () => {
  await kase?.dispose();
});

test('tiny ResNet at 224 px on cpu matches PyTorch float64 (mask-matched gradients ≤ 1e-4, every stage)', async (t) => {
  if (python === null || kase === null) {
    t.skip('python3-torch / python3-torchvision not installed (.ci/run installs them)');
    return;
  }
  t.diagnostic(summary(await checkGeneratedCase(python, kase)));
});
