/**
 * The WGSL BatchNorm(+ReLU, +residual) kernels (`compute/webgpu/batch-norm.ts`) against tfjs's reference `cpu`
 * backend, through the op every caller uses (`batchNormTrain`): forward y, batch mean and biased variance, and the
 * gradients w.r.t. x, γ, β and the residual, for ResNet's channel counts 64…512 at small odd spatial sizes (one and
 * several row splits, a partial channel block), with and without ReLU and residual; the running-statistic update and
 * eval-mode BatchNorm (+ its gradient). Also: the webgpu kernels are the ones used (dispatch counts of one forward
 * and one backward), and tfjs memory stays flat.
 *
 * Metric: relative error max|webgpu − cpu| / max|cpu| (float32 both sides), per output. Tolerance 1e-5 for the
 * forward outputs (as the other single kernels) and 1e-4 for the gradients and for the forward of the case whose
 * channel means reach 100 with σ ≈ 1 (float32 rounds x there to ~4e-6 of σ, on both sides, before any kernel): dx = γσ⁻¹(d − dβ/P − x̂·dγ/P) is a
 * difference of terms of similar size, so float32 rounding of the sums (summed in another order on each side)
 * shows more. Skipped, saying why, without a WebGPU adapter; required with PETS_REQUIRE_WEBGPU=1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { batchNormInfer, batchNormTrain, updateRunningStat } from '../../../../../src/training/compute/batch-norm.js';
import {
  BN_INFER_KERNEL, BN_RUNNING_UPDATE_KERNEL, BN_TRAIN_GRAD_KERNEL, BN_TRAIN_KERNEL,
} from '../../../../../src/training/compute/kernels/batch-norm.js';
import { rowSplits } from '../../../../../src/training/compute/webgpu/batch-norm.js';
import { countDispatches } from '../../../../../src/training/compute/webgpu/dispatch-count.js';
import { batchNorm64, batchNormWithGrads, lcg, relError } from '../numeric.js';
import { valuesOn, webgpuOrSkip } from './support.js';

type Shape = [number, number, number, number];

/** batchNormTrain's outputs and its gradients w.r.t. x, γ, β (and the residual) under a random upstream gradient. */
function bnCase(shape: Shape, relu: boolean, withResidual: boolean, offset: number): () => tf.Tensor[] {
  return () => {
    const c = shape[3];
    const size = tf.util.sizeFromShape(shape);
    // Channel-dependent offset and scale: statistics differ per channel, the mean far from 0 in some.
    const x = tf.add(tf.mul(tf.tensor4d(lcg(size, 1), shape), tf.linspace(0.5, 3, c)), tf.linspace(-offset, offset, c)) as tf.Tensor4D;
    const r = tf.tensor4d(lcg(size, 5), shape), w = tf.tensor4d(lcg(size, 4), shape);
    const gamma = tf.add(tf.tensor1d(lcg(c, 2)), 1) as tf.Tensor1D, beta = tf.tensor1d(lcg(c, 3));
    const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor, res?: tf.Tensor): tf.Scalar => {
      const out = batchNormTrain(a, g as tf.Tensor1D, b as tf.Tensor1D, { relu, residual: res ?? null });
      tf.dispose([out.mean, out.variance]);
      return tf.sum(tf.mul(out.y, w));
    };
    const { y, mean, variance } = batchNormTrain(x, gamma, beta, { relu, residual: withResidual ? r : null });
    return [y, mean, variance, ...tf.grads(f)(withResidual ? [x, gamma, beta, r] : [x, gamma, beta])];
  };
}

const NAMES = ['y', 'mean', 'variance', 'dx', 'dgamma', 'dbeta', 'dresidual'];

test('rowSplits covers the rows, more splits for fewer channels, one split for few rows', () => {
  for (const [p, c] of [[8, 512], [50, 64], [900, 64], [200704, 64], [3136, 512], [100, 70]]) {
    const { splits, chunk } = rowSplits(p!, c!);
    assert.ok(splits >= 1 && splits * chunk >= p! && (splits - 1) * chunk < p!, `[${p}, ${c}]: ${splits} × ${chunk}`);
  }
  assert.equal(rowSplits(50, 64).splits, 1);
  assert.ok(rowSplits(200704, 64).splits > rowSplits(200704, 512).splits);
  assert.ok(rowSplits(900, 64).splits > 1);
});

