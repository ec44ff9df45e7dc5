/**
 * Calling other kernels of a backend from inside a kernel, with the intermediates freed afterwards.
 *
 * Inside a `kernelFunc` tfjs's ops (and `tf.tidy`) are not available: kernels are composed by calling
 * `getKernel(name, backend).kernelFunc` directly on `TensorInfo`s, and every intermediate must be released with
 * `backend.disposeData` (as tfjs's own composite kernels do), or the WASM heap leaks.
 */
import { getKernel, type KernelBackend, type NamedAttrMap, type TensorInfo } from '@tensorflow/tfjs-core';
import { TrainerError } from '../../../contract/errors.js';
import type { AxisPlan } from './conv-geometry.js';

/** Explicit NHWC padding in tfjs's `ExplicitPadding` form: `[[0,0],[top,bottom],[left,right],[0,0]]`. */
export type NhwcPadding = [[0, 0], [number, number], [number, number], [0, 0]];

/** The explicit convolution padding of a pair of axis plans (rows, columns). */
export function nhwcPadding(rows: AxisPlan, cols: AxisPlan): NhwcPadding {
  return [[0, 0], [rows.padBefore, rows.padAfter], [cols.padBefore, cols.padAfter], [0, 0]];
}

/** The parts of tfjs-backend-wasm's `BackendWasm` used to write tensors from JavaScript. */
interface HeapBackend {
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/**
 * Runs kernels of one backend and remembers every output, so that all intermediates can be released at once.
 * Use one scope per outer kernel call: `try { …; return scope.keep(result) } finally { scope.dispose() }`.
 */
export class KernelScope {
  private readonly owned: TensorInfo[] = [];
  private readonly kept = new Set<TensorInfo>();

  /**
   * @param backend - the backend instance passed to the outer kernelFunc
   * @param backendName - its registry name (`'wasm'`)
   */
  constructor(private readonly backend: KernelBackend, private readonly backendName: string) {}

  /**
   * Runs `kernelName` on this scope's backend and tracks its output.
   *
   * @throws TrainerError ERR_BACKEND when the backend has no such kernel.
   */
  run(kernelName: string, inputs: Record<string, TensorInfo>, attrs: NamedAttrMap = {}): TensorInfo {
    const config = getKernel(kernelName, this.backendName);
    if (config === undefined) {
      throw new TrainerError('ERR_BACKEND', `backend ${this.backendName} has no ${kernelName} kernel`);
    }
    const out = config.kernelFunc({ inputs, backend: this.backend, attrs });
    if (Array.isArray(out)) {
      throw new TrainerError('ERR_INTERNAL', `${kernelName} returned ${out.length} outputs where one was expected`);
    }
    this.owned.push(out);
    return out;
  }

  /** Reshape (no copy: shares the data and bumps its reference count). */
  reshape(x: TensorInfo, shape: number[]): TensorInfo {
    return this.run('Reshape', { x }, { shape });
  }

  /** Transpose with `perm` (a copy). */
  transpose(x: TensorInfo, perm: number[]): TensorInfo {
    return this.run('Transpose', { x }, { perm });
  }

  /** Slice `size` elements from `begin` on every axis (a copy). */
  slice(x: TensorInfo, begin: number[], size: number[]): TensorInfo {
    return this.run('Slice', { x }, { begin, size });
  }

  /**
   * Drops the planned leading/trailing rows and columns of an NHWC tensor (a copy; returns `x` itself when
   * nothing is cropped).
   */
  crop(x: TensorInfo, rows: AxisPlan, cols: AxisPlan): TensorInfo {
    if (rows.cropBefore + rows.cropAfter + cols.cropBefore + cols.cropAfter === 0) return x;
    const [n, h, w, c] = x.shape as [number, number, number, number];
    return this.slice(x, [0, rows.cropBefore, cols.cropBefore, 0],
      [n, h - rows.cropBefore - rows.cropAfter, w - cols.cropBefore - cols.cropAfter, c]);
  }

  /** Zero padding, `paddings[axis] = [before, after]` (a copy). */
  pad(x: TensorInfo, paddings: Array<[number, number]>): TensorInfo {
    return this.run('PadV2', { x }, { paddings, constantValue: 0 });
  }

  /** Reverses the listed axes (a copy). */
  reverse(x: TensorInfo, dims: number[]): TensorInfo {
    return this.run('Reverse', { x }, { dims });
  }

  /**
   * Stride-1 NHWC convolution with explicit padding and optional dilation, through the backend's own Conv2D.
   * x: [n, h, w, ci] float32; filter: [kh, kw, ci, co] float32 → [n, ho, wo, co].
   */
  conv2d(x: TensorInfo, filter: TensorInfo, padding: NhwcPadding, dilations: [number, number] = [1, 1]): TensorInfo {
    return this.run('Conv2D', { x, filter }, { strides: [1, 1], pad: padding, dataFormat: 'NHWC', dilations });
  }

  /**
   * Allocates an uninitialised float32 tensor on the backend (WASM heap) and tracks it. Fill it through
   * {@link view}; take every view after the last allocation, since heap growth detaches older views.
   */
  allocate(shape: number[]): TensorInfo {
    const out = (this.backend as unknown as HeapBackend).makeOutput(shape, 'float32');
    this.owned.push(out);
    return out;
  }

  /** A Float32Array view of a float32 tensor's memory on the WASM heap (no copy). */
  view(info: TensorInfo): Float32Array {
    const arr = (this.backend as unknown as HeapBackend).typedArrayFromHeap(info);
    if (!(arr instanceof Float32Array)) {
      throw new TrainerError('ERR_INTERNAL', `expected a float32 tensor, got ${info.dtype}`);
    }
    return arr;
  }

  /** Marks `x` as the scope's result: {@link dispose} will not release it. Returns `x`. */
  keep(x: TensorInfo): TensorInfo {
    this.kept.add(x);
    return x;
  }

  /** Releases every tracked output not marked with {@link keep}. Idempotent. */
  dispose(): void {
    for (const info of this.owned.splice(0)) {
      if (!this.kept.has(info)) this.backend.disposeData(info.dataId);
    }
  }
}
