import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { registerTfjsGradients } from '../../../../src/training/compute/kernels/gradients.js';
import { mulberry32 } from '../../../../src/contract/plan/rng.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { isBatchNormParam } from '../../../../src/training/learner/groups.js';
import { Replica, type ReplicaOptions } from '../../../../src/training/learner/replica.js';

before(async () => {
  await initBackend('auto'); // WASM here; cpu if WASM cannot start
  await registerTfjsGradients();
});

const TINY = { block: 'basic', layers: [1, 1, 1, 1] } as const;
const HYPER = { lrs: [1e-3, 1e-3, 1e-2], momentum: 0.9 };
const SIZE = 32;
const N_CLASSES = 5;

function options(extra: Partial<ReplicaOptions> = {}): ReplicaOptions {
  return { arch: TINY, numClasses: N_CLASSES, seed: 3, pretrained: null, frozen: true, head: { hidden: 16 }, ...extra };
}

function batch(n: number, seed = 9): { x: Float32Array; y: Int32Array } {
  const rng = mulberry32(seed);
  const x = Float32Array.from({ length: n * SIZE * SIZE * 3 }, () => rng() * 2 - 1);
  const y = Int32Array.from({ length: n }, (_, i) => (i * 3 + seed) % N_CLASSES);
  return { x, y };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function maxAbs(a: Float32Array): number {
  return a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

test('a batch split into chunks equals two accumulated micro-batches of the same halves (no dropout)', async () => {
  // Same items, same per-chunk BatchNorm statistics, no dropout: chunked = Σ (4/8)·g_half, accumulated =
  // (g_1 + g_2)/2. Equal up to float32 rounding of the sums: tolerance 1e-6 × the largest gradient.
  const head = { hidden: 16, ps: [0, 0] as const };
  const chunked = await Replica.create(options({ maxMicroBatch: 4, head }));
  const separate = await Replica.create(options({ maxMicroBatch: 64, head }));
  const { x, y } = batch(8);
  const half = 4 * SIZE * SIZE * 3;
  const a = await chunked.accumulate(x, y, null, 1);
  const b1 = await separate.accumulate(x.subarray(0, half), y.subarray(0, 4), null, 1);
  const b2 = await separate.accumulate(x.subarray(half), y.subarray(4), null, 1);
  assert.equal(a.count, 8);
  assert.ok(Math.abs(a.lossSum - (b1.lossSum + b2.lossSum)) < 1e-4, `${a.lossSum} vs ${b1.lossSum + b2.lossSum}`);
  assert.equal(a.correct, b1.correct + b2.correct);
  assert.equal(separate.pendingMicroBatches, 2);
  const ga = await chunked.takeGradients();
  const gb = await separate.takeGradients();
  assert.ok(maxAbs(ga) > 0, 'gradient must not be all zeros');
  assert.ok(maxAbsDiff(ga, gb) <= 1e-6 * maxAbs(ga), `max diff ${maxAbsDiff(ga, gb)}`);
  assert.equal(separate.pendingMicroBatches, 0);
  assert.equal(maxAbs(await separate.takeGradients()), 0, 'take resets the accumulator');
  assert.equal(await chunked.weightsChecksum(), await separate.weightsChecksum(), 'BN running stats updated once per chunk in both');
  chunked.dispose();
  separate.dispose();
});

test('padded items do not change the loss sums or the gradient', async () => {
  const r1 = await Replica.create(options());
  const r2 = await Replica.create(options());
  const { x, y } = batch(6);
  const valid = Uint8Array.from([1, 1, 0, 1, 1, 0]);
  const y2 = Int32Array.from(y);
  y2[2] = (y2[2]! + 1) % N_CLASSES; // only the padded items' labels differ
  y2[5] = (y2[5]! + 2) % N_CLASSES;
  const s1 = await r1.accumulate(x, y, valid, 5);
  const s2 = await r2.accumulate(x, y2, valid, 5);
  assert.deepEqual(s1, s2);
  assert.equal(s1.count, 4);
  assert.deepEqual(await r1.takeGradients(), await r2.takeGradients()); // bit-identical
  r1.dispose();
  r2.dispose();
});

test('checksums agree for the same seed, differ for another seed and after a step', async () => {
  const a = await Replica.create(options());
  const b = await Replica.create(options());
  const c = await Replica.create(options({ seed: 4 }));
  assert.match(await a.weightsChecksum(), /^[0-9a-f]{64}$/);
  assert.equal(await a.weightsChecksum(), await b.weightsChecksum());
  assert.notEqual(await a.weightsChecksum(), await c.weightsChecksum());
  const { x, y } = batch(4);
  await a.accumulate(x, y, null, 1);
  a.applyGradients(await a.takeGradients(), HYPER);
  assert.notEqual(await a.weightsChecksum(), await b.weightsChecksum());
  await b.accumulate(x, y, null, 1);
  b.applyGradients(await b.takeGradients(), HYPER);
  assert.equal(await a.weightsChecksum(), await b.weightsChecksum(), 'identical steps keep replicas bit-identical');
  [a, b, c].forEach((r) => r.dispose());
});

test('frozen step keeps body convolutions bit-identical and trains BatchNorm and the head', async () => {
  const r = await Replica.create(options());
  const layout = r.gradientLayout().map((l) => l.name);
  assert.ok(layout.includes('bn1.weight') && layout.includes('head.8.weight') && !layout.includes('conv1.weight'));
  const before = new Map([...r.learner.params].map(([k, v]) => [k, Float32Array.from(v.dataSync())]));
  const { x, y } = batch(4);
  await r.accumulate(x, y, null, 2);
  r.applyGradients(await r.takeGradients(), HYPER);
  for (const [name, old] of before) {
    const changed = r.learner.params.get(name)!.dataSync().some((v, i) => v !== old[i]);
    assert.equal(changed, name.startsWith('head.') || isBatchNormParam(name), `${name} changed=${changed}`);
  }
  r.setFrozen(false);
  assert.equal(r.gradientLayout().length, r.learner.params.size);
  assert.equal(r.gradientSize, [...r.learner.params.values()].reduce((a, v) => a + v.size, 0));
  assert.throws(() => r.applyGradients(new Float32Array(3), HYPER), (e) => isTrainerError(e, 'ERR_INTERNAL'));
  r.dispose();
});

async function trainSteps(r: Replica, steps: number, seed: number): Promise<void> {
  for (let s = 0; s < steps; s++) {
    const { x, y } = batch(4, seed + s);
    await r.accumulate(x, y, null, seed * 100 + s);
    r.applyGradients(await r.takeGradients(), HYPER);
  }
}

test('exportState/importState round trip continues bit-identically (weights, BN stats, AdamW, frozen)', async () => {
  const a = await Replica.create(options({ frozen: false }));
  await trainSteps(a, 2, 10);
  const state = await a.exportState();
  const b = await Replica.create(options({ seed: 99, frozen: true }));
  b.importState(state);
  assert.equal(b.frozen, false);
  assert.equal(await b.weightsChecksum(), await a.weightsChecksum());
  assert.equal(b.learner.optimizer.stepCount('conv1.weight'), 2);
  await trainSteps(a, 2, 20);
  await trainSteps(b, 2, 20);
  assert.equal(await b.weightsChecksum(), await a.weightsChecksum(), 'continuation must be bit-identical');
  const bad = { ...state, tensors: state.tensors.filter((t) => t.name !== 'conv1.weight') };
  assert.throws(() => b.importState(bad), (e) => isTrainerError(e, 'ERR_CHECKPOINT') && /conv1\.weight/.test(e.message));
  // As many values in another shape (conv1.weight in torch's [out, in, k, k], not HWIO): it was taken silently.
  const hwio = state.tensors.find((t) => t.name === 'conv1.weight')!.shape;
  const oihw = [hwio[3]!, hwio[2]!, hwio[0]!, hwio[1]!];
  const torchLayout = { ...state, tensors: state.tensors.map((t) => (t.name === 'conv1.weight' ? { ...t, shape: oihw } : t)) };
  assert.throws(() => b.importState(torchLayout), (e) => isTrainerError(e, 'ERR_CHECKPOINT') && e.message === `replica state conv1.weight is [${oihw.join(', ')}], model has [${hwio.join(', ')}]`);
  a.dispose();
  b.dispose();
});

test('evaluate: softmax rows sum to 1, padded items excluded, eval mode leaves weights untouched', async () => {
  const r = await Replica.create(options({ maxMicroBatch: 2 }));
  const { x, y } = batch(5);
  const sum0 = await r.weightsChecksum();
  const all = await r.evaluate(x, y, null);
  const some = await r.evaluate(x, y, Uint8Array.from([1, 0, 1, 1, 0]));
  assert.equal(await r.weightsChecksum(), sum0);
  assert.equal(all.probs.length, 5 * N_CLASSES);
  for (let i = 0; i < 5; i++) {
    const row = all.probs.subarray(i * N_CLASSES, (i + 1) * N_CLASSES).reduce((a, v) => a + v, 0);
    assert.ok(Math.abs(row - 1) < 1e-5, `row ${i} sums to ${row}`);
  }
  assert.equal(some.count, 3);
  // Per-item CE = −ln p_label: the masked sum must equal the sum over the three valid rows (float32, 1e-4).
  const expected = [0, 2, 3].reduce((a, i) => a - Math.log(all.probs[i * N_CLASSES + y[i]!]!), 0);
  assert.ok(Math.abs(some.lossSum - expected) < 1e-4, `${some.lossSum} vs ${expected}`);
  r.dispose();
});

test('tensor count stays flat over many accumulate/apply/evaluate calls', async () => {
  const r = await Replica.create(options({ maxMicroBatch: 3 }));
  const { x, y } = batch(6);
  const once = async (): Promise<void> => {
    await r.accumulate(x, y, null, 1);
    r.applyGradients(await r.takeGradients(), HYPER);
    await r.evaluate(x, y, null);
  };
  await once(); // AdamW creates its moment tensors on the first step
  const n0 = tf.memory().numTensors;
  for (let i = 0; i < 4; i++) await once();
  assert.equal(tf.memory().numTensors, n0);
  r.dispose();
});

test('loads pretrained torchvision weights into the body', async () => {
  const path = new URL('../../../../../shared/fixtures/resnet-tiny/weights.safetensors', import.meta.url).pathname;
  const a = await Replica.create(options({ pretrained: path }));
  const b = await Replica.create(options());
  // conv1 differs from the seeded random init once the fixture's weights are loaded; the head is the same init.
  assert.notDeepEqual(a.learner.params.get('conv1.weight')!.dataSync(), b.learner.params.get('conv1.weight')!.dataSync());
  assert.deepEqual(a.learner.params.get('head.8.weight')!.dataSync(), b.learner.params.get('head.8.weight')!.dataSync());
  a.dispose();
  b.dispose();
});

test('takeStepGradients: on a host backend an array; the mean over more micro-batches than ran scales by ran/over (float32), as a world of any split', async () => {
  // Two replicas, same seed and micro-batch: one takes the plain mean (takeGradients), the other the step's gradient
  // over 3 micro-batches of which 1 ran (two whose items all failed to decode count as zeros): g · 1/3 per value.
  const a = await Replica.create(options());
  const b = await Replica.create(options());
  const { x, y } = batch(4);
  await a.accumulate(x, y, null, 1);
  await b.accumulate(x, y, null, 1);
  const mean = await a.takeGradients();
  const step = await b.takeStepGradients({ reduced: true, over: 3 });
  assert.ok(step instanceof Float32Array, 'a host-memory backend hands the all-reduce an array');
  assert.ok(maxAbs(mean) > 0);
  assert.deepEqual(step, mean.map((g) => Math.fround(g * 1 / 3)));
  // Without `over` (the single-process learner) it is the mean itself; nothing accumulated gives zeros.
  await b.accumulate(x, y, null, 1);
  assert.deepEqual(await b.takeStepGradients({ reduced: false }), mean);
  const none = await b.takeStepGradients({ reduced: true, over: 2 });
  assert.equal(maxAbs(none as Float32Array), 0);
  const tensors = tf.memory().numTensors;
  b.releaseStepGradients(none);
  a.releaseGradients(mean);
  assert.equal(tf.memory().numTensors, tensors);
  a.dispose();
  b.dispose();
});
