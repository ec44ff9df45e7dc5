/**
 * The in-place AdamW update of the `native` backend (`PetsAdamWUpdate`, `compute/native/kernels.ts`): the values of
 * the tfjs-ops AdamW on the `cpu` backend and of PyTorch's formula in float64 over 3 steps, and that formula on a hand
 * case; parameters and moments keep
 * their arrays from step to step; an array someone else can see (read out, a Slice view, a shared tensor) keeps its
 * old values (copy on write); a filter's cached oneDNN-layout copy is refilled after its values change in place.
 * Skipped, saying why, where the addon is not built.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { loadAddon } from '../../../../src/training/compute/native/addon.js';
import { NATIVE_BACKEND, registerNativeBackend, type NativeBackend } from '../../../../src/training/compute/native/backend.js';
import { ADAMW_KERNEL, type AdamWAttrs } from '../../../../src/training/compute/webgpu/adamw-kernel.js';
import { AdamW } from '../../../../src/training/learner/adamw.js';
import { lcg } from './numeric.js';

const load = loadAddon();
const skip = 'addon' in load ? false : `native backend unavailable: ${load.reason}`;

before(async () => {
  if (skip !== false) return;
  assert.ok('info' in registerNativeBackend());
  await tf.setBackend(NATIVE_BACKEND);
});

function storage(t: tf.Tensor): Float32Array {
  return (tf.backend() as NativeBackend).data.get(t.dataId).values as Float32Array;
}

/** A tensor whose storage is a pool array only it holds (a native kernel's output), as parameters are in training. */
function owned(values: Float32Array, shape: number[]): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.tensor(values, shape), tf.scalar(1)));
}

/** A variable over such an array, and the only tensor on it. */
function ownedVariable(values: Float32Array, shape: number[]): tf.Variable {
  return tf.tidy(() => tf.variable(owned(values, shape)));
}

const BETA2 = 0.99;
const EPS = 1e-8;
const WD = 0.01;

/** Step t (1-based) with changing lr and momentum: what AdamW is given, and the kernel's attributes it derives. */
function hyper(t: number): { lr: number; beta1: number; attrs: AdamWAttrs } {
  const beta1 = 0.95 - 0.03 * t;
  const lr = 1e-3 * t;
  return { lr, beta1, attrs: { beta1, beta2: BETA2, sqrtBc2: Math.sqrt(1 - BETA2 ** t), eps: EPS, decay: 1 - lr * WD,
    stepSize: lr / (1 - beta1 ** t) } };
}

/** Fails unless |got − want| ≤ rel·|want| + abs at every element. */
function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, rel: number, abs: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    assert.ok(d <= rel * Math.abs(want[i]!) + abs, `${what}[${i}]: got ${got[i]}, expected ${want[i]} (|d| ${d})`);
  }
}

