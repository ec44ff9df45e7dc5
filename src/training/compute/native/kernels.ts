/**
 * tfjs kernels of the `native` backend that run in oneDNN (see `addon.ts`): Conv2D, Conv2DBackpropInput,
 * Conv2DBackpropFilter, MaxPool, MaxPoolGrad, BatchMatMul (oneDNN's sgemm); and in the addon's own C++ loops: the
 * fused training-mode BatchNorm pair (float64 statistics, as the WASM kernels), the fused AdamW step and element-wise
 * arithmetic; and the BatchNorm running-statistic update in JavaScript (`bn-running.ts`). Each reads its inputs'
 * Float32Arrays in place and writes into a freshly allocated output array that becomes the output tensor's storage
 * (no copies). A call the addon does not cover (NCHW data, a non-float32 dtype, broadcasting
 * batch shapes the addon does not do) runs the tfjs `cpu` kernel instead.
 *
 * Geometry: tfjs's `computeConv2DInfo` / `computePool2DInfo` give output size and top/left padding for every
 * padding form ('same', 'valid', numbers, explicit, rounding modes); oneDNN's bottom/right padding is then whatever
 * makes its output size formula `o = (i + pTop + pBottom − ((k−1)·d + 1)) / s + 1` give tfjs's output size.
 */
