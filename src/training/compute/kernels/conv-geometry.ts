/**
 * Pure index arithmetic for expressing the two gradients of a 2-D convolution as forward convolutions.
 *
 * Notation (one spatial axis; the other is identical): input length `H`, kernel `k`, stride `s`, output length
 * `Ho`, leading padding `p` as resolved by tfjs (`backend_util.computeConv2DInfo`, which covers `'same'` — including
 * the asymmetric split `top = floor(total/2)` for even sizes —, `'valid'`, a number and explicit arrays). Dilation
 * is 1. The forward convolution is `y[i] = Σ_a x[i·s + a − p] · w[a]` with out-of-range `x` read as 0.
 *
 * - Filter gradient: `dw[a] = Σ_i x[a + i·s − p] · dy[i]`, i.e. a stride-1 convolution of `x` with `dy` used as a
 *   `Ho`-tap filter dilated by `s`, output length `k`.
 * - Input gradient: `dx[q] = Σ_{a, i: i·s + a − p = q} dy[i] · w[a]`, split by `q mod s` into `s` phases, each a
 *   stride-1 convolution of `dy` with a reversed sub-filter (see {@link PhasePlan}).
 *
 * Source: the transposed-convolution identities of Dumoulin & Visin, "A guide to convolution arithmetic for deep
 * learning" (arXiv:1603.07285), §4; same conventions as TensorFlow's `Conv2DBackpropInput/Filter`.
 */
import { backend_util } from '@tensorflow/tfjs-core';
import { TrainerError } from '../../../contract/errors.js';

/** One spatial axis of a convolution, all lengths in elements. */
export interface ConvAxis {
  /** Input length `H` (≥ 1). */
  readonly inSize: number;
  /** Output length `Ho` (≥ 1). */
  readonly outSize: number;
  /** Kernel length `k` (≥ 1). */
  readonly kernel: number;
  /** Stride `s` (≥ 1). */
  readonly stride: number;
  /** Leading (top/left) zero padding `p` (≥ 0). */
  readonly padBefore: number;
}

/**
 * How to run one axis of a gradient as a stride-1 forward convolution: first drop `cropBefore`/`cropAfter`
 * elements of the convolution's input, then pad it with `padBefore`/`padAfter` zeros (both ≥ 0; padding is passed
 * to the convolution itself, so it costs no copy).
 */
export interface AxisPlan {
  readonly cropBefore: number;
  readonly cropAfter: number;
  readonly padBefore: number;
  readonly padAfter: number;
}

/** NHWC convolution geometry with both spatial axes, resolved from tfjs's `Conv2DInfo`. */
export interface ConvGeometry {
  /** Batch size N. */
  readonly batch: number;
  /** Input channels Ci. */
  readonly inChannels: number;
  /** Output channels Co. */
  readonly outChannels: number;
  /** Height axis. */
  readonly rows: ConvAxis;
  /** Width axis. */
  readonly cols: ConvAxis;
}

function splitSigned(before: number, after: number): AxisPlan {
  return {
    cropBefore: Math.max(0, -before),
    cropAfter: Math.max(0, -after),
    padBefore: Math.max(0, before),
    padAfter: Math.max(0, after),
  };
}

/**
 * Plan for the filter gradient along one axis: the convolution's input is `x` (length `H`), its filter is `dy`
 * (`Ho` taps, dilation `s`), stride 1, output length `k`. Trailing input rows the forward pass never read are cropped.
 */
export function filterGradAxisPlan(axis: ConvAxis): AxisPlan {
  const { inSize, outSize, kernel, stride, padBefore } = axis;
  const padAfter = (outSize - 1) * stride + kernel - inSize - padBefore;
  return splitSigned(padBefore, padAfter);
}

/**
 * Resolves an NHWC `Conv2DInfo` into {@link ConvGeometry}.
 *
 * @throws TrainerError ERR_BACKEND when the layout is not NHWC or a dilation is not 1 (unsupported here; tfjs's
 *   own conv2d gradient also requires dilation 1).
 */
export function convGeometry(info: backend_util.Conv2DInfo): ConvGeometry {
  if (info.dataFormat !== 'channelsLast') {
    throw new TrainerError('ERR_BACKEND', `wasm training kernels support NHWC only, got dataFormat ${info.dataFormat}`);
  }
  if (info.dilationHeight !== 1 || info.dilationWidth !== 1) {
    throw new TrainerError('ERR_BACKEND',
      `wasm conv gradients need dilation 1, got [${info.dilationHeight}, ${info.dilationWidth}]`);
  }
  return {
    batch: info.batchSize,
    inChannels: info.inChannels,
    outChannels: info.outChannels,
    rows: {
      inSize: info.inHeight, outSize: info.outHeight, kernel: info.filterHeight,
      stride: info.strideHeight, padBefore: info.padInfo.top,
    },
    cols: {
      inSize: info.inWidth, outSize: info.outWidth, kernel: info.filterWidth,
      stride: info.strideWidth, padBefore: info.padInfo.left,
    },
  };
}

/** 2·N·Ho·Wo·kh·kw·Ci·Co: multiply-adds ×2 of one forward convolution (and of each of its two gradients). */
export function convFlops(g: ConvGeometry): number {
  return 2 * g.batch * g.rows.outSize * g.cols.outSize * g.rows.kernel * g.cols.kernel * g.inChannels * g.outChannels;
}

/**
 * One output phase of the sub-pixel input gradient along one axis: the input positions `q = s·u + residue`
 * (`u` in `0..outSize−1`) only receive kernel taps `a = firstTap + s·t` (`t` in `0..taps−1`), so they are a
 * stride-1 convolution of the undilated `dy` with that sub-filter reversed, cropped/padded by `plan`.
 * This skips the (s² − 1)/s² zero multiplications of zero insertion. Source: the sub-pixel view of transposed
 * convolution, Shi et al., "Is the deconvolution layer the same as a convolutional layer?" (arXiv:1609.07009).
 */
export interface PhasePlan {
  /** Input positions `q ≡ residue (mod s)`. */
  readonly residue: number;
  /** Number of such positions in `0..H−1` (may be 0 when H < s). */
  readonly outSize: number;
  /** First kernel tap that reaches them: `(residue + p) mod s`. */
  readonly firstTap: number;
  /** Number of taps `firstTap, firstTap + s, … < k` (0: the phase's gradient is zero). */
  readonly taps: number;
  /** Crop/pad of `dy` (length `Ho`) for the stride-1 convolution with `taps` taps and output `outSize`. */
  readonly plan: AxisPlan;
}

/** The `s` phases of the input gradient along one axis (see {@link PhasePlan}); `s = 1` gives one phase. */
export function inputGradPhases(axis: ConvAxis): PhasePlan[] {
  const { inSize, outSize: ho, kernel, stride: s, padBefore: p } = axis;
  const phases: PhasePlan[] = [];
  for (let r = 0; r < s; r++) {
    const outSize = Math.max(0, Math.ceil((inSize - r) / s));
    const firstTap = (r + p) % s;
    const taps = Math.max(0, Math.ceil((kernel - firstTap) / s));
    // dx[s·u + r] = Σ_t dy[u + c − t] · w[firstTap + s·t], c = (r + p − firstTap) / s.
    const c = (r + p - firstTap) / s;
    const lead = taps - 1 - c;
    const trail = outSize + taps - 1 - ho - lead;
    phases.push({ residue: r, outSize, firstTap, taps, plan: splitSigned(lead, trail) });
  }
  return phases;
}
