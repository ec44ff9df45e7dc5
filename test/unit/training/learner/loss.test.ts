import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { registerTfjsGradients } from '../../../../src/training/compute/kernels/gradients.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import {
  accuracyCounts, addCounts, crossEntropy, errorRate, perItemCrossEntropy,
} from '../../../../src/training/learner/loss.js';

before(async () => {
  await initBackend('auto'); // WASM here; cpu if WASM cannot start
  await registerTfjsGradients();
});

// Hand values (float64): item 0 logits (1,2,3), label 2: CE = ln(1 + e^-1 + e^-2) = 0.4076059644443806;
// item 1 logits (0,0,0), label 1: CE = ln 3 = 1.0986122886681098; item 2 logits (1000,0,-1000), label 1:
// CE = 1000 (needs the max shift: exp(1000) overflows). Float32 results: tolerance 1e-6 relative.
const LOGITS = [[1, 2, 3], [0, 0, 0], [1000, 0, -1000]];
const LABELS = [2, 1, 1];
const PER_ITEM = [0.4076059644443806, 1.0986122886681098, 1000];

function near(got: number, want: number, rel = 1e-6): void {
  assert.ok(Math.abs(got - want) <= rel * Math.max(1, Math.abs(want)), `expected ${want}, got ${got}`);
}

test('per-item and mean cross-entropy match hand values, stable for large logits', () => {
  const logits = tf.tensor2d(LOGITS);
  const labels = tf.tensor1d(LABELS, 'int32');
  const items = perItemCrossEntropy(logits, labels);
  Array.from(items.dataSync()).forEach((v, i) => near(v, PER_ITEM[i]!));
  const mean = crossEntropy(logits, labels);
  near(mean.dataSync()[0]!, (PER_ITEM[0]! + PER_ITEM[1]! + PER_ITEM[2]!) / 3);
  tf.dispose([logits, labels, items, mean]);
});

test('the gradient of the mean loss is (softmax − onehot)/batch', () => {
  const logits = tf.tensor2d([[1, 2, 3], [0, 0, 0]]);
  const labels = tf.tensor1d([2, 1], 'int32');
  const g = tf.grad((z: tf.Tensor) => crossEntropy(z as tf.Tensor2D, labels))(logits);
  // softmax(1,2,3) = (0.0900305732, 0.2447284711, 0.6652409558); softmax(0,0,0) = 1/3 each.
  const want = [0.0900305732, 0.2447284711, 0.6652409558 - 1, 1 / 3, 1 / 3 - 1, 1 / 3].map((v) => v / 2);
  Array.from(g.dataSync()).forEach((v, i) => near(v, want[i]!, 1e-6));
  tf.dispose([logits, labels, g]);
});

test('inputs are validated: shapes, dtypes, label range', () => {
  const logits = tf.tensor2d(LOGITS);
  const bad = (labels: tf.Tensor1D, re: RegExp) => {
    assert.throws(() => perItemCrossEntropy(logits, labels), (e: unknown) => isTrainerError(e, 'ERR_DATA') && re.test(e.message));
    labels.dispose();
  };
  bad(tf.tensor1d([0, 1, 3], 'int32'), /labels must be in \[0, 3\), got 3/);
  bad(tf.tensor1d([0, 1, -1], 'int32'), /got -1/);
  bad(tf.tensor1d([0, 1], 'int32'), /labels must be \[3\] int32/);
  bad(tf.tensor1d([0, 1, 2], 'float32'), /labels must be \[3\] int32/);
  logits.dispose();
});

test('accuracy counts honour the validity mask; error_rate over summed counts', async () => {
  const logits = tf.tensor2d([[0.1, 0.9, 0], [2, 1, 0], [0, 0, 5], [1, 1, 0]]); // argmax 1, 0, 2, 0 (tie → first)
  const labels = tf.tensor1d([1, 1, 2, 0], 'int32');
  assert.deepEqual(await accuracyCounts(logits, labels), { correct: 3, total: 4 });
  assert.deepEqual(await accuracyCounts(logits, labels, [1, 1, 0, 0]), { correct: 1, total: 2 });
  assert.deepEqual(await accuracyCounts(logits, labels, [true, false, true, false]), { correct: 2, total: 2 });
  await assert.rejects(accuracyCounts(logits, labels, [1, 1]), (e: unknown) => isTrainerError(e, 'ERR_DATA'));
  const sum = addCounts({ correct: 3, total: 4 }, { correct: 1, total: 2 });
  assert.deepEqual(sum, { correct: 4, total: 6 });
  near(errorRate(sum), 2 / 6, 1e-15);
  assert.throws(() => errorRate({ correct: 0, total: 0 }), (e: unknown) => isTrainerError(e, 'ERR_DATA'));
  tf.dispose([logits, labels]);
});

test('no tensors leak over repeated loss and metric calls', async () => {
  const logits = tf.tensor2d(LOGITS);
  const labels = tf.tensor1d(LABELS, 'int32');
  const run = async () => {
    tf.dispose([crossEntropy(logits, labels), perItemCrossEntropy(logits, labels)]);
    await accuracyCounts(logits, labels);
  };
  await run();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 5; i += 1) await run();
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([logits, labels]);
});
