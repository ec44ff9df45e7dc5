/**
 * The fused training-mode BatchNorm(+ReLU, +residual) of `compute/kernels/batch-norm.ts` as WGSL programs for the
 * WebGPU backend: the kernels `PetsBatchNormTrain` (forward) and `PetsBatchNormTrainGrad` (backward) with the same
 * inputs, attributes and outputs as the WASM ones, so `compute/batch-norm.ts` and every caller are unchanged.
 *
 * Layout: x, y, dy, dx `[P, C]` float32 row-major with `P = N·H·W` (an NHWC tensor), statistics per channel `[C]`.
 * Formulas (Ioffe & Szegedy, arXiv:1502.03167, §3; PyTorch `batch_norm_backward`), as the WASM kernels:
 * ```
 * mean = Σx / P,  var = Σ(x − mean)² / P (biased),  σ⁻¹ = 1/√(var + eps),  x̂ = (x − mean)·σ⁻¹
 * y = γ·x̂ + β (+ r), then max(y, 0) when fused with ReLU
 * d = dy · [y > 0] (ReLU) or dy;  dβ = Σ d;  dγ = Σ d·(x − mean)·σ⁻¹;  dx = γ·σ⁻¹·(d − dβ/P − x̂·dγ/P);  dr = d
 * ```
 * Dispatches (tfjs-webgpu programs have one output each, so per-channel pairs are computed as one `[2, C]` output
 * and copied into their own `[C]` tensors with `copyBufferToBuffer`, which is no dispatch):
 * - forward, 3: per-split partial moments `[splits, 2, C]` (each 64×4-thread workgroup takes 64 channels × a range
 *   of rows, reads coalesced along C), the mean and the variance from the partials (one `[2, C]` program, then 2
 *   copies), the element-wise normalise (+ residual, + ReLU);
 * - backward, 3 (+1 with ReLU and a residual): per-split partial `Σd`, `Σd·(x − mean)`; dβ and dγ (one `[2, C]`
 *   program, then 2 copies); dx. `d = dy·[y > 0]` with ReLU, else dy. With ReLU and a residual, d is also the
 *   residual's gradient and is materialised first (the +1); with ReLU alone the partial and dx programs compute it
 *   from dy and y as they read them; without ReLU, d is dy itself (returned as the residual's gradient without a
 *   copy). WebGPU guarantees only 8 storage buffers per shader stage (output included): dx's program reads x, dy, y,
 *   mean, variance, γ and the (dβ, dγ) pair (7, or 6 with a materialised d).
 * The tfjs-op composition it replaces issues ~14 dispatches forward and ~25 backward per layer, plus scalar uploads.
 *
 * Also here, one dispatch each: `PetsBatchNormRunningUpdate` (the running mean/variance update of a training step,
 * instead of 3 dispatches and 2 scalar uploads per statistic) and `PetsBatchNormInfer` (eval mode with the running
 * statistics, + residual, + ReLU, instead of tfjs's batchNorm, add and relu).
 *
 * Numerics: float32 like tfjs's kernels. The moments use Welford's update per thread and Chan et al.'s pairwise
 * merge of (count, mean, M2) across threads and splits ("Algorithms for computing the sample variance", 1983), so
 * no cancellation of large sums; the gradient sums are float32 partial sums over ≤ a few hundred values each,
 * then over the splits. Checked against tfjs `cpu` in test/unit/training/compute/webgpu/batch-norm-webgpu.test.ts.
 */
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import { TrainerError } from '../../../contract/errors.js';
import { batchNormDims, type BatchNormTrainAttrs, type RunningUpdateAttrs } from '../kernels/batch-norm.js';
import { copySlices } from './flatten.js';

/** Channels per reduction workgroup (threads along x). */
const WG_C = 64;
/** Row lanes per reduction workgroup (threads along y). */
const WG_R = 4;
/** Reduction workgroups the split over rows aims for (fills a large GPU). */
const TARGET_WORKGROUPS = 512;
/** Fewest rows per split (fewer only adds partials to merge). */
const MIN_ROWS_PER_SPLIT = 128;
/** Threads per workgroup of the element-wise and per-channel programs. */
const WG_FLAT = 256;

/** How the rows are cut for the reductions: `splits` ranges of `chunk` rows (the last may be shorter). */
export function rowSplits(p: number, c: number): { splits: number; chunk: number } {
  const blocks = Math.ceil(c / WG_C);
  const want = Math.max(1, Math.min(Math.ceil(TARGET_WORKGROUPS / blocks), Math.floor(p / MIN_ROWS_PER_SPLIT)));
  const chunk = Math.ceil(p / want);
  return { splits: Math.ceil(p / chunk), chunk };
}

