// BatchNorm running statistics of a distributed step (issue #15): each micro-batch's increments, measured from zero
// on whichever rank ran it and applied in micro-batch order, must give what one process gets by running the
// micro-batches one after another (PyTorch: running ← 0.9·running + 0.1·batch after every training forward).
// Expected values: a second replica that does exactly that (same seed, same batches). Tolerance: 0 (bit for bit)
// with one BatchNorm batch per micro-batch; with micro-batches cut into 2 memory chunks the documented grouping
// (0.9·0.9·R + Δ instead of 0.9·(0.9·R + Δ₀) + Δ₁) differs by float32 rounding: 1e-6 relative.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../src/training/compute/backend.js';
import { registerTfjsGradients } from '../../../src/training/compute/kernels/gradients.js';
import { mulberry32 } from '../../../src/contract/plan/rng.js';
import { Replica, type ReplicaOptions } from '../../../src/training/learner/replica.js';
import { microBatchOf } from '../../../src/contract/plan/plan.js';
import { applyBnIncrements, bnVariables, measureBnIncrements } from '../../../src/worker/trainer.js';

before(async () => {
  await initBackend('auto');
  await registerTfjsGradients();
});

const SIZE = 32, CLASSES = 3, BS = 4, M = 4;

function options(extra: Partial<ReplicaOptions> = {}): ReplicaOptions {
  return { arch: { block: 'basic', layers: [1, 1, 1, 1] }, numClasses: CLASSES, seed: 5, pretrained: null, frozen: true, head: { hidden: 8 }, ...extra };
}

function batch(m: number): { x: Float32Array; y: Int32Array } {
  const rng = mulberry32(100 + m);
  return {
    x: Float32Array.from({ length: BS * SIZE * SIZE * 3 }, () => rng() * 2 - 1),
    y: Int32Array.from({ length: BS }, (_, i) => (i + m) % CLASSES),
  };
}

function stats(r: Replica): Float32Array[] {
  return bnVariables(r).map((v) => Float32Array.from(v.dataSync() as Float32Array));
}

/** One process: the M micro-batches in order, BN updated by every forward. */
async function sequential(r: Replica): Promise<void> {
  for (let m = 0; m < M; m++) {
    const b = batch(m);
    await r.accumulate(b.x, b.y, null, m);
  }
  await r.takeGradients();
}

/** W ranks' worth of micro-batches measured on one replica (in rank order, as ranks would), gathered, applied. */
async function gathered(r: Replica, worldSize: number): Promise<void> {
  const vars = bnVariables(r);
  const statSize = vars.reduce((s, v) => s + v.size, 0);
  const start = vars.map((v) => tf.clone(v));
  const tracked = { body: r.learner.body.numBatchesTracked, head: r.learner.head.numBatchesTracked };
  const buf = new Float32Array(M * (1 + statSize));
  for (let rank = 0; rank < worldSize; rank++) {
    for (let a = 0; a < M / worldSize; a++) {
      const m = microBatchOf(rank, a, worldSize);
      const b = batch(m);
      await measureBnIncrements(r, vars, buf.subarray(m * (1 + statSize), (m + 1) * (1 + statSize)), () => r.accumulate(b.x, b.y, null, m));
    }
  }
  await r.takeGradients();
  vars.forEach((v, i) => v.assign(start[i]!));
  tf.dispose(start);
  r.learner.body.numBatchesTracked = tracked.body;
  r.learner.head.numBatchesTracked = tracked.head;
  applyBnIncrements(r, vars, buf, M);
}

test('gathered per-micro-batch increments applied in micro-batch order = one process running them in order, bit for bit, for any W', async () => {
  const one = await Replica.create(options());
  await sequential(one);
  await sequential(one); // a second step starts from non-trivial statistics
  const want = stats(one);
  assert.ok(want.some((s) => s.some((x) => x !== 0 && x !== 1)), 'the statistics moved');
  for (const W of [1, 2, 4]) {
    const r = await Replica.create(options());
    const n0 = tf.memory().numTensors;
    await gathered(r, W);
    await gathered(r, W);
    assert.equal(tf.memory().numTensors, n0, `W=${W}: no tensor leaked`);
    const got = stats(r);
    got.forEach((g, i) => assert.deepEqual(g, want[i], `W=${W}: BN variable ${i}`));
    assert.equal(r.learner.body.numBatchesTracked, one.learner.body.numBatchesTracked);
    assert.equal(r.learner.head.numBatchesTracked, 2 * M);
    r.dispose();
  }
  one.dispose();
});

test('micro-batches cut into memory chunks count each chunk as a BatchNorm batch; statistics agree to float32 rounding', async () => {
  const one = await Replica.create(options({ maxMicroBatch: 2 }));
  await sequential(one);
  const r = await Replica.create(options({ maxMicroBatch: 2 }));
  await gathered(r, 2);
  assert.equal(r.learner.body.numBatchesTracked, 2 * M, '2 chunks per micro-batch');
  assert.equal(one.learner.body.numBatchesTracked, 2 * M);
  const want = stats(one), got = stats(r);
  want.forEach((w, i) => {
    const scale = w.reduce((m, x) => Math.max(m, Math.abs(x)), 1e-12);
    const diff = w.reduce((m, x, k) => Math.max(m, Math.abs(x - got[i]![k]!)), 0);
    assert.ok(diff <= 1e-6 * scale, `BN variable ${i}: ${diff} vs scale ${scale}`);
  });
  one.dispose();
  r.dispose();
});
