/**
 * The fused training-mode BatchNorm op (`batchNormTrain`): its WASM kernels and its tfjs-op fallback against the
 * textbook composition differentiated by tfjs's autodiff on the reference `cpu` backend.
 *
 * Metric: relative error = max|actual − expected| / max|expected| (float32 both sides), tolerance 1e-4. The loss
 * is Σ y·w with fixed random weights w, so dy is not constant (Σ y alone has dx ≡ 0 through a BatchNorm).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { batchNormInfer, batchNormTrain, updateRunningStat } from '../../../../src/training/compute/batch-norm.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { lcg, on, relError } from './numeric.js';

const EPS = 1e-5;

const SHAPE: [number, number, number, number] = [3, 5, 4, 8];

/** x (offset by +3 so that centring matters), γ, β and the loss weights. */
function inputs(): { x: tf.Tensor4D; gamma: tf.Tensor1D; beta: tf.Tensor1D; w: tf.Tensor4D; r: tf.Tensor4D } {
  const c = SHAPE[3];
  return {
    r: tf.tensor4d(lcg(tf.util.sizeFromShape(SHAPE), 5), SHAPE),
    x: tf.add(tf.tensor4d(lcg(tf.util.sizeFromShape(SHAPE), 1), SHAPE), 3),
    gamma: tf.add(tf.tensor1d(lcg(c, 2)), 1),
    beta: tf.tensor1d(lcg(c, 3)),
    w: tf.tensor4d(lcg(tf.util.sizeFromShape(SHAPE), 4), SHAPE),
  };
}

interface Case {
  readonly relu: boolean;
  readonly residual: boolean;
}

/**
 * Reference: PyTorch's training-mode formula (+ residual, + ReLU) as plain tfjs ops, differentiated by autodiff.
 * Returns [y, mean, variance, dx, dγ, dβ] and dr with a residual.
 */
function reference({ relu, residual }: Case): tf.Tensor[] {
  const { x, gamma, beta, w, r } = inputs();
  const f = (xs: tf.Tensor, g: tf.Tensor, b: tf.Tensor, rs: tf.Tensor): tf.Tensor => {
    const mean = tf.mean(xs, [0, 1, 2]);
    const variance = tf.mean(tf.square(tf.sub(xs, mean)), [0, 1, 2]);
    const normed = tf.add(tf.mul(tf.div(tf.sub(xs, mean), tf.sqrt(tf.add(variance, EPS))), g), b);
    const y = residual ? tf.add(normed, rs) : normed;
    return relu ? tf.relu(y) : y;
  };
  const grads = tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(f(a[0]!, a[1]!, a[2]!, a[3] ?? r), w)));
  const mean = tf.mean(x, [0, 1, 2]);
  const all = grads(residual ? [x, gamma, beta, r] : [x, gamma, beta]);
  return [f(x, gamma, beta, r), mean, tf.mean(tf.square(tf.sub(x, mean)), [0, 1, 2]), ...all];
}

/** The op under test, same outputs as {@link reference}. */
function fused({ relu, residual }: Case): tf.Tensor[] {
  const { x, gamma, beta, w, r } = inputs();
  let stats: tf.Tensor[] = [];
  const grads = tf.grads((...args: tf.Tensor[]) => {
    const [xs, g, b, rs] = args;
    const out = batchNormTrain(xs!, g as tf.Tensor1D, b as tf.Tensor1D, { eps: EPS, relu, residual: rs ?? null });
    stats = [tf.keep(tf.clone(out.y)), out.mean, out.variance]; // y itself is freed with the gradient scope
    return tf.sum(tf.mul(out.y, w));
  });
  const g = grads(residual ? [x, gamma, beta, r] : [x, gamma, beta]);
  const out = [...stats.map((t) => tf.clone(t)), ...g];
  tf.dispose(stats); // kept tensors: mean and variance by the op, the y copy above
  return out;
}

const NAMES = ['y', 'mean', 'variance', 'dx', 'dgamma', 'dbeta', 'dresidual'];

before(async () => {
  await import('@tensorflow/tfjs-backend-cpu');
  await initBackend('wasm');
});

const CASES: readonly Case[] = [
  { relu: false, residual: false }, { relu: true, residual: false },
  { relu: true, residual: true }, { relu: false, residual: true },
];

