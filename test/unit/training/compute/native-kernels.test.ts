/**
 * The oneDNN kernels of the `native` backend against tfjs's reference `cpu` backend (plain JavaScript loops).
 *
 * Metric everywhere: relative error = max|native − cpu| / max|cpu| over all elements (float32 on both sides), as
 * for the WASM kernels. Skipped, saying why, where the addon is not built (no libdnnl-dev at install).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { batchNormTrain, updateRunningStat } from '../../../../src/training/compute/batch-norm.js';
import { BN_RUNNING_UPDATE_KERNEL } from '../../../../src/training/compute/kernels/batch-norm.js';
import { registerTfjsGradients } from '../../../../src/training/compute/kernels/gradients.js';
import { loadAddon, type ConvGeometry } from '../../../../src/training/compute/native/addon.js';
import { NATIVE_BACKEND, registerNativeBackend, type NativeBackend } from '../../../../src/training/compute/native/backend.js';
import { nativeFallbacks } from '../../../../src/training/compute/native/kernels.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { AdamW } from '../../../../src/training/learner/adamw.js';
import { tinyBlockGradients, type TinyBlockParams } from './kernels/tiny-resnet-block.js';
import { lcg, on, relError, type Pad } from './numeric.js';

const load = loadAddon();
const skip = 'addon' in load ? false : `native backend unavailable: ${load.reason}`;

function fallbackTotal(): number {
  return [...nativeFallbacks().values()].reduce((a, b) => a + b, 0);
}

/**
 * Compares `fn` on native and cpu; unless `fallbackExpected`, also checks that no native kernel handed the call
 * to the cpu kernels (else the comparison would be cpu against cpu).
 */
async function compare(fn: () => tf.Tensor[], names: readonly string[], tolerance: number,
  fallbackExpected = false): Promise<void> {
  const before = fallbackTotal();
  const native = await on(NATIVE_BACKEND, fn);
  if (!fallbackExpected) assert.equal(fallbackTotal(), before, `calls that fell back to cpu: ${JSON.stringify([...nativeFallbacks()])}`);
  const cpu = await on('cpu', fn);
  assert.equal(native.length, cpu.length);
  for (let i = 0; i < cpu.length; i++) {
    const err = relError(native[i]!, cpu[i]!);
    assert.ok(err <= tolerance, `${names[i] ?? `output ${i}`}: relative error ${err.toExponential(2)} > ${tolerance}`);
  }
}

interface ConvCase {
  readonly name: string;
  readonly x: [number, number, number, number];
  readonly k: number;
  readonly co: number;
  readonly stride: number;
  readonly pad: Pad;
  readonly rounding?: 'floor' | 'ceil' | 'round';
  readonly dilation?: number;
}

// Every convolution form of ResNet18/34/50 (stem 7x7/2 p3, 3x3/1 and /2 p1, 1x1/1 and /2), the padding forms
// ('same', 'valid', numeric, explicit and asymmetric), odd and even sizes, non-square input, 'ceil' rounding,
// a dilation, and channel counts that are and are not multiples of oneDNN's SIMD block (16).
const CASES: readonly ConvCase[] = [
  { name: 'stem 7x7/2 p3, even', x: [2, 16, 16, 3], k: 7, co: 16, stride: 2, pad: 3 },
  { name: 'stem 7x7/2 p3, odd', x: [2, 15, 15, 3], k: 7, co: 4, stride: 2, pad: 3 },
  { name: "stem 7x7/2 'same', even", x: [1, 16, 16, 3], k: 7, co: 4, stride: 2, pad: 'same' },
  { name: '3x3/1 p1, odd', x: [2, 9, 9, 3], k: 3, co: 4, stride: 1, pad: 1 },
  { name: '3x3/1 p1, 32 channels', x: [2, 8, 8, 32], k: 3, co: 32, stride: 1, pad: 1 },
  { name: "3x3/1 'same', even", x: [2, 8, 8, 3], k: 3, co: 4, stride: 1, pad: 'same' },
  { name: "3x3/1 'valid', odd", x: [2, 9, 9, 3], k: 3, co: 4, stride: 1, pad: 'valid' },
  { name: "3x3/2 'valid', even (a last row unused)", x: [2, 8, 8, 3], k: 3, co: 4, stride: 2, pad: 'valid' },
  { name: '3x3/2 p1, even, 16→32 channels', x: [2, 8, 8, 16], k: 3, co: 32, stride: 2, pad: 1 },
  { name: '3x3/2 p1, odd', x: [2, 9, 9, 3], k: 3, co: 4, stride: 2, pad: 1 },
  { name: "3x3/2 'same', even (asymmetric 0/1)", x: [2, 8, 8, 3], k: 3, co: 4, stride: 2, pad: 'same' },
  { name: '3x3/2 explicit asym [2,0]x[0,3]', x: [2, 8, 7, 3], k: 3, co: 4, stride: 2, pad: [[0, 0], [2, 0], [0, 3], [0, 0]] },
  { name: '3x3/2 p1 ceil rounding', x: [2, 8, 8, 3], k: 3, co: 4, stride: 2, pad: 1, rounding: 'ceil' },
  { name: '3x3/2 non-square 10x7', x: [3, 10, 7, 3], k: 3, co: 5, stride: 2, pad: 1 },
  { name: '3x3/1 dilation 2', x: [2, 9, 9, 3], k: 3, co: 4, stride: 1, pad: 2, dilation: 2 },
  { name: '1x1/1 p0', x: [2, 7, 7, 6], k: 1, co: 4, stride: 1, pad: 0 },
  { name: '1x1/1 p0, 64→16 channels', x: [2, 4, 4, 64], k: 1, co: 16, stride: 1, pad: 0 },
  { name: '1x1/2 p0, even (downsample)', x: [2, 8, 8, 16], k: 1, co: 32, stride: 2, pad: 0 },
  { name: '1x1/2 p0, odd (downsample)', x: [2, 9, 9, 6], k: 1, co: 4, stride: 2, pad: 0 },
  { name: '1x1/1 explicit p1 (pad > k − 1)', x: [2, 5, 5, 3], k: 1, co: 4, stride: 1, pad: [[0, 0], [1, 1], [1, 1], [0, 0]] },
  // The stride-1 input gradient of ≤ 64 channels runs as a forward convolution with the flipped filter (addon):
  // resnet34 layer 1, channel counts that differ, a 5×5, asymmetric padding, non-square; and pad > k − 1 (not).
  { name: '3x3/1 p1, 64 channels (layer 1)', x: [2, 8, 8, 64], k: 3, co: 64, stride: 1, pad: 1 },
  { name: '3x3/1 p1, 24→40 channels, non-square 9x6', x: [2, 9, 6, 24], k: 3, co: 40, stride: 1, pad: 1 },
  { name: '5x5/1 explicit asym [2,1]x[0,3]', x: [1, 9, 8, 5], k: 5, co: 7, stride: 1, pad: [[0, 0], [2, 1], [0, 3], [0, 0]] },
  { name: '3x3/1 explicit p3 (pad > k − 1)', x: [1, 6, 6, 4], k: 3, co: 4, stride: 1, pad: [[0, 0], [3, 3], [3, 3], [0, 0]] },
];

