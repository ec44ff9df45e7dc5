/**
 * Convolution throughput of the active compute backend, per distinct ResNet convolution shape: forward,
 * filter gradient and input gradient, in ms and GFLOP/s, and the backward/forward time ratio.
 *
 * Usage:
 * ```
 * npm run bench:compute -- --arch resnet34 --size 224 --bs 16 [--backend auto|tensorflow|webgpu|native|wasm|cpu] [--reps 3] [--json]
 *   [--clock wall|cpu]
 * npm run bench:compute -- --arch resnet34 --size 128 --bs 16 --backend wasm --profile   # per-kernel times of one step
 * npm run bench:compute -- --arch resnet34 --size 128 --bs 16 --backend native --clock cpu --torch  # + PyTorch beside
 * npm run bench:compute -- --arch resnet34 --size 64 --bs 2 --backend webgpu --dispatches  # GPU dispatches of one step
 * npm run bench:compute -- --arch resnet34 --size 128 --bs 16 --backend native --reps 8 --ab NAME=VALUE
 *   # one process, steps alternating an environment variable the code reads at each call (A as started, B with
 *   # NAME=VALUE), CPU time per step: for a cut behind such a switch (docs/performance.md, eighth pass)
 * ```
 * `--torch` also runs `scripts/bench-torch.py` (PyTorch, one thread, same model, batch and repetitions) right after
 * the whole-step measurement and prints both steps and the ratio of images per CPU-second (native / PyTorch).
 * FLOPs per convolution (and per gradient) = 2·N·Ho·Wo·kh·kw·Ci·Co. Times are medians over `--reps` runs after
 * one warm-up (whole training steps, on both sides: after `BENCH_WARMUP_STEPS` = 2, the native backend's steady
 * state; the median of an even count is the mean of the middle two, as Python's). Totals weight each shape by how often it occurs in the network; the stem's input gradient is
 * timed but left out of the backward total (a training step never needs the gradient w.r.t. the images).
 * Target on WASM: total backward ≤ 2.5 × total forward. Also prints the process peak RSS; on WebGPU also the peak
 * device memory of the training step (GPUBuffers in use at once, see `compute/webgpu/memory.ts`), the most the
 * buffer pool held, the per-kernel GPU times of one whole step (timestamp queries) and the GPU dispatches and
 * uploads of one whole step, total and per kernel (exact counts, the same on any adapter: the H200 probe found the
 * step bound by JavaScript issuing ~3,700 dispatches; see `compute/webgpu/dispatch-count.ts`), and the host cost of a
 * step: the main thread's CPU time less its waits for GPU results (`host: N ms main-thread CPU per step`, see
 * `compute/webgpu/host-cpu.ts`; with `--dispatches` too, median of `--reps` steps). The step is one worker's: the
 * gradient stays on the device; `--gradient-round-trip` reads it to the CPU and uploads it again, as with several.
 * Exit code: 0 done, 1 runtime error, 2 bad flag.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Command, CommanderError } from 'commander';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, parseBackendRequest } from '../src/training/compute/backend.js';
import { TrainerError, isTrainerError } from '../src/contract/errors.js';
import type { CpuKernelProfile, KernelTotal } from '../src/training/compute/kernel-profile.js';
import type { DispatchCounts } from '../src/training/compute/webgpu/dispatch-count.js';
import { BENCH_WARMUP_STEPS, median, measureWholeStep, measureWholeStepAB, measureWholeStepHost, type WholeStepHost, profileWholeStep, profileWholeStepCpu } from '../src/training/learner/step-bench.js';
import { trackDeviceMemory } from '../src/training/compute/webgpu/memory.js';
import { shownValue } from '../src/contract/config.js';
import { checkEnvSettings } from '../src/contract/env-settings.js';

/** Architectures whose convolutions can be listed. */
export type BenchArch = 'resnet18' | 'resnet34' | 'resnet50';
const ARCHS: readonly BenchArch[] = Object.freeze(['resnet18', 'resnet34', 'resnet50']);

