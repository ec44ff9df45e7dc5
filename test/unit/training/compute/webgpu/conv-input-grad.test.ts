/**
 * This project's WebGPU `Conv2DBackpropInput` kernel (`compute/webgpu/conv-input-grad.ts`) against tfjs's `cpu`
 * kernel, the reference: every convolution form of ResNet18/34/50 (7×7 s2 pad 3 stem, 3×3 s1 and s2 pad 1, 1×1 s2
 * downsample and 1×1 s1) at small sizes, odd and even maps, the paddings tfjs passes (`same` — asymmetric at stride
 * 2 —, `valid`, a number, explicit), channel counts that leave partial 64-wide tiles, several M tiles and K steps,
 * stride phases with no rows or no taps; below 64 pixels per phase it leaves the call to tfjs's kernel.
 *
 * Runs on any WebGPU adapter; in CI that is Mesa's lavapipe, so shapes are tiny. Metric as the filter-gradient
 * tests: max|webgpu − cpu| / max|cpu| (float32 both sides, other summation order), tolerance 1e-5.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { conv2DBackpropInputWebgpu, INPUT_GRAD_ENV, phaseGemm } from '../../../../../src/training/compute/webgpu/conv-input-grad.js';
import { webgpuTrainingKernelsRegistered } from '../../../../../src/training/compute/webgpu/kernels.js';
import { countDispatches } from '../../../../../src/training/compute/webgpu/dispatch-count.js';
import { convGeometry } from '../../../../../src/training/compute/kernels/conv-geometry.js';
import { lcg, relError, type Pad } from '../numeric.js';
import { valuesOn, webgpuOrSkip } from './support.js';

type Shape = [number, number, number, number];

const TOL = 1e-5;

/** [name, dx shape (NHWC), kernel, Cout, stride, pad]. */
const CASES: Array<[string, Shape, number, number, number, Pad]> = [
  ['7x7 s2 pad 3 (stem), 3 channels', [2, 16, 16, 3], 7, 8, 2, 3],
  ['7x7 s2 pad 3 (stem), odd map', [2, 15, 13, 3], 7, 16, 2, 3],
  ['3x3 s1 pad 1, 162 rows (3 M tiles), 70 channels (2 N tiles)', [2, 9, 9, 70], 3, 24, 1, 1],
  ['3x3 s1 same, Cout 64 (36 K steps)', [2, 6, 6, 16], 3, 64, 1, 'same'],
  ['3x3 s1 explicit pad 1', [2, 5, 7, 8], 3, 12, 1, [[0, 0], [1, 1], [1, 1], [0, 0]]],
  ['3x3 s2 pad 1, even map', [5, 8, 8, 16], 3, 32, 2, 1],
  ['3x3 s2 pad 1, odd map', [3, 9, 9, 8], 3, 12, 2, 1],
  ['3x3 s2 same (tfjs pads 0 before, 1 after)', [5, 8, 8, 8], 3, 12, 2, 'same'],
  ['3x3 s2 pad 1 on a 1×1 map (3 phases with no rows)', [64, 1, 1, 8], 3, 16, 2, 1],
  ['3x3 s2 pad 1 on 2×2 (layer4 downsample at 64 px)', [64, 2, 2, 32], 3, 64, 2, 1],
  ['1x1 s2 valid (downsample: 3 phases with no taps)', [5, 8, 8, 6], 1, 10, 2, 'valid'],
  ['1x1 s2 pad 0, odd map, 128 channels', [4, 7, 7, 128], 1, 32, 2, 0],
  ['1x1 s1 valid (bottleneck)', [3, 5, 5, 20], 1, 36, 1, 'valid'],
  ['3x3 s1 pad 1, 3 tiles of 64 channels', [4, 4, 4, 160], 3, 8, 1, 1],
];

/** dy's shape `[N, Ho, Wo, Cout]` for the case (tfjs's own output-size rule). */
function dyShape(xs: Shape, k: number, co: number, s: number, pad: Pad): Shape {
  const info = tf.backend_util.computeConv2DInfo(xs, [k, k, xs[3], co], s, 1, pad as never, undefined, false, 'channelsLast');
  return info.outShape;
}

/** dy (seeded) for the case and its dx through `Conv2DBackpropInput` on the active backend. */
function inputGrad(xs: Shape, k: number, co: number, s: number, pad: Pad): () => tf.Tensor {
  return () => {
    const ho = dyShape(xs, k, co, s, pad);
    const dy = tf.tensor4d(lcg(tf.util.sizeFromShape(ho), 5), ho);
    const w = tf.tensor4d(lcg(k * k * xs[3] * co, 6), [k, k, xs[3], co]);
    return tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w },
      { inputShape: xs, strides: [s, s], pad, dataFormat: 'NHWC' } as unknown as tf.NamedAttrMap) as tf.Tensor;
  };
}

test('phaseGemm: the largest phase\'s rows and K (3×3 s2 pad 1 on 9×9: 5×5 rows, 2×2 taps; 1×1 s2: 1 tap)', () => {
  const geometry = (xs: Shape, k: number, co: number, s: number, pad: 'valid' | number) =>
    convGeometry(tf.backend_util.computeConv2DInfo(xs, [k, k, xs[3], co], s, 1, pad, undefined, false, 'channelsLast'));
  assert.deepEqual(phaseGemm(geometry([2, 9, 9, 8], 3, 12, 2, 1)), { maxM: 2 * 5 * 5, maxK: 4 * 12, phases: 4 });
  assert.deepEqual(phaseGemm(geometry([2, 9, 9, 8], 3, 12, 1, 1)), { maxM: 2 * 81, maxK: 9 * 12, phases: 1 });
  assert.deepEqual(phaseGemm(geometry([5, 8, 8, 6], 1, 10, 2, 'valid')), { maxM: 5 * 16, maxK: 10, phases: 4 });
  assert.deepEqual(phaseGemm(geometry([2, 16, 16, 3], 7, 8, 2, 3)), { maxM: 2 * 64, maxK: 16 * 8, phases: 4 });
});