import { backend_util, getKernel, util, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { TrainerError } from '../../../contract/errors.js';
import { BN_RUNNING_UPDATE_KERNEL, BN_TRAIN_GRAD_KERNEL, BN_TRAIN_KERNEL, type BatchNormTrainAttrs } from '../kernels/batch-norm.js';
import { ADAMW_KERNEL, type AdamWAttrs } from '../webgpu/adamw-kernel.js';
import type { ConvGeometry, NativeAddon, PoolGeometry } from './addon.js';
import type { ArrayPool } from './array-pool.js';
import { batchNormRunningUpdateNative } from './bn-running.js';

/** tfjs's registry name of this backend. */
export const NATIVE_BACKEND = 'native';

type Shape4 = [number, number, number, number];

/**
 * The Float32Array behind a float32 tensor. A float32 tensor that shares a cast input's Uint8Array/Int32Array (see
 * {@link allFloat}) is converted into a copy: kernels that cannot fall back (the fused BatchNorm) still work.
 */
function values(backend: MathBackendCPU, t: TensorInfo): Float32Array {
  const v = backend.data.get(t.dataId).values;
  if (v instanceof Float32Array) return v;
  if (t.dtype === 'float32' && (v instanceof Int32Array || v instanceof Uint8Array)) return Float32Array.from(v);
  throw new TrainerError('ERR_INTERNAL', `native kernel input must be float32, got ${t.dtype} [${t.shape}]`);
}

/**
 * A new float32 output tensor and its storage: an array from the backend's pool (`array-pool.ts`; contents
 * undefined, the kernel writes every element) on the native backend, else a fresh one.
 */
function output(backend: MathBackendCPU, shape: number[]): [TensorInfo, Float32Array] {
  const pool = (backend as { pool?: ArrayPool }).pool;
  const n = util.sizeFromShape(shape);
  const out = pool === undefined ? new Float32Array(n) : pool.take(n);
  return [backend.makeTensorInfo(shape, 'float32', out), out];
}

/**
 * True when every tensor is float32 AND stored as a Float32Array: tfjs's cpu `Cast` from bool or int32 to float32
 * shares the input's Uint8Array/Int32Array instead of converting (no precision is lost), so such "float32" tensors
 * go to the cpu kernels, which read any array type.
 */
function allFloat(backend: MathBackendCPU, ...ts: TensorInfo[]): boolean {
  return ts.every((t) => t.dtype === 'float32' && backend.data.get(t.dataId).values instanceof Float32Array);
}

const fallbackCounts = new Map<string, number>();

/**
 * How many calls of each kernel ran tfjs's `cpu` kernel instead of the native code (shapes or dtypes the addon does
 * not cover), since the process started: lets tests and the bench check that a ResNet step runs natively.
 */
export function nativeFallbacks(): ReadonlyMap<string, number> {
  return fallbackCounts;
}

/** Runs tfjs's `cpu` kernel of that name on this backend (a MathBackendCPU) for a call the addon does not cover. */
function cpuFallback(kernelName: string): KernelFunc {
  return (args) => {
    fallbackCounts.set(kernelName, (fallbackCounts.get(kernelName) ?? 0) + 1);
    const config = getKernel(kernelName, 'cpu');
    if (config === undefined) throw new TrainerError('ERR_BACKEND', `tfjs cpu backend has no ${kernelName} kernel`);
    return config.kernelFunc(args);
  };
}

/**
 * oneDNN's padding after the data along one axis, for tfjs's output size `o`: more than tfjs's own with 'ceil'
 * rounding, negative (up to s − 1 unused trailing rows, which oneDNN accepts) when a strided window does not reach
 * the end, e.g. a 1×1/2 convolution of an even size.
 */
function padAfter(i: number, o: number, k: number, s: number, d: number, before: number): number {
  return (o - 1) * s + (k - 1) * d + 1 - i - before;
}

/** The addon's convolution geometry from tfjs's conv info, or null when oneDNN cannot express it. */
export function convGeometry(info: backend_util.Conv2DInfo): ConvGeometry | null {
  const { batchSize: n, inHeight: ih, inWidth: iw, inChannels: ci, outHeight: oh, outWidth: ow,
    outChannels: co, filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw,
    dilationHeight: dh, dilationWidth: dw, padInfo } = info;
  if (info.dataFormat !== 'channelsLast' || oh <= 0 || ow <= 0) return null;
  const pb = padAfter(ih, oh, kh, sh, dh, padInfo.top);
  const pr = padAfter(iw, ow, kw, sw, dw, padInfo.left);
  if (pb <= -sh || pr <= -sw || padInfo.top < 0 || padInfo.left < 0) return null;
  return [n, ih, iw, ci, oh, ow, co, kh, kw, sh, sw, padInfo.top, padInfo.left, pb, pr, dh, dw];
}

interface ConvAttrs {
  strides: number | [number, number];
  pad: 'same' | 'valid' | number | backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  inputShape?: Shape4;
  filterShape?: Shape4;
}

function convInfo(xShape: Shape4, filterShape: Shape4, a: ConvAttrs): backend_util.Conv2DInfo {
  const format = backend_util.convertConv2DDataFormat(a.dataFormat);
  return backend_util.computeConv2DInfo(xShape, filterShape, a.strides, a.dilations ?? 1, a.pad, a.dimRoundingMode,
    false, format);
}

/**
 * Filters in oneDNN's layout, per filter array and primitive: tfjs tensors are immutable, so a filter array's
 * reordered copy stays valid while the array lives (WeakMap: it goes with it). A training step then reorders each
 * filter once for the forward and once for the input gradient instead of once per call and per chunk; the reorders
 * are memory-bound copies of up to 9.4 MB (resnet34 layer 4) that cost as much as the convolution at 128 px.
 */
const weightCaches = new WeakMap<Float32Array, Map<string, { cache: Float32Array; valid: boolean }>>();

/**
 * Reordered-filter arrays whose filter array was recycled (see {@link forgetDerived}), by length: the next
 * filters of the same shapes (the next step's parameters) reuse them instead of allocating ~2× the model per step.
 */
const freeCaches = new Map<number, Float32Array[]>();
let freeCacheBytes = 0;
/** Most bytes of reordered-filter arrays kept for reuse (resnet34: 2 × 87 MB per step). */
const FREE_CACHE_LIMIT = 256 * 2 ** 20;

/**
 * Forgets what was derived from `array` (its reordered-filter copies, a max-pool arg-max): the backend's pool calls this when it
 * recycles the array, whose contents are about to change.
 */
export function forgetDerived(array: Float32Array): void {
  poolWorkspaces.delete(array);
  const perArray = weightCaches.get(array);
  if (perArray === undefined) return;
  weightCaches.delete(array);
  for (const { cache } of perArray.values()) {
    let list = freeCaches.get(cache.length);
    if (list === undefined) {
      list = [];
      freeCaches.set(cache.length, list);
    }
    if (freeCacheBytes + cache.byteLength > FREE_CACHE_LIMIT) continue;
    list.push(cache);
    freeCacheBytes += cache.byteLength;
  }
}

/**
 * `array`'s values were overwritten in place (the in-place AdamW update): what was derived from them is stale. The
 * reordered-filter copies stay attached to the array and are refilled by its next convolution (the same memory, no
 * allocation); a max-pool arg-max is dropped.
 */
export function contentsChanged(array: Float32Array): void {
  poolWorkspaces.delete(array);
  const perArray = weightCaches.get(array);
  if (perArray === undefined) return;
  for (const entry of perArray.values()) entry.valid = false;
}

function weightsCache(addon: NativeAddon, kind: 0 | 1, w: Float32Array, g: ConvGeometry): [Float32Array | null, boolean] {
  let perArray = weightCaches.get(w);
  const key = `${kind}:${g.join(',')}`;
  const hit = perArray?.get(key);
  if (hit !== undefined) {
    // A stale copy is refilled by this call (the addon reorders into it when told it is not filled).
    const filled = hit.valid;
    hit.valid = true;
    return [hit.cache, filled];
  }
  const size = addon.convWeightsCacheSize(kind, ...g);
  if (size === 0) return [null, false];
  const reused = freeCaches.get(size)?.pop();
  if (reused !== undefined) freeCacheBytes -= reused.byteLength;
  const cache = reused ?? new Float32Array(size);
  if (perArray === undefined) {
    perArray = new Map();
    weightCaches.set(w, perArray);
  }
  perArray.set(key, { cache, valid: true });
  return [cache, false];
}

function convForward(addon: NativeAddon): KernelFunc {
  const fallback = cpuFallback('Conv2D');
  return (args) => {
    const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo };
    const a = args.attrs as unknown as ConvAttrs;
    const backend = args.backend as MathBackendCPU;
    const g = allFloat(backend, x, filter) ? convGeometry(convInfo(x.shape as Shape4, filter.shape as Shape4, a)) : null;
    if (g === null) return fallback(args);
    const [out, ys] = output(backend, [g[0], g[4], g[5], g[6]]);
    const w = values(backend, filter);
    addon.convForward(values(backend, x), w, ys, ...g, ...weightsCache(addon, 0, w, g));
    return out;
  };
}

