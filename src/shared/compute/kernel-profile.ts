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