/** One distinct NHWC convolution of the network and how many times it occurs. */
export interface ConvShape {
  /** Input [N, H, W, Ci]. */
  readonly input: [number, number, number, number];
  /** Kernel size k (square). */
  readonly kernel: number;
  readonly stride: number;
  /** Symmetric zero padding, PyTorch-style (3 for the stem, 1 for 3x3, 0 for 1x1). */
  readonly pad: number;
  readonly outChannels: number;
  /** Occurrences in one forward pass. */
  readonly count: number;
  /** True for the stem, whose input gradient a training step does not need. */
  readonly isStem: boolean;
}

function outSize(size: number, k: number, s: number, p: number): number {
  return Math.floor((size + 2 * p - k) / s) + 1;
}

/**
 * The distinct convolutions of torchvision's ResNet18/34/50 (v1.5: bottleneck stride on the 3x3) for a batch of
 * `batch` square images of `size` pixels, with their multiplicities. Source: torchvision `models/resnet.py`.
 */
export function resnetConvShapes(arch: BenchArch, size: number, batch: number): ConvShape[] {
  const blocks = arch === 'resnet18' ? [2, 2, 2, 2] : [3, 4, 6, 3];
  const bottleneck = arch === 'resnet50';
  const found = new Map<string, ConvShape>();
  const add = (h: number, ci: number, k: number, s: number, co: number, isStem = false): number => {
    const pad = (k - 1) / 2;
    const key = `${h}x${ci}/${k}/${s}/${co}`;
    const prev = found.get(key);
    found.set(key, { input: [batch, h, h, ci], kernel: k, stride: s, pad, outChannels: co, isStem,
      count: (prev?.count ?? 0) + 1 });
    return outSize(h, k, s, pad);
  };
  let h = add(size, 3, 7, 2, 64, true);
  h = outSize(h, 3, 2, 1); // max-pool 3x3/2 p1
  let inplanes = 64;
  [64, 128, 256, 512].forEach((planes, layer) => {
    for (let b = 0; b < blocks[layer]!; b++) {
      const s = b === 0 && layer > 0 ? 2 : 1;
      const outPlanes = bottleneck ? planes * 4 : planes;
      if (s !== 1 || inplanes !== outPlanes) add(h, inplanes, 1, s, outPlanes);
      if (bottleneck) {
        add(h, inplanes, 1, 1, planes);
        const h2 = add(h, planes, 3, s, planes);
        add(h2, planes, 1, 1, outPlanes);
        h = h2;
      } else {
        const h2 = add(h, inplanes, 3, s, planes);
        add(h2, planes, 3, 1, planes);
        h = h2;
      }
      inplanes = outPlanes;
    }
  });
  return [...found.values()];
}

/** Timings of one shape, ms (medians). */
export interface ConvTiming {
  readonly shape: ConvShape;
  readonly flops: number;
  readonly forwardMs: number;
  readonly filterGradMs: number;
  readonly inputGradMs: number;
}

/**
 * What a per-shape time measures: `wall` (elapsed time) or `cpu` (this process's user + system CPU time: equal to
 * wall time for the single-threaded WASM backend on an idle core, and far less disturbed by other processes).
 */
export type BenchClock = 'wall' | 'cpu';

function nowMs(clock: BenchClock): number {
  if (clock === 'wall') return performance.now();
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
}

/** Median ms of `op(fresh)` over `reps` runs after one warm-up; `fresh` is a new copy of `perRun` each run. */
async function timeOp(reps: number, perRun: tf.Tensor, op: (fresh: tf.Tensor) => tf.Tensor, clock: BenchClock): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i <= reps; i++) {
    const fresh = tf.clone(perRun);
    await fresh.data(); // the copy is made before the clock starts (asynchronous backends queue it)
    const t0 = nowMs(clock);
    const out = op(fresh);
    await out.data(); // waits for completion on asynchronous backends (WebGPU); WASM kernels are synchronous anyway
    const ms = nowMs(clock) - t0;
    tf.dispose([out, fresh]);
    if (i > 0) times.push(ms);
  }
  return median(times);
}

/**
 * Times forward, filter gradient and input gradient of one convolution on the active backend. Each run gets a
 * fresh copy of the weights (forward, input gradient) or of dy (filter gradient), as in training where they change
 * every step: XNNPACK caches a packed filter per tensor, so reusing one tensor would leave the packing out.
 */