const i32 = (v: number): { type: string; data: number[] } => ({ type: 'int32', data: [v] });
const f32 = (v: number): { type: string; data: number[] } => ({ type: 'float32', data: [v] });

/** `[splits, 2, C]`: per split and channel, forward (mean, M2) or backward (Σd, Σd·(x − mean)). */
class PartialProgram implements WebGPUProgram {
  readonly variableNames: string[];
  readonly uniforms = 'P : i32, C : i32, chunk : i32,';
  readonly workgroupSize: [number, number, number] = [WG_C, WG_R, 1];
  readonly dispatchLayout = { x: [1], y: [0] };
  readonly dispatch: [number, number, number];
  readonly outputShape: number[];
  readonly shaderKey: string;

  /** `gradMasked`: as `grad` with d = dy·[y > 0] computed on the fly (ReLU without a residual: d is not an output). */
  constructor(private readonly mode: 'moments' | 'grad' | 'gradMasked', c: number, splits: number) {
    this.variableNames = mode === 'moments' ? ['x'] : mode === 'grad' ? ['x', 'd', 'mean'] : ['x', 'dy', 'y', 'mean'];
    this.outputShape = [splits, 2, c];
    this.dispatch = [Math.ceil(c / WG_C), splits, 1];
    this.shaderKey = `petsBnPartial_${mode}`;
  }

  getUserCode(): string {
    const moments = this.mode === 'moments';
    // Per thread: Welford (count n, mean a, M2 b) for the moments, plain sums (a = Σd, b = Σd·(x − mean)) for grads.
    const init = moments ? '' : `let centre = mean[c];`;
    const update = moments
      ? `let v = x[r * uniforms.C + c];
            n = n + 1.0;
            let delta = v - a;
            a = a + delta / n;
            b = b + delta * (v - a);`
      : `let i = r * uniforms.C + c;
            let g = ${this.mode === 'gradMasked' ? 'select(0.0, dy[i], y[i] > 0.0)' : 'd[i]'};
            a = a + g;
            b = b + g * (x[i] - centre);`;
    const merge = moments
      ? `let nb = sN[j][lc];
            if (nb > 0.0) {
              let nt = n + nb;
              let delta = sA[j][lc] - a;
              a = a + delta * (nb / nt);
              b = b + sB[j][lc] + delta * delta * (n * nb / nt);
              n = nt;
            }`
      : `a = a + sA[j][lc];
            b = b + sB[j][lc];`;
    return `
      var<workgroup> sN : array<array<f32, ${WG_C}>, ${WG_R}>;
      var<workgroup> sA : array<array<f32, ${WG_C}>, ${WG_R}>;
      var<workgroup> sB : array<array<f32, ${WG_C}>, ${WG_R}>;

      fn main() {
        let lc = i32(localId.x);
        let lr = i32(localId.y);
        let c = i32(workgroupId.x) * ${WG_C} + lc;
        let split = i32(workgroupId.y);
        let begin = split * uniforms.chunk;
        let end = min(begin + uniforms.chunk, uniforms.P);
        var n = 0.0;
        var a = 0.0;
        var b = 0.0;
        if (c < uniforms.C) {
          ${init}
          for (var r = begin + lr; r < end; r = r + ${WG_R}) {
            ${update}
          }
        }
        sN[lr][lc] = n;
        sA[lr][lc] = a;
        sB[lr][lc] = b;
        workgroupBarrier();
        if (lr == 0 && c < uniforms.C) {
          for (var j = 1; j < ${WG_R}; j++) {
            ${merge}
          }
          result[(split * 2) * uniforms.C + c] = a;
          result[(split * 2 + 1) * uniforms.C + c] = b;
        }
      }
    `;
  }
}

/**
 * `[2, C]` from the partials, both per-channel results of one pass in one program: `stats` = (the batch mean, the
 * biased variance) by a Chan merge of the splits' (count, mean, M2); `dstats` = (dβ = Σ of the splits' Σd,
 * dγ = Σ of the splits' Σd·(x − mean), times σ⁻¹). (Two programs of one output each before: one dispatch more.)
 */
class ChannelProgram implements WebGPUProgram {
  readonly variableNames: string[];
  readonly uniforms = 'P : i32, C : i32, chunk : i32, splits : i32, eps : f32,';
  readonly workgroupSize: [number, number, number] = [WG_FLAT, 1, 1];
  readonly dispatchLayout = { x: [0] };
  readonly dispatch: [number, number, number];
  readonly outputShape: number[];
  readonly shaderKey: string;