test('WGSL BatchNorm(+ReLU, +residual) forward and gradients match cpu: C 64…512, odd sizes, several row splits', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  assert.ok(tf.getKernel(BN_TRAIN_KERNEL, 'webgpu') && tf.getKernel(BN_TRAIN_GRAD_KERNEL, 'webgpu'), 'kernels registered on webgpu');
  // [shape, relu, residual, mean offset]: layer1 at 5 px (1 split), layer1 at 15 px ×4 (7 splits, a short last one),
  // layer2..4 at odd sizes, 512 channels at 2×2 (P = 8), and 70 channels (a partial 64-channel block).
  const cases: Array<[Shape, boolean, boolean, number]> = [
    [[2, 5, 5, 64], true, false, 3],
    [[4, 15, 15, 64], true, true, 10],
    [[2, 7, 7, 128], false, false, 1],
    [[2, 3, 3, 256], false, true, 3],
    [[2, 2, 2, 512], true, true, 3],
    [[3, 5, 7, 70], true, false, 100],
  ];
  for (const [shape, relu, withResidual, offset] of cases) {
    const name = `[${shape}] relu=${relu} residual=${withResidual}`;
    const ref = await valuesOn('cpu', bnCase(shape, relu, withResidual, offset));
    const got = await valuesOn('webgpu', bnCase(shape, relu, withResidual, offset));
    assert.equal(got.length, withResidual ? 7 : 6, `${name}: output count`);
    ref.forEach((r, i) => {
      const e = relError(got[i]!, r);
      const tol = i < 3 && offset < 100 ? 1e-5 : 1e-4;
      assert.ok(e <= tol, `${name} ${NAMES[i]}: relative error ${e.toExponential(2)} > ${tol}`);
    });
  }
});

test('the webgpu BatchNorm runs as 3 dispatches + 2 copies forward and 3 (+1 with ReLU and residual) + 2 copies backward; memory stays flat', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  await tf.setBackend('webgpu');
  const shape: Shape = [2, 9, 9, 64];
  for (const [relu, withResidual, backward] of [[true, true, 4], [false, true, 3], [true, false, 3], [false, false, 3]] as const) {
    const x = tf.tensor4d(lcg(tf.util.sizeFromShape(shape), 1), shape), r = tf.tensor4d(lcg(tf.util.sizeFromShape(shape), 2), shape);
    const gamma = tf.ones([64]) as tf.Tensor1D, beta = tf.zeros([64]) as tf.Tensor1D;
    const step = async (): Promise<void> => {
      const grads = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor, res: tf.Tensor) => {
        const out = batchNormTrain(a, g as tf.Tensor1D, b as tf.Tensor1D, { relu, residual: withResidual ? res : null });
        tf.dispose([out.mean, out.variance]);
        return tf.sum(out.y);
      })(withResidual ? [x, gamma, beta, r] : [x, gamma, beta]);
      await Promise.all(grads.map((g) => g.data()));
      tf.dispose(grads);
    };
    await step(); // uploads the inputs (first use on the device)
    const tensors = tf.memory().numTensors;
    const buffers = tf.engine().backend.numDataIds();
    const counts = await countDispatches(step);
    const of = (name: string): number => counts.kernels.find((k) => k.name === name)?.dispatches ?? 0;
    assert.equal(of(BN_TRAIN_KERNEL), 3, `relu=${relu} residual=${withResidual}: forward dispatches`);
    for (const name of [BN_TRAIN_KERNEL, BN_TRAIN_GRAD_KERNEL]) {
      assert.equal(counts.kernels.find((k) => k.name === name)?.copies, 2, `${name}: the (mean, variance) or (dβ, dγ) pair copied out`);
    }
    assert.equal(of(BN_TRAIN_GRAD_KERNEL), backward, `relu=${relu} residual=${withResidual}: backward dispatches`);
    for (const name of [BN_TRAIN_KERNEL, BN_TRAIN_GRAD_KERNEL]) {
      assert.equal(counts.kernels.find((k) => k.name === name)?.uploads, 0, `${name}: no uploads`);
    }
    assert.equal(tf.memory().numTensors, tensors, 'tensors after = before');
    assert.equal(tf.engine().backend.numDataIds(), buffers, 'webgpu buffers after = before');
    assert.ok(!Object.hasOwn(tf.backend(), 'recordAndSubmit') && !Object.hasOwn(tf.engine(), 'runKernel'), 'counters removed');
    tf.dispose([x, r, gamma, beta]);
  }
});