test('in-place AdamW: the tfjs-ops AdamW on cpu and PyTorch\'s formula in float64, 3 steps, gradient read from a flat one', { skip }, async () => {
  // 37: two 16-wide vector iterations and a scalar tail; 1200 and 5: others; the gradients sit in one flat tensor.
  const sizes = [37, 1200, 5];
  const total = sizes.reduce((a, b) => a + b, 0);
  const p0 = sizes.map((n, i) => lcg(n, 10 + i));
  const grads = [1, 2, 3].map((t) => lcg(total, 30 + t));
  const offsets = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));

  // Reference 1: learner/adamw.ts on tfjs's cpu backend, which has no AdamW kernel, so it runs the tfjs ops.
  await tf.setBackend('cpu');
  const names = sizes.map((_, i) => `w${i}`);
  const cpuParams = new Map(names.map((name, i) => [name, tf.variable(tf.tensor1d(p0[i]!))] as const));
  const cpuOpt = new AdamW(cpuParams, [names], { beta2: BETA2, eps: EPS, weightDecay: WD });
  for (let t = 1; t <= 3; t++) {
    const { lr, beta1 } = hyper(t);
    const g = new Map(names.map((name, i) => [name, tf.tensor1d(grads[t - 1]!.subarray(offsets[i]!, offsets[i]! + sizes[i]!))] as const));
    cpuOpt.step(g, { lrs: [lr], momentum: beta1 });
    tf.dispose([...g.values()]);
  }
  const state = await cpuOpt.exportState();
  const tfjsRef = names.map((name, i) => ({ p: cpuParams.get(name)!.dataSync() as Float32Array,
    m: state.params[i]!.expAvg, v: state.params[i]!.expAvgSq }));
  assert.deepEqual(state.params.map((e) => e.step), [3, 3, 3]);
  cpuOpt.dispose();
  tf.dispose([...cpuParams.values()]);
  await tf.setBackend(NATIVE_BACKEND);

  // Reference 2: PyTorch's AdamW (fastai true_wd) written out in float64.
  const torchRef = sizes.map((n, i) => {
    const p = Float64Array.from(p0[i]!);
    const m = new Float64Array(n);
    const v = new Float64Array(n);
    for (let t = 1; t <= 3; t++) {
      const { lr, beta1 } = hyper(t);
      const bc1 = 1 - beta1 ** t;
      const bc2 = 1 - BETA2 ** t;
      for (let j = 0; j < n; j++) {
        const g = grads[t - 1]![offsets[i]! + j]!;
        m[j] = beta1 * m[j]! + (1 - beta1) * g;
        v[j] = BETA2 * v[j]! + (1 - BETA2) * g * g;
        p[j] = p[j]! * (1 - lr * WD) - (lr / bc1) * m[j]! / (Math.sqrt(v[j]!) / Math.sqrt(bc2) + EPS);
      }
    }
    return { p, m, v };
  });

  const tensors = tf.memory().numTensors;
  const inPlace = sizes.map((n, i) => ({ p: owned(p0[i]!, [n]), m: owned(new Float32Array(n), [n]), v: owned(new Float32Array(n), [n]) }));
  const arrays = inPlace.map((s) => [storage(s.p), storage(s.m), storage(s.v)]);
  for (let t = 1; t <= 3; t++) {
    const flat = tf.tensor1d(grads[t - 1]!);
    inPlace.forEach((s, i) => {
      tf.engine().runKernel(ADAMW_KERNEL, { p: s.p, g: flat, m: s.m, v: s.v },
        { ...hyper(t).attrs, gOffset: offsets[i]! } satisfies AdamWAttrs as unknown as tf.NamedAttrMap);
    });
    flat.dispose();
  }
  inPlace.forEach((s, i) => {
    assert.deepEqual([storage(s.p), storage(s.m), storage(s.v)], arrays[i], `tensor ${i}: p, m, v keep their arrays`);
    for (const k of ['p', 'm', 'v'] as const) {
      const got = Float32Array.from(storage(s[k]));
      // The same float32 operations in the same order as the tfjs ops: a few ulp at most (in practice equal).
      assertClose(got, tfjsRef[i]![k], 4 * 2 ** -24, 0, `tensor ${i} ${k} vs tfjs cpu`);
      // float32 against float64, errors of a few roundings at the operands' scale: v (a sum of squares) relative;
      // m (a sum of gradients |g| ≤ 0.5 that may cancel) and p (~0.5, moved ~1e-3 per step) absolute.
      const [rel, abs] = { p: [0, 1e-6], m: [0, 3e-8], v: [1e-6, 0] }[k];
      assertClose(got, torchRef[i]![k], rel!, abs!, `tensor ${i} ${k} vs PyTorch formula`);
    }
    assert.notDeepEqual(Float32Array.from(storage(s.p)), p0[i], `tensor ${i} changed`);
  });
  tf.dispose(inPlace.flatMap((s) => [s.p, s.m, s.v]));
  assert.equal(tf.memory().numTensors, tensors, 'no tensor left');
});

