/**
 * Whole training-step timing (forward, backward and AdamW of the full, unfrozen model through {@link Replica}),
 * for `npm run bench:compute`. The step is exactly the one a world of one rank runs (the single-process learner,
 * one worker): `accumulate` (chunked forward + backward + BN running stats, gradients summed into the flat gradient
 * on the backend), then the mean gradient to AdamW (`Replica.takeStepGradients`: on WebGPU kept on the device,
 * elsewhere read to an array), then `applyGradients`. `gradientRoundTrip` makes WebGPU take the array path too, as a
 * step with several workers must (read for the all-reduce, uploaded again).
 */
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs-core';
import { TrainerError } from '../../contract/errors.js';
import { mulberry32 } from '../../contract/plan/rng.js';
import { registerTfjsGradients } from '../compute/kernels/gradients.js';
import { profileKernels, profileKernelsCpu, type CpuKernelProfile, type KernelTotal } from '../compute/kernel-profile.js';
import { countDispatches, type DispatchCounts } from '../compute/webgpu/dispatch-count.js';
import { measureHostCpu, type HostCpu } from '../compute/webgpu/host-cpu.js';
import type { ResNetArch, ResNetConfig } from '../../contract/resnet-spec.js';
import { Replica } from './replica.js';

/** Result of {@link measureWholeStep}; times are medians over the timed repetitions, ms. */
export interface WholeStepResult {
  /** One optimizer step on `batch` images: forward + backward + AdamW. */
  readonly stepMs: number;
  /** `batch / stepMs · 1000`. */
  readonly imagesPerSecond: number;
  /** Forward + backward part (`accumulate`). */
  readonly forwardBackwardMs: number;
  /** AdamW part (`takeGradients` + `applyGradients`). */
  readonly optimizerMs: number;
  /**
   * Process CPU time (user + system) of one step, ms: on the single-threaded WASM backend this is the compute time
   * itself, much less disturbed than wall time when other processes share the cores.
   */
  readonly stepCpuMs: number;
  /** `batch / stepCpuMs · 1000`: throughput on an otherwise idle core. */
  readonly imagesPerCpuSecond: number;
  /** Images per forward chunk actually used (the replica's maxMicroBatch for this size, capped at batch). */
  readonly chunk: number;
  /** Each timed step's wall time, ms, in order (the values `stepMs` is the median of; the warm-up steps are not in it). */
  readonly stepsMs: readonly number[];
}

/**
 * Warm-up steps before a timed training step (bench and profile). Two, not one: on the native backend the second
 * step of a replica is still not in its steady state (the array pool fills, V8 collects the set-up's garbage: 8
 * mark-compacts in it at resnet34/224/bs 16 against 0–1 from the third step on, and ≈ 10 % more CPU time), and a
 * training run consists of steady-state steps. `scripts/bench-torch.py` is given the same count, so both sides
 * are timed alike.
 */
export const BENCH_WARMUP_STEPS = 2;

import { median } from '../../contract/median.js';

export { median };

/** Checks the shared bench flags. @throws TrainerError ERR_BAD_FLAG */
function checkBenchShape(size: number, batch: number): void {
  if (!Number.isInteger(size) || size < 32) throw new TrainerError('ERR_BAD_FLAG', `--size must be an integer ≥ 32, got ${size}`);
  if (!Number.isInteger(batch) || batch < 2) throw new TrainerError('ERR_BAD_FLAG', `--bs must be an integer ≥ 2, got ${batch}`);
}

/**
 * The benchmark's replica (37 classes, random init, unfrozen) and fixed random inputs; `accumulate` and
 * `optimize` are the two halves of one training step.
 */
async function benchReplica(arch: ResNetArch | ResNetConfig, size: number, batch: number, maxMicroBatch?: number,
  gradientRoundTrip = false): Promise<{ replica: Replica; accumulate: (i: number) => Promise<void>; optimize: () => Promise<void> }> {
  await registerTfjsGradients();
  const replica = await Replica.create({ arch, numClasses: 37, seed: 0, pretrained: null, frozen: false, maxMicroBatch });
  const rng = mulberry32(1);
  const x = Float32Array.from({ length: batch * size * size * 3 }, () => rng() * 2 - 1);
  const y = Int32Array.from({ length: batch }, (_, i) => i % 37);
  const hyper = { lrs: [1e-4, 1e-4, 1e-3], momentum: 0.9 };
  return {
    replica,
    accumulate: async (i) => { await replica.accumulate(x, y, null, i); },
    // Ends with a one-value read so that asynchronous backends (WebGPU) have finished the update when it returns.
    optimize: async () => {
      const grads = await replica.takeStepGradients({ reduced: gradientRoundTrip });
      try {
        replica.applyGradients(grads, hyper);
      } finally {
        replica.releaseStepGradients(grads);
      }
      const probe = tf.tidy(() => tf.sum(replica.learner.params.values().next().value!));
      await probe.data();
      probe.dispose();
    },
  };
}

