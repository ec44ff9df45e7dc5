/**
 * The training kernels at the sizes of a 224-px ResNet (issue #19) against float64 references computed here in
 * plain JavaScript from the definitions, on both backends that train (`wasm`: the project's kernels; `cpu`: tfjs's
 * kernels plus the project's tfjs-op BatchNorm gradient). The float32-vs-float32 tests elsewhere (wasm vs cpu)
 * cannot see an error both share; these can.
 *
 * Shapes: the last stage's 7×7 maps (a per-channel sum over only 4·7·7 = 196 positions), its stride-2 entry
 * convolutions from 14×14, the stem's 7×7/2 convolution (a filter-gradient sum over N·112·112 positions) and
 * max pool, and BatchNorm over 4·56·56 = 12544 values per channel. tfjs-cpu's own convolution kernels are checked
 * at the last stage's entry shapes (the stem at 224 px there would cost minutes of a loaded 2-core machine).
 *
 * Metric: relative error max|ours − ref| / max|ref|. Tolerances: BatchNorm 1e-6 (sums in float64, measured
 * ≤ 2.3e-7); convolutions 3e-5 (XNNPACK and tfjs-cpu sum in float32 or float64: measured ≤ 7.6e-6, the stem's
 * 50176-term filter-gradient sums being the largest); max-pool gradient 1e-6 (it moves values and sums, in float32,
 * the up to 4 overlapping windows that share a maximum: measured 7.2e-8).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { batchNorm64, batchNormWithGrads, lcg, relError } from './numeric.js';

const BACKENDS = ['wasm', 'cpu'] as const;

before(async () => {
  await initBackend('wasm'); // also registers tfjs's gradients and the project's wasm kernels
});

type Shape4 = [number, number, number, number];

const size = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

function scaled(n: number, seed: number, scale: number, offset = 0): Float32Array {
  return lcg(n, seed).map((v) => v * scale + offset);
}

/**
 * Float64 gradients of `Σ conv2d(x, w)·dy` (NHWC, HWIO, dilation 1, symmetric zero padding `pad`):
 * dw[a,b,u,o] = Σ x[n, i·s + a − p, j·s + b − p, u]·dy[n,i,j,o]; dx by the same index map.
 */
function convGrads64(x: Float32Array, xs: Shape4, w: Float32Array, ws: Shape4, dy: Float32Array, stride: number, pad: number): { dx: Float64Array; dw: Float64Array } {
  const [n, h, wd, ci] = xs;
  const [kh, kw, , co] = ws;
  const ho = Math.floor((h + 2 * pad - kh) / stride) + 1;
  const wo = Math.floor((wd + 2 * pad - kw) / stride) + 1;
  const dw = new Float64Array(w.length);
  const dx = new Float64Array(x.length);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < ho; i++) {
      for (let j = 0; j < wo; j++) {
        const d0 = ((b * ho + i) * wo + j) * co;
        for (let a = 0; a < kh; a++) {
          const r = i * stride + a - pad;
          if (r < 0 || r >= h) continue;
          for (let c = 0; c < kw; c++) {
            const q = j * stride + c - pad;
            if (q < 0 || q >= wd) continue;
            const x0 = ((b * h + r) * wd + q) * ci;
            for (let u = 0; u < ci; u++) {
              const xv = x[x0 + u]!;
              const w0 = ((a * kw + c) * ci + u) * co;
              let acc = 0;
              for (let o = 0; o < co; o++) {
                dw[w0 + o]! += xv * dy[d0 + o]!;
                acc += w[w0 + o]! * dy[d0 + o]!;
              }
              dx[x0 + u]! += acc;
            }
          }
        }
      }
    }
  }
  return { dx, dw };
}

interface ConvCase {
  readonly name: string;
  readonly x: Shape4;
  readonly k: number;
  readonly co: number;
  readonly stride: number;
  readonly pad: number;
  /** Backends to check (the stem at 224 px on tfjs-cpu's own kernels alone would cost minutes). */
  readonly backends: readonly string[];
}

const CONV_CASES: readonly ConvCase[] = [
  { name: 'stem 7x7/2 p3 at 224 px', x: [2, 224, 224, 3], k: 7, co: 64, stride: 2, pad: 3, backends: ['wasm'] },
  { name: 'layer4 entry 3x3/2 p1, 14→7', x: [4, 14, 14, 256], k: 3, co: 512, stride: 2, pad: 1, backends: BACKENDS },
  { name: 'layer4 downsample 1x1/2, 14→7', x: [4, 14, 14, 256], k: 1, co: 512, stride: 2, pad: 0, backends: BACKENDS },
  { name: 'layer4 3x3/1 p1 on 7x7', x: [4, 7, 7, 512], k: 3, co: 512, stride: 1, pad: 1, backends: ['wasm'] },
];