/** [y, dL/dx, dL/dw] by calling the kernels directly, for a fixed dy. */
function convKernels(c: ConvCase): () => tf.Tensor[] {
  const wShape: [number, number, number, number] = [c.k, c.k, c.x[3], c.co];
  const dilation = c.dilation ?? 1;
  return () => {
    const x = tf.tensor4d(lcg(tf.util.sizeFromShape(c.x), 1), c.x);
    const w = tf.tensor4d(lcg(tf.util.sizeFromShape(wShape), 2), wShape);
    const y = tf.conv2d(x, w, c.stride, c.pad, 'NHWC', dilation, c.rounding);
    if (dilation !== 1) return [y]; // tfjs has no dilated convolution gradients
    const dy = tf.tensor(lcg(y.size, 3), y.shape);
    const attrs = { strides: c.stride, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: c.rounding };
    const dx = tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w },
      { ...attrs, inputShape: c.x } as unknown as tf.NamedAttrMap) as tf.Tensor;
    const dw = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy },
      { ...attrs, filterShape: wShape } as unknown as tf.NamedAttrMap) as tf.Tensor;
    return [y, dx, dw];
  };
}

before(async () => {
  await registerTfjsGradients();
  if (skip) return;
  assert.ok('info' in registerNativeBackend());
  // Every output array the native kernels take from the pool starts as NaN: a kernel that leaves any element
  // unwritten (relying on a zero-filled array) fails its comparison with cpu.
  (tf.findBackend(NATIVE_BACKEND) as NativeBackend).pool.poison = true;
});

test('the addon reports oneDNN, its ISA and one thread per worker', { skip }, () => {
  assert.ok('info' in load);
  assert.match(load.info.version, /^\d+\.\d+\.\d+$/);
  assert.equal(load.info.threads, 1);
});

for (const c of CASES) {
  test(`conv forward, input and filter gradients match cpu ≤ 1e-5: ${c.name}`, { skip }, async () => {
    await compare(convKernels(c), ['forward', 'input gradient', 'filter gradient'], 1e-5);
  });
}

test('input gradient of a stride-1 3x3 of ≤ 64 channels runs as a forward convolution (flipped filter); 128 does not', { skip }, () => {
  assert.ok('addon' in load);
  const geometry = (c: number): ConvGeometry => [2, 8, 8, c, 8, 8, c, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1];
  assert.match(load.addon.convImpl(1, ...geometry(64)), /^forward .*\(flipped filter\)$/);
  assert.doesNotMatch(load.addon.convImpl(1, ...geometry(128)), /flipped/);
  assert.doesNotMatch(load.addon.convImpl(1, 2, 8, 8, 64, 4, 4, 64, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1), /flipped/);
});