export async function timeConv(shape: ConvShape, reps: number, clock: BenchClock = 'wall'): Promise<ConvTiming> {
  const { input, kernel: k, stride, pad, outChannels: co } = shape;
  const wShape: [number, number, number, number] = [k, k, input[3], co];
  const x = tf.randomUniform(input, -1, 1, 'float32', 1) as tf.Tensor4D;
  const w = tf.randomUniform(wShape, -0.1, 0.1, 'float32', 2) as tf.Tensor4D;
  const ho = outSize(input[1], k, stride, pad);
  const dy = tf.randomUniform([input[0], ho, ho, co], -1, 1, 'float32', 3) as tf.Tensor4D;
  const attrs = { strides: stride, pad, dataFormat: 'NHWC' } as unknown as tf.NamedAttrMap;
  try {
    return {
      shape,
      flops: 2 * input[0] * ho * ho * k * k * input[3] * co,
      forwardMs: await timeOp(reps, w, (fw) => tf.conv2d(x, fw as tf.Tensor4D, stride, pad), clock),
      filterGradMs: await timeOp(reps, dy, (fdy) => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: fdy },
        { ...attrs, filterShape: wShape }) as tf.Tensor, clock),
      inputGradMs: await timeOp(reps, w, (fw) => tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: fw },
        { ...attrs, inputShape: input }) as tf.Tensor, clock),
    };
  } finally {
    tf.dispose([x, w, dy]);
  }
}

/** Whole-network totals, ms, each shape weighted by its count. */
export interface ConvTotals {
  readonly forwardMs: number;
  /** Filter gradients of all convolutions + input gradients of all but the stem. */
  readonly backwardMs: number;
  readonly ratio: number;
  readonly forwardGflops: number;
  readonly backwardGflops: number;
}

/** Sums timings over the network. */
export function totals(timings: readonly ConvTiming[]): ConvTotals {
  let fwd = 0;
  let bwd = 0;
  let fwdFlops = 0;
  let bwdFlops = 0;
  for (const t of timings) {
    const n = t.shape.count;
    fwd += n * t.forwardMs;
    fwdFlops += n * t.flops;
    bwd += n * (t.filterGradMs + (t.shape.isStem ? 0 : t.inputGradMs));
    bwdFlops += n * t.flops * (t.shape.isStem ? 1 : 2);
  }
  return { forwardMs: fwd, backwardMs: bwd, ratio: bwd / fwd, forwardGflops: fwdFlops / fwd / 1e6,
    backwardGflops: bwdFlops / bwd / 1e6 };
}

/** Result of a whole training step benchmark (forward + backward + AdamW of the full model). */
export interface TrainingStepResult {
  /** Wall time of one step, ms (median). */
  readonly stepMs: number;
  readonly imagesPerSecond: number;
  /** Process CPU time of one step, ms (median): the compute time on a single-threaded backend, robust to load. */
  readonly stepCpuMs: number;
  readonly imagesPerCpuSecond: number;
  /** Images per forward chunk. */
  readonly chunk: number;
}

/**
 * Whole-training-step section: forward + backward + AdamW update of the full, unfrozen model (ResNet body +
 * fastai head, 37 classes) through the trainer's own `Replica`, images/s as the median of `reps` steps after
 * `BENCH_WARMUP_STEPS` warm-up steps. Large batches are split into memory-bounded chunks as in training (see `learner/micro-batch.ts`).
 */
export async function measureTrainingStep(arch: BenchArch, size: number, batch: number,
  reps: number): Promise<TrainingStepResult | null> {
  const r = await measureWholeStep(arch, size, batch, reps);
  console.error(`whole step: forward+backward ${r.forwardBackwardMs.toFixed(0)} ms, AdamW ${r.optimizerMs.toFixed(0)} ms, ` +
    `chunks of ≤ ${r.chunk} images`);
  return { stepMs: r.stepMs, imagesPerSecond: r.imagesPerSecond, stepCpuMs: r.stepCpuMs,
    imagesPerCpuSecond: r.imagesPerCpuSecond, chunk: r.chunk };
}

interface BenchFlags {
  arch: string;
  size: string;
  bs: string;
  backend: string;
  reps: string;
  json?: boolean;
  profile?: boolean;
  dispatches?: boolean;
  gradientRoundTrip?: boolean;
  clock: string;
  torch?: string | boolean;
  ab?: string;
}

