/**
 * cnn_learner (body + head + layer groups + freeze/unfreeze) trained through the one training step every process
 * runs, {@link Replica}'s `accumulate` → `takeGradients` → `applyGradients` (the learner has no step of its own).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { registerTfjsGradients } from '../../../../src/training/compute/kernels/gradients.js';
import { mulberry32 } from '../../../../src/contract/plan/rng.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { isBatchNormParam } from '../../../../src/training/learner/groups.js';
import { cnnLearner } from '../../../../src/training/learner/cnn-learner.js';
import { crossEntropy } from '../../../../src/training/learner/loss.js';
import { Replica } from '../../../../src/training/learner/replica.js';
import { createResNet } from '../../../../src/training/model/resnet.js';

before(async () => {
  await initBackend('auto'); // WASM here; cpu if WASM cannot start
  await registerTfjsGradients();
});

const TINY = { block: 'basic', layers: [1, 1, 1, 1] } as const;
const HYPER = { lrs: [1e-3, 1e-3, 1e-2], momentum: 0.9 };
const SIZE = 32;

function makeReplica(frozen = true): Promise<Replica> {
  return Replica.create({ arch: TINY, numClasses: 5, seed: 3, pretrained: null, frozen, head: { hidden: 16 }, maxMicroBatch: 64 });
}

function batch(): { x: Float32Array; y: Int32Array } {
  const rng = mulberry32(9);
  return { x: Float32Array.from({ length: 4 * SIZE * SIZE * 3 }, () => rng() * 2 - 1), y: Int32Array.from([0, 3, 1, 4]) };
}

/** One optimizer step on one micro-batch; returns its mean loss. */
async function step(r: Replica, x: Float32Array, y: Int32Array, dropoutSeed: number): Promise<number> {
  const s = await r.accumulate(x, y, null, dropoutSeed);
  r.applyGradients(await r.takeGradients(), HYPER);
  return s.lossSum / s.count;
}

function snapshot(r: Replica): Map<string, Float32Array> {
  const { learner } = r;
  const out = new Map<string, Float32Array>();
  for (const [k, v] of [...learner.params, ...learner.body.buffers, ...learner.head.buffers]) out.set(k, Float32Array.from(v.dataSync()));
  return out;
}

test('frozen step changes exactly the head, the body BatchNorms and the running stats', async () => {
  const r = await makeReplica(true);
  const { x, y } = batch();
  const before = snapshot(r);
  const loss = await step(r, x, y, 1);
  // Fresh head on 5 classes: ln 5 = 1.609 for uniform outputs; kaiming-init logits (gain √2) and dropout make it
  // larger. A broad sanity range only: finite, above 0.5 and below 10.
  assert.ok(loss > 0.5 && loss < 10, `initial loss ${loss}`);
  const after = snapshot(r);
  for (const [name, old] of before) {
    const changed = after.get(name)!.some((v, i) => v !== old[i]);
    const shouldChange = name.startsWith('head.') || isBatchNormParam(name) || /running_(mean|var)$/.test(name);
    assert.equal(changed, shouldChange, `${name} changed=${changed}`);
  }
  assert.equal(r.learner.body.numBatchesTracked, 1);
  assert.equal(r.learner.head.numBatchesTracked, 1);
  r.dispose();
});

test('unfreeze trains every parameter and resets the optimizer; freeze resets it again', async () => {
  const r = await makeReplica(true);
  const { x, y } = batch();
  await step(r, x, y, 1);
  assert.equal(r.learner.optimizer.stepCount('head.8.bias'), 1);
  r.setFrozen(false);
  assert.equal(r.frozen, false);
  assert.equal(r.learner.optimizer.stepCount('head.8.bias'), 0, 'new optimizer, fresh state');
  assert.equal(r.learner.optimizer.trainable.size, r.learner.params.size);
  const before = snapshot(r);
  await step(r, x, y, 2);
  const after = snapshot(r);
  for (const name of r.learner.params.keys()) {
    assert.ok(after.get(name)!.some((v, i) => v !== before.get(name)![i]), `${name} should change when unfrozen`);
  }
  r.setFrozen(true);
  assert.ok(!r.learner.optimizer.trainable.has('conv1.weight') && r.learner.optimizer.trainable.has('bn1.weight'));
  r.dispose();
});

test('gradient of a head parameter matches a central finite difference (same dropout masks)', async () => {
  const r = await makeReplica(true);
  const { x, y } = batch();
  const name = 'head.8.bias';
  await r.accumulate(x, y, null, 5);
  const layout = r.gradientLayout();
  const offset = layout.slice(0, layout.findIndex((l) => l.name === name)).reduce((s, l) => s + l.size, 0);
  const analytic = (await r.takeGradients())[offset + 2]!;
  const { learner } = r;
  const xs = tf.tensor4d(x, [4, SIZE, SIZE, 3]);
  const ys = tf.tensor1d(y, 'int32');
  // The replica seeds each micro-batch's dropout with mulberry32(dropoutSeed): the same masks here.
  const lossAt = (delta: number): number => tf.tidy(() => {
    const p = learner.params.get(name)!;
    const orig = p.clone();
    p.assign(tf.add(orig, tf.tensor1d([0, 0, delta, 0, 0])));
    const l = crossEntropy(learner.forward(xs, true, { rng: mulberry32(5) }), ys).dataSync()[0]!;
    p.assign(orig);
    return l;
  });
  // d loss / d bias_c = mean over items of (softmax_c − onehot_c): O(0.1). Float32 FD with h = 1e-2: error ≲ 1e-3.
  const h = 1e-2;
  const numeric = (lossAt(h) - lossAt(-h)) / (2 * h);
  assert.ok(Math.abs(analytic - numeric) < 2e-3, `analytic ${analytic} vs numeric ${numeric}`);
  tf.dispose([xs, ys]);
  r.dispose();
});

test('repeated steps on one batch lower its loss, with a flat tensor count', async () => {
  const r = await makeReplica(true);
  const { x, y } = batch();
  const losses: number[] = [await step(r, x, y, 0)];
  const count = tf.memory().numTensors;
  for (let i = 1; i < 8; i += 1) losses.push(await step(r, x, y, i));
  assert.equal(tf.memory().numTensors, count, 'no tensor leak per step');
  assert.ok(losses[7]! < losses[0]! * 0.8, `losses did not fall: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  r.dispose();
});

test('a body with a classifier is rejected; a failed step disposes its tensors and changes nothing', async () => {
  const withFc = createResNet(TINY, { numClasses: 3 });
  assert.throws(() => cnnLearner(withFc, 5), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG'));
  withFc.dispose();
  const r = await makeReplica(true);
  const { x, y } = batch();
  await step(r, x, y, 0);
  await r.accumulate(x, y, null, 1);
  const grads = await r.takeGradients();
  const count = tf.memory().numTensors;
  const before = snapshot(r);
  assert.throws(() => r.applyGradients(grads, { lrs: [1e-3], momentum: 0.9 }),
    (e: unknown) => isTrainerError(e, 'ERR_INTERNAL') && /one lr per layer group \(3\)/.test(e.message));
  assert.equal(tf.memory().numTensors, count);
  const after = snapshot(r);
  for (const name of r.learner.params.keys()) assert.deepEqual(after.get(name), before.get(name), `${name} unchanged`);
  r.dispose();
});
