// PyTorch parity of a full torchvision ResNet18 at 224 px (issue #19) on the backends users train on with CPUs:
// WASM and native (oneDNN kernels on tfjs's cpu backend; what `--backend auto` picks when libdnnl-dev is installed,
// as in CI). ONE case generated here by scripts/parity/make-case.py (seed 0, 4 images, 1000 classes, float64
// references, ~25 s of PyTorch) is read by both backends; each is checked twice — against float64 (logits ≤ 1e-4,
// loss ≤ 1e-5) and against float64 with its own ReLU decisions (every gradient of every stage ≤ 1e-4). See
// generated-parity.ts. Skipped, saying so, when python3-torch/python3-torchvision are not installed; the native
// test also when the addon is not built (no libdnnl-dev at install).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { loadAddon } from '../../../../src/training/compute/native/addon.js';
import { checkGeneratedCase, generateCase, summary, torchPython, type GeneratedCase } from './generated-parity.js';

const native = loadAddon();
let python: string | null = null;
let kase: GeneratedCase | null = null;

before(async () => {
  python = await torchPython();
  if (python !== null) kase = await generateCase(python, 'resnet18', 224);
});

after(async () => {
  await kase?.dispose();
});

test('resnet18 at 224 px on wasm matches PyTorch float64 (mask-matched gradients ≤ 1e-4, every stage)', async (t) => {
  if (python === null || kase === null) {
    t.skip('python3-torch / python3-torchvision not installed (.ci/run installs them)');
    return;
  }
  await initBackend('wasm');
  assert.equal(tf.getBackend(), 'wasm');
  t.diagnostic(summary(await checkGeneratedCase(python, kase)));
});

test('resnet18 at 224 px on native matches PyTorch float64 (mask-matched gradients ≤ 1e-4, every stage)', async (t) => {
  if (python === null || kase === null) {
    t.skip('python3-torch / python3-torchvision not installed (.ci/run installs them)');
    return;
  }
  if (!('addon' in native)) {
    t.skip(`native backend unavailable: ${native.reason}`);
    return;
  }
  const choice = await initBackend('native');
  assert.equal(choice.kind, 'native');
  t.diagnostic(summary(await checkGeneratedCase(python, kase)));
});