  constructor(private readonly what: 'stats' | 'dstats', c: number) {
    this.variableNames = what === 'dstats' ? ['partial', 'variance'] : ['partial'];
    this.outputShape = [2 * c];
    this.dispatch = [Math.ceil(c / WG_FLAT), 1, 1];
    this.shaderKey = `petsBnChannel_${what}`;
  }

  getUserCode(): string {
    const body = this.what === 'stats'
      ? `var n = 0.0;
          var a = 0.0;
          var b = 0.0;
          for (var s = 0; s < uniforms.splits; s++) {
            let nb = f32(min(uniforms.chunk, uniforms.P - s * uniforms.chunk));
            let nt = n + nb;
            let delta = partial[(s * 2) * uniforms.C + c] - a;
            a = a + delta * (nb / nt);
            b = b + partial[(s * 2 + 1) * uniforms.C + c] + delta * delta * (n * nb / nt);
            n = nt;
          }
          result[c] = a;
          result[uniforms.C + c] = max(b / n, 0.0);`
      : `var tb = 0.0;
          var tg = 0.0;
          for (var s = 0; s < uniforms.splits; s++) {
            tb = tb + partial[(s * 2) * uniforms.C + c];
            tg = tg + partial[(s * 2 + 1) * uniforms.C + c];
          }
          result[c] = tb;
          result[uniforms.C + c] = tg / sqrt(variance[c] + uniforms.eps);`;
    return `
      fn main(c : i32) {
        if (c < uniforms.C) {
          ${body}
        }
      }
    `;
  }
}

/** Element-wise: the normalised output (forward), dx (backward) or the ReLU-masked gradient d (the residual's). */
class ElementwiseProgram implements WebGPUProgram {
  readonly variableNames: string[];
  readonly uniforms = 'C : i32, eps : f32, invP : f32,';
  readonly workgroupSize: [number, number, number] = [WG_FLAT, 1, 1];
  readonly dispatchLayout = { x: [0] };
  readonly dispatch: [number, number, number];
  readonly outputShape: number[];
  readonly size = true;
  readonly shaderKey: string;

  /** `dxMasked`: dx with d = dy·[y > 0] computed on the fly (ReLU without a residual: d is not an output). */
  constructor(private readonly what: 'forward' | 'dx' | 'dxMasked' | 'mask' | 'infer', n: number, private readonly relu: boolean,
    private readonly residual: boolean) {
    this.variableNames = what === 'forward' ? ['x', 'stats', 'gamma', 'beta', ...(residual ? ['res'] : [])]
      : what === 'infer' ? ['x', 'mean', 'variance', 'gamma', 'beta', ...(residual ? ['res'] : [])]
        : what === 'dx' ? ['x', 'd', 'mean', 'variance', 'gamma', 'dstats']
          : what === 'dxMasked' ? ['x', 'dy', 'y', 'mean', 'variance', 'gamma', 'dstats'] : ['dy', 'y'];
    this.outputShape = [n];
    this.dispatch = [Math.ceil(n / WG_FLAT), 1, 1];
    this.shaderKey = `petsBnElementwise_${what}_${relu}_${residual}`;
  }