/**
 * Times `reps` training steps after `warmup` untimed ones on random inputs (37 classes, random init, unfrozen) on
 * the active tfjs backend.
 *
 * @param size - image side, pixels (≥ 32); @param batch - images per step (≥ 2); @param reps - timed steps (≥ 1)
 * @param warmup - untimed steps first (integer ≥ 0; default {@link BENCH_WARMUP_STEPS})
 * @throws TrainerError ERR_BAD_FLAG on a bad size/batch/reps/warmup
 */
export async function measureWholeStep(arch: ResNetArch | ResNetConfig, size: number, batch: number, reps: number,
  maxMicroBatch?: number, warmup = BENCH_WARMUP_STEPS): Promise<WholeStepResult> {
  checkBenchShape(size, batch);
  if (!Number.isInteger(reps) || reps < 1) throw new TrainerError('ERR_BAD_FLAG', `--reps must be an integer ≥ 1, got ${reps}`);
  if (!Number.isInteger(warmup) || warmup < 0) throw new TrainerError('ERR_BAD_FLAG', `warm-up steps must be an integer ≥ 0, got ${warmup}`);
  const { replica, accumulate, optimize } = await benchReplica(arch, size, batch, maxMicroBatch);
  try {
    const fb: number[] = [];
    const opt: number[] = [];
    const cpu: number[] = [];
    for (let i = 0; i < warmup + reps; i++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await accumulate(i);
      const t1 = performance.now();
      await optimize();
      const t2 = performance.now();
      const c = process.cpuUsage(c0);
      if (i >= warmup) {
        fb.push(t1 - t0);
        opt.push(t2 - t1);
        cpu.push((c.user + c.system) / 1000);
      }
    }
    const steps = fb.map((v, i) => v + opt[i]!);
    const stepMs = median(steps);
    const stepCpuMs = median(cpu);
    return { stepMs, imagesPerSecond: (batch / stepMs) * 1000, forwardBackwardMs: median(fb), optimizerMs: median(opt),
      stepCpuMs, imagesPerCpuSecond: (batch / stepCpuMs) * 1000, chunk: Math.min(batch, replica.maxMicroBatch(size)), stepsMs: steps };
  } finally {
    replica.dispose();
  }
}

/** Result of {@link measureWholeStepAB}: process CPU ms of each timed step, per setting, in time order. */
export interface WholeStepAB {
  /** The environment variable toggled and its value in the "B" steps ("A": as the process started). */
  readonly variable: string;
  readonly value: string;
  readonly cpuMsA: readonly number[];
  readonly cpuMsB: readonly number[];
  /** The AdamW part of each of those steps (`takeStepGradients` + `applyGradients`), process CPU ms. */
  readonly optimizerCpuMsA: readonly number[];
  readonly optimizerCpuMsB: readonly number[];
  /** Median of the per-pair ratios B / A (a pair: the A and B blocks next to each other in time). */
  readonly medianRatio: number;
}

/**
 * Compares two settings of an environment variable that the code reads at each call (e.g.
 * `PETS_NATIVE_ADAMW_COPIES=0`) in ONE process on the same model, alternating blocks of two steps (A A B B A A …)
 * after {@link BENCH_WARMUP_STEPS} warm-up steps and timing the second step of each block, whose previous step ran
 * the same setting (a setting can act on the next step, as AdamW's writes act on the next convolutions): slow
 * drifts of the machine's load then hit both settings alike, which separate runs minutes apart cannot ensure. Process CPU time per step.
 *
 * @param pairs - timed A/B pairs (≥ 1); @param setting - `[variable, value for B]`
 * @throws TrainerError ERR_BAD_FLAG on a bad size/batch/pairs
 */