test('native AdamW (in place) follows PyTorch\'s AdamW formula on a hand case, two steps', { skip }, () => {
  // fastai true_wd: p ← p·(1 − lr·wd), then Adam (PyTorch): m ← β1·m + (1 − β1)·g, v ← β2·v + (1 − β2)·g²,
  // p ← p − lr/(1 − β1^t) · m / (√v/√(1 − β2^t) + eps). lr 0.1, wd 0.01, β1 0.9, β2 0.99, eps 1e-8, p 1, g 0.5:
  // step 1: p = 0.999 − 1·0.05/(0.05/0.1 + 1e-8) = 0.899000002; m = 0.05, v = 0.0025.
  // step 2 (g −0.25): p = 0.899000002·0.999 = 0.898100998; m = 0.045 − 0.025 = 0.02; v = 0.002475 + 0.000625 =
  // 0.0031; bc1 = 0.19, bc2 = 0.0199; p = 0.898100998 − (0.1/0.19)·0.02/(√0.0031/√0.0199 + 1e-8) ≈ 0.87476067.
  const tensors = tf.memory().numTensors;
  const p = ownedVariable(Float32Array.of(1), [1]);
  const params = new Map([['w', p]]);
  const opt = new AdamW(params, [['w']], { weightDecay: 0.01 });
  const expected = [0.999 - 0.05 / (0.05 / 0.1 + 1e-8)];
  const p1 = expected[0]! * 0.999;
  expected.push(p1 - (0.1 / 0.19) * 0.02 / (Math.sqrt(0.0031) / Math.sqrt(0.0199) + 1e-8));
  const arrays: Float32Array[] = [];
  [0.5, -0.25].forEach((gv, k) => {
    const g = tf.tensor1d([gv]);
    opt.step(new Map([['w', g]]), { lrs: [0.1], momentum: 0.9 });
    g.dispose();
    arrays.push(storage(p));
    const got = Float32Array.from(storage(p))[0]!; // a copy: reading p out would stop the in-place updates
    assert.ok(Math.abs(got - expected[k]!) <= 2e-7, `step ${k + 1}: expected ${expected[k]}, got ${got}`);
  });
  assert.equal(arrays[0], arrays[1], 'the second step wrote into the first step\'s array');
  opt.dispose();
  p.dispose();
  assert.equal(tf.memory().numTensors, tensors, 'no tensor left');
});

test('in-place AdamW copies first when another holder can see the array: read out, a Slice view, a shared tensor', { skip }, () => {
  const tensors = tf.memory().numTensors;
  const n = 40;
  const read = ownedVariable(lcg(n, 1), [n]);
  const readOut = read.dataSync() as Float32Array; // on this backend: the storage array itself
  const readBefore = Float32Array.from(readOut);
  const viewed = ownedVariable(lcg(n, 2), [n]);
  const view = tf.slice(viewed, 8, 16); // tfjs cpu's Slice: a subarray view of viewed's array
  const viewBefore = Float32Array.from(storage(view));
  const source = owned(lcg(n, 3), [n]);
  const shared = tf.variable(source); // shares source's storage while source lives
  assert.deepEqual([read, viewed, shared].map((t) => (tf.backend() as NativeBackend).refCount(t.dataId)), [1, 1, 2]);
  const sourceBefore = Float32Array.from(storage(source));
  const params = new Map([['read', read], ['viewed', viewed], ['shared', shared]]);
  const opt = new AdamW(params, [['read', 'viewed', 'shared']]);
  const grads = new Map([...params.keys()].map((name, i) => [name, tf.tensor1d(lcg(n, 20 + i))] as const));
  opt.step(grads, { lrs: [0.01], momentum: 0.9 });
  assert.deepEqual(readOut, readBefore, 'a read-out array keeps its values');
  assert.deepEqual(storage(view), viewBefore, 'a Slice view keeps its values');
  assert.deepEqual(storage(source), sourceBefore, 'a tensor that shared the variable\'s storage keeps its values');
  [...params.values()].forEach((p, i) => assert.notDeepEqual(storage(p), lcg(n, i + 1), `parameter ${i} updated`));
  assert.notEqual(storage(read), readOut, 'read was copied, then updated');
  // After the copy the variables own their arrays: the next step writes in place.
  const after = [...params.values()].map(storage);
  opt.step(grads, { lrs: [0.01], momentum: 0.9 });
  assert.deepEqual([...params.values()].map(storage), after, 'second step in place');
  tf.dispose([...grads.values(), view, source, read, viewed, shared]);
  opt.dispose();
  assert.equal(tf.memory().numTensors, tensors, 'no tensor left');
});