test('WGSL running-statistic update and eval-mode BatchNorm(+residual, +ReLU, + its gradient) match cpu, one dispatch each', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  assert.ok(tf.getKernel(BN_RUNNING_UPDATE_KERNEL, 'webgpu') && tf.getKernel(BN_INFER_KERNEL, 'webgpu'), 'kernels registered on webgpu');
  const shape: Shape = [2, 5, 3, 70];
  const inferCase = (relu: boolean, withResidual: boolean) => (): tf.Tensor[] => {
    const size = tf.util.sizeFromShape(shape);
    const x = tf.add(tf.tensor4d(lcg(size, 1), shape), 2), r = tf.tensor4d(lcg(size, 5), shape), w = tf.tensor4d(lcg(size, 4), shape);
    const mean = tf.tensor1d(lcg(70, 6)), variance = tf.add(tf.tensor1d(lcg(70, 7)), 0.6) as tf.Tensor1D;
    const gamma = tf.add(tf.tensor1d(lcg(70, 2)), 1) as tf.Tensor1D, beta = tf.tensor1d(lcg(70, 3));
    const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor, res?: tf.Tensor): tf.Scalar =>
      tf.sum(tf.mul(batchNormInfer(a, mean, variance, g as tf.Tensor1D, b as tf.Tensor1D, { relu, residual: res ?? null }), w));
    const y = batchNormInfer(x, mean, variance, gamma, beta, { relu, residual: withResidual ? r : null });
    const running = [updateRunningStat(mean, gamma, 0.1), updateRunningStat(variance, gamma, 0.1, 50 / 49)];
    return [y, ...running, ...tf.grads(f)(withResidual ? [x, gamma, beta, r] : [x, gamma, beta])];
  };
  for (const [relu, withResidual] of [[true, true], [false, false]] as const) {
    const ref = await valuesOn('cpu', inferCase(relu, withResidual));
    const got = await valuesOn('webgpu', inferCase(relu, withResidual));
    ref.forEach((r, i) => {
      const e = relError(got[i]!, r);
      assert.ok(e <= 1e-5, `relu=${relu} residual=${withResidual} output ${i}: relative error ${e.toExponential(2)} > 1e-5`);
    });
  }
  await tf.setBackend('webgpu');
  const x = tf.tensor4d(lcg(tf.util.sizeFromShape(shape), 1), shape), r = tf.tensor4d(lcg(tf.util.sizeFromShape(shape), 2), shape);
  const v = tf.ones([70]) as tf.Tensor1D;
  const work = async (): Promise<void> => {
    const outs = [batchNormInfer(x, v, v, v, v, { relu: true, residual: r }), updateRunningStat(v, v, 0.1)];
    await Promise.all(outs.map((o) => o.data()));
    tf.dispose(outs);
  };
  await work();
  const tensors = tf.memory().numTensors;
  const counts = await countDispatches(work);
  assert.equal(counts.dispatches, 2, 'one dispatch each');
  assert.equal(counts.uploads, 0, 'no scalar uploads');
  assert.equal(tf.memory().numTensors, tensors, 'tensors after = before');
  tf.dispose([x, r, v]);
});

test('countDispatches refuses a backend other than webgpu', async () => {
  await tf.setBackend('cpu');
  await assert.rejects(countDispatches(() => undefined), (err: Error & { code?: string }) => err.code === 'ERR_BACKEND');
});

// Against float64 at ResNet sizes (as float64-reference.test.ts does for wasm and cpu): layer1 at 56 px, 4 images
// (12,544 values per channel, 98 row splits) and layer4 at 7 px, with the same bound, 1e-6: the WGSL kernels sum
// in float32 but in short partial sums merged pairwise (measured on lavapipe ≤ 3.2e-7, the WASM kernels' float64
// sums ≤ 2.3e-7).
for (const shape of [[4, 56, 56, 64], [4, 7, 7, 512]] as Shape[]) {
  test(`WGSL batchNormTrain + residual + ReLU on [${shape}]: y and all gradients match float64 ≤ 1e-6`, async (t) => {
    if (!(await webgpuOrSkip(t))) return;
    const c = shape[3];
    const n = tf.util.sizeFromShape(shape);
    const scaled = (m: number, seed: number, scale: number, offset = 0): Float32Array => lcg(m, seed).map((v) => v * scale + offset);
    const x = scaled(n, 11, 2, 0.7), g = scaled(c, 12, 1, 1), b = scaled(c, 13, 0.4), r = scaled(n, 14, 1), dy = scaled(n, 15, 2e-3);
    const ref = batchNorm64(x, g, b, r, dy, c);
    const got = await valuesOn('webgpu', () => batchNormWithGrads(x, g, b, r, dy, shape));
    ['y', 'dx', 'dgamma', 'dbeta', 'dresidual'].forEach((name, i) => {
      const e = relError(got[i]!, ref[i]!);
      assert.ok(e <= 1e-6, `${name}: relative error ${e.toExponential(2)} > 1e-6`);
      t.diagnostic(`${name}: ${e.toExponential(2)}`);
    });
  });
}