  getUserCode(): string {
    let body: string;
    if (this.what === 'forward' || this.what === 'infer') {
      // forward: mean and variance are the two halves of the [2, C] stats.
      const [mean, variance] = this.what === 'forward' ? ['stats[c]', 'stats[uniforms.C + c]'] : ['mean[c]', 'variance[c]'];
      body = `let c = index % uniforms.C;
          let scale = gamma[c] / sqrt(${variance} + uniforms.eps);
          let v = (x[index] - ${mean}) * scale + beta[c]${this.residual ? ' + res[index]' : ''};
          result[index] = ${this.relu ? 'max(v, 0.0)' : 'v'};`;
    } else if (this.what === 'dx' || this.what === 'dxMasked') {
      const d = this.what === 'dx' ? 'd[index]' : 'select(0.0, dy[index], y[index] > 0.0)';
      body = `let c = index % uniforms.C;
          let invStd = 1.0 / sqrt(variance[c] + uniforms.eps);
          let xHat = (x[index] - mean[c]) * invStd;
          result[index] = gamma[c] * invStd * (${d} - dstats[c] * uniforms.invP - xHat * dstats[uniforms.C + c] * uniforms.invP);`;
    } else {
      body = 'result[index] = select(0.0, dy[index], y[index] > 0.0);';
    }
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          ${body}
        }
      }
    `;
  }
}

/** A view of `t` with another shape (same buffer; tfjs-webgpu programs index flat). */
const as = (t: TensorInfo, shape: number[]): TensorInfo => ({ ...t, shape });

/**
 * Forward (`PetsBatchNormTrain` on webgpu): inputs `x` [..., C], `gamma` [C], `beta` [C] and optionally `residual`
 * (shape of x), float32; returns `[y (shape of x), mean [C], variance [C]]` (variance biased, as used for
 * normalising), like the WASM kernel.
 *
 * @throws TrainerError ERR_DATA with one value per channel; ERR_INTERNAL on a parameter shape mismatch.
 */
export const batchNormTrainWebgpu: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as WebGPUBackend;
  const { x, gamma, beta, residual } = inputs as { x: TensorInfo; gamma: TensorInfo; beta: TensorInfo; residual?: TensorInfo };
  const { eps, relu } = attrs as unknown as BatchNormTrainAttrs;
  const [p, c] = batchNormDims(x, gamma);
  const n = p * c;
  const { splits, chunk } = rowSplits(p, c);
  const partial = be.runWebGPUProgram(new PartialProgram('moments', c, splits), [as(x, [n])], 'float32',
    [i32(p), i32(c), i32(chunk)]);
  try {
    const channelUniforms = [i32(p), i32(c), i32(chunk), i32(splits), f32(eps)];
    const stats = be.runWebGPUProgram(new ChannelProgram('stats', c), [partial], 'float32', channelUniforms);
    try {
      const withRes = residual !== undefined;
      const y = be.runWebGPUProgram(new ElementwiseProgram('forward', n, relu, withRes),
        [as(x, [n]), stats, gamma, beta, ...(withRes ? [as(residual, [n])] : [])], 'float32', [i32(c), f32(eps), f32(1 / p)]);
      const [mean, variance] = copySlices(be, stats, [{ offset: 0, shape: [c] }, { offset: c, shape: [c] }]);
      return [as(y, [...x.shape]), mean!, variance!];
    } finally {
      be.disposeData(stats.dataId);
    }
  } finally {
    be.disposeData(partial.dataId);
  }
};

/**
 * Backward (`PetsBatchNormTrainGrad` on webgpu): inputs `x`, `y` (the forward output), `dy` [..., C], `gamma`,
 * `mean`, `variance` [C] float32; returns `[dx (shape of x), dgamma [C], dbeta [C]]`, plus `dresidual` (shape of
 * x) when `attrs.residual`, like the WASM kernel.
 *
 * @throws TrainerError ERR_DATA with one value per channel; ERR_INTERNAL on a parameter shape mismatch.
 */
export const batchNormTrainGradWebgpu: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as WebGPUBackend;
  const { x, y, dy, gamma, mean, variance } = inputs as Record<'x' | 'y' | 'dy' | 'gamma' | 'mean' | 'variance', TensorInfo>;
  const { eps, relu, residual } = attrs as unknown as BatchNormTrainAttrs;
  const [p, c] = batchNormDims(x, gamma);
  const n = p * c;
  const { splits, chunk } = rowSplits(p, c);
  const uniforms = [i32(c), f32(eps), f32(1 / p)];
  const fx = as(x, [n]);
  // d = dy·[y > 0] with ReLU, else dy itself. With ReLU and a residual d is also the residual's gradient, so it is
  // materialised; with ReLU alone the partial sums and dx compute it on the fly from dy and y (one dispatch less).
  const materialise = relu && residual;
  const d = materialise ? be.runWebGPUProgram(new ElementwiseProgram('mask', n, true, false), [as(dy, [n]), as(y, [n])], 'float32', uniforms)
    : as(dy, [n]);
  const fused = relu && !residual;
  let dgamma: TensorInfo, dbeta: TensorInfo, dx: TensorInfo;
  try {
    const partial = fused
      ? be.runWebGPUProgram(new PartialProgram('gradMasked', c, splits), [fx, d, as(y, [n]), mean], 'float32', [i32(p), i32(c), i32(chunk)])
      : be.runWebGPUProgram(new PartialProgram('grad', c, splits), [fx, d, mean], 'float32', [i32(p), i32(c), i32(chunk)]);
    let dstats: TensorInfo;
    try {
      const channelUniforms = [i32(p), i32(c), i32(chunk), i32(splits), f32(eps)];
      dstats = be.runWebGPUProgram(new ChannelProgram('dstats', c), [partial, variance], 'float32', channelUniforms);
    } finally {
      be.disposeData(partial.dataId);
    }
    try {
      dx = fused
        ? be.runWebGPUProgram(new ElementwiseProgram('dxMasked', n, relu, false), [fx, d, as(y, [n]), mean, variance, gamma, dstats], 'float32', uniforms)
        : be.runWebGPUProgram(new ElementwiseProgram('dx', n, relu, false), [fx, d, mean, variance, gamma, dstats], 'float32', uniforms);
      [dbeta, dgamma] = copySlices(be, dstats, [{ offset: 0, shape: [c] }, { offset: c, shape: [c] }]) as [TensorInfo, TensorInfo];
    } finally {
      be.disposeData(dstats.dataId);
    }
  } catch (err) {
    if (materialise) be.disposeData(d.dataId);
    throw err;
  }
  const out = [as(dx, [...x.shape]), dgamma, dbeta];
  if (materialise) return [...out, as(d, [...x.shape])];
  if (!residual) return out;
  // d = dy: hand back dy's buffer (one more reference) instead of copying it.
  be.incRef(dy.dataId);
  return [...out, { ...dy }];
};

/** `running·keep + batch·add` over `[C]` (keep = 1 − momentum, add = momentum·scale). */
class RunningUpdateProgram implements WebGPUProgram {
  readonly variableNames = ['running', 'batch'];
  readonly uniforms = 'keep : f32, add : f32,';
  readonly workgroupSize: [number, number, number] = [WG_FLAT, 1, 1];
  readonly dispatchLayout = { x: [0] };
  readonly dispatch: [number, number, number];
  readonly outputShape: number[];
  readonly size = true;
  readonly shaderKey = 'petsBnRunningUpdate';

  constructor(c: number) {
    this.outputShape = [c];
    this.dispatch = [Math.ceil(c / WG_FLAT), 1, 1];
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          result[index] = running[index] * uniforms.keep + batch[index] * uniforms.add;
        }
      }
    `;
  }
}

