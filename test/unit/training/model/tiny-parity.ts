// Test support (not a test file): the PyTorch parity check of the tiny ResNet fixture, shared by the cpu and wasm
// parity tests (each runs in its own process with its own backend).
// Expected values: ../shared/fixtures/resnet-tiny/case.safetensors, recorded with PyTorch 1.13 / torchvision 0.14.
// Tolerances (relative, max|a−b|/max|b|): eval logits 1e-4, train loss 1e-5, gradients 1e-3.
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { createResNet } from '../../../../src/training/model/resnet.js';
import { readSafetensors, type SafetensorsFile } from '../../../../src/training/model/safetensors.js';
import { loadTorchStateDict } from '../../../../src/training/model/torch-weights.js';
import { checkParity, type ParityReport } from '../../../../src/training/model/parity.js';

/** torchvision `ResNet(BasicBlock, [1,1,1,1])`, the fixture's structure. */
export const TINY = { block: 'basic', layers: [1, 1, 1, 1] } as const;

/** The fixture's weights and case files. */
export async function readTinyFixture(): Promise<{ weights: SafetensorsFile; kase: SafetensorsFile }> {
  const dir = resolve(process.cwd(), '../shared/fixtures/resnet-tiny');
  const [weights, kase] = await Promise.all([readSafetensors(`${dir}/weights.safetensors`), readSafetensors(`${dir}/case.safetensors`)]);
  return { weights, kase };
}

/** Asserts every tolerance explicitly (not only report.ok), so a wrong tolerance table cannot hide an error. */
export function assertWithin(report: ParityReport): void {
  const limit = (name: string): number => (name.startsWith('grad.') ? 1e-3 : name === 'loss_train' ? 1e-5 : 1e-4);
  for (const e of report.entries) assert.ok(e.relError <= limit(e.name), `${e.name}: relative error ${e.relError} > ${limit(e.name)}`);
  assert.ok(report.ok);
}

/** Runs the full parity check (eval logits, train logits, loss, 7 gradients) on the active backend, leak-free. */
export async function checkTinyParity(weights: SafetensorsFile, kase: SafetensorsFile): Promise<void> {
  const m = createResNet(TINY, { numClasses: 37 });
  try {
    loadTorchStateDict(m, weights.tensors);
    const before0 = tf.memory().numTensors;
    const report = await checkParity(m, kase.tensors);
    assert.equal(tf.memory().numTensors, before0);
    assert.deepEqual(report.entries.map((e) => e.name), [
      'logits_eval', 'logits_train', 'loss_train', 'grad.conv1.weight', 'grad.bn1.bias', 'grad.layer1.0.bn1.weight',
      'grad.layer4.0.conv2.weight', 'grad.layer4.0.downsample.0.weight', 'grad.fc.weight', 'grad.fc.bias',
    ]);
    assertWithin(report);
    assert.equal(m.numBatchesTracked, 0); // parity does not update running stats
  } finally {
    m.dispose();
  }
}
