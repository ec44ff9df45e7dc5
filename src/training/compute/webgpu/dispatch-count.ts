/**
 * Counts what JavaScript issues to the GPU over one piece of work on the WebGPU backend: compute dispatches and
 * buffer uploads (tensor data written from the CPU), in total and per tfjs kernel. The H200 probe found a ResNet34
 * step bound by issuing ~3,700 small dispatches (≈ 0.2 ms of JavaScript each), not by the GPU's work, so the
 * number of dispatches per step is the figure to cut, and unlike time it is exact and independent of load (a
 * software adapter such as lavapipe gives the same counts as an H200).
 *
 * How: for the duration of `work`, three methods are wrapped (and restored after):
 * - tfjs-backend-webgpu 4.22's `WebGPUBackend.recordAndSubmit`: called once per `dispatchWorkgroups` (every program
 *   with a non-empty output; each also writes one uniform buffer);
 * - its `uploadToGPU`: an upload when the tensor still holds CPU values and has no GPU buffer yet;
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
}

/** Result of {@link countDispatches}. */
export interface DispatchCounts {
  /** Compute dispatches in all (= uniform-buffer writes: tfjs-webgpu writes one per dispatch). */
  readonly dispatches: number;
  /** Tensors uploaded from CPU memory. */
  readonly uploads: number;
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
  const engine = tf.engine() as unknown as { runKernel: (...args: unknown[]) => unknown };
  const perKernel = new Map<string, { calls: number; dispatches: number; uploads: number }>();
  const entry = (name: string): { calls: number; dispatches: number; uploads: number } => {
    let e = perKernel.get(name);
    if (e === undefined) perKernel.set(name, e = { calls: 0, dispatches: 0, uploads: 0 });
    return e;
  };
  let current: string | null = null;
  let dispatches = 0;
  let uploads = 0;
  const own = { record: Object.hasOwn(be, 'recordAndSubmit'), upload: Object.hasOwn(be, 'uploadToGPU'), run: Object.hasOwn(engine, 'runKernel') };
  const record = be.recordAndSubmit;
  const upload = be.uploadToGPU;
  const runKernel = engine.runKernel;
  be.recordAndSubmit = function (this: unknown, ...args: unknown[]) {
    dispatches++;
    entry(current ?? OUTSIDE).dispatches++;
    return record.apply(this, args);
  };
  be.uploadToGPU = function (this: unknown, dataId: object) {
    const d = be.tensorMap.get(dataId);
    if (d !== undefined && d.resource == null && d.values != null) {
      uploads++;
      entry(current ?? OUTSIDE).uploads++;
    }
    return upload.call(this, dataId);
  };
  engine.runKernel = function (this: unknown, ...args: unknown[]) {
    if (current !== null) return runKernel.apply(this, args);
    current = String(args[0]);
    entry(current).calls++;
    try {
      return runKernel.apply(this, args);
    } finally {
      current = null;
    }
  };
  try {
    await work();
  } finally {
    // Restore: delete an own wrapper to expose the prototype's method again, or put back an own original.
    if (own.record) be.recordAndSubmit = record; else delete (be as Partial<WrappedBackend>).recordAndSubmit;
    if (own.upload) be.uploadToGPU = upload; else delete (be as Partial<WrappedBackend>).uploadToGPU;
    if (own.run) engine.runKernel = runKernel; else delete (engine as Partial<typeof engine>).runKernel;
  }
  const kernels = [...perKernel].map(([name, e]) => ({ name, ...e }))
    .filter((k) => k.dispatches > 0 || k.uploads > 0 || k.calls > 0)
    .sort((a, b) => b.dispatches - a.dispatches || b.uploads - a.uploads || a.name.localeCompare(b.name));
  return { dispatches, uploads, kernels };
}
