import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { mulberry32 } from '../../../../src/contract/plan/rng.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { createHead, dropoutMask, type Head } from '../../../../src/training/learner/head.js';
import type { BnUpdates } from '../../../../src/training/model/resnet.js';

before(async () => {
  await initBackend('auto'); // WASM here; cpu if WASM cannot start
});

type Mat = number[][];
const B = 3;
const H = 2;
const W = 2;
const C = 2;
const HID = 3;
const NC = 2;

/** Deterministic, asymmetric test values (so max ≠ mean and a swapped order would show). */
const seq = (n: number, a: number, b: number): number[] => Array.from({ length: n }, (_, i) => Math.sin(a * i + b) * 1.5);
const FEATURES = seq(B * H * W * C, 0.7, 0.3); // NHWC
const PARAMS: Record<string, number[]> = {
  'head.2.weight': seq(2 * C, 1.1, 0.2).map((v) => 1 + v / 3), 'head.2.bias': seq(2 * C, 0.9, 1),
  'head.4.weight': seq(2 * C * HID, 0.37, 2), 'head.4.bias': seq(HID, 2.1, 0.5),
  'head.6.weight': seq(HID, 1.3, 0.4).map((v) => 1 + v / 3), 'head.6.bias': seq(HID, 0.5, 3),
  'head.8.weight': seq(HID * NC, 0.61, 1.7), 'head.8.bias': seq(NC, 1.9, 0.1),
};
const BUFFERS: Record<string, number[]> = {
  'head.2.running_mean': seq(2 * C, 0.3, 0.1), 'head.2.running_var': seq(2 * C, 0.8, 0).map((v) => 1 + v * v),
  'head.6.running_mean': seq(HID, 0.4, 0.9), 'head.6.running_var': seq(HID, 1.7, 0.2).map((v) => 0.5 + v * v),
};

function makeHead(ps: [number, number] = [0.25, 0.5]): Head {
  const head = createHead(C, NC, { hidden: HID, ps });
  for (const [k, v] of Object.entries(PARAMS)) head.params.get(k)!.assign(tf.tensor(v, head.params.get(k)!.shape));
  for (const [k, v] of Object.entries(BUFFERS)) head.buffers.get(k)!.assign(tf.tensor(v, head.buffers.get(k)!.shape));
  return head;
}

// ---- float64 reference, written from the PyTorch/fastai definitions (module doc of head.ts) ----
function concatPool(): Mat {
  return Array.from({ length: B }, (_, b) => {
    const vals = (c: number) => Array.from({ length: H * W }, (_, s) => FEATURES[(b * H * W + s) * C + c]!);
    const mx = Array.from({ length: C }, (_, c) => Math.max(...vals(c)));
    const av = Array.from({ length: C }, (_, c) => vals(c).reduce((s, v) => s + v, 0) / (H * W));
    return [...mx, ...av]; // torch.cat([mp(x), ap(x)], 1): max first
  });
}
function linear(x: Mat, w: number[], bias: number[], out: number): Mat {
  return x.map((row) => Array.from({ length: out }, (_, o) => bias[o]! + row.reduce((s, v, i) => s + v * w[i * out + o]!, 0)));
}
function bnRef(x: Mat, idx: number, training: boolean, upd?: Map<string, number[]>): Mat {
  const n = x.length;
  const cols = x[0]!.length;
  const col = (j: number) => x.map((r) => r[j]!);
  const mean = Array.from({ length: cols }, (_, j) => col(j).reduce((s, v) => s + v, 0) / n);
  const biased = Array.from({ length: cols }, (_, j) => col(j).reduce((s, v) => s + (v - mean[j]!) ** 2, 0) / n);
  const rm = BUFFERS[`head.${idx}.running_mean`]!;
  const rv = BUFFERS[`head.${idx}.running_var`]!;
  if (training && upd) {
    upd.set(`head.${idx}.running_mean`, rm.map((r, j) => 0.9 * r + 0.1 * mean[j]!));
    upd.set(`head.${idx}.running_var`, rv.map((r, j) => 0.9 * r + 0.1 * biased[j]! * n / (n - 1)));
  }
  const [m, v] = training ? [mean, biased] : [rm, rv];
  const g = PARAMS[`head.${idx}.weight`]!;
  const be = PARAMS[`head.${idx}.bias`]!;
  return x.map((r) => r.map((val, j) => (val - m[j]!) / Math.sqrt(v[j]! + 1e-5) * g[j]! + be[j]!));
}
function applyMask(x: Mat, p: number, rng?: () => number): Mat {
  if (!rng) return x;
  return x.map((r) => r.map((v) => (rng() < p ? 0 : v / (1 - p))));
}
function headRef(training: boolean, seed?: number, upd?: Map<string, number[]>): Mat {
  const rng = training && seed !== undefined ? mulberry32(seed) : undefined;
  let h = bnRef(concatPool(), 2, training, upd);
  h = applyMask(h, 0.25, rng);
  h = linear(h, PARAMS['head.4.weight']!, PARAMS['head.4.bias']!, HID).map((r) => r.map((v) => Math.max(0, v)));
  h = bnRef(h, 6, training, upd);
  h = applyMask(h, 0.5, rng);
  return linear(h, PARAMS['head.8.weight']!, PARAMS['head.8.bias']!, NC);
}