test('reordered-filter cache: a filter used again (forward, input gradient) and a new filter of the same shape', { skip }, async () => {
  await compare(() => {
    const x = tf.tensor4d(lcg(2 * 8 * 8 * 32, 1), [2, 8, 8, 32]);
    const w1 = tf.tensor4d(lcg(3 * 3 * 32 * 32, 2), [3, 3, 32, 32]);
    const w2 = tf.tensor4d(lcg(3 * 3 * 32 * 32, 3), [3, 3, 32, 32]);
    const dy = tf.tensor4d(lcg(2 * 8 * 8 * 32, 4), [2, 8, 8, 32]);
    const dx = (w: tf.Tensor4D): tf.Tensor => tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w },
      { strides: 1, pad: 1, dataFormat: 'NHWC', inputShape: [2, 8, 8, 32] } as unknown as tf.NamedAttrMap) as tf.Tensor;
    return [tf.conv2d(x, w1, 1, 1), tf.conv2d(x, w1, 1, 1), tf.conv2d(x, w2, 1, 1), dx(w1), dx(w1), dx(w2)];
  }, ['w1', 'w1 again', 'w2', 'dx w1', 'dx w1 again', 'dx w2'], 1e-5);
});

test('NCHW convolutions fall back to the cpu kernels (same result as cpu)', { skip }, async () => {
  await compare(() => {
    const x = tf.tensor4d(lcg(2 * 3 * 8 * 8, 1), [2, 3, 8, 8]);
    const w = tf.tensor4d(lcg(3 * 3 * 3 * 4, 2), [3, 3, 3, 4]);
    return [tf.conv2d(x, w, 1, 'same', 'NCHW')];
  }, ['NCHW forward'], 1e-6, true);
  assert.ok((nativeFallbacks().get('Conv2D') ?? 0) > 0);
});

const POOLS: readonly { name: string; x: [number, number, number, number]; k: number; s: number; pad: Pad }[] = [
  { name: 'ResNet 3x3/2 p1, even', x: [2, 16, 16, 8], k: 3, s: 2, pad: 1 },
  { name: 'ResNet 3x3/2 p1, odd', x: [2, 15, 15, 3], k: 3, s: 2, pad: 1 },
  { name: "2x2/2 'valid'", x: [2, 8, 8, 4], k: 2, s: 2, pad: 'valid' },
  { name: "3x3/2 'same', even", x: [1, 8, 8, 4], k: 3, s: 2, pad: 'same' },
];

for (const p of POOLS) {
  test(`max-pool and its gradient match cpu ≤ 1e-6 (ties of a ReLU's zeros routed alike: a different route would be O(1)): ${p.name}`, { skip }, async () => {
    await compare(() => {
      // relu(·) of values in [−0.5, 0.5): half the inputs are tied zeros, as after the stem's ReLU.
      const x = tf.relu(tf.tensor4d(lcg(tf.util.sizeFromShape(p.x), 5), p.x));
      const [y, grads] = [tf.maxPool(x, p.k, p.s, p.pad), tf.grad((t: tf.Tensor) => {
        const out = tf.maxPool(t as tf.Tensor4D, p.k, p.s, p.pad);
        return tf.sum(tf.mul(out, tf.tensor(lcg(out.size, 6), out.shape)));
      })(x)];
      return [y, grads];
    }, ['forward', 'gradient'], 1e-6);
  });
}

test('max-pool gradient: with the forward\'s recorded arg-max and without it (another output array) the same as cpu', { skip }, async () => {
  const shape: [number, number, number, number] = [2, 9, 9, 5];
  await compare(() => {
    const x = tf.relu(tf.tensor4d(lcg(tf.util.sizeFromShape(shape), 7), shape));
    const y = tf.maxPool(x, 3, 2, 1);
    const dy = tf.tensor(lcg(y.size, 8), y.shape);
    const attrs = { filterSize: 3, strides: 2, pad: 1 };
    const recorded = tf.engine().runKernel('MaxPoolGrad', { dy, input: x, output: y }, attrs) as tf.Tensor;
    // A copy of y is another array: no recorded arg-max matches it, the backward finds the maxima again from x.
    const again = tf.engine().runKernel('MaxPoolGrad', { dy, input: x, output: tf.add(y, 0) }, attrs) as tf.Tensor;
    return [recorded, again];
  }, ['with the recorded arg-max', 'recomputed'], 1e-6);
});

const MATMULS: readonly { name: string; a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
  { name: 'dense [16,1024]·[1024,512]', a: [16, 1024], b: [1024, 512], ta: false, tb: false },
  { name: 'dense grad w.r.t. weights: aᵀ·dy', a: [16, 64], b: [16, 37], ta: true, tb: false },
  { name: 'dense grad w.r.t. inputs: dy·wᵀ', a: [16, 37], b: [64, 37], ta: false, tb: true },
  { name: 'both transposed', a: [5, 3], b: [7, 5], ta: true, tb: true },
  { name: 'batched [3,4,5]·[3,5,6]', a: [3, 4, 5], b: [3, 5, 6], ta: false, tb: false },
  { name: 'broadcast [2,3,4,5]·[5,6]', a: [2, 3, 4, 5], b: [5, 6], ta: false, tb: false },
  { name: 'broadcast [4,5]·[3,5,6]', a: [4, 5], b: [3, 5, 6], ta: false, tb: false },
];