/** The PyTorch reference step of `scripts/bench-torch.py` (its JSON line). */
export interface TorchStepResult {
  readonly framework: string;
  readonly threads: number;
  readonly stepMs: number;
  readonly stepCpuMs: number;
  readonly imagesPerSecond: number;
  readonly imagesPerCpuSecond: number;
  readonly peakRssMiB: number;
}

/**
 * Runs the PyTorch one-thread reference step (`scripts/bench-torch.py`) with `python`.
 * @throws TrainerError ERR_BACKEND when Python/PyTorch is missing or the script fails
 */
export function measureTorchStep(python: string, arch: BenchArch, size: number, batch: number, reps: number): TorchStepResult {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'bench-torch.py');
  const res = spawnSync(python, [script, '--arch', arch, '--size', String(size), '--bs', String(batch), '--reps', String(reps),
    '--warmup', String(BENCH_WARMUP_STEPS)], { encoding: 'utf8' });
  const line = res.stdout?.trim().split('\n').pop() ?? '';
  if (res.status !== 0 || !line.startsWith('{')) {
    const why = res.error?.message ?? res.stderr?.trim().split('\n').pop() ?? `exit ${res.status}`;
    throw new TrainerError('ERR_BACKEND', `PyTorch reference (${python} ${script}) failed: ${why}`);
  }
  return JSON.parse(line) as TorchStepResult;
}

function parseClock(value: string): BenchClock {
  if (value === 'wall' || value === 'cpu') return value;
  throw new TrainerError('ERR_BAD_FLAG', `--clock must be wall|cpu, got ${JSON.stringify(value)}`);
}

function intFlag(name: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new TrainerError('ERR_BAD_FLAG', `--${name} must be an integer ≥ ${min}, got ${shownValue(value)}`);
  }
  return n;
}

function parseArch(value: string): BenchArch {
  if ((ARCHS as readonly string[]).includes(value)) return value as BenchArch;
  throw new TrainerError('ERR_BAD_FLAG', `--arch must be one of ${ARCHS.join('|')}, got ${JSON.stringify(value)}`);
}

function gflops(flops: number, ms: number): string {
  return (flops / ms / 1e6).toFixed(1);
}

function printTable(timings: readonly ConvTiming[], sum: ConvTotals): void {
  console.log('input NxHxWxCi      k/s  Co    cnt   fwd ms GF/s |  dW ms GF/s |  dX ms GF/s | bwd/fwd');
  for (const t of timings) {
    const s = t.shape;
    const bwd = t.filterGradMs + (s.isStem ? 0 : t.inputGradMs);
    console.log([
      s.input.join('x').padEnd(18), `${s.kernel}/${s.stride}`.padStart(4), String(s.outChannels).padStart(4),
      String(s.count).padStart(5), t.forwardMs.toFixed(1).padStart(8), gflops(t.flops, t.forwardMs).padStart(4), '|',
      t.filterGradMs.toFixed(1).padStart(6), gflops(t.flops, t.filterGradMs).padStart(4), '|',
      t.inputGradMs.toFixed(1).padStart(6), gflops(t.flops, t.inputGradMs).padStart(4) + (s.isStem ? '*' : ' '), '|',
      (bwd / t.forwardMs).toFixed(2).padStart(6),
    ].join(' '));
  }
  console.log(`total (weighted by count): forward ${sum.forwardMs.toFixed(0)} ms (${sum.forwardGflops.toFixed(1)} GFLOP/s), ` +
    `backward ${sum.backwardMs.toFixed(0)} ms (${sum.backwardGflops.toFixed(1)} GFLOP/s), backward/forward ${sum.ratio.toFixed(2)} ` +
    '(target ≤ 2.5; * stem dX not needed in training, excluded)');
}

function printProfile(kernels: readonly KernelTotal[]): void {
  const total = kernels.reduce((a, k) => a + (k.composite ? 0 : k.ms), 0);
  console.log('kernel                       calls      ms   share  (one training step, tf.profile; * composite op)');
  for (const k of kernels.slice(0, 25)) {
    const share = k.composite ? '     *' : `${(100 * k.ms / total).toFixed(1).padStart(5)}%`;
    console.log(`${k.name.padEnd(28)} ${String(k.calls).padStart(6)} ${k.ms.toFixed(0).padStart(7)} ${share}`);
  }
  console.log(`total of kernels: ${total.toFixed(0)} ms`);
}