/** float32 vs float64 through ~6 layers of O(1) values: absolute 1e-4 (well above float32 noise, below any bug). */
function assertNear(got: ArrayLike<number>, want: number[], what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i += 1) {
    assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-4, `${what}[${i}]: expected ${want[i]}, got ${got[i]}`);
  }
}

const input = () => tf.tensor4d(FEATURES, [B, H, W, C]);

test('names and shapes follow fastai create_head indices; Linear weights [in, out]', () => {
  const head = createHead(512, 37);
  const shapes = Object.fromEntries([...head.params].map(([k, v]) => [k, v.shape]));
  assert.deepEqual(shapes, {
    'head.2.weight': [1024], 'head.2.bias': [1024], 'head.4.weight': [1024, 512], 'head.4.bias': [512],
    'head.6.weight': [512], 'head.6.bias': [512], 'head.8.weight': [512, 37], 'head.8.bias': [37],
  });
  assert.deepEqual([...head.buffers.keys()], ['head.2.running_mean', 'head.2.running_var', 'head.6.running_mean', 'head.6.running_var']);
  head.dispose();
});

test('init: kaiming-normal fan_in weights (std √(2/fan_in)), zero biases, BN 1/0, running 0/1', () => {
  const head = createHead(256, 37, { seed: 7 });
  // head.4.weight: 512×512 draws of N(0, 2/512): sample std within 1% (its own sd is 0.14%), mean within 5σ/√N.
  const w = Float32Array.from(head.params.get('head.4.weight')!.dataSync());
  const mean = w.reduce((s, v) => s + v, 0) / w.length;
  const std = Math.sqrt(w.reduce((s, v) => s + (v - mean) ** 2, 0) / w.length);
  assert.ok(Math.abs(std / Math.sqrt(2 / 512) - 1) < 0.01, `std ${std}`);
  assert.ok(Math.abs(mean) < 5 * Math.sqrt(2 / 512) / Math.sqrt(w.length), `mean ${mean}`);
  const w8 = Float32Array.from(head.params.get('head.8.weight')!.dataSync());
  const std8 = Math.sqrt(w8.reduce((s, v) => s + v * v, 0) / w8.length);
  assert.ok(Math.abs(std8 / Math.sqrt(2 / 512) - 1) < 0.05, `head.8 std ${std8}`);
  for (const k of ['head.4.bias', 'head.8.bias', 'head.2.bias', 'head.6.running_mean']) {
    const values = k.includes('running') ? head.buffers.get(k)!.dataSync() : head.params.get(k)!.dataSync();
    assert.ok(values.every((v) => v === 0), k);
  }
  assert.ok(head.params.get('head.6.weight')!.dataSync().every((v) => v === 1));
  assert.ok(head.buffers.get('head.2.running_var')!.dataSync().every((v) => v === 1));
  const again = createHead(256, 37, { seed: 7 });
  assert.deepEqual(Float32Array.from(again.params.get('head.4.weight')!.dataSync()), w, 'same seed, same weights');
  head.dispose();
  again.dispose();
});