function convBackpropInput(addon: NativeAddon): KernelFunc {
  const fallback = cpuFallback('Conv2DBackpropInput');
  return (args) => {
    const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
    const a = args.attrs as unknown as ConvAttrs;
    const backend = args.backend as MathBackendCPU;
    const g = allFloat(backend, dy, filter) ? convGeometry(convInfo(a.inputShape!, filter.shape as Shape4, a)) : null;
    if (g === null || !util.arraysEqual(dy.shape, [g[0], g[4], g[5], g[6]])) return fallback(args);
    const [out, dxs] = output(backend, [...a.inputShape!]);
    const w = values(backend, filter);
    addon.convBackwardData(values(backend, dy), w, dxs, ...g, ...weightsCache(addon, 1, w, g));
    return out;
  };
}

function convBackpropFilter(addon: NativeAddon): KernelFunc {
  const fallback = cpuFallback('Conv2DBackpropFilter');
  return (args) => {
    const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
    const a = args.attrs as unknown as ConvAttrs;
    const backend = args.backend as MathBackendCPU;
    const g = allFloat(backend, x, dy) ? convGeometry(convInfo(x.shape as Shape4, a.filterShape!, a)) : null;
    if (g === null || !util.arraysEqual(dy.shape, [g[0], g[4], g[5], g[6]])) return fallback(args);
    const [out, dws] = output(backend, [...a.filterShape!]);
    addon.convBackwardWeights(values(backend, x), values(backend, dy), dws, ...g);
    return out;
  };
}

interface PoolAttrs {
  filterSize: number | [number, number];
  strides: number | [number, number];
  pad: 'same' | 'valid' | number | backend_util.ExplicitPadding;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** The addon's pooling geometry, or null when oneDNN cannot express it (e.g. a window that is all padding). */
export function poolGeometry(info: backend_util.Conv2DInfo): PoolGeometry | null {
  const { batchSize: n, inHeight: ih, inWidth: iw, inChannels: c, outHeight: oh, outWidth: ow,
    filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, padInfo } = info;
  if (oh <= 0 || ow <= 0 || info.dilationHeight !== 1 || info.dilationWidth !== 1) return null;
  const pb = padAfter(ih, oh, kh, sh, 1, padInfo.top);
  const pr = padAfter(iw, ow, kw, sw, 1, padInfo.left);
  // oneDNN requires each padding to be smaller than the window (no window made only of padding).
  if (padInfo.top < 0 || padInfo.left < 0 || pb <= -sh || pr <= -sw || padInfo.top >= kh || pb >= kh ||
    padInfo.left >= kw || pr >= kw) return null;
  return [n, ih, iw, c, oh, ow, kh, kw, sh, sw, padInfo.top, padInfo.left, pb, pr];
}

function poolInfo(xShape: Shape4, a: PoolAttrs): backend_util.Conv2DInfo {
  return backend_util.computePool2DInfo(xShape, a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode);
}

/**
 * The arg-max of each window recorded by the last max-pool forward of an input array (oneDNN's workspace, 1 byte
 * per output value), with that forward's geometry and output array: the gradient (tfjs passes it the forward's
 * input and output) then scatters dy without running the forward again (a 16 MB read and a second pooling pass
 * at resnet34/128). Used only when input array, geometry and output array all match, and dropped when the input
 * array is recycled ({@link forgetDerived}); tfjs tensors are immutable, so the arg-max stays valid while the
 * array lives.
 */
const poolWorkspaces = new WeakMap<Float32Array, { key: string; y: unknown; ws: Uint8Array }>();

function maxPool(addon: NativeAddon): KernelFunc {
  const fallback = cpuFallback('MaxPool');
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const backend = args.backend as MathBackendCPU;
    const g = allFloat(backend, x) && x.shape.length === 4 ? poolGeometry(poolInfo(x.shape as Shape4, args.attrs as unknown as PoolAttrs)) : null;
    if (g === null) return fallback(args);
    const [out, ys] = output(backend, [g[0], g[4], g[5], g[3]]);
    const xs = values(backend, x);
    const key = g.join(',');
    const size = addon.maxPoolWorkspaceSize(...g);
    const old = poolWorkspaces.get(xs);
    const ws = old !== undefined && old.ws.length === size ? old.ws : new Uint8Array(size);
    addon.maxPoolForward(xs, ys, ws, ...g);
    poolWorkspaces.set(xs, { key, y: ys, ws });
    return out;
  };
}