for (const m of MATMULS) {
  test(`matMul matches cpu ≤ 1e-5: ${m.name}`, { skip }, async () => {
    await compare(() => {
      const a = tf.tensor(lcg(tf.util.sizeFromShape(m.a), 7), m.a);
      const b = tf.tensor(lcg(tf.util.sizeFromShape(m.b), 8), m.b);
      return [tf.matMul(a, b, m.ta, m.tb)];
    }, ['product'], 1e-5);
  });
}

const BINARY: readonly [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
  ['Add', tf.add], ['Sub', tf.sub], ['Multiply', tf.mul], ['RealDiv', tf.div], ['Maximum', tf.maximum],
  ['Minimum', tf.minimum],
];
const UNARY: readonly [string, (x: tf.Tensor) => tf.Tensor][] = [
  ['Sqrt', tf.sqrt], ['Square', tf.square], ['Neg', tf.neg], ['Rsqrt', tf.rsqrt], ['Abs', tf.abs],
];

for (const [name, op] of BINARY) {
  test(`element-wise ${name} matches cpu ≤ 1e-6: same shape, scalar on either side`, { skip }, async () => {
    await compare(() => {
      const a = tf.add(tf.tensor2d(lcg(6 * 7, 14), [6, 7]), 1); // in [0.5, 1.5): no division by ~0
      const b = tf.add(tf.tensor2d(lcg(6 * 7, 15), [6, 7]), 1);
      const row = tf.add(tf.tensor1d(lcg(7, 16)), 1);
      const row2 = tf.add(tf.tensor2d(lcg(7, 17), [1, 7]), 1);
      return [op(a, b), op(a, tf.scalar(0.75)), op(tf.scalar(1.25), b), op(tf.scalar(2), tf.scalar(3)), op(a, row),
        op(row2, a)];
    }, ['same shape', 'scalar b', 'scalar a', 'both scalars', 'row b [7]', 'row a [1,7]'], 1e-6);
  });
}

for (const [name, op] of BINARY) {
  test(`element-wise ${name} matches cpu ≤ 1e-6: column, middle and two-sided broadcasts`, { skip }, async () => {
    await compare(() => {
      const t = (shape: number[], seed: number): tf.Tensor => tf.add(tf.tensor(lcg(tf.util.sizeFromShape(shape), seed), shape), 1);
      return [
        op(t([2, 3], 16), t([2, 1], 17)), // column
        op(t([4, 1, 1, 8], 18), t([4, 3, 3, 8], 19)), // the head's max-pool gradient: [n,1,1,c] over [n,h,w,c]
        op(t([3, 1], 20), t([1, 5], 21)), // outer product
        op(t([2, 1, 3, 1], 22), t([4, 1, 5], 23)), // four alternating dimensions, ranks differ
      ];
    }, ['column', 'middle', 'outer', 'alternating'], 1e-6);
  });
}

test('element-wise broadcasts of more than four alternating dimensions, and int32, run the cpu kernels; a cast bool does not', { skip }, async () => {
  const before = nativeFallbacks().get('Add') ?? 0;
  await compare(() => [tf.add(tf.tensor(lcg(2 * 3 * 2, 16), [2, 1, 3, 1, 2]), tf.tensor(lcg(4 * 5, 17), [4, 1, 5, 1]))],
    ['five alternating dimensions'], 0, true);
  await tf.setBackend(NATIVE_BACKEND);
  const sum = tf.tidy(() => tf.add(tf.tensor1d([1, 2], 'int32'), tf.tensor1d([3, 4], 'int32')));
  assert.equal(sum.dtype, 'int32');
  assert.deepEqual(Array.from(sum.dataSync()), [4, 6]);
  sum.dispose();
  // A bool → float32 cast makes a Float32Array on native (the Cast kernel): that add runs natively.
  const mixed = tf.tidy(() => tf.add(tf.cast(tf.tensor1d([true, false, true], 'bool'), 'float32'), tf.tensor1d([0.5, 0.5, 0.5])));
  assert.deepEqual(Array.from(mixed.dataSync()), [1.5, 0.5, 1.5]);
  mixed.dispose();
  assert.equal(nativeFallbacks().get('Add'), before + 2);
});

test('Maximum and Minimum propagate NaN as the cpu kernels do', { skip }, async () => {
  await tf.setBackend(NATIVE_BACKEND);
  const [mx, mn] = tf.tidy(() => {
    const a = tf.tensor1d([NaN, 1, 2]);
    const b = tf.tensor1d([0, NaN, 3]);
    return [tf.maximum(a, b), tf.minimum(a, b)];
  });
  assert.deepEqual(Array.from(mx!.dataSync()), [NaN, NaN, 3]);
  assert.deepEqual(Array.from(mn!.dataSync()), [NaN, NaN, 2]);
  tf.dispose([mx!, mn!]);
});