function printDispatches(counts: DispatchCounts, batch: number): void {
  console.log(`GPU dispatches per training step: ${counts.dispatches} (${(counts.dispatches / batch).toFixed(1)} per image), ` +
    `uploads from CPU memory: ${counts.uploads}, buffer copies/clears: ${counts.copies}`);
  console.log('kernel                       calls  dispatches  uploads  copies  (one training step; fused kernels count once)');
  for (const k of counts.kernels.slice(0, 30)) {
    console.log(`${k.name.padEnd(28)} ${String(k.calls).padStart(6)} ${String(k.dispatches).padStart(11)} ${String(k.uploads).padStart(8)} ` +
      `${String(k.copies).padStart(7)}`);
  }
  if (counts.kernels.length > 30) console.log(`… ${counts.kernels.length - 30} more kernels`);
}

function printHost(h: Omit<WholeStepHost, 'counts'>, batch: number, gradientRoundTrip = false): void {
  if (h.host === null) {
    console.log('host: not measured (needs Linux /proc and Dawn\'s GPUBuffer)');
    return;
  }
  const { hostMs, mainMs, waitMs, reads } = h.host;
  console.log(`host: ${hostMs.toFixed(0)} ms main-thread CPU per step (${h.hostUsPerDispatch?.toFixed(0)} µs per dispatch), ` +
    `median of ${h.reps} steps: forward+backward ${h.forwardBackwardHostMs?.toFixed(0)} ms, ` +
    `${gradientRoundTrip ? 'gradient read + upload + AdamW' : 'AdamW from the device-resident gradient'} ` +
    `${h.optimizerHostMs?.toFixed(0)} ms; the main thread's ${mainMs.toFixed(0)} ms less ${waitMs.toFixed(0)} ms while ${reads} GPU ` +
    `reads were pending. Ceiling (estimate): a step cannot take less on any GPU with this CPU, ≤ ${((batch / hostMs) * 1000).toFixed(1)} images/s`);
}

function printCpuProfile(p: CpuKernelProfile): void {
  console.log('kernel                       calls  CPU ms   share  (one training step, process CPU time)');
  for (const k of p.kernels.slice(0, 25)) {
    console.log(`${k.name.padEnd(28)} ${String(k.calls).padStart(6)} ${k.ms.toFixed(0).padStart(7)} ${(100 * k.ms / p.totalCpuMs).toFixed(1).padStart(5)}%`);
  }
  console.log(`${'outside kernels (JS glue, GC)'.padEnd(35)} ${p.outsideKernelsMs.toFixed(0).padStart(7)} ` +
    `${(100 * p.outsideKernelsMs / p.totalCpuMs).toFixed(1).padStart(5)}%`);
  console.log(`step total: ${p.totalCpuMs.toFixed(0)} ms of process CPU time`);
}