function maxPoolGrad(addon: NativeAddon): KernelFunc {
  const fallback = cpuFallback('MaxPoolGrad');
  return (args) => {
    const { dy, input, output: output_ } = args.inputs as { dy: TensorInfo; input: TensorInfo; output: TensorInfo };
    const backend = args.backend as MathBackendCPU;
    const g = allFloat(backend, dy, input) ? poolGeometry(poolInfo(input.shape as Shape4, args.attrs as unknown as PoolAttrs)) : null;
    if (g === null || !util.arraysEqual(dy.shape, [g[0], g[4], g[5], g[3]])) return fallback(args);
    const [out, dxs] = output(backend, [...input.shape]);
    const xs = values(backend, input);
    const rec = poolWorkspaces.get(xs);
    const ys = backend.data.get(output_.dataId).values;
    const ws = rec !== undefined && rec.key === g.join(',') && rec.y === ys ? rec.ws : null;
    addon.maxPoolBackward(xs, values(backend, dy), dxs, ws, ...g);
    return out;
  };
}

function batchMatMul(addon: NativeAddon): KernelFunc {
  const fallback = cpuFallback('BatchMatMul');
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const backend = args.backend as MathBackendCPU;
    if (!allFloat(backend, a, b) || a.shape.length < 2 || b.shape.length < 2) return fallback(args);
    const ra = a.shape.length;
    const rb = b.shape.length;
    const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
    const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
    const k2 = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
    const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
    const outerA = a.shape.slice(0, -2);
    const outerB = b.shape.slice(0, -2);
    const batchA = util.sizeFromShape(outerA);
    const batchB = util.sizeFromShape(outerB);
    // Same batch shape, or one operand without (or with an all-ones) batch shape; other broadcasts go to cpu.
    const outer = batchA >= batchB ? outerA : outerB;
    const sameOuter = util.arraysEqual(outerA, outerB);
    if (k !== k2 || m * n * k === 0 || (!sameOuter && batchA !== 1 && batchB !== 1)) return fallback(args);
    const batch = Math.max(batchA, batchB);
    const [out, cs] = output(backend, [...outer, m, n]);
    addon.batchMatMul(values(backend, a), values(backend, b), cs, batch, m, n, k, transposeA, transposeB,
      batchA === batch && batch > 1 ? 1 : 0, batchB === batch && batch > 1 ? 1 : 0);
    return out;
  };
}

function bnDims(x: TensorInfo, gamma: TensorInfo): [number, number] {
  const c = x.shape[x.shape.length - 1]!;
  const p = util.sizeFromShape(x.shape) / c;
  if (gamma.shape.length !== 1 || gamma.shape[0] !== c) {
    throw new TrainerError('ERR_INTERNAL', `BatchNorm gamma must be [${c}], got [${gamma.shape}]`);
  }
  if (p < 2) throw new TrainerError('ERR_DATA', `training-mode BatchNorm needs more than 1 value per channel, got [${x.shape}]`);
  return [p, c];
}

function batchNormTrain(addon: NativeAddon): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, gamma, beta, residual } = inputs as { x: TensorInfo; gamma: TensorInfo; beta: TensorInfo; residual?: TensorInfo };
    const { eps, relu } = attrs as unknown as BatchNormTrainAttrs;
    const cpu = backend as MathBackendCPU;
    const [p, c] = bnDims(x, gamma);
    const [y, ys] = output(cpu, [...x.shape]);
    const [mean, ms] = output(cpu, [c]);
    const [variance, vs] = output(cpu, [c]);
    addon.batchNormForward(values(cpu, x), values(cpu, gamma), values(cpu, beta),
      residual === undefined ? null : values(cpu, residual), ys, ms, vs, p, c, eps, relu);
    return [y, mean, variance];
  };
}

