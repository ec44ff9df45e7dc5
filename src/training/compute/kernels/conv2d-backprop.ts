/**
 * `Conv2DBackpropFilter` and `Conv2DBackpropInput` for the WASM backend, as XNNPACK forward convolutions run
 * through the backend's own `Conv2D` kernel (see `conv-geometry.ts` for the index arithmetic and its source).
 *
 * tfjs-backend-wasm 4.22 has no `Conv2DBackpropFilter` at all and a naive `Conv2DBackpropInput` about 12x slower
 * than the forward convolution. Here: filter gradient = one dilated XNNPACK convolution of the channel-transposed
 * input with dy as the filter (1×1 kernels: one matrix product); input gradient = s² sub-pixel phase convolutions
 * (`input-gradient.ts`). Measured on ResNet34 shapes: backward ≈ 2–2.6× forward in total.
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
 * The input pixels a 1×1 convolution reads, x[n, i·sh − pt, j·sw − pl, :], gathered into [1, N·Ho·Wo, Ci]
 * (zeros where that falls in the padding). A reshape, without copying, when stride 1 and no padding.
 */
function pointwisePixels(scope: KernelScope, x: TensorInfo, g: ConvGeometry): TensorInfo {
  const { batch: n, inChannels: c, rows, cols } = g;
  const m = n * rows.outSize * cols.outSize;
  const identity = [rows, cols].every((a) => a.stride === 1 && a.padBefore === 0 && a.outSize === a.inSize);
  if (identity) return scope.reshape(x, [1, m, c]);
  const out = scope.allocate([1, m, c]);
  const dst = scope.view(out);
  const src = scope.view(x);
  let d = 0;
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < rows.outSize; i++) {
      const r = i * rows.stride - rows.padBefore;
      for (let j = 0; j < cols.outSize; j++, d += c) {
        const q = j * cols.stride - cols.padBefore;
        if (r < 0 || r >= rows.inSize || q < 0 || q >= cols.inSize) dst.fill(0, d, d + c);
        else dst.set(src.subarray(((b * rows.inSize + r) * cols.inSize + q) * c, ((b * rows.inSize + r) * cols.inSize + q + 1) * c), d);
      }
    }
  }
  return out;
}

/**
 * Filter gradient of a 1×1 convolution as one matrix product: dw [Ci,Co] = pixelsᵀ [Ci, N·Ho·Wo] · dy [N·Ho·Wo, Co]
 * (an explicit transpose then a plain BatchMatMul: tfjs-wasm's transposeA path is ~10x slower).
 */
function pointwiseFilterGradient(scope: KernelScope, x: TensorInfo, dy: TensorInfo, g: ConvGeometry): TensorInfo {
  const pixelsT = scope.transpose(pointwisePixels(scope, x, g), [0, 2, 1]);
  const m = g.batch * g.rows.outSize * g.cols.outSize;
  const product = scope.run('BatchMatMul', { a: pixelsT, b: scope.reshape(dy, [1, m, g.outChannels]) },
    { transposeA: false, transposeB: false });
  return scope.reshape(product, [1, 1, g.inChannels, g.outChannels]);
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
    const pointwise = g.rows.kernel === 1 && g.cols.kernel === 1;
    return scope.keep(pointwise ? pointwiseFilterGradient(scope, x, dy, g) : filterGradient(scope, x, dy, g));
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