for (const c of CASES) {
  const { relu } = c;
  for (const backend of ['wasm', 'cpu']) {
    const path = backend === 'wasm' ? 'fused wasm kernels' : 'tfjs-op fallback';
    test(`batchNormTrain${c.residual ? ' + residual' : ''}${relu ? ' + ReLU' : ''} (${path}) matches autodiff on cpu ≤ 1e-4`, async () => {
      const expected = await on('cpu', () => reference(c));
      const actual = await on(backend, () => fused(c));
      assert.equal(actual.length, expected.length, 'number of outputs');
      for (let i = 0; i < expected.length; i++) {
        const err = relError(actual[i]!, expected[i]!);
        assert.ok(err <= 1e-4, `${NAMES[i]}: relative error ${err.toExponential(2)} > 1e-4`);
      }
      if (relu) assert.ok(actual[0]!.some((v) => v === 0), 'the ReLU case must clip some outputs');
    });
  }
}

test('repeated gradients through batchNormTrain leak neither tensors nor wasm buffers', async () => {
  await tf.setBackend('wasm');
  const backend = tf.backend() as tf.KernelBackend & { numDataIds(): number };
  const c: Case = { relu: true, residual: true };
  tf.dispose(tf.tidy(() => fused(c)));
  const tensors = tf.memory().numTensors;
  const dataIds = backend.numDataIds();
  for (let i = 0; i < 3; i++) tf.dispose(tf.tidy(() => fused(c)));
  assert.equal(tf.memory().numTensors, tensors, 'engine tensors');
  assert.equal(backend.numDataIds(), dataIds, 'wasm data ids');
});

test('one value per channel is refused with ERR_DATA', async () => {
  for (const name of ['wasm', 'cpu']) {
    await tf.setBackend(name);
    tf.tidy(() => assert.throws(() => batchNormTrain(tf.ones([1, 1, 1, 4]), tf.ones([4]), tf.zeros([4])),
      (err: unknown) => isTrainerError(err, 'ERR_DATA')));
  }
});

test('batchNormInfer (running statistics, + residual, + ReLU) and updateRunningStat follow the formulas on wasm and cpu', async () => {
  const c = 8;
  const x = lcg(3 * 4 * c, 1), r = lcg(3 * 4 * c, 2);
  const m = lcg(c, 3), v = lcg(c, 4).map((a) => a + 0.6), g = lcg(c, 5).map((a) => a + 1), b = lcg(c, 6);
  const want = Float32Array.from(x, (xi, i) => {
    const k = i % c;
    return Math.max(0, g[k]! * (xi - m[k]!) / Math.sqrt(v[k]! + EPS) + b[k]! + r[i]!);
  });
  const wantRunning = Float32Array.from(m, (mk, k) => 0.9 * mk + 0.1 * (50 / 49) * v[k]!);
  for (const backend of ['wasm', 'cpu']) {
    const [y, running] = await on(backend, () => [
      batchNormInfer(tf.tensor2d(x, [12, c]), tf.tensor1d(m), tf.tensor1d(v), tf.tensor1d(g), tf.tensor1d(b),
        { eps: EPS, relu: true, residual: tf.tensor2d(r, [12, c]) }),
      updateRunningStat(tf.tensor1d(m), tf.tensor1d(v), 0.1, 50 / 49),
    ]);
    assert.ok(relError(y!, want) <= 1e-6, `${backend} batchNormInfer: ${relError(y!, want)}`);
    assert.ok(relError(running!, wantRunning) <= 1e-6, `${backend} updateRunningStat: ${relError(running!, wantRunning)}`);
  }
  const t1 = tf.ones([4, c]), p = tf.ones([c]) as tf.Tensor1D;
  assert.throws(() => batchNormInfer(t1, p, p, p, p, { eps: 0 }), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && /eps must be > 0/.test(e.message));
  assert.throws(() => batchNormInfer(t1, p, p, p, p, { residual: tf.ones([2, c]) }),
    (e: unknown) => isTrainerError(e, 'ERR_INTERNAL') && /residual must have the input's shape \[4,8\]/.test(e.message));
  tf.dispose([t1, p]);
});