function batchNormTrainGrad(addon: NativeAddon): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, y, dy, gamma, mean, variance } = inputs as Record<'x' | 'y' | 'dy' | 'gamma' | 'mean' | 'variance', TensorInfo>;
    const { eps, relu, residual } = attrs as unknown as BatchNormTrainAttrs;
    const cpu = backend as MathBackendCPU;
    const [p, c] = bnDims(x, gamma);
    const [dx, dxs] = output(cpu, [...x.shape]);
    const [dg, dgs] = output(cpu, [c]);
    const [db, dbs] = output(cpu, [c]);
    const dr = residual ? output(cpu, [...x.shape]) : null;
    addon.batchNormBackward(values(cpu, x), values(cpu, y), values(cpu, dy), values(cpu, gamma), values(cpu, mean),
      values(cpu, variance), dxs, dgs, dbs, dr === null ? null : dr[1], p, c, eps, relu);
    return dr === null ? [dx, dg, db] : [dx, dg, db, dr[0]];
  };
}

const BINARY_OPS: Readonly<Record<string, number>> = { Add: 0, Sub: 1, Multiply: 2, RealDiv: 3, Maximum: 4, Minimum: 5 };
const UNARY_OPS: Readonly<Record<string, number>> = { Sqrt: 0, Square: 1, Neg: 2, Rsqrt: 3, Abs: 4 };

/**
 * Element-wise float32 arithmetic in one native pass (the optimizer's and the loss's glue: AdamW alone makes ~12
 * passes over every parameter per step, which tfjs's generic cpu loops run ~10× slower). Same-shape operands, a
 * one-element operand or a row broadcast (a bias `[C]` over `[N, C]`); any other broadcast (e.g. a column
 * `[N, 1]`) and any other dtype run tfjs's cpu kernel.
 */
function binary(addon: NativeAddon, kernelName: string): KernelFunc {
  const fallback = cpuFallback(kernelName);
  const op = BINARY_OPS[kernelName]!;
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const backend = args.backend as MathBackendCPU;
    if (!allFloat(backend, a, b)) return fallback(args);
    const shape = backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const n = util.sizeFromShape(shape);
    const na = util.sizeFromShape(a.shape);
    const nb = util.sizeFromShape(b.shape);
    if (n === 0) return fallback(args);
    const [out, vs] = output(backend, shape);
    if (broadcastsAsRows(a.shape, shape) && broadcastsAsRows(b.shape, shape) &&
      (na === n || nb === n || na === 1 || nb === 1)) {
      addon.binary(op, values(backend, a), values(backend, b), vs, n, na, nb);
      return out;
    }
    const plan = broadcastPlan(a.shape, b.shape, shape);
    if (plan === null) {
      backend.disposeIntermediateTensorInfo(out);
      return fallback(args);
    }
    addon.binaryStrided(op, values(backend, a), values(backend, b), vs, ...plan);
    return out;
  };
}

/**
 * The output's dimensions merged to at most four, with each operand's element stride along them (0 where it is
 * broadcast): adjacent dimensions merge when both operands broadcast alike along them. Null when more than four
 * remain (then tfjs's cpu kernel runs).
 */
export function broadcastPlan(aShape: readonly number[], bShape: readonly number[], out: readonly number[]):
[number, number, number, number, number, number, number, number, number, number, number, number] | null {
  const rank = out.length;
  const pad = (s: readonly number[]): number[] => [...Array<number>(rank - s.length).fill(1), ...s];
  const as = pad(aShape);
  const bs = pad(bShape);
  // Merged dims, innermost first: [size, a broadcast?, b broadcast?].
  const dims: [number, boolean, boolean][] = [];
  for (let k = rank - 1; k >= 0; k--) {
    const size = out[k]!;
    if (size === 1) continue;
    const ab = as[k] === 1;
    const bb = bs[k] === 1;
    const last = dims[dims.length - 1];
    if (last !== undefined && last[1] === ab && last[2] === bb) last[0] *= size;
    else dims.push([size, ab, bb]);
  }
  if (dims.length > 4) return null;
  while (dims.length < 4) dims.push([1, false, false]);
  const d: number[] = [];
  const sa: number[] = [];
  const sb: number[] = [];
  let strideA = 1;
  let strideB = 1;
  for (const [size, ab, bb] of dims) {
    d.push(size);
    sa.push(ab ? 0 : strideA);
    sb.push(bb ? 0 : strideB);
    if (!ab) strideA *= size;
    if (!bb) strideB *= size;
  }
  d.reverse();
  sa.reverse();
  sb.reverse();
  return [d[0]!, d[1]!, d[2]!, d[3]!, sa[0]!, sa[1]!, sa[2]!, sa[3]!, sb[0]!, sb[1]!, sb[2]!, sb[3]!];
}