export async function measureWholeStepAB(arch: ResNetArch | ResNetConfig, size: number, batch: number, pairs: number,
  setting: readonly [string, string]): Promise<WholeStepAB> {
  checkBenchShape(size, batch);
  if (!Number.isInteger(pairs) || pairs < 1) throw new TrainerError('ERR_BAD_FLAG', `--reps must be an integer ≥ 1, got ${pairs}`);
  const [variable, value] = setting;
  const original = process.env[variable];
  const set = (b: boolean): void => {
    if (b) process.env[variable] = value;
    else if (original === undefined) delete process.env[variable];
    else process.env[variable] = original;
  };
  const { replica, accumulate, optimize } = await benchReplica(arch, size, batch);
  const cpuMs: [number[], number[]] = [[], []];
  const optimizerCpuMs: [number[], number[]] = [[], []];
  const ms = (c: NodeJS.CpuUsage): number => (c.user + c.system) / 1000;
  try {
    let i = 0;
    const step = async (): Promise<[number, number]> => {
      const c0 = process.cpuUsage();
      await accumulate(i++);
      const c1 = process.cpuUsage();
      await optimize();
      return [ms(process.cpuUsage(c0)), ms(process.cpuUsage(c1))];
    };
    set(false);
    for (let w = 0; w < BENCH_WARMUP_STEPS; w++) await step();
    for (let p = 0; p < pairs; p++) {
      for (const b of [0, 1] as const) {
        set(b === 1);
        await step();
        const [all, opt] = await step();
        cpuMs[b].push(all);
        optimizerCpuMs[b].push(opt);
      }
    }
  } finally {
    set(false);
    replica.dispose();
  }
  const [cpuMsA, cpuMsB] = cpuMs;
  return { variable, value, cpuMsA, cpuMsB, optimizerCpuMsA: optimizerCpuMs[0], optimizerCpuMsB: optimizerCpuMs[1],
    medianRatio: median(cpuMsB.map((b, k) => b / cpuMsA[k]!)) };
}

/**
 * Runs {@link BENCH_WARMUP_STEPS} warm-up training steps, then `observe` around one more (same model and inputs as
 * {@link measureWholeStep}).
 *
 * @throws TrainerError ERR_BAD_FLAG on a bad size/batch
 */
async function observeWholeStep<T>(arch: ResNetArch | ResNetConfig, size: number, batch: number,
  observe: (work: () => Promise<void>) => Promise<T>, maxMicroBatch?: number): Promise<T> {
  checkBenchShape(size, batch);
  const { replica, accumulate, optimize } = await benchReplica(arch, size, batch, maxMicroBatch);
  try {
    const step = async (i: number): Promise<void> => { await accumulate(i); await optimize(); };
    for (let i = 0; i < BENCH_WARMUP_STEPS; i++) await step(i);
    return await observe(() => step(BENCH_WARMUP_STEPS));
  } finally {
    replica.dispose();
  }
}

/**
 * Per-kernel times of one training step (after {@link BENCH_WARMUP_STEPS} warm-up steps), same model and inputs as
 * {@link measureWholeStep}, through `tf.profile` (see `compute/kernel-profile.ts`).
 *
 * @throws TrainerError ERR_BAD_FLAG on a bad size/batch
 */
export async function profileWholeStep(arch: ResNetArch | ResNetConfig, size: number, batch: number,
  maxMicroBatch?: number): Promise<KernelTotal[]> {
  return observeWholeStep(arch, size, batch, profileKernels, maxMicroBatch);
}

/**
 * GPU dispatches and uploads of one training step (after {@link BENCH_WARMUP_STEPS} warm-up steps), total and per
 * kernel, on the active `webgpu` backend (see `compute/webgpu/dispatch-count.ts`); same model and inputs as {@link measureWholeStep}.
 *
 * @throws TrainerError ERR_BAD_FLAG on a bad size/batch; ERR_BACKEND when the active backend is not webgpu
 */
export async function countWholeStepDispatches(arch: ResNetArch | ResNetConfig, size: number, batch: number,
  maxMicroBatch?: number): Promise<DispatchCounts> {
  return observeWholeStep(arch, size, batch, countDispatches, maxMicroBatch);
}

