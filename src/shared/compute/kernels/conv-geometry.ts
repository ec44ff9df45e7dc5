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
 * - Input gradient: `dx[q] = Σ_a dyd[q + p − a] · w[a]` where `dyd` is `dy` with `s − 1` zeros inserted after each
 *   element, i.e. a stride-1 convolution of `dyd` with the reversed filter, leading padding `k − 1 − p`.
 *
 * Source: the transposed-convolution identities of Dumoulin & Visin, "A guide to convolution arithmetic for deep
 * learning" (arXiv:1603.07285), §4; same conventions as TensorFlow's `Conv2DBackpropInput/Filter`.
 */
import { backend_util } from '@tensorflow/tfjs-core';
import { TrainerError } from '../../errors.js';

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
 * Plan for the input gradient along one axis: the convolution's input is `dy` after zero insertion (length
 * `Ho·s`, the last `s − 1` of which are inserted zeros), its filter is `w` reversed (`k` taps), stride 1, output
 * length `H`.
 */
export function inputGradAxisPlan(axis: ConvAxis): AxisPlan {
  const { inSize, outSize, kernel, stride, padBefore } = axis;
  const before = kernel - 1 - padBefore;
  const after = inSize + kernel - 1 - before - outSize * stride;
  return splitSigned(before, after);
}

/**
 * Plan for placing the output of a 1×1 input-gradient product (length `Ho·s` after zero insertion) at its input
 * positions: crop or pad so that element `i·s` lands on input index `i·s − p` and the result has length `H`.
 * Only valid for `kernel === 1`.
 */
export function pointwiseInputGradAxisPlan(axis: ConvAxis): AxisPlan {
  const { inSize, outSize, stride, padBefore } = axis;
  return splitSigned(-padBefore, inSize + padBefore - outSize * stride);
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