/**
 * Concat of float32 tensors along any axis: for each index of the leading axes, one contiguous block per input
 * (`TypedArray.set`, a memcpy); the trainer concatenates all gradients into one flat array every step (87 MB at
 * resnet34), which tfjs's cpu kernel copies element by element.
 */
function concat(kernelName: string): KernelFunc {
  const fallback = cpuFallback(kernelName);
  return (args) => {
    const inputs = (Array.isArray(args.inputs) ? args.inputs : Object.values(args.inputs)) as TensorInfo[];
    const backend = args.backend as MathBackendCPU;
    if (inputs.length === 0 || !allFloat(backend, ...inputs)) return fallback(args);
    const axis = util.parseAxisParam((args.attrs as { axis: number | number[] }).axis, inputs[0]!.shape)[0]!;
    const shape = backend_util.computeOutShape(inputs.map((t) => t.shape), axis);
    const [out, vs] = output(backend, shape);
    const outer = util.sizeFromShape(shape.slice(0, axis));
    const rowOut = util.sizeFromShape(shape.slice(axis));
    let offset = 0;
    for (const t of inputs) {
      const row = util.sizeFromShape(t.shape.slice(axis));
      if (row === 0) continue;
      const v = values(backend, t);
      if (outer === 1) vs.set(v.subarray(0, row), offset);
      else for (let o = 0; o < outer; o++) vs.set(v.subarray(o * row, (o + 1) * row), o * rowOut + offset);
      offset += row;
    }
    return out;
  };
}

/** SplitV of a float32 tensor along any axis: contiguous block copies, as {@link concat}. */
function splitV(): KernelFunc {
  const fallback = cpuFallback('SplitV');
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { numOrSizeSplits, axis } = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number };
    const backend = args.backend as MathBackendCPU;
    if (!allFloat(backend, x) || util.sizeFromShape(x.shape) === 0) return fallback(args);
    const ax = util.parseAxisParam(axis, x.shape)[0]!;
    const sizes = backend_util.prepareSplitSize(x, numOrSizeSplits, ax);
    const v = values(backend, x);
    const outer = util.sizeFromShape(x.shape.slice(0, ax));
    const inner = util.sizeFromShape(x.shape.slice(ax + 1));
    const rowIn = x.shape[ax]! * inner;
    let begin = 0;
    return sizes.map((size) => {
      const shape = [...x.shape];
      shape[ax] = size;
      const [out, vs] = output(backend, shape);
      const row = size * inner;
      for (let o = 0; o < outer && row > 0; o++) vs.set(v.subarray(o * rowIn + begin, o * rowIn + begin + row), o * row);
      begin += row;
      return out;
    });
  };
}

/**
 * Cast of a bool or int32 tensor to float32 into a new Float32Array (from the pool). tfjs's cpu `Cast` shares the
 * input's Uint8Array/Int32Array instead (no precision is lost), so the "float32" result is no Float32Array and
 * every native kernel it reaches handed the call to tfjs's JavaScript loops: in the head's max-pool gradient
 * (`dy · cast(x == max)`, a `[n,1,1,c]` × `[n,h,w,c]` Multiply) 18 ms per call at resnet34/128 instead of < 1.
 * Values as `Float32Array.from` gives them (each integer rounded to the nearest float32). Every other cast runs
 * the cpu kernel.
 */
function cast(): KernelFunc {
  const cpuCast = getKernel('Cast', 'cpu');
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { dtype } = args.attrs as { dtype: string };
    const backend = args.backend as MathBackendCPU;
    const v = backend.data.get(x.dataId).values;
    if (dtype !== 'float32' || (x.dtype !== 'bool' && x.dtype !== 'int32') ||
      !(v instanceof Uint8Array || v instanceof Int32Array)) {
      if (cpuCast === undefined) throw new TrainerError('ERR_BACKEND', 'tfjs cpu backend has no Cast kernel');
      return cpuCast.kernelFunc(args);
    }
    const [out, vs] = output(backend, [...x.shape]);
    vs.set(v);
    return out;
  };
}

const COMPARE_OPS: Readonly<Record<string, number>> = { Equal: 0, NotEqual: 1, Greater: 2, GreaterEqual: 3, Less: 4, LessEqual: 5 };

/**
 * Float32 comparisons with any broadcast (≤ 4 merged dimensions) into a bool tensor (Uint8Array): e.g. the mask
 * of the head's max-pool gradient, `[n,h,w,c] == [n,1,1,c]`, which tfjs's cpu kernel maps index by index.
 */