async function run(flags: BenchFlags): Promise<void> {
  const arch = parseArch(flags.arch);
  const size = intFlag('size', flags.size, 32);
  const batch = intFlag('bs', flags.bs, 1);
  const reps = intFlag('reps', flags.reps, 1);
  const request = parseBackendRequest(flags.backend);
  // Per-kernel GPU times come from timestamp queries, which Dawn rounds to ~65 µs unless told otherwise.
  if (request === 'webgpu' || request === 'auto') {
    process.env.PETS_DAWN_FLAGS = `${process.env.PETS_DAWN_FLAGS ?? ''} disable-dawn-features=timestamp_quantization`.trim();
  }
  const choice = await initBackend(request);
  if (flags.dispatches) {
    if (choice.kind !== 'webgpu') throw new TrainerError('ERR_BAD_FLAG', `--dispatches needs the webgpu backend, got ${choice.kind}`);
    const h = await measureWholeStepHost(arch, size, batch, reps, undefined, flags.gradientRoundTrip === true);
    if (flags.json) {
      console.log(JSON.stringify({ backend: choice.kind, adapter: choice.adapter, arch, size, batch, ...h.counts,
        host: h.host, forwardBackwardHostMs: h.forwardBackwardHostMs, optimizerHostMs: h.optimizerHostMs,
        hostUsPerDispatch: h.hostUsPerDispatch, reps: h.reps }));
    } else {
      console.log(`${choice.summary}\n${arch} size ${size} batch ${batch}`);
      printDispatches(h.counts, batch);
      printHost(h, batch, flags.gradientRoundTrip === true);
    }
    return;
  }
  if (flags.ab !== undefined) {
    const eq = flags.ab.indexOf('=');
    if (eq <= 0) throw new TrainerError('ERR_BAD_FLAG', `--ab must be NAME=VALUE (an environment variable), got ${flags.ab}`);
    const ab = await measureWholeStepAB(arch, size, batch, reps, [flags.ab.slice(0, eq), flags.ab.slice(eq + 1)]);
    if (flags.json) console.log(JSON.stringify({ backend: choice.kind, arch, size, batch, clock: 'cpu', ab }));
    else {
      const fmt = (xs: readonly number[]): string => xs.map((x) => x.toFixed(0)).join(', ');
      console.log(`${choice.summary}\n${arch} size ${size} batch ${batch}, ${reps} pairs of steps, process CPU ms\n` +
        `A (as started):      ${fmt(ab.cpuMsA)} (of which AdamW ${fmt(ab.optimizerCpuMsA)})\n` +
        `B (${ab.variable}=${ab.value}): ${fmt(ab.cpuMsB)} (of which AdamW ${fmt(ab.optimizerCpuMsB)})\n` +
        `B / A, median of the pairs: ${ab.medianRatio.toFixed(3)}`);
    }
    return;
  }
  if (flags.profile && flags.clock === 'cpu') {
    const prof = await profileWholeStepCpu(arch, size, batch);
    if (flags.json) console.log(JSON.stringify({ backend: choice.kind, arch, size, batch, clock: 'cpu', ...prof }));
    else printCpuProfile(prof);
    return;
  }
  if (flags.profile) {
    const kernels = await profileWholeStep(arch, size, batch);
    if (flags.json) console.log(JSON.stringify({ backend: choice.kind, arch, size, batch, kernels }));
    else printProfile(kernels);
    return;
  }
  if (!flags.json) console.log(`${choice.summary}\n${arch} size ${size} batch ${batch}, median of ${reps} after 1 warm-up ` +
    `(whole step: after ${BENCH_WARMUP_STEPS}), ${flags.clock} clock`);
  const clock = parseClock(flags.clock);
  const timings: ConvTiming[] = [];
  for (const shape of resnetConvShapes(arch, size, batch)) timings.push(await timeConv(shape, reps, clock));
  const sum = totals(timings);
  // The step's device-memory high-water mark (webgpu): buffers in use at once, from just before the step benchmark.
  const memory = trackDeviceMemory();
  const step = await measureTrainingStep(arch, size, batch, reps);
  const stepMemory = memory?.peak();
  memory?.stop();
  const peakRssMiB = process.resourceUsage().maxRSS / 1024;
  const python = flags.torch === true ? '/usr/bin/python3' : flags.torch;
  const torch = python ? measureTorchStep(python, arch, size, batch, reps) : null;
  const vsTorch = torch !== null && step !== null ? step.imagesPerCpuSecond / torch.imagesPerCpuSecond : null;
  // On a GPU backend: the step's peak device memory in use, what the backend's buffer pool held at most (in use +
  // free buffers kept for reuse, including those of the per-shape timings), and the per-kernel times of one step.
  const device = stepMemory !== undefined ? {
    peakDeviceMiB: stepMemory.peakInUseBytes / 2 ** 20,
    peakDevicePoolMiB: stepMemory.peakAllocatedBytes / 2 ** 20,
    kernels: await profileWholeStep(arch, size, batch),
    ...await measureWholeStepHost(arch, size, batch, reps, undefined, flags.gradientRoundTrip === true).then(({ counts, ...h }) => ({ dispatches: counts, ...h })),
  } : null;
  if (flags.json) {
    console.log(JSON.stringify({ backend: choice.kind, adapter: choice.adapter, arch, size, batch, reps, clock, convs: timings,
      totals: sum, trainingStep: step, peakRssMiB, ...device,
      ...(torch === null ? {} : { torch, imagesPerCpuSecondVsTorch: vsTorch }) }));
    return;
  }
  printTable(timings, sum);
  console.log(step === null ? 'whole training step: not measured (see measureTrainingStep)'
    : `whole training step: ${step.stepMs.toFixed(0)} ms, ${step.imagesPerSecond.toFixed(1)} images/s (wall); ` +
      `${step.stepCpuMs.toFixed(0)} ms, ${step.imagesPerCpuSecond.toFixed(1)} images/s (process CPU time)`);
  console.log(`peak RSS: ${peakRssMiB.toFixed(0)} MiB`);
  if (torch !== null) {
    console.log(`${torch.framework}, ${torch.threads} thread: ${torch.stepMs.toFixed(0)} ms, ` +
      `${torch.imagesPerSecond.toFixed(1)} images/s (wall); ${torch.stepCpuMs.toFixed(0)} ms, ` +
      `${torch.imagesPerCpuSecond.toFixed(1)} images/s (process CPU time); peak RSS ${torch.peakRssMiB.toFixed(0)} MiB`);
    console.log(`${choice.kind} / PyTorch, images per CPU-second: ${vsTorch?.toFixed(2)}×`);
  }
  if (device !== null) {
    console.log(`peak device memory: ${device.peakDeviceMiB.toFixed(0)} MiB in use at once during the training step ` +
      `(tfjs-webgpu GPUBuffers); buffer pool at most ${device.peakDevicePoolMiB.toFixed(0)} MiB (in use + free, whole run)`);
    printProfile(device.kernels);
    printDispatches(device.dispatches, batch);
    printHost(device, batch, flags.gradientRoundTrip === true);
  }
}

