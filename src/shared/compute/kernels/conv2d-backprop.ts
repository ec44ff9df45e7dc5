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
import { type ConvGeometry, convGeometry, filterGradAxisPlan } from './conv-geometry.js';
import { inputGradient } from './input-gradient.js';
import { KernelScope, nhwcPadding } from './kernel-scope.js';

type Shape4 = [number, number, number, number];

function geometryOf(inShape: number[], filterShape: number[], attrs: Conv2DBackpropFilterAttrs): ConvGeometry {
  const info = backend_util.computeConv2DInfo(inShape as Shape4, filterShape as Shape4, attrs.strides, 1, attrs.pad,
    attrs.dimRoundingMode, false, backend_util.convertConv2DDataFormat(attrs.dataFormat));
  return convGeometry(info);
}

/**
 * Filter gradient: x [N,H,W,Ci] → [Ci,H,W,N] convolved (stride 1, dilation = forward stride) with
 * dy [N,Ho,Wo,Co] → [Ho,Wo,N,Co] as the filter gives [Ci,kh,kw,Co], transposed to [kh,kw,Ci,Co].
 */
function filterGradient(scope: KernelScope, x: TensorInfo, dy: TensorInfo, g: ConvGeometry): TensorInfo {
  const rows = filterGradAxisPlan(g.rows);
  const cols = filterGradAxisPlan(g.cols);
  const xt = scope.transpose(scope.crop(x, rows, cols), [3, 1, 2, 0]);
  const dyFilter = scope.transpose(dy, [1, 2, 0, 3]);
  const grad = scope.conv2d(xt, dyFilter, nhwcPadding(rows, cols), [g.rows.stride, g.cols.stride]);
  return scope.transpose(grad, [1, 2, 0, 3]);
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
