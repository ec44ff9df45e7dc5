/**
 * Counts what JavaScript issues to the GPU over one piece of work on the WebGPU backend: compute dispatches and
 * buffer uploads (tensor data written from the CPU), in total and per tfjs kernel. The H200 probe found a ResNet34
 * step bound by issuing ~3,700 small dispatches (≈ 0.2 ms of JavaScript each), not by the GPU's work, so the
 * number of dispatches per step is the figure to cut, and unlike time it is exact and independent of load (a
 * software adapter such as lavapipe gives the same counts as an H200).
 *
 * How: for the duration of `work`, these methods are wrapped (and restored after):
 * - Dawn's `GPUComputePassEncoder.dispatchWorkgroups` (the class dawn.node installs as a global): every compute
 *   dispatch, tfjs programs and this project's kernels that encode their own (AdamW) alike. (An earlier version
 *   wrapped tfjs-backend-webgpu's `recordAndSubmit`, which only tfjs programs go through, and so missed the AdamW
 *   kernel's 116 dispatches per ResNet34 step.) Where the global is missing, `recordAndSubmit` is wrapped instead;
 * - Dawn's `GPUCommandEncoder.copyBufferToBuffer` and `clearBuffer`: buffer copies (uploads from staging buffers,
 *   reads into staging buffers, `compute/webgpu/flatten.ts`), which need no pipeline, bind group or uniforms;
 * - tfjs-backend-webgpu 4.22's `uploadToGPU`: an upload when the tensor still holds CPU values and has no GPU buffer yet;
 * - the engine's `runKernel`: the outermost tfjs kernel running, to which dispatches and uploads are attributed (a
 *   kernel that calls other kernels' functions directly, such as this project's fused ones, counts as one).
 *   Work issued outside any kernel (e.g. `tf.tensor` data first used by a program) is attributed to the kernel that
 *   first uses it; `(outside kernels)` collects the rest.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TrainerError } from '../../../contract/errors.js';

/** Counts of one tfjs kernel name. */
export interface KernelDispatches {
  /** tfjs kernel name (`Conv2D`, `PetsBatchNormTrain`, …) or `(outside kernels)`. */
  readonly name: string;
  /** Number of outermost calls of the kernel. */
  readonly calls: number;
  /** GPU compute dispatches issued by those calls. */
  readonly dispatches: number;
  /** Tensors uploaded from CPU memory while those calls ran. */
  readonly uploads: number;
  /** Buffer copies and clears encoded by those calls (no compute pipeline involved). */
  readonly copies: number;
}

/** Result of {@link countDispatches}. */
export interface DispatchCounts {
  /** Compute dispatches in all. */
  readonly dispatches: number;
  /** Tensors uploaded from CPU memory. */
  readonly uploads: number;
  /** Buffer-to-buffer copies and buffer clears in all. */
  readonly copies: number;
  /** Per kernel name, most dispatches first. */
  readonly kernels: KernelDispatches[];
}

/** The parts of tfjs-backend-webgpu's backend that are wrapped. */
interface WrappedBackend {
  recordAndSubmit(...args: unknown[]): unknown;
  uploadToGPU(dataId: object): unknown;
  tensorMap: { get(dataId: object): { values: unknown; resource?: unknown } | undefined };
}

const OUTSIDE = '(outside kernels)';

type Method = (this: unknown, ...args: unknown[]) => unknown;

/**
 * Runs `work` on the active `webgpu` backend and counts its dispatches and uploads, total and per kernel.
 *
 * @param work - the computation (may be asynchronous); its tensors are the caller's to dispose
 * @throws TrainerError ERR_BACKEND when the active backend is not tfjs-backend-webgpu (or lacks the wrapped methods)
 */
export async function countDispatches(work: () => void | Promise<void>): Promise<DispatchCounts> {
  const backend = tf.backend() as unknown as Partial<WrappedBackend>;
  if (tf.getBackend() !== 'webgpu' || typeof backend.recordAndSubmit !== 'function' || typeof backend.uploadToGPU !== 'function') {
    throw new TrainerError('ERR_BACKEND', `dispatch counting needs the webgpu backend (tfjs-backend-webgpu 4.x), active: ${tf.getBackend()}`);
  }
  const be = backend as WrappedBackend;
  const engine = tf.engine() as unknown as Record<string, unknown> & { runKernel: Method };
  type Entry = { calls: number; dispatches: number; uploads: number; copies: number };
  const perKernel = new Map<string, Entry>();
  const entry = (): Entry => {
    const name = current ?? OUTSIDE;
    let e = perKernel.get(name);
    if (e === undefined) perKernel.set(name, e = { calls: 0, dispatches: 0, uploads: 0, copies: 0 });
    return e;
  };
  let current: string | null = null;
  let dispatches = 0;
  let uploads = 0;
  let copies = 0;
  const restore: (() => void)[] = [];
  /** Replaces `obj[key]` by `wrap(original)` until the end; an own original is put back, an inherited one uncovered. */
  const patch = (obj: Record<string, unknown>, key: string, wrap: (original: Method) => Method): void => {
    const own = Object.hasOwn(obj, key);
    const original = obj[key] as Method;
    obj[key] = wrap(original);
    restore.push(() => { if (own) obj[key] = original; else delete obj[key]; });
  };
  const globals = globalThis as unknown as { GPUComputePassEncoder?: { prototype: Record<string, unknown> }; GPUCommandEncoder?: { prototype: Record<string, unknown> } };
  const pass = globals.GPUComputePassEncoder?.prototype;
  const encoder = globals.GPUCommandEncoder?.prototype;
  const counting = (f: Method, count: () => void): Method => function (this: unknown, ...args: unknown[]) {
    count();
    return f.apply(this, args);
  };
  const dispatched = (): void => { dispatches++; entry().dispatches++; };
  const copied = (): void => { copies++; entry().copies++; };
  try {
    if (typeof pass?.dispatchWorkgroups === 'function') {
      patch(pass, 'dispatchWorkgroups', (f) => counting(f, dispatched));
      if (typeof pass.dispatchWorkgroupsIndirect === 'function') patch(pass, 'dispatchWorkgroupsIndirect', (f) => counting(f, dispatched));
    } else {
      patch(be as unknown as Record<string, unknown>, 'recordAndSubmit', (f) => counting(f, dispatched));
    }
    for (const key of ['copyBufferToBuffer', 'clearBuffer']) {
      if (typeof encoder?.[key] === 'function') patch(encoder, key, (f) => counting(f, copied));
    }
    patch(be as unknown as Record<string, unknown>, 'uploadToGPU', (upload) => function (this: unknown, dataId: unknown) {
      const d = be.tensorMap.get(dataId as object);
      if (d !== undefined && d.resource == null && d.values != null) {
        uploads++;
        entry().uploads++;
      }
      return upload.call(this, dataId);
    });
    patch(engine, 'runKernel', (runKernel) => function (this: unknown, ...args: unknown[]) {
      if (current !== null) return runKernel.apply(this, args);
      current = String(args[0]);
      entry().calls++;
      try {
        return runKernel.apply(this, args);
      } finally {
        current = null;
      }
    });
    await work();
  } finally {
    for (const undo of restore.reverse()) undo();
  }
  const kernels = [...perKernel].map(([name, e]) => ({ name, ...e }))
    .filter((k) => k.dispatches > 0 || k.uploads > 0 || k.copies > 0 || k.calls > 0)
    .sort((a, b) => b.dispatches - a.dispatches || b.copies - a.copies || b.uploads - a.uploads || a.name.localeCompare(b.name));
  return { dispatches, uploads, copies, kernels };
}