test('in-place AdamW kernel refuses operands it cannot write in place, with named errors', { skip }, () => {
  const p = owned(lcg(8, 1), [8]);
  const alias = tf.reshape(p, [2, 4]); // a second tensor on p's storage
  const m = owned(new Float32Array(8), [8]);
  const v = owned(new Float32Array(8), [8]);
  const g = tf.tensor1d(lcg(8, 2));
  const attrs = { ...hyper(1).attrs, gOffset: 0 } as unknown as tf.NamedAttrMap;
  const expectError = (fn: () => unknown, pattern: RegExp): void => {
    assert.throws(fn, (e: unknown) => isTrainerError(e) && e.code === 'ERR_INTERNAL' && pattern.test(e.message));
  };
  expectError(() => tf.engine().runKernel(ADAMW_KERNEL, { p, g, m, v }, attrs), /p shares its storage/);
  alias.dispose();
  expectError(() => tf.engine().runKernel(ADAMW_KERNEL, { p, g, m, v }, { ...attrs, gOffset: 1 }), /gOffset/);
  expectError(() => tf.engine().runKernel(ADAMW_KERNEL, { p, g, m: p, v }, attrs), /four distinct/);
  expectError(() => tf.engine().runKernel(ADAMW_KERNEL, { p, g, m: tf.zeros([7]), v }, attrs), /m has shape \[7\]/);
  const before = Float32Array.from(storage(p));
  assert.deepEqual(storage(p), before, 'nothing written by a refused call');
  tf.engine().runKernel(ADAMW_KERNEL, { p, g, m, v }, attrs);
  assert.notDeepEqual(storage(p), before);
  tf.dispose([p, m, v, g]);
});

test('a filter updated in place is convolved with its new values (the cached oneDNN-layout copy is refilled)', { skip }, async () => {
  const tensors = tf.memory().numTensors;
  // 3×3, 64 → 64 channels: oneDNN reorders this filter for the forward and the input gradient (cached per array).
  const x = tf.tensor4d(lcg(2 * 8 * 8 * 64, 1), [2, 8, 8, 64]);
  const w = ownedVariable(lcg(3 * 3 * 64 * 64, 2), [3, 3, 64, 64]);
  const params = new Map([['w', w]]);
  const opt = new AdamW(params, [['w']]);
  const g = tf.tensor4d(lcg(3 * 3 * 64 * 64, 3), [3, 3, 64, 64]);
  const dy = tf.tensor4d(lcg(2 * 8 * 8 * 64, 4), [2, 8, 8, 64]);
  const convs = (): tf.Tensor[] => [tf.conv2d(x, w as tf.Tensor4D, 1, 1),
    tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w },
      { strides: 1, pad: 1, dataFormat: 'NHWC', inputShape: [2, 8, 8, 64] } as unknown as tf.NamedAttrMap) as tf.Tensor];
  tf.dispose(convs()); // fills the cached copies
  const array = storage(w);
  opt.step(new Map([['w', g]]), { lrs: [0.1], momentum: 0.9 });
  assert.equal(storage(w), array, 'updated in place (else this test checks nothing)');
  const native = convs();
  const got = native.map((t) => Float32Array.from(storage(t)));
  const wNow = Float32Array.from(array);
  tf.dispose(native);
  await tf.setBackend('cpu');
  const ref = tf.tidy(() => {
    const [xc, wc, dyc] = [tf.tensor4d(lcg(2 * 8 * 8 * 64, 1), [2, 8, 8, 64]), tf.tensor4d(wNow, [3, 3, 64, 64]),
      tf.tensor4d(lcg(2 * 8 * 8 * 64, 4), [2, 8, 8, 64])];
    return [tf.conv2d(xc, wc, 1, 1), tf.conv2dTranspose(dyc, wc, [2, 8, 8, 64], 1, 1)].map((t) => t.dataSync() as Float32Array);
  });
  await tf.setBackend(NATIVE_BACKEND);
  ref.forEach((r, i) => {
    let err = 0;
    let scale = 0;
    r.forEach((value, j) => {
      err = Math.max(err, Math.abs(value - got[i]![j]!));
      scale = Math.max(scale, Math.abs(value));
    });
    assert.ok(err / scale <= 1e-5, `${['forward', 'input gradient'][i]}: relative error ${err / scale} (a stale filter copy gives ~1e-1)`);
  });
  tf.dispose([x, w, g, dy]);
  opt.dispose();
  assert.equal(tf.memory().numTensors, tensors, 'no tensor left');
});
