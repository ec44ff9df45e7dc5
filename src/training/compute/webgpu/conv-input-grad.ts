/**
 * Convolution input gradient (tfjs `Conv2DBackpropInput`) for the WebGPU backend as a tiled implicit GEMM in WGSL.
 *
 * `dx[b, ih, iw, ci] = Σ_{kh, kw, co} dy[b, oh, ow, co] · W[kh, kw, ci, co]` over the taps with
 * `ih + padTop − kh = oh·sh` and `iw + padLeft − kw = ow·sw` (NHWC, HWIO, dilation 1; the transposed convolution,
 * as in PyTorch's `conv_transpose2d` / cuDNN's backward-data), i.e. `dx = A·B` with `M = B·H·W` rows (the pixels of
 * dx), `N = Cin`, `K = kh·kw·Cout`; `A[m, k]` is dy gathered at the tap (never materialised: each workgroup gathers
 * its tile into workgroup memory) and `B[k, n] = W[kh, kw, n, co]`.
 *
 * Stride s > 1 by the sub-pixel (phase) decomposition (Shi et al. 2016, "Is the deconvolution layer the same as a
 * convolutional layer?", arXiv:1609.07009): a dx pixel with `ih mod s = p` receives only the taps
 * `kh ≡ p + padTop (mod s)`, so each of the s² phases is its own dense GEMM over its pixels and only its taps
 * (`dispatch.z` = phase). A 3×3 stride-2 gradient then does 9 taps' work per 4 pixels instead of 36, and a 1×1
 * stride-2 one (the downsample shortcut) computes only the quarter of dx that is not zero (the rest is written 0).
 * Within a phase the tap arithmetic needs no division: `oh = q_h + c_h − t_h` for the phase's row `q_h`, tap `t_h`.
 *
 * tfjs-backend-webgpu 4.22 runs `Conv2DDerInputProgram` (its flag `WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE` defaults to
 * true): one thread per 2 pixels × 4 channels of dx, looping over every tap (deciding each by float division and
 * `fract`) and all of Cout, reading dy and the filter straight from memory with no reuse between threads (the filter
 * as four scalar loads Cout apart): 86 ms of a ResNet34 step at 224 px, bs 64 on an H200, 5.3 TFLOP/s on average
 * (its `Conv2DDerInputMMProgram`, off by that flag, is a GEMM but runs every tap for every pixel). Here a 16×16
 * workgroup computes a 64×64 tile of dx, 4×4 values per thread, over K in steps of 16 staged in workgroup memory,
 * each value loaded once per tile and used 64 times (each thread decodes its one K column once per step and its 4
 * rows' pixels once), 16 threads reading 16 consecutive channels, and the next step's values loaded into registers
 * while the current step's are multiplied (software pipelining: the loads' latency hides behind the arithmetic).
 * Where the largest phase has fewer than 64 rows (tiny maps and batches: one partial tile of rows, mostly idle)
 * tfjs's kernel, which wastes no thread there, stays in use.
 *
 * Numerics: float32 products and sums, like tfjs's kernels, in another order (checked against tfjs `cpu` in
 * test/unit/training/compute/webgpu/conv-input-grad.test.ts).
 */
