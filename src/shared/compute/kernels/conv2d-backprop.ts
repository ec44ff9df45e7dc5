/**
 * `Conv2DBackpropFilter` and `Conv2DBackpropInput` for the WASM backend, as XNNPACK forward convolutions run
 * through the backend's own `Conv2D` kernel (see `conv-geometry.ts` for the index arithmetic and its source).
 *
 * tfjs-backend-wasm 4.22 has no `Conv2DBackpropFilter` at all and a naive `Conv2DBackpropInput` about 12x slower
 * than the forward convolution; these run both gradients at roughly forward speed.
 */
import {
  backend_util, type Conv2DBackpropFilterAttrs, type Conv2DBackpropInputAttrs, type KernelFunc, type TensorInfo,
} from '@tensorflow/tfjs-core';
import {
  type AxisPlan, type ConvGeometry, convGeometry, filterGradAxisPlan, inputGradAxisPlan, pointwiseInputGradAxisPlan,
} from './conv-geometry.js';
import { KernelScope, type NhwcPadding } from './kernel-scope.js';

type Shape4 = [number, number, number, number];

const NO_PADDING: NhwcPadding = [[0, 0], [0, 0], [0, 0], [0, 0]];

function geometryOf(inShape: number[], filterShape: number[], attrs: Conv2DBackpropFilterAttrs): ConvGeometry {
  const info = backend_util.computeConv2DInfo(inShape as Shape4, filterShape as Shape4, attrs.strides, 1, attrs.pad,
    attrs.dimRoundingMode, false, backend_util.convertConv2DDataFormat(attrs.dataFormat));
  return convGeometry(info);
}

function padding(rows: AxisPlan, cols: AxisPlan): NhwcPadding {
  return [[0, 0], [rows.padBefore, rows.padAfter], [cols.padBefore, cols.padAfter], [0, 0]];
}

/** Drops the planned leading/trailing rows and columns of an NHWC tensor (no-op when nothing is cropped). */
function crop(scope: KernelScope, x: TensorInfo, rows: AxisPlan, cols: AxisPlan): TensorInfo {
  if (rows.cropBefore + rows.cropAfter + cols.cropBefore + cols.cropAfter === 0) return x;
  const [n, h, w, c] = x.shape;
  return scope.slice(x, [0, rows.cropBefore, cols.cropBefore, 0],
    [n!, h! - rows.cropBefore - rows.cropAfter, w! - cols.cropBefore - cols.cropAfter, c!]);
}

/**
 * Inserts `sh − 1` zero rows after every row and `sw − 1` zero columns after every column:
 * [n, h, w, c] → [n, h·sh, w·sw, c] (one pad of a 5-D view). Returns `x` itself for strides 1.
 */
function zeroInsert(scope: KernelScope, x: TensorInfo, sh: number, sw: number): TensorInfo {
  if (sh === 1 && sw === 1) return x;
  const [n, h, w, c] = x.shape as Shape4;
  const view = scope.reshape(x, [n * h, 1, w, 1, c]);
  const padded = scope.pad(view, [[0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
  return scope.reshape(padded, [n, h * sh, w * sw, c]);
}

/**
 * Filter gradient: x [N,H,W,Ci] → [Ci,H,W,N] convolved (stride 1, dilation = forward stride) with
 * dy [N,Ho,Wo,Co] → [Ho,Wo,N,Co] as the filter gives [Ci,kh,kw,Co], transposed to [kh,kw,Ci,Co].
 */
function filterGradient(scope: KernelScope, x: TensorInfo, dy: TensorInfo, g: ConvGeometry): TensorInfo {
  const rows = filterGradAxisPlan(g.rows);
  const cols = filterGradAxisPlan(g.cols);
  const xt = scope.transpose(crop(scope, x, rows, cols), [3, 1, 2, 0]);
  const dyFilter = scope.transpose(dy, [1, 2, 0, 3]);
  const grad = scope.conv2d(xt, dyFilter, padding(rows, cols), [g.rows.stride, g.cols.stride]);
  return scope.transpose(grad, [1, 2, 0, 3]);
}

/**
 * Input gradient: dy [N,Ho,Wo,Co], zero-inserted by the stride, convolved (stride 1) with the filter rotated by
 * 180° and with in/out channels swapped ([kh,kw,Ci,Co] → [kh,kw,Co,Ci]) gives [N,H,W,Ci].
 * 1×1 kernels multiply first (on Ho·Wo pixels) and place the result afterwards, which is s² times cheaper.
 */
function inputGradient(scope: KernelScope, dy: TensorInfo, filter: TensorInfo, g: ConvGeometry): TensorInfo {
  const swapped = (f: TensorInfo): TensorInfo => scope.transpose(f, [0, 1, 3, 2]);
  if (g.rows.kernel === 1 && g.cols.kernel === 1) {
    const rows = pointwiseInputGradAxisPlan(g.rows);
    const cols = pointwiseInputGradAxisPlan(g.cols);
    const z = scope.conv2d(dy, swapped(filter), NO_PADDING);
    const placed = crop(scope, zeroInsert(scope, z, g.rows.stride, g.cols.stride), rows, cols);
    if (rows.padBefore + rows.padAfter + cols.padBefore + cols.padAfter === 0) return placed;
    return scope.pad(placed, padding(rows, cols));
  }
  const rows = inputGradAxisPlan(g.rows);
  const cols = inputGradAxisPlan(g.cols);
  const dyd = crop(scope, zeroInsert(scope, dy, g.rows.stride, g.cols.stride), rows, cols);
  const rotated = swapped(scope.reverse(filter, [0, 1]));
  return scope.conv2d(dyd, rotated, padding(rows, cols));
}

/**
 * WASM `Conv2DBackpropFilter`: inputs `x` [N,H,W,Ci] and `dy` [N,Ho,Wo,Co] float32 NHWC; attrs as tfjs's
 * `Conv2DBackpropFilterAttrs`; returns dL/dw [kh,kw,Ci,Co] float32.
 *
 * @throws TrainerError ERR_BACKEND for NCHW or a dilation other than 1.
 */
export const conv2DBackpropFilterWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const a = attrs as unknown as Conv2DBackpropFilterAttrs;
  const g = geometryOf(x.shape, a.filterShape, a);
  const scope = new KernelScope(backend as never, 'wasm');
  try {
    return scope.keep(filterGradient(scope, x, dy, g));
  } finally {
    scope.dispose();
  }
};

/**
 * WASM `Conv2DBackpropInput`: inputs `dy` [N,Ho,Wo,Co] and `filter` [kh,kw,Ci,Co] float32 NHWC; attrs as tfjs's
 * `Conv2DBackpropInputAttrs`; returns dL/dx with shape `attrs.inputShape` [N,H,W,Ci] float32.
 *
 * @throws TrainerError ERR_BACKEND for NCHW or a dilation other than 1.
 */
export const conv2DBackpropInputWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const a = attrs as unknown as Conv2DBackpropInputAttrs;
  const g = geometryOf(a.inputShape, filter.shape, { ...a, filterShape: filter.shape as Shape4 });
  const scope = new KernelScope(backend as never, 'wasm');
  try {
    return scope.keep(inputGradient(scope, dy, filter, g));
  } finally {
    scope.dispose();
  }
};