for (const [name, op] of [['Sum', tf.sum], ['Mean', tf.mean], ['Max', tf.max]] as const) {
  test(`${name} over adjacent axes matches cpu ≤ 1e-6 (spatial, batch, last, all, keepDims); other axis sets fall back`, { skip }, async () => {
    const x = (): tf.Tensor4D => tf.tensor4d(lcg(3 * 4 * 5 * 6, 24), [3, 4, 5, 6]);
    await compare(() => [op(x(), [1, 2]), op(x(), 0), op(x(), -1), op(x()), op(x(), [1, 2], true), op(x(), [2, 1, 3])],
      ['[1,2]', '0', '-1', 'all', '[1,2] keepDims', '[2,1,3]'], 1e-6);
    const before = nativeFallbacks().get(name) ?? 0;
    await compare(() => [op(x(), [0, 2])], ['[0,2]'], 1e-6, true);
    assert.equal(nativeFallbacks().get(name), before + 1);
  });
}

for (const [name, op] of [['Equal', tf.equal], ['NotEqual', tf.notEqual], ['Greater', tf.greater],
  ['GreaterEqual', tf.greaterEqual], ['Less', tf.less], ['LessEqual', tf.lessEqual]] as const) {
  test(`${name} on float32 gives the cpu kernel's bools (same shape, middle broadcast, scalar, NaN)`, { skip }, async () => {
    const run = async (backend: string): Promise<number[][]> => {
      await tf.setBackend(backend);
      const outs = tf.tidy(() => {
        // Values on a coarse grid so that equal pairs occur; a NaN on each side.
        const grid = (n: number, seed: number): Float32Array => lcg(n, seed).map((v) => Math.round(v * 4) / 4);
        const a = tf.tensor4d(grid(2 * 3 * 3 * 4, 31), [2, 3, 3, 4]);
        const b = tf.tensor4d(grid(2 * 4, 32), [2, 1, 1, 4]);
        const nan = tf.tensor1d([NaN, 1, 2, NaN]);
        return [op(a, b), op(b, a), op(a, tf.scalar(0.25)), op(a, a), op(nan, tf.tensor1d([NaN, 1, 3, 0]))];
      });
      for (const t of outs) assert.equal(t.dtype, 'bool');
      const vals = outs.map((t) => Array.from(t.dataSync()));
      tf.dispose(outs);
      return vals;
    };
    const before = fallbackTotal();
    const native = await run(NATIVE_BACKEND);
    assert.equal(fallbackTotal(), before);
    assert.deepEqual(native, await run('cpu'));
  });
}

test('Cast of bool and int32 to float32 stores a Float32Array, so the kernels after it run natively (the max gradient\'s mask)', { skip }, async () => {
  const run = async (backend: string): Promise<number[][]> => {
    await tf.setBackend(backend);
    const outs = tf.tidy(() => {
      const x = tf.tensor4d(lcg(2 * 3 * 3 * 4, 41).map((v) => Math.round(v * 2) / 2), [2, 3, 3, 4]);
      const m = tf.max(x, [1, 2], true);
      const mask = tf.cast(tf.equal(x, m), 'float32');
      const ints = tf.cast(tf.tensor1d([-3, 0, 7, 100003], 'int32'), 'float32');
      // The head's max-pool gradient: dy [n,1,1,c] times the float mask [n,h,w,c].
      return [mask, tf.mul(m, mask), ints, tf.add(ints, tf.scalar(0.5)), tf.cast(tf.tensor1d([1.5, 0]), 'bool')];
    });
    if (backend === NATIVE_BACKEND) {
      const data = (tf.backend() as NativeBackend).data;
      for (const i of [0, 2]) assert.ok(data.get(outs[i]!.dataId).values instanceof Float32Array, `output ${i} is stored as a Float32Array`);
    }
    const vals = outs.map((t) => Array.from(t.dataSync()));
    tf.dispose(outs);
    return vals;
  };
  const before = fallbackTotal();
  const native = await run(NATIVE_BACKEND);
  assert.equal(fallbackTotal(), before, `calls that fell back to cpu: ${JSON.stringify([...nativeFallbacks()])}`);
  assert.deepEqual(native, await run('cpu'));
  assert.deepEqual(native[2], [-3, 0, 7, 100003]);
  // A float32 tensor holds float32 values: an int32 beyond 2^24 is rounded as Float32Array.from rounds it (tfjs's
  // cpu Cast would keep the Int32Array and its exact value under a float32 dtype).
  await tf.setBackend(NATIVE_BACKEND);
  const big = tf.tidy(() => tf.cast(tf.tensor1d([2 ** 24 + 1], 'int32'), 'float32'));
  assert.deepEqual(Array.from(big.dataSync()), [2 ** 24]);
  big.dispose();
});

test('Max propagates NaN as the cpu kernel does', { skip }, async () => {
  const run = async (backend: string): Promise<number[]> => {
    await tf.setBackend(backend);
    const m = tf.tidy(() => tf.max(tf.tensor2d([1, NaN, 3, 4, 5, 6, NaN, 0], [4, 2]), 0));
    const out = Array.from(m.dataSync());
    m.dispose();
    return out;
  };
  assert.deepEqual(await run(NATIVE_BACKEND), [NaN, NaN]);
  assert.deepEqual(await run('cpu'), [NaN, NaN]);
});