function compare(addon: NativeAddon, kernelName: string): KernelFunc {
  const fallback = cpuFallback(kernelName);
  const op = COMPARE_OPS[kernelName]!;
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const backend = args.backend as MathBackendCPU;
    if (!allFloat(backend, a, b)) return fallback(args);
    const shape = backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const plan = util.sizeFromShape(shape) === 0 ? null : broadcastPlan(a.shape, b.shape, shape);
    if (plan === null) return fallback(args);
    const out = new Uint8Array(util.sizeFromShape(shape));
    addon.compareStrided(op, values(backend, a), values(backend, b), out, ...plan);
    return backend.makeTensorInfo(shape, 'bool', out);
  };
}

const REDUCE_OPS: Readonly<Record<string, 0 | 1 | 2>> = { Sum: 0, Mean: 1, Max: 2 };

/**
 * Sum, Mean and Max of float32 over a run of adjacent axes (e.g. the spatial axes [1, 2] of NHWC in the head's
 * concat pool, or the batch axis of a bias gradient), as `[outer, r, inner]` → `[outer, inner]` in one native pass;
 * tfjs's cpu kernels transpose the reduced axes to the end first. Other axis sets run the cpu kernel.
 */
function reduce(addon: NativeAddon, kernelName: string): KernelFunc {
  const fallback = cpuFallback(kernelName);
  const op = REDUCE_OPS[kernelName]!;
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const attrs = args.attrs as { axis?: number | number[]; reductionIndices?: number | number[]; keepDims: boolean };
    const backend = args.backend as MathBackendCPU;
    const n = util.sizeFromShape(x.shape);
    if (!allFloat(backend, x) || n === 0 || x.shape.length === 0) return fallback(args);
    const axes = [...util.parseAxisParam((attrs.axis ?? attrs.reductionIndices ?? null) as number | number[], x.shape)].sort((p, q) => p - q);
    if (axes.length === 0 || axes.some((v, i) => i > 0 && v !== axes[i - 1]! + 1)) return fallback(args);
    const first = axes[0]!;
    const last = axes[axes.length - 1]!;
    const outer = util.sizeFromShape(x.shape.slice(0, first));
    const r = util.sizeFromShape(x.shape.slice(first, last + 1));
    const inner = util.sizeFromShape(x.shape.slice(last + 1));
    const shape = attrs.keepDims ? x.shape.map((d, k) => (k >= first && k <= last ? 1 : d))
      : x.shape.filter((_, k) => k < first || k > last);
    const [out, vs] = output(backend, shape);
    addon.reduce(op, values(backend, x), vs, outer, r, inner);
    return out;
  };
}

/**
 * True when an operand of `shape` repeats along the leading axes of `out` only: it is one element, or, without its
 * leading 1s, the trailing dimensions of `out` (so its values repeat every `size(shape)` output elements).
 */
function broadcastsAsRows(shape: readonly number[], out: readonly number[]): boolean {
  if (util.sizeFromShape([...shape]) === 1) return true;
  const core = shape.slice(shape.findIndex((d) => d !== 1));
  return util.arraysEqual(core, out.slice(out.length - core.length));
}

function unary(addon: NativeAddon, kernelName: string): KernelFunc {
  const fallback = cpuFallback(kernelName);
  const op = UNARY_OPS[kernelName]!;
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const backend = args.backend as MathBackendCPU;
    const n = util.sizeFromShape(x.shape);
    if (!allFloat(backend, x) || n === 0) return fallback(args);
    const [out, vs] = output(backend, [...x.shape]);
    addon.unary(op, values(backend, x), vs, n);
    return out;
  };
}

/**
 * The storage array of `t` (refCount 1, checked by the caller), made safe to overwrite: a pool array that only this
 * storage entry holds is returned as is; any other (read out by `dataSync()`/`data()`, viewed by a Slice, shared by
 * a second entry, created outside the pool, or stored as a non-Float32Array) is first copied into a pool array that
 * becomes the entry's values, so whoever holds the old array keeps the old values (copy on write).
 */
function writable(backend: MathBackendCPU, t: TensorInfo): Float32Array {
  const pool = (backend as { pool?: ArrayPool }).pool;
  const data = backend.data.get(t.dataId);
  const old = data.values as Float32Array | Int32Array | Uint8Array;
  if (pool !== undefined && old instanceof Float32Array && pool.ownsExclusively(old)) return old;
  const n = util.sizeFromShape(t.shape);
  const fresh = pool === undefined ? new Float32Array(n) : pool.take(n);
  fresh.set(old);
  data.values = fresh;
  pool?.onWrite(fresh);
  pool?.onDispose(old);
  return fresh;
}

