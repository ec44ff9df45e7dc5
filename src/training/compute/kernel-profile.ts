/**
 * Time per tfjs kernel over one piece of work, through tfjs's own profiler (`tf.profile`): which kernels a training
 * step spends its time in. On WASM each kernel runs synchronously, so its time is the wall time around it (noisy
 * when other processes share the cores). A `tf.customGrad` op (such as `batchNormTrain`) is listed under the name of
 * the tfjs scope it runs in and flagged `composite`: its time includes the kernels it calls, listed as well.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Totals of one kernel name. */
export interface KernelTotal {
  /** tfjs kernel name (`Conv2D`, `Conv2DBackpropFilter`, `PetsBatchNormTrain`, …). */
  readonly name: string;
  /** Number of calls. */
  readonly calls: number;
  /** Summed time, ms. */
  readonly ms: number;
  /**
   * True for a composite op (`tf.customGrad`, listed under its tfjs scope name such as `unnamed scope`): its time
   * includes kernels that are listed too, so leave it out of sums.
   */
  readonly composite: boolean;
}

/**
 * Runs `work` under `tf.profile` and sums kernel times by kernel name, largest first.
 *
 * @param work - the computation to profile (may be asynchronous); its tensors are the caller's to dispose
 */
export async function profileKernels(work: () => void | Promise<void>): Promise<KernelTotal[]> {
  const info = await tf.profile(async () => {
    await work();
  });
  const totals = new Map<string, { calls: number; ms: number }>();
  for (const k of info.kernels) {
    const t = await k.kernelTimeMs;
    const ms = typeof t === 'number' ? t : 0;
    const name = k.name === '' ? 'unnamed scope' : k.name;
    const s = totals.get(name) ?? { calls: 0, ms: 0 };
    s.calls += 1;
    s.ms += ms;
    totals.set(name, s);
  }
  const backend = tf.getBackend();
  return [...totals].map(([name, s]) => ({ name, ...s, composite: tf.getKernel(name, backend) === undefined }))
    .sort((a, b) => b.ms - a.ms);
}

/** Result of {@link profileKernelsCpu}. */
export interface CpuKernelProfile {
  /** Per kernel name: calls and summed process CPU time (user + system), ms; largest first. */
  readonly kernels: KernelTotal[];
  /** Process CPU time of the whole piece of work, ms. */
  readonly totalCpuMs: number;
  /** `totalCpuMs` minus the kernels' sum: JavaScript glue (tape, engine bookkeeping, gradient functions), GC. */
  readonly outsideKernelsMs: number;
}

/**
 * Like {@link profileKernels} but in process CPU time (`process.cpuUsage()`, user + system, which includes the
 * garbage collector's helper threads), robust to other processes on a shared machine: every kernel of the active
 * backend is wrapped for the duration of `work`, then restored. Kernels that call other kernels' functions
 * directly (not through the registry) count as one. Synchronous backends only (cpu, native, wasm): on an
 * asynchronous one the time of queued work is not attributed.
 *
 * @param work - the computation to profile; its tensors are the caller's to dispose
 */
export async function profileKernelsCpu(work: () => void | Promise<void>): Promise<CpuKernelProfile> {
  const backend = tf.getBackend();
  const originals = tf.getKernelsForBackend(backend);
  const totals = new Map<string, { calls: number; ms: number }>();
  for (const config of originals) {
    const inner = config.kernelFunc;
    tf.unregisterKernel(config.kernelName, backend);
    tf.registerKernel({ ...config, kernelFunc: (args) => {
      const c0 = process.cpuUsage();
      try {
        return inner(args);
      } finally {
        const c = process.cpuUsage(c0);
        const s = totals.get(config.kernelName) ?? { calls: 0, ms: 0 };
        s.calls += 1;
        s.ms += (c.user + c.system) / 1000;
        totals.set(config.kernelName, s);
      }
    } });
  }
  const c0 = process.cpuUsage();
  try {
    await work();
  } finally {
    for (const config of originals) {
      tf.unregisterKernel(config.kernelName, backend);
      tf.registerKernel(config);
    }
  }
  const c = process.cpuUsage(c0);
  const totalCpuMs = (c.user + c.system) / 1000;
  const kernels = [...totals].map(([name, s]) => ({ name, ...s, composite: false })).sort((a, b) => b.ms - a.ms);
  return { kernels, totalCpuMs, outsideKernelsMs: totalCpuMs - kernels.reduce((a, k) => a + k.ms, 0) };
}