test('Concat and SplitV match cpu exactly along every axis (uneven parts, an empty part, the flat gradient form)', { skip }, async () => {
  await compare(() => {
    const a = tf.tensor4d(lcg(2 * 3 * 4 * 5, 25), [2, 3, 4, 5]);
    const b = tf.tensor4d(lcg(2 * 3 * 4 * 2, 26), [2, 3, 4, 2]);
    const e = tf.zeros([2, 3, 4, 0]);
    const flat = [tf.tensor1d(lcg(7, 27)), tf.tensor1d(lcg(1, 28)), tf.tensor1d(lcg(30, 29))];
    const rows = tf.tensor2d(lcg(4 * 6, 30), [4, 6]);
    return [tf.concat([a, e, b], 3), tf.concat([a, a], 0), tf.concat([a, b], -1),
      tf.concat(flat), tf.concat([rows, rows], 1), ...tf.split(a, [1, 3, 1], 3), ...tf.split(a, 3, 1),
      ...tf.split(tf.concat(flat), [7, 1, 30]), ...tf.split(rows, [2, 4], 1)];
  }, [], 0);
});

for (const [name, op] of UNARY) {
  test(`element-wise ${name} matches cpu ≤ 1e-6`, { skip }, async () => {
    await compare(() => {
      const x = tf.add(tf.tensor3d(lcg(3 * 4 * 5, 18), [3, 4, 5]), name === 'Sqrt' || name === 'Rsqrt' ? 1 : 0);
      return [op(x)];
    }, [name], 1e-6);
  });
}

for (const variant of [
  { relu: false, residual: false }, { relu: true, residual: false }, { relu: true, residual: true },
  { relu: false, residual: true },
]) {
  test(`fused BatchNorm forward + all gradients match cpu ≤ 1e-5: relu ${variant.relu}, residual ${variant.residual}`,
    { skip }, async () => {
      await compare(() => {
        // A non-zero mean (+3) so that the statistics' accuracy matters.
        const x = tf.add(tf.tensor4d(lcg(4 * 6 * 6 * 16, 9), [4, 6, 6, 16]), 3) as tf.Tensor4D;
        const r = tf.tensor4d(lcg(4 * 6 * 6 * 16, 10), [4, 6, 6, 16]);
        const gamma = tf.add(tf.tensor1d(lcg(16, 11)), 1) as tf.Tensor1D;
        const beta = tf.tensor1d(lcg(16, 12));
        const w = tf.tensor4d(lcg(4 * 6 * 6 * 16, 13), [4, 6, 6, 16]);
        let stats: tf.Tensor[] = [];
        const f = (xs: tf.Tensor, g: tf.Tensor, b: tf.Tensor, rs?: tf.Tensor): tf.Tensor => {
          const out = batchNormTrain(xs, g as tf.Tensor1D, b as tf.Tensor1D, { relu: variant.relu, residual: rs ?? null });
          stats = [out.mean, out.variance];
          return tf.sum(tf.mul(out.y, w));
        };
        const { value, grads } = tf.valueAndGrads(f)(variant.residual ? [x, gamma, beta, r] : [x, gamma, beta]);
        const y = batchNormTrain(x, gamma, beta, { relu: variant.relu, residual: variant.residual ? r : null });
        const outs = [y.y, y.mean, y.variance, value, ...grads];
        tf.dispose(stats);
        return outs;
      }, ['y', 'mean', 'variance', 'loss', 'dx', 'dgamma', 'dbeta', 'dresidual'], 1e-5);
    });
}

/** Three AdamW steps (two groups, weight decay, changing lr and momentum) on backend `name`; returns p, m-free state. */
async function adamWSteps(name: string): Promise<Float32Array[]> {
  await tf.setBackend(name);
  const variable = (values: Float32Array, shape: number[]): tf.Variable => {
    const t = tf.tensor(values, shape);
    const v = tf.variable(t);
    t.dispose();
    return v;
  };
  const params = new Map<string, tf.Variable>([
    ['a.weight', variable(lcg(40 * 30, 20), [40, 30])], ['b.bias', variable(lcg(7, 21), [7])],
    // 37 = two 16-wide vector iterations of the addon's loop and a scalar tail of 5.
    ['c.weight', variable(lcg(37, 22), [37])],
  ]);
  const opt = new AdamW(params, [['a.weight'], ['b.bias', 'c.weight']], { weightDecay: 0.01 });
  for (let step = 0; step < 3; step++) {
    const grads = new Map<string, tf.Tensor>([
      ['a.weight', tf.tensor2d(lcg(40 * 30, 30 + step), [40, 30])], ['b.bias', tf.tensor1d(lcg(7, 40 + step))],
      ['c.weight', tf.tensor1d(lcg(37, 50 + step))],
    ]);
    opt.step(grads, { lrs: [1e-3 * (step + 1), 3e-3], momentum: 0.95 - 0.05 * step });
    tf.dispose([...grads.values()]);
  }
  const state = await opt.exportState();
  const out = [...params.values()].map((p) => p.dataSync() as Float32Array);
  for (const e of state.params) out.push(Float32Array.from(e.expAvg), Float32Array.from(e.expAvgSq));
  opt.dispose();
  tf.dispose([...params.values()]);
  return out;
}