/**
 * {@link ADAMW_KERNEL} on this backend: one fused AdamW pass (the addon's `adamW`) with `p`, `m`, `v` overwritten in
 * place (its loop reads each element before it writes it) and the gradient read from `g` at `gOffset`, so a flat
 * gradient of all parameters serves every update without a split. No outputs and no new arrays in the steady
 * state: the parameters keep their memory from step to step, and their reordered-filter copies are refilled in
 * place by the next convolution ({@link contentsChanged}). The same values as the tfjs ops on `cpu` (tested).
 *
 * @throws TrainerError ERR_INTERNAL when an operand is not float32, `m` or `v` differs in size from `p`, `gOffset`
 *   is not an integer ≥ 0 or `g` has fewer than `gOffset + n` values, two operands share storage, or one of `p`,
 *   `m`, `v` shares its storage with another tensor (`learner/adamw.ts` gives each its own first: `ownBuffer`)
 */
function adamWInPlace(addon: NativeAddon): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { p, g, m, v } = inputs as Record<'p' | 'g' | 'm' | 'v', TensorInfo>;
    const a = attrs as unknown as AdamWAttrs;
    const cpu = backend as MathBackendCPU;
    const n = util.sizeFromShape(p.shape);
    const gOffset = a.gOffset ?? 0;
    for (const [name, t] of [['p', p], ['g', g], ['m', m], ['v', v]] as const) {
      if (t.dtype !== 'float32') throw new TrainerError('ERR_INTERNAL', `${ADAMW_KERNEL}: ${name} must be float32, got ${t.dtype}`);
      if (t !== g && util.sizeFromShape(t.shape) !== n) {
        throw new TrainerError('ERR_INTERNAL', `${ADAMW_KERNEL}: ${name} has shape [${t.shape}], p has [${p.shape}]`);
      }
    }
    if (!Number.isInteger(gOffset) || gOffset < 0 || util.sizeFromShape(g.shape) < gOffset + n) {
      throw new TrainerError('ERR_INTERNAL', `${ADAMW_KERNEL}: gOffset must be an integer ≥ 0 with gOffset + n ≤ ` +
        `${util.sizeFromShape(g.shape)} (g's size), got ${gOffset} + ${n}`);
    }
    if (new Set([p.dataId, g.dataId, m.dataId, v.dataId]).size !== 4) {
      throw new TrainerError('ERR_INTERNAL', `${ADAMW_KERNEL}: p, g, m, v must be four distinct tensors' storage`);
    }
    for (const [name, t] of [['p', p], ['m', m], ['v', v]] as const) {
      if (cpu.refCount(t.dataId) > 1) {
        throw new TrainerError('ERR_INTERNAL', `${ADAMW_KERNEL}: ${name} shares its storage with another tensor (see ownBuffer)`);
      }
    }
    if (n === 0) return [];
    const gs = values(cpu, g).subarray(gOffset, gOffset + n);
    const [ps, ms, vs] = [writable(cpu, p), writable(cpu, m), writable(cpu, v)];
    if (gs.buffer === ps.buffer || gs.buffer === ms.buffer || gs.buffer === vs.buffer) {
      throw new TrainerError('ERR_INTERNAL', `${ADAMW_KERNEL}: g's values overlap p, m or v`);
    }
    addon.adamW(ps, gs, ms, vs, n, a.beta1, a.beta2, a.sqrtBc2, a.eps, a.decay, a.stepSize);
    contentsChanged(ps);
    return [];
  };
}

/** The oneDNN kernels by tfjs kernel name (the backend takes every other kernel from tfjs's `cpu` backend). */
export function nativeKernels(addon: NativeAddon): Record<string, KernelFunc> {
  return {
    Conv2D: convForward(addon),
    Conv2DBackpropInput: convBackpropInput(addon),
    Conv2DBackpropFilter: convBackpropFilter(addon),
    MaxPool: maxPool(addon),
    MaxPoolGrad: maxPoolGrad(addon),
    BatchMatMul: batchMatMul(addon),
    [BN_TRAIN_KERNEL]: batchNormTrain(addon),
    [BN_TRAIN_GRAD_KERNEL]: batchNormTrainGrad(addon),
    [ADAMW_KERNEL]: adamWInPlace(addon),
    [BN_RUNNING_UPDATE_KERNEL]: batchNormRunningUpdateNative,
    ...Object.fromEntries(Object.keys(BINARY_OPS).map((name) => [name, binary(addon, name)])),
    ...Object.fromEntries(Object.keys(UNARY_OPS).map((name) => [name, unary(addon, name)])),
    ...Object.fromEntries(Object.keys(REDUCE_OPS).map((name) => [name, reduce(addon, name)])),
    ...Object.fromEntries(Object.keys(COMPARE_OPS).map((name) => [name, compare(addon, name)])),
    Cast: cast(),
    Concat: concat('Concat'),
    SplitV: splitV(),
  };
}
