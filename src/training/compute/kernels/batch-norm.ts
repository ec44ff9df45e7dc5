/**
 * Training-mode BatchNorm (optionally fused with the ReLU that follows it) as two WASM kernels written in
 * JavaScript over the tensors' WASM-heap memory: one forward pass for the batch statistics and the normalised
 * output, one backward pass for all three gradients. They replace ~10 tfjs ops and ~4 full-size intermediates per
 * layer (centred input, its square, the scaled and the shifted output) kept alive until the backward pass.
 *
 * Layout: x, y, dy, dx are `[P, C]` float32 row-major with `P = N·H·W` (an NHWC tensor), statistics per channel.
 * Sums accumulate in float64. Formulas (Ioffe & Szegedy, "Batch Normalization", arXiv:1502.03167, §3; the fused
 * backward form as in PyTorch's `batch_norm_backward` / cuDNN):
 * ```
 * mean = Σx / P,  var = Σ(x − mean)² / P (biased, two passes),  σ⁻¹ = 1/√(var + eps),  x̂ = (x − mean)·σ⁻¹
 * y = γ·x̂ + β (+ r, the residual branch of a ResNet block, when given), then max(y, 0) when fused with ReLU
 * dy' = dy · [y > 0] (ReLU) or dy;  dβ = Σ dy';  dγ = Σ dy'·x̂;  dx = γ·σ⁻¹·(dy' − dβ/P − x̂·dγ/P);  dr = dy'
 * ```
 */
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { TrainerError } from '../../../contract/errors.js';
import { KernelScope } from './kernel-scope.js';

/** tfjs kernel name of the fused training-mode BatchNorm forward. */
export const BN_TRAIN_KERNEL = 'PetsBatchNormTrain';
/** tfjs kernel name of its backward. */
export const BN_TRAIN_GRAD_KERNEL = 'PetsBatchNormTrainGrad';

/**
 * tfjs kernel name of the running-statistic update `running·(1 − momentum) + batch·momentum·scale` (inputs
 * `running`, `batch` `[C] float32`; attrs {@link RunningUpdateAttrs}); registered on WebGPU and native, other backends run
 * the same formula as tfjs ops (see `compute/batch-norm.ts`, `updateRunningStat`).
 */
export const BN_RUNNING_UPDATE_KERNEL = 'PetsBatchNormRunningUpdate';

/** Attributes of {@link BN_RUNNING_UPDATE_KERNEL}. */
export interface RunningUpdateAttrs {
  /** PyTorch's BatchNorm momentum, in [0, 1]. */
  readonly momentum: number;
  /** Multiplies the batch statistic: 1 for the mean, n/(n − 1) for the variance (PyTorch keeps the unbiased one). */
  readonly scale: number;
}

/**
 * tfjs kernel name of eval-mode BatchNorm with running statistics (+ residual, + ReLU): inputs `x` [..., C], `mean`,
 * `variance`, `gamma`, `beta` `[C]`, optionally `residual` (shape of x); attrs {@link BatchNormTrainAttrs}; output
 * `γ·(x − mean)/√(variance + eps) + β (+ residual)`, then max(·, 0) when `relu`. Registered on WebGPU only.
 */
export const BN_INFER_KERNEL = 'PetsBatchNormInfer';

/** Attributes of both kernels. */
export interface BatchNormTrainAttrs {
  /** Added to the variance, > 0 (PyTorch 1e-5). */
  readonly eps: number;
  /** Apply (forward) / back-propagate through (backward) a ReLU after the affine map. */
  readonly relu: boolean;
  /** Forward: a `residual` input is added before the ReLU; backward: also return its gradient. Default false. */
  readonly residual?: boolean;
}

/**
 * `[P, C]` of a training-mode BatchNorm input x `[..., C]` (P = values per channel) with gamma `[C]`; shared by the
 * WASM/native and WebGPU kernels.
 * @throws TrainerError ERR_INTERNAL when gamma is not `[C]`; ERR_DATA when P < 2 (PyTorch: "Expected more than 1
 * value per channel when training").
 */
