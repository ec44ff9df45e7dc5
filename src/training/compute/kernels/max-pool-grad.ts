/**
 * `MaxPoolGrad` for the WASM backend in JavaScript over the WASM heap: one pass that finds each window's maximum in
 * the input (first maximum in window order, as tfjs's `cpu` backend `maxPoolPositions`) and adds that output
 * position's gradient there. tfjs-backend-wasm 4.22's own kernel took ~175 ms for one 8×112×112×64 ResNet stem
 * pool on this machine; this one a fraction of that (see docs/performance.md).
 *
 * Gradient of max pooling: dL/dx[p] = Σ over the windows whose (first) maximum is p of dL/dy[window]
 * (Goodfellow, Bengio & Courville, "Deep Learning", §9.3; TensorFlow's `MaxPoolGrad`).
 */
import { backend_util, type KernelFunc, type MaxPoolGradAttrs, type TensorInfo } from '@tensorflow/tfjs-core';
import { TrainerError } from '../../../contract/errors.js';
import { KernelScope } from './kernel-scope.js';

type Shape4 = [number, number, number, number];

/**
 * For output pixel (b, i, j), scatters dy into `out` at each channel's first window maximum of x. `best`/`at` are
 * per-channel scratch arrays; the channel loop is innermost so every read is contiguous.
 */
function scatterWindow(bufs: { x: Float32Array; dy: Float32Array; out: Float32Array; best: Float32Array; at: Int32Array },
  info: backend_util.Conv2DInfo, pixel: [number, number, number], d0: number): void {
  const { x, dy, out, best, at } = bufs;
  const [b, i, j] = pixel;
  const { inHeight: h, inWidth: w, inChannels: ch } = info;
  const r0 = i * info.strideHeight - info.padInfo.top;
  const q0 = j * info.strideWidth - info.padInfo.left;
  const rEnd = Math.min(h, r0 + info.effectiveFilterHeight);
  const qEnd = Math.min(w, q0 + info.effectiveFilterWidth);
  at.fill(-1);
  for (let r = Math.max(0, r0); r < rEnd; r++) {
    for (let q = Math.max(0, q0); q < qEnd; q++) {
      const base = ((b * h + r) * w + q) * ch;
      for (let c = 0; c < ch; c++) {
        const v = x[base + c]!;
        if (v > best[c]! || at[c]! < 0) {
          best[c] = v;
          at[c] = base + c;
        }
      }
    }
  }
  for (let c = 0; c < ch; c++) if (at[c]! >= 0) out[at[c]!]! += dy[d0 + c]!;
}

/**
 * WASM `MaxPoolGrad`: inputs `dy` [N,Ho,Wo,C], `input` [N,H,W,C] (the pooled tensor), `output` (unused) float32
 * NHWC; attrs as tfjs's `MaxPoolGradAttrs`; returns dL/dinput [N,H,W,C] float32.
 *
 * @throws TrainerError ERR_BACKEND when a dilation other than 1 is implied (tfjs's max pool has none).
 */
export const maxPoolGradWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const { dy, input } = inputs as { dy: TensorInfo; input: TensorInfo };
  const a = attrs as unknown as MaxPoolGradAttrs;
  const info = backend_util.computePool2DInfo(input.shape as Shape4, a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode);
  if (info.dilationHeight !== 1 || info.dilationWidth !== 1) {
    throw new TrainerError('ERR_BACKEND', `MaxPoolGrad needs dilation 1, got [${info.dilationHeight}, ${info.dilationWidth}]`);
  }
  const scope = new KernelScope(backend as never, 'wasm');
  const dx = scope.keep(scope.allocate([...input.shape]));
  const out = scope.view(dx);
  out.fill(0);
  const ch = info.inChannels;
  const bufs = { x: scope.view(input), dy: scope.view(dy), out, best: new Float32Array(ch), at: new Int32Array(ch) };
  let d = 0;
  for (let b = 0; b < info.batchSize; b++) {
    for (let i = 0; i < info.outHeight; i++) {
      for (let j = 0; j < info.outWidth; j++, d += ch) scatterWindow(bufs, info, [b, i, j], d);
    }
  }
  return dx;
};
