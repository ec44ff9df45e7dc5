import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/shared/compute/backend.js';
import { registerTfjsGradients } from '../../../../src/shared/compute/kernels/gradients.js';
import { mulberry32 } from '../../../../src/shared/data/rng.js';
import { isTrainerError } from '../../../../src/shared/errors.js';
import { isBatchNormParam } from '../../../../src/shared/learner/groups.js';
import { cnnLearner, type CnnLearner } from '../../../../src/shared/learner/learner.js';
import { crossEntropy } from '../../../../src/shared/learner/loss.js';
import { createResNet } from '../../../../src/shared/model/resnet.js';

before(async () => {
  await initBackend('auto'); // WASM here; cpu if WASM cannot start
  await registerTfjsGradients();
});

const TINY = { block: 'basic', layers: [1, 1, 1, 1] } as const;
const HYPER = { lrs: [1e-3, 1e-3, 1e-2], momentum: 0.9 };

function makeLearner(frozen = true): CnnLearner {
  return cnnLearner(createResNet(TINY, { numClasses: null, seed: 3 }), 5, { frozen, head: { hidden: 16, seed: 4 } });
}

function batch(): { x: tf.Tensor4D; y: tf.Tensor1D } {
  const rng = mulberry32(9);
  const x = tf.tensor4d(Float32Array.from({ length: 4 * 32 * 32 * 3 }, () => rng() * 2 - 1), [4, 32, 32, 3]);
  return { x, y: tf.tensor1d([0, 3, 1, 4], 'int32') };
}

function snapshot(learner: CnnLearner): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [k, v] of [...learner.params, ...learner.body.buffers, ...learner.head.buffers]) out.set(k, Float32Array.from(v.dataSync()));
  return out;
}

test('frozen step changes exactly the head, the body BatchNorms and the running stats', () => {
  const learner = makeLearner(true);
  const { x, y } = batch();
  const before = snapshot(learner);
  const loss = learner.trainStep(x, y, HYPER, mulberry32(1));
  // Fresh head on 5 classes: ln 5 = 1.609 for uniform outputs; kaiming-init logits (gain √2) and dropout make it
  // larger. A broad sanity range only: finite, above 0.5 and below 10.
  assert.ok(loss > 0.5 && loss < 10, `initial loss ${loss}`);
  const after = snapshot(learner);
  for (const [name, old] of before) {
    const changed = after.get(name)!.some((v, i) => v !== old[i]);
    const shouldChange = name.startsWith('head.') || isBatchNormParam(name) || /running_(mean|var)$/.test(name);
    assert.equal(changed, shouldChange, `${name} changed=${changed}`);
  }
  assert.equal(learner.body.numBatchesTracked, 1);
  assert.equal(learner.head.numBatchesTracked, 1);
  tf.dispose([x, y]);
  learner.dispose();
});

test('unfreeze trains every parameter and resets the optimizer; freeze resets it again', () => {
  const learner = makeLearner(true);
  const { x, y } = batch();
  learner.trainStep(x, y, HYPER, mulberry32(1));
  assert.equal(learner.optimizer.stepCount('head.8.bias'), 1);
  learner.unfreeze();
  assert.equal(learner.frozen, false);
  assert.equal(learner.optimizer.stepCount('head.8.bias'), 0, 'new optimizer, fresh state');
  assert.equal(learner.optimizer.trainable.size, learner.params.size);
  const before = snapshot(learner);
  learner.trainStep(x, y, HYPER, mulberry32(2));
  const after = snapshot(learner);
  for (const name of learner.params.keys()) {
    assert.ok(after.get(name)!.some((v, i) => v !== before.get(name)![i]), `${name} should change when unfrozen`);
  }
  learner.freeze();
  assert.ok(!learner.optimizer.trainable.has('conv1.weight') && learner.optimizer.trainable.has('bn1.weight'));
  tf.dispose([x, y]);
  learner.dispose();
});

test('gradient of a head parameter matches a central finite difference (same dropout masks)', () => {
  const learner = makeLearner(true);
  const { x, y } = batch();
  const name = 'head.8.bias';
  const g = learner.computeGradients(x, y, mulberry32(5));
  const analytic = g.grads.get(name)!.dataSync()[2]!;
  tf.dispose([...g.grads.values(), ...g.bnUpdates.values()]);
  const lossAt = (delta: number): number => tf.tidy(() => {
    const p = learner.params.get(name)!;
    const orig = p.clone();
    p.assign(tf.add(orig, tf.tensor1d([0, 0, delta, 0, 0])));
    const l = crossEntropy(learner.forward(x, true, { rng: mulberry32(5) }), y).dataSync()[0]!;
    p.assign(orig);
    return l;
  });
  // d loss / d bias_c = mean over items of (softmax_c − onehot_c): O(0.1). Float32 FD with h = 1e-2: error ≲ 1e-3.
  const h = 1e-2;
  const numeric = (lossAt(h) - lossAt(-h)) / (2 * h);
  assert.ok(Math.abs(analytic - numeric) < 2e-3, `analytic ${analytic} vs numeric ${numeric}`);
  tf.dispose([x, y]);
  learner.dispose();
});

test('repeated steps on one batch lower its loss, with a flat tensor count', () => {
  const learner = makeLearner(true);
  const { x, y } = batch();
  const losses: number[] = [learner.trainStep(x, y, HYPER, mulberry32(0))];
  const count = tf.memory().numTensors;
  for (let i = 1; i < 8; i += 1) losses.push(learner.trainStep(x, y, HYPER, mulberry32(i)));
  assert.equal(tf.memory().numTensors, count, 'no tensor leak per step');
  assert.ok(losses[7]! < losses[0]! * 0.8, `losses did not fall: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  tf.dispose([x, y]);
  learner.dispose();
});

test('a body with a classifier is rejected; a failed step disposes its tensors', () => {
  const withFc = createResNet(TINY, { numClasses: 3 });
  assert.throws(() => cnnLearner(withFc, 5), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG'));
  withFc.dispose();
  const learner = makeLearner(true);
  const { x, y } = batch();
  learner.trainStep(x, y, HYPER, mulberry32(0));
  const count = tf.memory().numTensors;
  assert.throws(() => learner.trainStep(x, y, { lrs: [1e-3], momentum: 0.9 }, mulberry32(1)),
    (e: unknown) => isTrainerError(e, 'ERR_INTERNAL') && /one lr per layer group \(3\)/.test(e.message));
  assert.equal(tf.memory().numTensors, count);
  tf.dispose([x, y]);
  learner.dispose();
});