export function batchNormDims(x: TensorInfo, gamma: TensorInfo): [number, number] {
  const c = x.shape[x.shape.length - 1]!;
  const p = x.shape.reduce((a, b) => a * b, 1) / c;
  if (gamma.shape.length !== 1 || gamma.shape[0] !== c) {
    throw new TrainerError('ERR_INTERNAL', `BatchNorm gamma must be [${c}], got [${gamma.shape}]`);
  }
  if (p < 2) throw new TrainerError('ERR_DATA', `training-mode BatchNorm needs more than 1 value per channel, got [${x.shape}]`);
  return [p, c];
}

/**
 * Per-channel mean and biased variance of x `[P, C]` in one pass of float64 sums shifted by the first row
 * (`Σ(x − s)`, `Σ(x − s)²` with s = x[0, c] ≈ the mean; exact enough in float64 for float32 data, the
 * shifted-data algorithm of Chan, Golub & LeVeque, "Algorithms for computing the sample variance", 1983).
 */
function moments(x: Float32Array, p: number, c: number): [Float64Array, Float64Array] {
  const shift = Float64Array.from(x.subarray(0, c));
  const s1 = new Float64Array(c);
  const s2 = new Float64Array(c);
  for (let o = 0; o < p * c; o += c) {
    for (let k = 0; k < c; k++) {
      const d = x[o + k]! - shift[k]!;
      s1[k]! += d;
      s2[k]! += d * d;
    }
  }
  const mean = new Float64Array(c);
  const variance = new Float64Array(c);
  for (let k = 0; k < c; k++) {
    const m = s1[k]! / p;
    mean[k] = shift[k]! + m;
    variance[k] = Math.max(0, s2[k]! / p - m * m);
  }
  return [mean, variance];
}

/** y = (x − centre)·scale + beta + r, then max(·, 0) (branch-free: (v + |v|)/2 is exact) when `relu`. */
function normalise(xs: Float32Array, ys: Float32Array, p: number, coef: readonly Float32Array[], relu: boolean,
  r: Float32Array | null): void {
  const [centre, scale, beta] = coef as [Float32Array, Float32Array, Float32Array];
  const c = centre.length;
  if (r !== null) {
    for (let o = 0; o < p * c; o += c) {
      for (let k = 0; k < c; k++) {
        const v = (xs[o + k]! - centre[k]!) * scale[k]! + beta[k]! + r[o + k]!;
        ys[o + k] = relu ? (v + Math.abs(v)) * 0.5 : v;
      }
    }
  } else if (relu) {
    for (let o = 0; o < p * c; o += c) {
      for (let k = 0; k < c; k++) {
        const v = (xs[o + k]! - centre[k]!) * scale[k]! + beta[k]!;
        ys[o + k] = (v + Math.abs(v)) * 0.5;
      }
    }
  } else {
    for (let o = 0; o < p * c; o += c) {
      for (let k = 0; k < c; k++) ys[o + k] = (xs[o + k]! - centre[k]!) * scale[k]! + beta[k]!;
    }
  }
}

/** Σ dy and Σ dy·(x − centre) per channel, float64. */
function gradientSums(ds: Float32Array, xs: Float32Array, centre: Float32Array, p: number): [Float64Array, Float64Array] {
  const c = centre.length;
  const sumDy = new Float64Array(c);
  const sumDyCentred = new Float64Array(c);
  for (let o = 0; o < p * c; o += c) {
    for (let k = 0; k < c; k++) {
      const d = ds[o + k]!;
      sumDy[k]! += d;
      sumDyCentred[k]! += d * (xs[o + k]! - centre[k]!);
    }
  }
  return [sumDy, sumDyCentred];
}

/** dy·[y > 0], the ReLU's gradient (branch-free), written into `out`. */
function maskGradient(out: Float32Array, dys: Float32Array, ys: Float32Array): Float32Array {
  for (let i = 0; i < out.length; i++) out[i] = dys[i]! * Number(ys[i]! > 0);
  return out;
}

/**
 * Forward: inputs `x` [..., C], `gamma` [C], `beta` [C] and optionally `residual` (shape of x) float32; returns
 * `[y (shape of x), mean [C], variance [C]]` (variance biased, as used for normalising).
 *
 * @throws TrainerError ERR_DATA with one value per channel; ERR_INTERNAL on a parameter shape mismatch.
 */
