/**
 * The WASM training kernels against tfjs's reference `cpu` backend (plain JavaScript loops).
 *
 * Metric everywhere: relative error = max|wasm − cpu| / max|cpu| over all elements (float32 on both sides).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { registerTfjsGradients } from '../../../../src/training/compute/kernels/gradients.js';
import {
  registerWasmTrainingKernels, wasmTrainingKernelsRegistered,
} from '../../../../src/training/compute/wasm-kernels.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { tinyBlockGradients, type TinyBlockParams } from './kernels/tiny-resnet-block.js';
import { lcg, on, relError, type Pad } from './numeric.js';

interface ConvCase {
  readonly name: string;
  readonly x: [number, number, number, number];
  readonly k: number;
  readonly co: number;
  readonly stride: number;
  readonly pad: Pad;
  readonly rounding?: 'floor' | 'ceil' | 'round';
  /**
   * tfjs-backend-wasm's own forward Conv2D ignores `dimRoundingMode` (XNNPACK sizes the output itself, so the extra
   * 'ceil' row is left uninitialised): only the gradients, which are this module's, are compared then.
   */
  readonly skipForward?: boolean;
}

// Every convolution form of ResNet18/34/50 (stem 7x7/2 p3, 3x3/1 and /2 p1, 1x1/1 and /2), with 'same', 'valid',
// numeric and explicit padding, odd and even sizes, a non-square input and a 'ceil' rounding mode.
const CASES: readonly ConvCase[] = [
  { name: 'stem 7x7/2 p3, even', x: [2, 16, 16, 3], k: 7, co: 4, stride: 2, pad: 3 },
  { name: 'stem 7x7/2 p3, odd', x: [2, 15, 15, 3], k: 7, co: 4, stride: 2, pad: 3 },
  { name: "stem 7x7/2 'same', even", x: [1, 16, 16, 3], k: 7, co: 4, stride: 2, pad: 'same' },
  { name: '3x3/1 p1, odd', x: [2, 9, 9, 3], k: 3, co: 4, stride: 1, pad: 1 },
  { name: "3x3/1 'same', even", x: [2, 8, 8, 3], k: 3, co: 4, stride: 1, pad: 'same' },
  { name: "3x3/1 'valid', odd", x: [2, 9, 9, 3], k: 3, co: 4, stride: 1, pad: 'valid' },
  { name: '3x3/2 p1, even', x: [2, 8, 8, 3], k: 3, co: 4, stride: 2, pad: 1 },
  { name: '3x3/2 p1, odd', x: [2, 9, 9, 3], k: 3, co: 4, stride: 2, pad: 1 },
  { name: "3x3/2 'same', even (asymmetric 0/1)", x: [2, 8, 8, 3], k: 3, co: 4, stride: 2, pad: 'same' },
  { name: "3x3/2 'same', odd", x: [2, 9, 9, 3], k: 3, co: 4, stride: 2, pad: 'same' },
  { name: "3x3/2 'valid', even", x: [2, 8, 8, 3], k: 3, co: 4, stride: 2, pad: 'valid' },
  { name: '3x3/2 explicit [1,1]', x: [2, 8, 8, 3], k: 3, co: 4, stride: 2, pad: [[0, 0], [1, 1], [1, 1], [0, 0]] },
  { name: '3x3/2 explicit asym [2,0]x[0,3]', x: [2, 8, 7, 3], k: 3, co: 4, stride: 2, pad: [[0, 0], [2, 0], [0, 3], [0, 0]] },
  { name: '3x3/2 p1 ceil rounding', x: [2, 8, 8, 3], k: 3, co: 4, stride: 2, pad: 1, rounding: 'ceil', skipForward: true },
  { name: '3x3/2 non-square 10x7', x: [3, 10, 7, 3], k: 3, co: 5, stride: 2, pad: 1 },
  { name: '1x1/1 p0', x: [2, 7, 7, 6], k: 1, co: 4, stride: 1, pad: 0 },
  { name: "1x1/1 'same'", x: [2, 8, 8, 6], k: 1, co: 4, stride: 1, pad: 'same' },
  { name: '1x1/2 p0, even (downsample)', x: [2, 8, 8, 6], k: 1, co: 4, stride: 2, pad: 0 },
  { name: '1x1/2 p0, odd (downsample)', x: [2, 9, 9, 6], k: 1, co: 4, stride: 2, pad: 0 },
  { name: "1x1/2 'same', odd", x: [2, 9, 9, 6], k: 1, co: 4, stride: 2, pad: 'same' },
  { name: '1x1/1 explicit p1 (pad > k − 1)', x: [2, 5, 5, 3], k: 1, co: 4, stride: 1, pad: [[0, 0], [1, 1], [1, 1], [0, 0]] },
];

