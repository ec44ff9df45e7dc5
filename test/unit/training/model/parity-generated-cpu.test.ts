// PyTorch parity of torchvision's ResNet(BasicBlock, [1,1,1,1]) on the `cpu` backend (issue #19): tfjs's JavaScript
// kernels and the project's tfjs-op BatchNorm gradient. A case generated here by scripts/parity/make-case.py (seed 0,
// 4 images, 1000 classes, float64 references), checked twice — against float64 (logits ≤ 1e-4, loss ≤ 1e-5) and
// against float64 with our ReLU decisions (every gradient ≤ 1e-4). See generated-parity.ts. Skipped, saying so, when
// python3-torch/python3-torchvision are not installed.
//
// At 72 px, not 224: the maps are 36 → 18 → 18 → 9 → 5 → 3, so every op of the model runs, stride-2 convolutions
// and the max pool see both even (72, 36, 18) and odd (9, 5) inputs, and the last stage is 3×3 (BatchNorm over 36
// values per channel, a real average pool), for a tenth of the 224-px cost (which was ~24 min of a 2-core machine,
// pure JavaScript). What is 224-px specific stays checked where users train: resnet18 at 224 px on wasm and native
// (parity-generated-224.test.ts), and the cpu kernels at the 224-px layer shapes against float64
// (float64-reference.test.ts: BatchNorm over 4·56·56 and 4·7·7, the last stage's entry convolutions).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { checkGeneratedCase, generateCase, summary, torchPython, type GeneratedCase } from './generated-parity.js';

/** Input height and width, px (see above). */
const SIZE = 72;
let python: string | null = null;
let kase: GeneratedCase | null = null;

before(async () => {
  await initBackend('cpu');
  assert.equal(tf.getBackend(), 'cpu');
  python = await torchPython();
  if (python !== null) kase = await generateCase(python, 'tiny', SIZE);
});

after(async () => {
  await kase?.dispose();
});

test(`tiny ResNet at ${SIZE} px on cpu matches PyTorch float64 (mask-matched gradients ≤ 1e-4, every stage)`, async (t) => {
  if (python === null || kase === null) {
    t.skip('python3-torch / python3-torchvision not installed (.ci/run installs them)');
    return;
  }
  t.diagnostic(summary(await checkGeneratedCase(python, kase)));
});