test('eval forward equals the float64 reference (max-then-avg pool, running-stat BN, no dropout)', () => {
  const head = makeHead();
  const x = input();
  const y = head.forward(x, false);
  assert.deepEqual(y.shape, [B, NC]);
  assertNear(y.dataSync(), headRef(false).flat(), 'eval logits');
  tf.dispose([x, y]);
  head.dispose();
});

test('training forward equals the reference with batch-stat BN, seeded dropout and unbiased running var', () => {
  const head = makeHead();
  const x = input();
  const updates: BnUpdates = new Map();
  const y = head.forward(x, true, { rng: mulberry32(42), bnUpdates: updates });
  const want = new Map<string, number[]>();
  assertNear(y.dataSync(), headRef(true, 42, want).flat(), 'train logits');
  assert.deepEqual([...updates.keys()].sort(), [...want.keys()].sort());
  for (const [k, v] of want) assertNear(updates.get(k)!.dataSync(), v, k);
  // Same seed → identical logits; another seed → different masks, different logits.
  const again = head.forward(x, true, { rng: mulberry32(42) });
  const other = head.forward(x, true, { rng: mulberry32(43) });
  assert.deepEqual(again.dataSync(), y.dataSync());
  assert.notDeepEqual(other.dataSync(), y.dataSync());
  // applyBnUpdates takes only the head's entries and leaves the body's for the model.
  const bodyEntry = tf.tensor1d([1, 2]);
  updates.set('layer1.0.bn1.running_mean', bodyEntry);
  head.applyBnUpdates(updates);
  assert.deepEqual([...updates.keys()], ['layer1.0.bn1.running_mean']);
  assertNear(head.buffers.get('head.6.running_var')!.dataSync(), want.get('head.6.running_var')!, 'assigned');
  assert.equal(head.numBatchesTracked, 1);
  tf.dispose([x, y, again, other, bodyEntry]);
  head.dispose();
});

test('dropoutMask: fraction p zeroed, survivors scaled by 1/(1 − p)', () => {
  const m = dropoutMask(100, 100, 0.25, mulberry32(1));
  const v = m.dataSync();
  const zeros = v.filter((x) => x === 0).length / v.length;
  // Binomial(10000, 0.25): sd 0.0043; 5 sd tolerance.
  assert.ok(Math.abs(zeros - 0.25) < 0.022, `zero fraction ${zeros}`);
  assert.ok(v.every((x) => x === 0 || Math.abs(x - 4 / 3) < 1e-6));
  m.dispose();
});

test('errors: wrong input, batch of 1 in training, training without rng', () => {
  const head = makeHead();
  const one = tf.zeros([1, 2, 2, C]) as tf.Tensor4D;
  const wrong = tf.zeros([2, 2, 2, C + 1]) as tf.Tensor4D;
  assert.throws(() => head.forward(wrong, false), (e: unknown) => isTrainerError(e, 'ERR_DATA') && /\[batch, height, width, 2\]/.test(e.message));
  assert.throws(() => head.forward(one, true, { rng: mulberry32(1) }), (e: unknown) => isTrainerError(e, 'ERR_DATA'));
  const x = input();
  assert.throws(() => head.forward(x, true), (e: unknown) => isTrainerError(e, 'ERR_INTERNAL') && /rng/.test(e.message));
  assert.throws(() => createHead(0, 3), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && /inChannels must be an integer ≥ 1, got 0/.test(e.message));
  assert.throws(() => createHead(2, 3, { ps: [0.25, 1] }), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && /ps\[1\]/.test(e.message));
  tf.dispose([one, wrong, x]);
  head.dispose();
});

test('tensor count stays flat over training steps with BN updates applied', () => {
  const head = makeHead();
  const x = input();
  const step = (i: number) => {
    const updates: BnUpdates = new Map();
    head.forward(x, true, { rng: mulberry32(i), bnUpdates: updates }).dispose();
    head.applyBnUpdates(updates);
    head.forward(x, false).dispose();
  };
  step(0);
  const before = tf.memory().numTensors;
  for (let i = 1; i < 6; i += 1) step(i);
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
  head.dispose();
});