/** Computes [y, dL/dx, dL/dw] by calling the kernels directly (no gradient tape), for a fixed dy. */
function convKernels(c: ConvCase): () => tf.Tensor[] {
  const [, , , ci] = c.x;
  const wShape: [number, number, number, number] = [c.k, c.k, ci, c.co];
  return () => {
    const x = tf.tensor4d(lcg(tf.util.sizeFromShape(c.x), 1), c.x);
    const w = tf.tensor4d(lcg(tf.util.sizeFromShape(wShape), 2), wShape);
    const y = tf.conv2d(x, w, c.stride, c.pad, 'NHWC', 1, c.rounding);
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
  await import('@tensorflow/tfjs-backend-cpu');
  await registerTfjsGradients();
  await initBackend('wasm');
});

test('registration is idempotent and installs both kernels on wasm', () => {
  assert.ok(wasmTrainingKernelsRegistered());
  registerWasmTrainingKernels();
  registerWasmTrainingKernels();
  assert.ok(wasmTrainingKernelsRegistered());
});

for (const c of CASES) {
  test(`conv gradients match cpu ≤ 1e-4: ${c.name}`, async () => {
    const wasm = await on('wasm', convKernels(c));
    const cpu = await on('cpu', convKernels(c));
    const names = ['forward', 'input gradient', 'filter gradient'];
    for (let i = c.skipForward ? 1 : 0; i < 3; i++) {
      const err = relError(wasm[i]!, cpu[i]!);
      assert.ok(err <= 1e-4, `${names[i]}: relative error ${err.toExponential(2)} > 1e-4`);
    }
  });
}

test('NCHW is refused with ERR_BACKEND instead of a wrong result', async () => {
  await tf.setBackend('wasm');
  tf.tidy(() => {
    const x = tf.zeros([1, 3, 8, 8]);
    const dy = tf.zeros([1, 4, 8, 8]);
    const attrs = { strides: 1, pad: 'same', dataFormat: 'NCHW', filterShape: [3, 3, 3, 4] };
    assert.throws(() => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs as never),
      (err: unknown) => isTrainerError(err, 'ERR_BACKEND'));
  });
});

function blockParams(): TinyBlockParams {
  return { seed: 11, batch: 4, size: 16, classes: 5 };
}

test('tiny ResNet block: loss and every parameter gradient match cpu ≤ 1e-4', async () => {
  const wasm = await on('wasm', () => tinyBlockGradients(blockParams()));
  const cpu = await on('cpu', () => tinyBlockGradients(blockParams()));
  assert.equal(wasm.length, cpu.length);
  for (let i = 0; i < cpu.length; i++) {
    const err = relError(wasm[i]!, cpu[i]!);
    assert.ok(err <= 1e-4, `output ${i}: relative error ${err.toExponential(2)} > 1e-4`);
  }
});

test('repeated gradient steps on wasm leak neither tensors nor backend buffers', async () => {
  await tf.setBackend('wasm');
  const backend = tf.backend() as tf.KernelBackend & { numDataIds(): number };
  tf.dispose(tf.tidy(() => tinyBlockGradients(blockParams()))); // warm-up
  const tensors = tf.memory().numTensors;
  const dataIds = backend.numDataIds();
  for (let i = 0; i < 3; i++) tf.dispose(tf.tidy(() => tinyBlockGradients(blockParams())));
  assert.equal(tf.memory().numTensors, tensors, 'engine tensors');
  assert.equal(backend.numDataIds(), dataIds, 'wasm data ids (kernel intermediates)');
});
