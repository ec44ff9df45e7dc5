import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { registerTfjsGradients } from '../../../../src/training/compute/kernels/gradients.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { BN_EPS, createResNet, type BnUpdates, type ResNet } from '../../../../src/training/model/resnet.js';
import { torchStateDictShapes } from '../../../../src/training/model/torch-weights.js';
import { meanCrossEntropy } from '../../../../src/training/model/parity.js';

const SHARED = resolve(process.cwd(), '../shared');
const TINY = { block: 'basic', layers: [1, 1, 1, 1] } as const;
const TINY_BOTTLENECK = { block: 'bottleneck', layers: [1, 1, 1, 1] } as const;

before(async () => {
  await initBackend('cpu');
  await registerTfjsGradients();
});

/** Deterministic pseudo-random floats in [-1, 1) (LCG, Numerical Recipes constants). */
function lcgFloats(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

function withModel(model: ResNet, fn: (m: ResNet) => void): void {
  try {
    fn(model);
  } finally {
    model.dispose();
  }
}

async function withModelAsync(model: ResNet, fn: (m: ResNet) => Promise<void>): Promise<void> {
  try {
    await fn(model);
  } finally {
    model.dispose();
  }
}

test('torch state_dict keys and shapes of resnet34 equal torchvision\'s (fixture), in order', () => {
  const expected = JSON.parse(readFileSync(resolve(SHARED, 'fixtures/resnet34_state_dict_shapes.json'), 'utf8')) as Record<string, number[]>;
  const ours = torchStateDictShapes('resnet34');
  assert.deepEqual([...ours.keys()], Object.keys(expected));
  for (const [k, shape] of ours) assert.deepEqual(shape, expected[k], k);
});

test('resnet18/50 key counts and parameter counts match torchvision', () => {
  // Key counts: convs × 6 (weight + 5 BN entries) + fc 2: resnet18 20 convs → 122, resnet50 53 convs → 320.
  // Parameter counts: torchvision model docs ("num_params"): 11,689,512 / 21,797,672 / 25,557,032.
  const expected = { resnet18: [122, 11_689_512], resnet34: [218, 21_797_672], resnet50: [320, 25_557_032] } as const;
  for (const [arch, [keys, params]] of Object.entries(expected)) {
    const shapes = torchStateDictShapes(arch as keyof typeof expected);
    assert.equal(shapes.size, keys, arch);
    let count = 0;
    for (const [k, s] of shapes) if (!/running_|num_batches/.test(k)) count += s.reduce((a, b) => a * b, 1);
    assert.equal(count, params, arch);
  }
});

test('features and forward shapes (basic and bottleneck), and a body without fc', () => {
  const x = tf.zeros([2, 64, 64, 3]) as tf.Tensor4D;
  withModel(createResNet(TINY, { numClasses: 37 }), (m) => {
    assert.equal(m.featureChannels, 512);
    const f = m.features(x, false);
    const y = m.forward(x, false);
    assert.deepEqual(f.shape, [2, 2, 2, 512]);
    assert.deepEqual(y.shape, [2, 37]);
    tf.dispose([f, y]);
  });
  withModel(createResNet(TINY_BOTTLENECK, { numClasses: 5 }), (m) => {
    assert.equal(m.featureChannels, 2048);
    assert.ok(m.params.has('layer1.0.conv3.weight') && m.params.has('layer1.0.downsample.0.weight'));
    const y = m.forward(x, false);
    assert.deepEqual(y.shape, [2, 5]);
    y.dispose();
  });
  withModel(createResNet('resnet18'), (m) => {
    assert.equal(m.numClasses, null);
    assert.equal(m.params.has('fc.weight'), false);
    assert.throws(() => m.forward(x, false), (err: unknown) => isTrainerError(err, 'ERR_BAD_CONFIG'));
    const f = m.features(tf.zeros([1, 33, 47, 3]), false);
    // torch conv arithmetic: 33 → 17 → 9 → 9 → 5 → 3 → 2; 47 → 24 → 12 → 12 → 6 → 3 → 2.
    assert.deepEqual(f.shape, [1, 2, 2, 512]);
    f.dispose();
  });
  x.dispose();
});

test('input and config validation name the rule', () => {
  withModel(createResNet(TINY, { numClasses: 3 }), (m) => {
    assert.throws(() => m.forward(tf.zeros([1, 8, 8, 1]) as tf.Tensor4D, false),
      (err: unknown) => isTrainerError(err, 'ERR_DATA') && /\[batch, height, width, 3\] float32 \(NHWC\), got \[1,8,8,1\]/.test(err.message));
    assert.throws(() => tf.tidy(() => m.forward(tf.zeros([1, 32, 32, 3]) as tf.Tensor4D, true)),
      (err: unknown) => isTrainerError(err, 'ERR_DATA') && /more than 1 value per channel/.test(err.message));
  });
  assert.throws(() => createResNet({ block: 'basic', layers: [1, 0, 1, 1] }), (err: unknown) => isTrainerError(err, 'ERR_BAD_CONFIG') && /four integers ≥ 1/.test(err.message));
  assert.throws(() => createResNet('resnet99' as never), (err: unknown) => isTrainerError(err, 'ERR_BAD_CONFIG') && /got "resnet99"/.test(err.message));
  assert.throws(() => createResNet(TINY, { numClasses: 0 }), (err: unknown) => isTrainerError(err, 'ERR_BAD_CONFIG'));
  assert.throws(() => createResNet(TINY, { seed: -1 }), (err: unknown) => isTrainerError(err, 'ERR_BAD_CONFIG') && /seed must be an integer in \[0, 2\^32\], got -1/.test(err.message));
});

test('torchvision init: kaiming-normal fan_out convs, BN 1/0, fc U(±1/√in); seeded and deterministic', async () => {
  const a = createResNet(TINY, { numClasses: 37, seed: 0 });
  const b = createResNet(TINY, { numClasses: 37, seed: 0 });
  const c = createResNet(TINY, { numClasses: 37, seed: 8 });
  try {
    const w = (await a.params.get('layer3.0.conv2.weight')!.data()) as Float32Array;
    const sd = Math.sqrt(w.reduce((s, v) => s + v * v, 0) / w.length);
    // fan_out = 256·3·3 → std √(2/2304) = 0.02946; 590k samples → ±1 % is > 10 standard errors.
    assert.ok(Math.abs(sd / Math.sqrt(2 / 2304) - 1) < 0.01, `std ${sd}`);
    // Every drawn tensor is reproducible, including the first (a seed of 0 must not fall back to Math.random).
    for (const k of ['conv1.weight', 'layer3.0.conv2.weight', 'fc.weight', 'fc.bias']) {
      assert.deepEqual(await b.params.get(k)!.data(), await a.params.get(k)!.data(), k);
    }
    assert.notDeepEqual(await c.params.get('layer3.0.conv2.weight')!.data(), w);
    assert.deepEqual(Array.from(await a.params.get('bn1.weight')!.data()), new Array(64).fill(1));
    assert.deepEqual(Array.from(await a.buffers.get('bn1.running_var')!.data()), new Array(64).fill(1));
    const fc = await a.params.get('fc.weight')!.data();
    assert.ok(fc.every((v) => Math.abs(v) <= 1 / Math.sqrt(512)));
    assert.deepEqual(a.params.get('fc.weight')!.shape, [512, 37]);
  } finally {
    [a, b, c].forEach((m) => m.dispose());
  }
});

/** Float64 reference of conv1 (7x7, stride 2, pad 3) + per-channel mean and unbiased variance. */
function referenceStemStats(x: Float32Array, w: Float32Array, batch: number, size: number): { mean: number[]; varUnbiased: number[] } {
  const out = Math.floor((size + 6 - 7) / 2) + 1;
  const sums = new Float64Array(64);
  const sq = new Float64Array(64);
  for (let b = 0; b < batch; b++) for (let oy = 0; oy < out; oy++) for (let ox = 0; ox < out; ox++) {
    const acc = new Float64Array(64);
    for (let ky = 0; ky < 7; ky++) for (let kx = 0; kx < 7; kx++) {
      const iy = oy * 2 - 3 + ky;
      const ix = ox * 2 - 3 + kx;
      if (iy < 0 || ix < 0 || iy >= size || ix >= size) continue;
      for (let c = 0; c < 3; c++) {
        const xv = x[((b * size + iy) * size + ix) * 3 + c];
        for (let o = 0; o < 64; o++) acc[o] += xv * w[((ky * 7 + kx) * 3 + c) * 64 + o];
      }
    }
    for (let o = 0; o < 64; o++) { sums[o] += acc[o]; sq[o] += acc[o] * acc[o]; }
  }
  const n = batch * out * out;
  const mean = Array.from(sums, (s) => s / n);
  return { mean, varUnbiased: Array.from(sq, (s, o) => (s - n * mean[o] * mean[o]) / (n - 1)) };
}

test('training-mode BN collects PyTorch running stats (momentum 0.1, unbiased variance), applied after the step', async () => {
  await withModelAsync(createResNet(TINY, { numClasses: 4, seed: 1 }), async (m) => {
    const xs = lcgFloats(2 * 16 * 16 * 3, 42);
    const x = tf.tensor4d(xs, [2, 16, 16, 3]);
    const updates: BnUpdates = new Map();
    const y = tf.tidy(() => m.forward(x, true, updates));
    // Buffers untouched until applyBnUpdates.
    assert.deepEqual(Array.from(await m.buffers.get('bn1.running_mean')!.data()), new Array(64).fill(0));
    assert.equal(updates.size, 2 * 12);
    const ref = referenceStemStats(xs, (await m.params.get('conv1.weight')!.data()) as Float32Array, 2, 16);
    m.applyBnUpdates(updates);
    assert.equal(updates.size, 0);
    assert.equal(m.numBatchesTracked, 1);
    const rm = await m.buffers.get('bn1.running_mean')!.data();
    const rv = await m.buffers.get('bn1.running_var')!.data();
    // running_mean = 0.9·0 + 0.1·mean; running_var = 0.9·1 + 0.1·var_unbiased; float32 vs float64 → 1e-5 abs.
    for (let o = 0; o < 64; o++) {
      assert.ok(Math.abs(rm[o] - 0.1 * ref.mean[o]) < 1e-5, `mean ${o}: ${rm[o]} vs ${0.1 * ref.mean[o]}`);
      assert.ok(Math.abs(rv[o] - (0.9 + 0.1 * ref.varUnbiased[o])) < 1e-5 * Math.max(1, rv[o]), `var ${o}: ${rv[o]}`);
    }
    tf.dispose([x, y]);
  });
  assert.equal(BN_EPS, 1e-5);
});

test('train steps under tf.variableGrads leak no tensors and move params and running stats', async () => {
  await withModelAsync(createResNet(TINY, { numClasses: 4, seed: 3 }), async (m) => {
    const x = tf.tensor4d(lcgFloats(2 * 16 * 16 * 3, 9), [2, 16, 16, 3]);
    const labels = tf.tensor1d([1, 3], 'int32');
    const vars = [...m.params.values()];
    const before0 = Array.from(await m.params.get('layer2.0.conv1.weight')!.data());
    const step = (): number => {
      const updates: BnUpdates = new Map();
      const { value, grads } = tf.variableGrads(() => meanCrossEntropy(m.forward(x, true, updates), labels), vars);
      tf.tidy(() => { for (const v of vars) v.assign(tf.sub(v, tf.mul(grads[v.name], 0.01))); });
      m.applyBnUpdates(updates);
      const loss = value.dataSync()[0];
      tf.dispose([value, ...Object.values(grads)]);
      return loss;
    };
    step();
    const counted = tf.memory().numTensors;
    step();
    assert.equal(tf.memory().numTensors, counted);
    assert.equal(m.numBatchesTracked, 2);
    assert.notDeepEqual(Array.from(await m.params.get('layer2.0.conv1.weight')!.data()), before0);
    assert.ok((await m.buffers.get('layer4.0.bn2.running_mean')!.data()).some((v) => v !== 0));
    tf.dispose([x, labels]);
  });
});