/**
 * `PetsBatchNormRunningUpdate` on webgpu: inputs `running`, `batch` `[C] float32`; returns
 * `running·(1 − momentum) + batch·(momentum·scale)` `[C]`, the formula of the tfjs ops it replaces.
 *
 * @throws TrainerError ERR_INTERNAL when the shapes differ
 */
export const batchNormRunningUpdateWebgpu: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as WebGPUBackend;
  const { running, batch } = inputs as Record<'running' | 'batch', TensorInfo>;
  const { momentum, scale } = attrs as unknown as RunningUpdateAttrs;
  if (running.shape.length !== 1 || batch.shape.length !== 1 || running.shape[0] !== batch.shape[0]) {
    throw new TrainerError('ERR_INTERNAL', `BatchNorm running update: [${running.shape}] and [${batch.shape}] must be the same [C]`);
  }
  return be.runWebGPUProgram(new RunningUpdateProgram(running.shape[0]!), [running, batch], 'float32',
    [f32(1 - momentum), f32(momentum * scale)]);
};

/**
 * `PetsBatchNormInfer` on webgpu (eval mode): inputs `x` [..., C], `mean`, `variance`, `gamma`, `beta` `[C]`,
 * optionally `residual` (shape of x), float32; returns `γ·(x − mean)/√(variance + eps) + β (+ residual)`, then
 * max(·, 0) when `relu` (shape of x), in one dispatch.
 *
 * @throws TrainerError ERR_INTERNAL on a parameter shape mismatch
 */
export const batchNormInferWebgpu: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as WebGPUBackend;
  const { x, mean, variance, gamma, beta, residual } = inputs as Record<'x' | 'mean' | 'variance' | 'gamma' | 'beta', TensorInfo> & { residual?: TensorInfo };
  const { eps, relu } = attrs as unknown as BatchNormTrainAttrs;
  const c = x.shape[x.shape.length - 1]!;
  for (const [name, t] of [['mean', mean], ['variance', variance], ['gamma', gamma], ['beta', beta]] as const) {
    if (t.shape.length !== 1 || t.shape[0] !== c) throw new TrainerError('ERR_INTERNAL', `BatchNorm ${name} must be [${c}], got [${t.shape}]`);
  }
  const n = x.shape.reduce((a, b) => a * b, 1);
  const withRes = residual !== undefined;
  const y = be.runWebGPUProgram(new ElementwiseProgram('infer', n, relu, withRes),
    [as(x, [n]), mean, variance, gamma, beta, ...(withRes ? [as(residual, [n])] : [])], 'float32', [i32(c), f32(eps), f32(0)]);
  return as(y, [...x.shape]);
};