export const batchNormTrainWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, gamma, beta, residual } = inputs as { x: TensorInfo; gamma: TensorInfo; beta: TensorInfo; residual?: TensorInfo };
  const { eps, relu } = attrs as unknown as BatchNormTrainAttrs;
  const [p, c] = batchNormDims(x, gamma);
  const scope = new KernelScope(backend as never, 'wasm');
  const y = scope.keep(scope.allocate([...x.shape]));
  const meanOut = scope.keep(scope.allocate([c]));
  const varOut = scope.keep(scope.allocate([c]));
  const xs = scope.view(x);
  const [mean, variance] = moments(xs, p, c);
  const g = scope.view(gamma);
  const b = scope.view(beta);
  const centre = Float32Array.from(mean);
  const scale = Float32Array.from({ length: c }, (_, k) => g[k]! / Math.sqrt(variance[k]! + eps));
  normalise(xs, scope.view(y), p, [centre, scale, b], relu, residual === undefined ? null : scope.view(residual));
  scope.view(meanOut).set(mean);
  scope.view(varOut).set(variance);
  return [y, meanOut, varOut];
};

/**
 * Backward: inputs `x`, `y` (the forward output), `dy` [..., C], `gamma`, `mean`, `variance` [C] float32; returns
 * `[dx (shape of x), dgamma [C], dbeta [C]]`, plus `dresidual` (shape of x) when `attrs.residual`.
 *
 * @throws TrainerError ERR_DATA with one value per channel; ERR_INTERNAL on a parameter shape mismatch.
 */
export const batchNormTrainGradWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, y, dy, gamma, mean, variance } = inputs as Record<'x' | 'y' | 'dy' | 'gamma' | 'mean' | 'variance', TensorInfo>;
  const { eps, relu, residual } = attrs as unknown as BatchNormTrainAttrs;
  const [p] = batchNormDims(x, gamma);
  const scope = new KernelScope(backend as never, 'wasm');
  try {
    return backward(scope, [x, y, dy, gamma, mean, variance], p, { eps, relu }, residual);
  } finally {
    scope.dispose();
  }
};

function backward(scope: KernelScope, inputs: readonly TensorInfo[], p: number, attrs: BatchNormTrainAttrs,
  residual = false): TensorInfo[] {
  const [x, y, dy, gamma, mean, variance] = inputs as TensorInfo[];
  const c = gamma!.shape[0]!;
  const { eps, relu } = attrs;
  // Allocate first: growing the WASM heap detaches views taken earlier.
  const dx = scope.keep(scope.allocate([...x!.shape]));
  const dgOut = scope.keep(scope.allocate([c]));
  const dbOut = scope.keep(scope.allocate([c]));
  const masked = relu || residual ? scope.allocate([...x!.shape]) : null;
  const [xs, ys, dys, g, m, v] = [x, y, dy, gamma, mean, variance].map((t) => scope.view(t!)) as Float32Array[];
  let ds = dys!;
  if (masked !== null) {
    ds = scope.view(masked);
    if (relu) maskGradient(ds, dys!, ys!);
    else ds.set(dys!);
  }
  const invStd = Float64Array.from({ length: c }, (_, k) => 1 / Math.sqrt(v![k]! + eps));
  const centre = Float32Array.from(m!);
  const [sumDy, sumDyCentred] = gradientSums(ds, xs!, centre, p);
  const a = new Float32Array(c);
  const bCoef = new Float32Array(c);
  const cCoef = new Float32Array(c);
  const dg = scope.view(dgOut);
  const db = scope.view(dbOut);
  for (let k = 0; k < c; k++) {
    const is = invStd[k]!;
    const dgamma = sumDyCentred[k]! * is;
    dg[k] = dgamma;
    db[k] = sumDy[k]!;
    a[k] = g![k]! * is;
    bCoef[k] = -g![k]! * is * is * dgamma / p;
    cCoef[k] = -g![k]! * is * sumDy[k]! / p;
  }
  const dxs = scope.view(dx);
  for (let o = 0; o < p * c; o += c) {
    for (let k = 0; k < c; k++) dxs[o + k] = a[k]! * ds[o + k]! + bCoef[k]! * (xs![o + k]! - centre[k]!) + cCoef[k]!;
  }
  return masked !== null && residual ? [dx, dgOut, dbOut, scope.keep(masked)] : [dx, dgOut, dbOut];
}