for (const c of CONV_CASES) {
  test(`conv2d gradients, ${c.name}: dx and dw match float64 ≤ 3e-5 on ${c.backends.join(' and ')}`, async () => {
    const ws: Shape4 = [c.k, c.k, c.x[3], c.co];
    const ho = Math.floor((c.x[1] + 2 * c.pad - c.k) / c.stride) + 1;
    const dyShape: Shape4 = [c.x[0], ho, ho, c.co];
    const x = scaled(size(c.x), 1, 2);
    const w = scaled(size(ws), 2, 0.2);
    const dy = scaled(size(dyShape), 3, 2e-3);
    const ref = convGrads64(x, c.x, w, ws, dy, c.stride, c.pad);
    for (const backend of c.backends) {
      await tf.setBackend(backend);
      const [gx, gw] = tf.tidy(() => {
        const dyt = tf.tensor4d(dy, dyShape);
        const f = (a: tf.Tensor, b: tf.Tensor): tf.Scalar => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad), dyt));
        return tf.grads(f)([tf.tensor4d(x, c.x), tf.tensor4d(w, ws)]);
      });
      const errX = relError(gx!.dataSync(), ref.dx);
      const errW = relError(gw!.dataSync(), ref.dw);
      tf.dispose([gx!, gw!]);
      assert.ok(errX <= 3e-5, `${backend} dx: relative error ${errX.toExponential(2)} > 3e-5`);
      assert.ok(errW <= 3e-5, `${backend} dw: relative error ${errW.toExponential(2)} > 3e-5`);
    }
  });
}

for (const shape of [[4, 7, 7, 512], [4, 56, 56, 64]] as Shape4[]) {
  test(`batchNormTrain + residual + ReLU on [${shape}]: y and all gradients match float64 ≤ 1e-6 on ${BACKENDS.join(' and ')}`, async () => {
    const c = shape[3];
    const n = size(shape);
    // x offset from 0 (centring matters), γ in [0.5, 1.5), β in [−0.2, 0.2), a residual, a non-constant dy.
    const x = scaled(n, 11, 2, 0.7);
    const g = scaled(c, 12, 1, 1);
    const b = scaled(c, 13, 0.4);
    const r = scaled(n, 14, 1);
    const dy = scaled(n, 15, 2e-3);
    const ref = batchNorm64(x, g, b, r, dy, c);
    for (const backend of BACKENDS) {
      await tf.setBackend(backend);
      const outs = tf.tidy(() => batchNormWithGrads(x, g, b, r, dy, shape));
      const names = ['y', 'dx', 'dgamma', 'dbeta', 'dresidual'];
      const errs = outs.map((t, i) => relError(t.dataSync(), ref[i]!));
      tf.dispose(outs);
      errs.forEach((e, i) => assert.ok(e <= 1e-6, `${backend} ${names[i]}: relative error ${e.toExponential(2)} > 1e-6`));
    }
  });
}

test('max pool 3x3/2 p1 gradient at the stem\'s [4,112,112,64] matches float64 ≤ 1e-6 on wasm (the project\'s kernel)', async () => {
  const shape: Shape4 = [4, 112, 112, 64];
  const [n, h, w, c] = shape;
  const ho = 56;
  const x = scaled(size(shape), 21, 2);
  const dy = scaled(n * ho * ho * c, 22, 1);
  // Reference: each window's maximum (first in row-major window order; random data has no ties) gets dy.
  const ref = new Float64Array(x.length);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < ho; i++) {
      for (let j = 0; j < ho; j++) {
        for (let k = 0; k < c; k++) {
          let at = -1;
          for (let a = 2 * i - 1; a <= 2 * i + 1; a++) {
            for (let q = 2 * j - 1; q <= 2 * j + 1; q++) {
              if (a < 0 || a >= h || q < 0 || q >= w) continue;
              const idx = ((b * h + a) * w + q) * c + k;
              if (at < 0 || x[idx]! > x[at]!) at = idx;
            }
          }
          ref[at]! += dy[((b * ho + i) * ho + j) * c + k]!;
        }
      }
    }
  }
  {
    const backend = 'wasm';
    await tf.setBackend(backend);
    const g = tf.tidy(() => {
      const dyt = tf.tensor4d(dy, [n, ho, ho, c]);
      return tf.grad((xs: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(xs as tf.Tensor4D, 3, 2, 1), dyt)))(tf.tensor4d(x, shape));
    });
    const err = relError(g.dataSync(), ref);
    g.dispose();
    assert.ok(err <= 1e-6, `${backend}: relative error ${err.toExponential(2)} > 1e-6`);
  }
});