test('the WebGPU Conv2DBackpropInput is this project\'s and matches tfjs cpu for every ResNet convolution form', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  assert.ok(webgpuTrainingKernelsRegistered(), 'our Conv2DBackpropInput (and the other kernels) registered on webgpu');
  for (const [name, xs, k, co, s, pad] of CASES) {
    assert.ok(phaseGemm(convGeometry(tf.backend_util.computeConv2DInfo(xs, [k, k, xs[3], co], s, 1, pad as never, undefined, false,
      'channelsLast'))).maxM >= 64, `${name}: a case for the tiled program (≥ 64 pixels in a phase)`);
    const ref = await valuesOn('cpu', inputGrad(xs, k, co, s, pad));
    // A released buffer of dx's size full of NaN, which tfjs's pool hands to the next output of that size: every dx
    // value, the zeros of phases no tap reaches included, must be written.
    await tf.setBackend('webgpu');
    const dirty = tf.fill(xs, NaN);
    await dirty.data();
    dirty.dispose();
    const got = await valuesOn('webgpu', inputGrad(xs, k, co, s, pad));
    const e = relError(got[0]!, ref[0]!);
    assert.ok(e <= TOL, `${name}: relative error ${e.toExponential(2)} > ${TOL}`);
  }
});

test('the tiled program runs for those forms (no fallback), one dispatch, tensors and buffers flat; PETS_WEBGPU_INPUT_GRAD=tfjs falls back', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  let fallbacks = 0;
  const fallback: tf.KernelFunc = () => {
    fallbacks++;
    throw new Error('fallback');
  };
  const ours = conv2DBackpropInputWebgpu(fallback);
  const call = (xs: Shape, k: number, co: number, s: number, pad: Pad) => async (): Promise<void> => {
    const dy = tf.ones(dyShape(xs, k, co, s, pad)), w = tf.ones([k, k, xs[3], co]);
    const info = ours({ inputs: { dy, filter: w }, backend: tf.backend(), attrs: { inputShape: xs, strides: [s, s], pad, dataFormat: 'NHWC' } as never }) as tf.TensorInfo;
    const dx = tf.engine().makeTensorFromTensorInfo(info);
    assert.deepEqual(dx.shape, xs);
    await dx.data();
    tf.dispose([dx, dy, w]);
  };
  for (const [name, xs, k, co, s, pad] of CASES) {
    const work = call(xs, k, co, s, pad);
    await work();
    const tensors = tf.memory().numTensors;
    const buffers = tf.engine().backend.numDataIds();
    const counts = await countDispatches(work);
    // `ones` is tfjs's Fill (its own dispatches); the kernel, called directly, is the one dispatch outside kernels.
    assert.equal(counts.kernels.find((c) => c.name === '(outside kernels)')?.dispatches ?? 0, 1, `${name}: one dispatch`);
    assert.equal(tf.memory().numTensors, tensors, `${name}: tensors after = before`);
    assert.equal(tf.engine().backend.numDataIds(), buffers, `${name}: webgpu buffers after = before`);
  }
  assert.equal(fallbacks, 0, 'no case fell back to tfjs\'s kernel');
  // Fewer than 64 pixels in every phase (one mostly idle tile of rows): tfjs's kernel.
  await assert.rejects(call([2, 4, 4, 8], 3, 8, 1, 1)(), /fallback/);
  await assert.rejects(call([1, 8, 8, 8], 3, 8, 2, 1)(), /fallback/);
  assert.equal(fallbacks, 2);
  process.env[INPUT_GRAD_ENV] = 'tfjs';
  try {
    await assert.rejects(call([1, 8, 8, 8], 3, 8, 1, 1)(), /fallback/);
    assert.equal(fallbacks, 3);
  } finally {
    delete process.env[INPUT_GRAD_ENV];
  }
  // tfjs's own kernel behind the switch, through the registered kernel: the same values as ours.
  const f = inputGrad([3, 9, 9, 8], 3, 12, 2, 1);
  const oursValues = await valuesOn('webgpu', f);
  process.env[INPUT_GRAD_ENV] = 'tfjs';
  try {
    const tfjsValues = await valuesOn('webgpu', f);
    assert.ok(relError(tfjsValues[0]!, oursValues[0]!) <= TOL);
  } finally {
    delete process.env[INPUT_GRAD_ENV];
  }
});

test('conv2d gradients through tf.grads on webgpu (the training path) match cpu with this kernel', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  for (const [xs, k, co, s, pad] of [[[3, 10, 10, 8], 3, 16, 2, 1], [[3, 10, 10, 8], 1, 16, 2, 'valid']] as Array<[Shape, number, number, number, Pad]>) {
    const f = (): tf.Tensor[] => {
      const x = tf.tensor4d(lcg(tf.util.sizeFromShape(xs), 1), xs), w = tf.tensor4d(lcg(k * k * xs[3] * co, 2), [k, k, xs[3], co]);
      const g = (a: tf.Tensor) => {
        const y = tf.conv2d(a as tf.Tensor4D, w, s, pad as never);
        return tf.sum(tf.mul(y, tf.tensor(lcg(y.size, 3), y.shape)));
      };
      return [tf.grad(g)(x)];
    };
    const ref = await valuesOn('cpu', f);
    const got = await valuesOn('webgpu', f);
    assert.ok(relError(got[0]!, ref[0]!) <= TOL, `${k}x${k} s${s}: ${relError(got[0]!, ref[0]!)}`);
  }
});