/** Result of {@link measureWholeStepHost}. */
export interface WholeStepHost {
  /** Dispatches and uploads of one step (the step after the host-timed ones). */
  readonly counts: DispatchCounts;
  /**
   * The main thread's host cost of a whole step (see `compute/webgpu/host-cpu.ts`): the step with the median
   * `hostMs`; null where it cannot be measured.
   */
  readonly host: HostCpu | null;
  /** Of that step's `hostMs`: forward + backward (`accumulate`, gradients flattened and summed on the device). */
  readonly forwardBackwardHostMs: number | null;
  /**
   * Of that step's `hostMs`: AdamW from the device-resident gradient, or with `gradientRoundTrip` the flat gradient
   * read to the CPU, uploaded again and applied by AdamW (each with the one-value read that ends the step).
   */
  readonly optimizerHostMs: number | null;
  /** `host.hostMs` per dispatch, µs (all host work of the step divided by its dispatches). */
  readonly hostUsPerDispatch: number | null;
  /** Steps whose host cost was measured. */
  readonly reps: number;
}

/**
 * The host (JavaScript + Dawn encode) cost of a training step on the `webgpu` backend, the main thread's CPU time
 * less its waits for GPU results, median of `reps` steps after one warm-up, split into its two halves, then the
 * dispatch counts of one more step (counted apart, so the counter's wrappers do not add to the host figure). Same
 * model and inputs as {@link measureWholeStep}. `gradientRoundTrip`: the gradient goes to the CPU and back, as a step
 * with several workers (the all-reduce's part itself excluded), instead of staying on the device.
 *
 * @throws TrainerError ERR_BAD_FLAG on a bad size/batch/reps; ERR_BACKEND when the active backend is not webgpu
 */
export async function measureWholeStepHost(arch: ResNetArch | ResNetConfig, size: number, batch: number, reps: number,
  maxMicroBatch?: number, gradientRoundTrip = false): Promise<WholeStepHost> {
  if (!Number.isInteger(reps) || reps < 1) throw new TrainerError('ERR_BAD_FLAG', `--reps must be an integer ≥ 1, got ${reps}`);
  if (tf.getBackend() !== 'webgpu') throw new TrainerError('ERR_BACKEND', `host cost per step needs the webgpu backend, active: ${tf.getBackend()}`);
  checkBenchShape(size, batch);
  const { replica, accumulate, optimize } = await benchReplica(arch, size, batch, maxMicroBatch, gradientRoundTrip);
  try {
    await accumulate(0);
    await optimize();
    const steps: { host: HostCpu; fb: number; opt: number }[] = [];
    for (let i = 1; i <= reps; i++) {
      const fb = await measureHostCpu(() => accumulate(i));
      const opt = await measureHostCpu(optimize);
      if (fb === null || opt === null) continue;
      const host = { mainMs: fb.mainMs + opt.mainMs, waitMs: fb.waitMs + opt.waitMs, hostMs: fb.hostMs + opt.hostMs, reads: fb.reads + opt.reads };
      steps.push({ host, fb: fb.hostMs, opt: opt.hostMs });
    }
    const counts = await countDispatches(async () => { await accumulate(reps + 1); await optimize(); });
    const mid = steps.length === 0 ? null : [...steps].sort((a, b) => a.host.hostMs - b.host.hostMs)[Math.floor(steps.length / 2)]!;
    return { counts, host: mid?.host ?? null, forwardBackwardHostMs: mid?.fb ?? null, optimizerHostMs: mid?.opt ?? null,
      hostUsPerDispatch: mid === null || counts.dispatches === 0 ? null : (mid.host.hostMs * 1000) / counts.dispatches, reps };
  } finally {
    replica.dispose();
  }
}

/**
 * Per-kernel process CPU time of one training step (after {@link BENCH_WARMUP_STEPS} warm-up steps), same model and
 * inputs as {@link measureWholeStep}, through {@link profileKernelsCpu}: which kernels the step spends its CPU in and how much
 * runs outside kernels (JavaScript glue, garbage collection). Synchronous backends (cpu, native, wasm).
 *
 * @throws TrainerError ERR_BAD_FLAG on a bad size/batch
 */
export async function profileWholeStepCpu(arch: ResNetArch | ResNetConfig, size: number, batch: number,
  maxMicroBatch?: number): Promise<CpuKernelProfile> {
  return observeWholeStep(arch, size, batch, profileKernelsCpu, maxMicroBatch);
}