test('fused AdamW gives the same bits as the tfjs-op AdamW on cpu (parameters and both moments), leak-free', { skip }, async () => {
  await tf.setBackend(NATIVE_BACKEND);
  const tensors = tf.memory().numTensors;
  const native = await adamWSteps(NATIVE_BACKEND);
  assert.equal(tf.memory().numTensors, tensors, 'tensors after the native steps');
  const cpu = await adamWSteps('cpu');
  assert.equal(native.length, cpu.length);
  native.forEach((values, i) => assert.deepEqual(values, cpu[i], `output ${i}`));
});

test('BatchNorm running-statistic update: one native kernel, the same bits as the tfjs ops on cpu, leak-free', { skip }, async () => {
  assert.ok(tf.getKernel(BN_RUNNING_UPDATE_KERNEL, NATIVE_BACKEND) !== undefined, 'registered on native');
  assert.equal(tf.getKernel(BN_RUNNING_UPDATE_KERNEL, 'cpu'), undefined, 'cpu runs the tfjs ops (the reference)');
  // PyTorch's rule: running ← 0.9·running + 0.1·batch (mean), 0.1·n/(n − 1)·batch (variance, n = 16·32·32); 2048
  // channels (over resnet50's largest) and 3 (a tail), values of both signs and magnitudes far apart.
  const cases = [{ c: 2048, momentum: 0.1, scale: 1 }, { c: 3, momentum: 0.1, scale: 16384 / 16383 }, { c: 64, momentum: 0.3, scale: 2.5 }];
  const run = (backend: string) => on(backend, () => cases.map(({ c, momentum, scale }) => {
    const running = tf.tensor1d(lcg(c, 5).map((v, i) => v * 10 ** ((i % 7) - 3)));
    const batch = tf.tensor1d(lcg(c, 6).map((v, i) => v * 10 ** ((i % 5) - 2)));
    return updateRunningStat(running, batch, momentum, scale);
  }));
  const run2 = (backend: string) => on(backend, () => [updateRunningStat(tf.cast(tf.tensor1d([1, 2, 3], 'int32'), 'float32'),
    tf.tensor1d([0.25, -1.5, 7]), 0.1, 1.5)]);
  await tf.setBackend(NATIVE_BACKEND);
  const tensors = tf.memory().numTensors;
  const native = await run(NATIVE_BACKEND);
  assert.equal(tf.memory().numTensors, tensors, 'tensors after the native updates');
  const cpu = await run('cpu');
  native.forEach((values, i) => assert.deepEqual(values, cpu[i], `case ${i}`));
  // A running variance restored as ones cast from int32 (tfjs's cpu Cast shares the Int32Array) works as well.
  const cast = await run2(NATIVE_BACKEND);
  assert.deepEqual(cast, await run2('cpu'));
  await tf.setBackend(NATIVE_BACKEND);
  assert.throws(() => tf.tidy(() => updateRunningStat(tf.zeros([4]) as tf.Tensor1D, tf.zeros([5]) as tf.Tensor1D, 0.1)),
    (e: unknown) => isTrainerError(e) && e.code === 'ERR_INTERNAL' && /\[4\] and \[5\]/.test(e.message));
});

function blockParams(): TinyBlockParams {
  return { seed: 11, batch: 4, size: 16, classes: 5 };
}

test('tiny ResNet block: loss and every parameter gradient match cpu ≤ 1e-5', { skip }, async () => {
  // Its glue (softmax, column broadcasts, int32 labels) may use cpu kernels; its heavy kernels are checked above.
  await compare(() => tinyBlockGradients(blockParams()), [], 1e-5, true);
});

test('repeated gradient steps on native leak no tensors and no backend data', { skip }, async () => {
  await tf.setBackend(NATIVE_BACKEND);
  const backend = tf.backend() as tf.KernelBackend & { numDataIds(): number };
  tf.dispose(tf.tidy(() => tinyBlockGradients(blockParams()))); // warm-up
  const tensors = tf.memory().numTensors;
  const dataIds = backend.numDataIds();
  for (let i = 0; i < 3; i++) tf.dispose(tf.tidy(() => tinyBlockGradients(blockParams())));
  assert.equal(tf.memory().numTensors, tensors, 'engine tensors');
  assert.equal(backend.numDataIds(), dataIds, 'backend data ids');
});

test('a short input array is refused by the addon with ERR_NATIVE, not read out of bounds', { skip }, () => {
  assert.ok('addon' in load);
  const g = [1, 4, 4, 2, 4, 4, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1] as const;
  assert.throws(() => load.addon.convForward(new Float32Array(31), new Float32Array(36), new Float32Array(32), ...g, null, false),
    (err: unknown) => (err as { code?: string }).code === 'ERR_NATIVE' && /x has 31 elements, needs 32/.test(String(err)));
});