/**
 * Entry point.
 * @param argv - arguments after the script name
 * @returns exit code: 0 done, 1 runtime error, 2 bad flag
 */
export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command('bench:compute')
    .description('Per-shape convolution forward/backward throughput of the compute backend')
    .option('--arch <arch>', ARCHS.join('|'), 'resnet34')
    .option('--size <pixels>', 'image side, pixels (≥ 32)', '224')
    .option('--bs <n>', 'batch size (≥ 1)', '16')
    .option('--backend <name>', 'compute backend: auto|tensorflow|webgpu|native|wasm|cpu', 'auto')
    .option('--reps <n>', 'timed repetitions per operation, after one warm-up (≥ 1)', '3')
    .option('--json', 'print one JSON line instead of the table')
    .option('--profile', 'instead: per-kernel times of one whole training step (tf.profile; with --clock cpu: process CPU time per kernel)')
    .option('--dispatches', 'instead: GPU dispatches and uploads of one whole training step, per kernel (webgpu only)')
    .option('--gradient-round-trip', 'with --dispatches: read the gradient to the CPU and upload it again (as with several workers) instead of keeping it on the device (one worker)')
    .option('--clock <kind>', 'per-shape times: wall (elapsed) or cpu (process CPU time, robust to load)', 'wall')
    .option('--torch [python]', 'also time PyTorch one-thread (scripts/bench-torch.py; python default /usr/bin/python3)')
    .option('--ab <NAME=VALUE>', 'instead: whole training steps in one process alternating an environment variable read per call (A as started, B with NAME=VALUE), --reps pairs, process CPU per step')
    .exitOverride();
  try {
    program.parse([...argv], { from: 'user' });
    // As the coordinator, workers and learn: PETS_NATIVE_THREADS=abc ran the bench on 1 thread, unsaid, and the figures
    // were taken for the setting; the --ab variable's B value is checked too, before any step is timed.
    checkEnvSettings(process.env);
    const ab = program.opts<BenchFlags>().ab;
    const eq = ab?.indexOf('=') ?? -1;
    if (ab !== undefined && eq > 0) checkEnvSettings({ ...process.env, [ab.slice(0, eq)]: ab.slice(eq + 1) });
    await run(program.opts<BenchFlags>());
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    console.error(`bench:compute: ${err instanceof Error ? err.message : String(err)}`);
    return isTrainerError(err, 'ERR_BAD_FLAG') || isTrainerError(err, 'ERR_BAD_CONFIG') ? 2 : 1;
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