import { backend_util, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import { convGeometry, inputGradPhases, type ConvGeometry } from '../kernels/conv-geometry.js';
import { INPUT_GRAD_ENV, inputGradTfjsSetting } from '../../../contract/env-settings.js';

const TILE = 64;
const TILE_K = 16;
const THREADS = 16;
/** WebGPU's default `maxComputeWorkgroupsPerDimension`. */
const MAX_WORKGROUPS = 65535;

/**
 * The environment variable that sends every call back to tfjs's own kernel when set to `tfjs` (read at each call,
 * so one process can compare both: `scripts/gpu-check/input-grad-ab.ts`; its rule: `contract/env-settings.ts`).
 */
export { INPUT_GRAD_ENV };

/**
 * GEMM sizes of the phase decomposition (phases as `kernels/conv-geometry.ts` `inputGradPhases`, which the shader's
 * `phaseOf` mirrors): the largest phase's rows `batch·rows·cols` (dispatch.y) and its K `taps_h·taps_w·Cout` (the
 * K-step loop, the same count for every phase; a phase with fewer skips the rest).
 *
 * @param g - the convolution's geometry (`convGeometry` of tfjs's `Conv2DInfo`)
 * @returns `maxM` dx pixels, `maxK` multiply-adds per pixel and channel, `phases` = s_h·s_w
 */
export function phaseGemm(g: ConvGeometry): { maxM: number; maxK: number; phases: number } {
  let maxM = 0;
  let maxK = 0;
  for (const h of inputGradPhases(g.rows)) {
    for (const w of inputGradPhases(g.cols)) {
      maxM = Math.max(maxM, g.batch * h.outSize * w.outSize);
      maxK = Math.max(maxK, h.taps * w.taps * g.outChannels);
    }
  }
  return { maxM, maxK, phases: g.rows.stride * g.cols.stride };
}

class InputGradProgram implements WebGPUProgram {
  readonly variableNames = ['dy', 'W'];
  readonly uniforms = 'pads : vec2<i32>, strides : vec2<i32>, filterDims : vec2<i32>, inHeight : i32, inWidth : i32, ' +
    'inChannels : i32, outHeight : i32, outWidth : i32, outChannels : i32, batch : i32, numTiles : i32,';
  readonly workgroupSize: [number, number, number] = [THREADS, THREADS, 1];
  readonly dispatchLayout = { x: [3], y: [1, 2], z: [0] };
  readonly dispatch: [number, number, number];
  readonly shaderKey = 'petsConv2DInputGradTiled';

  constructor(readonly outputShape: number[], maxM: number, phases: number) {
    this.dispatch = [Math.ceil(outputShape[3]! / TILE), Math.ceil(maxM / TILE), phases];
  }

  getUserCode(): string {
    // Workgroup tiles as [k][4 rows or 4 columns], each vec4 stored whole by one thread (a store to one vec4
    // component may compile to a read-modify-write of the whole vec4: a race between threads) and read whole by
    // the compute loop (2 vec4 reads per 16 multiply-adds). Each k's row is padded by one vec4 so that the 8
    // threads of a store phase (consecutive k) hit different banks.
    return `
      var<workgroup> tileA : array<array<vec4<f32>, ${TILE / 4 + 1}>, ${TILE_K}>;
      var<workgroup> tileB : array<array<vec4<f32>, ${TILE / 4 + 1}>, ${TILE_K}>;

      // One axis' phase p: (rows, taps, first tap, c), as inputGradPhases() on the host: dx[s·q + p] receives
      // dy[q + c − t] · w[first + s·t] for the taps t < taps.
      fn phaseOf(size : i32, k : i32, s : i32, pad : i32, p : i32) -> vec4<i32> {
        let first = (p + pad) % s;
        return vec4<i32>(max(0, (size - p + s - 1) / s), max(0, (k - first + s - 1) / s), first, (p + pad - first) / s);
      }

      struct Staged { a : vec4<f32>, b : vec4<f32> }

      // One thread's part of the K step holding column k: dy at its 4 rows (pixels: image row base, phase row and
      // column) and the filter at its 4 columns n0 + 4·lq + j; zeros past the phase's K, outside dy, past Cin.
      fn stage(k : i32, kPhase : i32, ph : vec4<i32>, pw : vec4<i32>, n0 : i32, lq : i32, qh : array<i32, 4>,
               qw : array<i32, 4>, rowBase : array<i32, 4>) -> Staged {
        var out = Staged(vec4<f32>(0.0), vec4<f32>(0.0));
        if (k >= kPhase) {
          return out;
        }
        let cols = uniforms.outChannels;
        let co = k % cols;
        let tap = k / cols;
        let tw = tap % max(1, pw.y);
        let th = tap / max(1, pw.y);
        let kh = ph.z + uniforms.strides.x * th;
        let kw = pw.z + uniforms.strides.y * tw;
        for (var j = 0; j < 4; j++) {
          let oh = qh[j] + ph.w - th;
          let ow = qw[j] + pw.w - tw;
          if (rowBase[j] >= 0 && oh >= 0 && oh < uniforms.outHeight && ow >= 0 && ow < uniforms.outWidth) {
            out.a[j] = dy[((rowBase[j] + oh) * uniforms.outWidth + ow) * cols + co];
          }
          let n = n0 + 4 * lq + j;
          if (n < uniforms.inChannels) {
            out.b[j] = W[((kh * uniforms.filterDims.y + kw) * uniforms.inChannels + n) * cols + co];
          }
        }
        return out;
      }

      fn main() {
        let tx = i32(localId.x);
        let ty = i32(localId.y);
        let tid = ty * ${THREADS} + tx;
        let n0 = i32(workgroupId.x) * ${TILE};
        let m0 = i32(workgroupId.y) * ${TILE};
        let phase = i32(workgroupId.z);
        let ph = phaseOf(uniforms.inHeight, uniforms.filterDims.x, uniforms.strides.x, uniforms.pads.x, phase / uniforms.strides.y);
        let pw = phaseOf(uniforms.inWidth, uniforms.filterDims.y, uniforms.strides.y, uniforms.pads.y, phase % uniforms.strides.y);
        let rowsM = uniforms.batch * ph.x * pw.x;
        let kPhase = ph.y * pw.y * uniforms.outChannels;
        // This thread's loads: K column kk of the step, rows (and filter columns) 4·lq … 4·lq + 3.
        let kk = tid % ${TILE_K};
        let lq = tid / ${TILE_K};
        var qh : array<i32, 4>;
        var qw : array<i32, 4>;
        var rowBase : array<i32, 4>;
        for (var j = 0; j < 4; j++) {
          let m = m0 + 4 * lq + j;
          let q = m % max(1, ph.x * pw.x);
          qw[j] = q % max(1, pw.x);
          qh[j] = q / max(1, pw.x);
          rowBase[j] = select(-1, (m / max(1, ph.x * pw.x)) * uniforms.outHeight, m < rowsM);
        }
        var acc = array<array<f32, 4>, 4>();
        // Software pipelining: the next K step's values are loaded into registers while this one's are multiplied.
        var staged = stage(kk, kPhase, ph, pw, n0, lq, qh, qw, rowBase);
        for (var t = 0; t < uniforms.numTiles; t++) {
          let k0 = t * ${TILE_K};
          // Whole-workgroup condition (phase, tile and step are the workgroup's): barriers stay outside it.
          let busy = k0 < kPhase && m0 < rowsM;
          if (busy) {
            tileA[kk][lq] = staged.a;
            tileB[kk][lq] = staged.b;
          }
          workgroupBarrier();
          if (busy) {
            staged = stage(k0 + ${TILE_K} + kk, kPhase, ph, pw, n0, lq, qh, qw, rowBase);
            for (var s = 0; s < ${TILE_K}; s++) {
              let av = tileA[s][ty];
              let bv = tileB[s][tx];
              for (var i = 0; i < 4; i++) {
                acc[i][0] = acc[i][0] + av[i] * bv.x;
                acc[i][1] = acc[i][1] + av[i] * bv.y;
                acc[i][2] = acc[i][2] + av[i] * bv.z;
                acc[i][3] = acc[i][3] + av[i] * bv.w;
              }
            }
          }
          workgroupBarrier();
        }
        // Every dx pixel of the phase is written, zeros where no tap reaches it (the output buffer is not cleared).
        for (var i = 0; i < 4; i++) {
          let m = m0 + ty * 4 + i;
          if (m < rowsM) {
            let q = m % (ph.x * pw.x);
            let img = m / (ph.x * pw.x);
            let ih = phase / uniforms.strides.y + uniforms.strides.x * (q / pw.x);
            let iw = phase % uniforms.strides.y + uniforms.strides.y * (q % pw.x);
            let base = ((img * uniforms.inHeight + ih) * uniforms.inWidth + iw) * uniforms.inChannels;
            for (var j = 0; j < 4; j++) {
              let n = n0 + tx * 4 + j;
              if (n < uniforms.inChannels) {
                result[base + n] = acc[i][j];
              }
            }
          }
        }
      }
    `;
  }
}

/**
 * The WebGPU `Conv2DBackpropInput` kernel: the tiled program for NHWC float32 (any kernel size, stride and padding
 * tfjs computes; dilation is always 1 in this kernel) with at least 64 dx pixels in a stride phase, else `fallback`
 * (tfjs's own), also when `PETS_WEBGPU_INPUT_GRAD=tfjs`.
 * @returns dx `[batch, inHeight, inWidth, inChannels] float32`
 */
export function conv2DBackpropInputWebgpu(fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, attrs } = args;
    const backend = args.backend as unknown as WebGPUBackend;
    const dy = inputs.dy as TensorInfo, filter = inputs.filter as TensorInfo;
    const a = attrs as unknown as { inputShape: [number, number, number, number]; strides: [number, number] | number;
      pad: backend_util.PadInfo['type'] | number | backend_util.ExplicitPadding; dataFormat: 'NHWC' | 'NCHW';
      dimRoundingMode?: 'floor' | 'round' | 'ceil' };
    if (inputGradTfjsSetting() || a.dataFormat === 'NCHW' || dy.dtype !== 'float32' || filter.dtype !== 'float32') {
      return fallback(args);
    }
    const info = backend_util.computeConv2DInfo(a.inputShape, filter.shape as [number, number, number, number], a.strides, 1,
      a.pad as never, a.dimRoundingMode, false, 'channelsLast');
    const size = info.batchSize * info.inHeight * info.inWidth * info.inChannels;
    if (size === 0 || info.padInfo.top < 0 || info.padInfo.left < 0) return fallback(args);
    const { maxM, maxK, phases } = phaseGemm(convGeometry(info));
    if (maxM < TILE || Math.ceil(maxM / TILE) > MAX_WORKGROUPS ||
      Math.ceil(info.inChannels / TILE) > MAX_WORKGROUPS || phases > MAX_WORKGROUPS) return fallback(args);
    const uniforms = [
      { type: 'int32', data: [info.padInfo.top, info.padInfo.left] },
      { type: 'int32', data: [info.strideHeight, info.strideWidth] },
      { type: 'int32', data: [info.filterHeight, info.filterWidth] },
      { type: 'int32', data: [info.inHeight] }, { type: 'int32', data: [info.inWidth] }, { type: 'int32', data: [info.inChannels] },
      { type: 'int32', data: [info.outHeight] }, { type: 'int32', data: [info.outWidth] }, { type: 'int32', data: [info.outChannels] },
      { type: 'int32', data: [info.batchSize] }, { type: 'int32', data: [Math.ceil(maxK / TILE_K)] },
    ];
    return backend.runWebGPUProgram(new InputGradProgram(info.inShape, maxM, phases), [dy, filter], 'float32', uniforms);
  };
}