test('a count or dimension that is no safe integer is a TypeError naming it (ERR_NATIVE), not truncated', { skip }, () => {
  assert.ok('addon' in load);
  const addon = load.addon as unknown as Record<string, (...args: unknown[]) => unknown>;
  const typeError = (message: string) => (e: unknown): boolean =>
    e instanceof TypeError && (e as { code?: string }).code === 'ERR_NATIVE' && e.message === message;
  const x = new Float32Array(8), out = new Float32Array(8);
  // Before, 2.5 elements were read as 2, NaN as 0, and so on.
  for (const [n, got] of [[2.5, '2.5'], [Number.NaN, 'NaN'], [Infinity, 'Infinity'], [2 ** 53, '9007199254740992'], ['4', 'a string']] as const) {
    assert.throws(() => addon.unary!(0, x, out, n), typeError(`n must be an integer (Number.isSafeInteger), got ${got}`));
  }
  assert.throws(() => addon.binary!(0.5, x, x, out, 8, 8, 8), typeError('op must be an integer (Number.isSafeInteger), got 0.5'));
  assert.throws(() => addon.reduce!(0, x, out, 2, 4.5, 1), typeError('r must be an integer (Number.isSafeInteger), got 4.5'));
  assert.throws(() => addon.adamW!(x, x, x, x, 7.5, 0.9, 0.99, 1, 1e-8, 0, 1e-3), typeError('n must be an integer (Number.isSafeInteger), got 7.5'));
  assert.throws(() => addon.init!(1.5, false), typeError('threads must be an integer (Number.isSafeInteger), got 1.5'));
  // A geometry entry by its name (the 6th of a convolution's: ow).
  const g = [1, 4, 4, 2, 4, 3.5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1];
  assert.throws(() => addon.convForward!(new Float32Array(32), new Float32Array(36), new Float32Array(32), ...g, null, false),
    typeError('ow must be an integer (Number.isSafeInteger), got 3.5'));
  assert.throws(() => addon.batchMatMul!(x, x, out, 1, 2, 2, 2, 0, false, 0, 0), typeError('transposeA must be a boolean, got 0'));
  // The same calls with integers still run (the unary op 4 is abs).
  const v = Float32Array.of(-1, 2, -3, 4, -5, 6, -7, 8);
  addon.unary!(4, v, out, 8);
  assert.deepEqual([...out], [1, 2, 3, 4, 5, 6, 7, 8]);
});

test('--backend native is chosen by auto when the addon loads', { skip }, async () => {
  const choice = await initBackend('auto');
  // tfjs-node (optional dependency) comes first when installed; otherwise native.
  if (choice.kind !== 'tensorflow' && choice.kind !== 'tensorflow-gpu') assert.equal(choice.kind, 'native');
  const explicit = await initBackend('native');
  assert.equal(explicit.kind, 'native');
  assert.equal(tf.getBackend(), NATIVE_BACKEND);
});

test('without the addon, auto falls back to WASM and its one log line says why; native alone is refused', () => {
  const script = `
    import { initBackend } from './src/training/compute/backend.ts';
    const c = await initBackend('auto');
    console.log(JSON.stringify({ kind: c.kind, summary: c.summary }));
    try { await initBackend('native'); console.log('no error'); } catch (e) { console.log(e.code + ' ' + e.message); }`;
  const res = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script],
    { encoding: 'utf8', env: { ...process.env, PETS_NATIVE_ADDON: '/nonexistent/pets_dnnl.node' } });
  assert.equal(res.status, 0, res.stderr);
  const [first, second] = res.stdout.trim().split('\n');
  const choice = JSON.parse(first!) as { kind: string; summary: string };
  if (choice.kind !== 'tensorflow' && choice.kind !== 'tensorflow-gpu') assert.equal(choice.kind, 'wasm');
  assert.match(choice.summary, /native addon "\/nonexistent\/pets_dnnl.node" \(PETS_NATIVE_ADDON\) does not exist/);
  assert.equal(choice.summary.split('\n').length, 1);
  assert.match(second!, /^ERR_BACKEND --backend native requested but unavailable: native addon/);
});

test('the dense matMul survives signals during the call (node --cpu-prof sends SIGPROF every millisecond)', { skip }, () => {
  // oneDNN 2.6's sgemm corrupted the heap when a signal landed inside it; [16,1024]·[1024,512] (the head's first
  // dense layer) aborted on the first call under --cpu-prof ("corrupted size vs. prev_size while consolidating").
  const script = `
    import { loadAddon } from './src/training/compute/native/addon.ts';
    const a = loadAddon().addon;
    for (let i = 0; i < 20; i++) {
      const A = new Float32Array(16 * 1024).fill(1), B = new Float32Array(1024 * 512).fill(1), C = new Float32Array(16 * 512);
      a.batchMatMul(A, B, C, 1, 16, 512, 1024, false, false, 0, 0);
      if (C[0] !== 1024 || C[C.length - 1] !== 1024) throw new Error('wrong product ' + C[0]);
    }
    console.log('ok');`;
  const dir = mkdtempSync(join(tmpdir(), 'pets-cpu-prof-'));
  try {
    const res = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '100',
      '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(res.status, 0, res.stderr);
    assert.equal(res.stdout.trim(), 'ok');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('training-mode BatchNorm refuses one value per channel on native too', { skip }, async () => {
  await tf.setBackend(NATIVE_BACKEND);
  tf.tidy(() => {
    assert.throws(() => batchNormTrain(tf.ones([1, 1, 1, 4]), tf.ones([4]) as tf.Tensor1D, tf.zeros([4]) as tf.Tensor1D),
      (err: unknown) => isTrainerError(err, 'ERR_DATA'));
  });
});
