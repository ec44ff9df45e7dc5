/**
 * A/B of the WebGPU convolution input gradient in ONE process: tfjs-backend-webgpu's own `Conv2DBackpropInput`
 * (`PETS_WEBGPU_INPUT_GRAD=tfjs`, read at each call) against this project's tiled kernel
 * (`src/training/compute/webgpu/conv-input-grad.ts`), alternated so that drifts of the machine hit both alike:
 *
 * 1. per distinct convolution of the network (the stem left out: a training step does not need its input
 *    gradient): GPU time of one call (tfjs's timestamp queries, `tf.time().kernelMs`; wall time to a one-value read
 *    where the adapter has no timestamps), GFLOP/s, and the largest relative difference of the two results
 *    (max|ours − tfjs| / max|tfjs|, on the device); totals weighted by how often each shape occurs;
 * 2. the whole training step (`measureWholeStep`, wall ms, img/s), `--steps` timed steps per setting, settings
 *    alternated twice (`--steps 0`: left out, with 3.);
 * 3. the per-kernel GPU times of one training step (`tf.profile`) under each setting, side by side.
 *
 * Usage (GPU check stage `dgrad-ab`; also runs on lavapipe with small sizes, where only ratios of work mean anything):
 *   node --import tsx scripts/gpu-check/input-grad-ab.ts --arch resnet34 --size 224 --bs 64 [--reps 5] [--steps 3]
 */
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs-core';
import { Command, CommanderError } from 'commander';
import { initBackend } from '../../src/training/compute/backend.js';
import { INPUT_GRAD_ENV, phaseGemm } from '../../src/training/compute/webgpu/conv-input-grad.js';
import { convGeometry } from '../../src/training/compute/kernels/conv-geometry.js';
import type { KernelTotal } from '../../src/training/compute/kernel-profile.js';
import { measureWholeStep, profileWholeStep } from '../../src/training/learner/step-bench.js';
import { resnetConvShapes, type BenchArch, type ConvShape } from '../bench-compute.js';
import { median } from '../../src/contract/median.js';

/** The two settings: A = tfjs's kernel, B = this project's. */
const SETTINGS = [['tfjs', 'tfjs'], ['ours', undefined]] as const;

function use(value: string | undefined): void {
  if (value === undefined) delete process.env[INPUT_GRAD_ENV];
  else process.env[INPUT_GRAD_ENV] = value;
}

/** GPU ms of `op` (timestamp queries) or, without them, wall ms until a one-value read of its result. */
async function timeOnce(op: () => tf.Tensor): Promise<{ ms: number; clock: 'gpu' | 'wall' }> {
  let out: tf.Tensor | null = null;
  const t0 = performance.now();
  const info = await tf.time(() => { out = op(); });
  const probe = tf.tidy(() => tf.slice(tf.reshape(out!, [-1]), 0, 1));
  await probe.data();
  const wall = performance.now() - t0;
  tf.dispose([out!, probe]);
  return typeof info.kernelMs === 'number' && info.kernelMs > 0 ? { ms: info.kernelMs, clock: 'gpu' } : { ms: wall, clock: 'wall' };
}

interface ShapeAB {
  readonly shape: ConvShape;
  readonly flops: number;
  readonly ms: [number, number];
  readonly clock: 'gpu' | 'wall';
  readonly relDiff: number;
  /** False where B falls back to tfjs's kernel too (fewer than 64 pixels in every stride phase). */
  readonly tiled: boolean;
}

/** Both kernels on one shape: `reps` alternated calls each after a warm-up call each. */
async function shapeAB(shape: ConvShape, reps: number): Promise<ShapeAB> {
  const { input, kernel: k, stride, pad, outChannels: co } = shape;
  const info = tf.backend_util.computeConv2DInfo(input, [k, k, input[3], co], stride, 1, pad, undefined, false, 'channelsLast');
  const dy = tf.randomUniform(info.outShape, -1, 1, 'float32', 3);
  const w = tf.randomUniform([k, k, input[3], co], -0.1, 0.1, 'float32', 2);
  const op = (): tf.Tensor => tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w },
    { inputShape: input, strides: stride, pad, dataFormat: 'NHWC' } as unknown as tf.NamedAttrMap) as tf.Tensor;
  try {
    const times: [number[], number[]] = [[], []];
    let clock: 'gpu' | 'wall' = 'gpu';
    for (let r = 0; r <= reps; r++) {
      for (const i of [0, 1] as const) {
        use(SETTINGS[i][1]);
        const t = await timeOnce(op);
        if (t.clock === 'wall') clock = 'wall';
        if (r > 0) times[i].push(t.ms);
      }
    }
    use(SETTINGS[0][1]);
    const ref = op();
    use(SETTINGS[1][1]);
    const got = op();
    const [diff, scale] = await Promise.all([tf.max(tf.abs(tf.sub(got, ref))), tf.max(tf.abs(ref))].map(async (t) => {
      const v = (await t.data())[0]!;
      t.dispose();
      return v;
    }));
    tf.dispose([ref, got]);
    return { shape, flops: 2 * info.batchSize * info.outHeight * info.outWidth * k * k * input[3] * co,
      ms: [median(times[0]), median(times[1])], clock, relDiff: diff! / scale!, tiled: phaseGemm(convGeometry(info)).maxM >= 64 };
  } finally {
    use(undefined);
    tf.dispose([dy, w]);
  }
}

interface Flags { arch: string; size: string; bs: string; reps: string; steps: string }

async function run(flags: Flags): Promise<void> {
  const arch = flags.arch as BenchArch;
  const [size, batch, reps, steps] = [flags.size, flags.bs, flags.reps, flags.steps].map(Number) as [number, number, number, number];
  process.env.PETS_DAWN_FLAGS = `${process.env.PETS_DAWN_FLAGS ?? ''} disable-dawn-features=timestamp_quantization`.trim();
  const choice = await initBackend('webgpu');
  console.log(`${choice.summary}\n${arch} size ${size} batch ${batch}: Conv2DBackpropInput, A = tfjs (${INPUT_GRAD_ENV}=tfjs), B = ours`);

  console.log('\ninput gradient per shape  count   A ms    B ms  A GFLOP/s  B GFLOP/s   A/B   rel diff  (B: tfjs = fell back)');
  const sum = [0, 0];
  let flopsSum = 0;
  let worst = 0;
  let clock = 'gpu';
  for (const shape of resnetConvShapes(arch, size, batch).filter((s) => !s.isStem)) {
    const r = await shapeAB(shape, reps);
    const n = shape.count;
    sum[0] += n * r.ms[0];
    sum[1] += n * r.ms[1];
    flopsSum += n * r.flops;
    worst = Math.max(worst, r.relDiff);
    if (r.clock === 'wall') clock = 'wall';
    const [, h, , ci] = shape.input;
    const name = `${h}x${ci} ${shape.kernel}x${shape.kernel}/${shape.stride} → ${shape.outChannels}`;
    console.log(`${name.padEnd(24)} ${String(n).padStart(6)} ${r.ms[0].toFixed(2).padStart(7)} ${r.ms[1].toFixed(2).padStart(7)} ` +
      `${(r.flops / r.ms[0] / 1e6).toFixed(0).padStart(10)} ${(r.flops / r.ms[1] / 1e6).toFixed(0).padStart(10)} ` +
      `${(r.ms[0] / r.ms[1]).toFixed(2).padStart(5)}  ${r.relDiff.toExponential(1)}${r.tiled ? '' : '  B: tfjs'}`);
  }
  console.log(`input gradients of one step (${clock} ms, weighted by count): A ${sum[0]!.toFixed(1)} ms ` +
    `(${(flopsSum / sum[0]! / 1e6).toFixed(0)} GFLOP/s), B ${sum[1]!.toFixed(1)} ms (${(flopsSum / sum[1]! / 1e6).toFixed(0)} GFLOP/s), ` +
    `A/B ${(sum[0]! / sum[1]!).toFixed(2)}; largest relative difference ${worst.toExponential(1)}`);

  if (steps === 0) return;
  const stepMs: [number[], number[]] = [[], []];
  for (let round = 0; round < 2; round++) {
    for (const i of [0, 1] as const) {
      use(SETTINGS[i][1]);
      stepMs[i].push((await measureWholeStep(arch, size, batch, steps)).stepMs);
    }
  }
  use(undefined);
  const [a, b] = [median(stepMs[0]), median(stepMs[1])];
  console.log(`\nwhole training step (wall ms, median of ${steps} steps, per run): A ${stepMs[0].map((x) => x.toFixed(0)).join(', ')}; ` +
    `B ${stepMs[1].map((x) => x.toFixed(0)).join(', ')} → A ${((batch / a) * 1000).toFixed(1)} img/s, B ${((batch / b) * 1000).toFixed(1)} img/s, ` +
    `B/A ${(a / b).toFixed(2)}×`);

  const profiles: Array<Map<string, KernelTotal>> = [];
  for (const [, value] of SETTINGS) {
    use(value);
    profiles.push(new Map((await profileWholeStep(arch, size, batch)).map((k) => [k.name, k])));
  }
  use(undefined);
  console.log('\nkernel (one training step, tf.profile)   A calls    A ms  B calls    B ms');
  const names = [...new Set([...profiles[0]!.keys(), ...profiles[1]!.keys()])]
    .sort((x, y) => (profiles[0]!.get(y)?.ms ?? 0) - (profiles[0]!.get(x)?.ms ?? 0));
  const total = [0, 0];
  for (const name of names) {
    const [ka, kb] = [profiles[0]!.get(name), profiles[1]!.get(name)];
    if (!(ka?.composite ?? kb?.composite ?? false)) {
      total[0] += ka?.ms ?? 0;
      total[1] += kb?.ms ?? 0;
    }
    if (Math.max(ka?.ms ?? 0, kb?.ms ?? 0) < 0.5 && name !== 'Conv2DBackpropInput') continue;
    console.log(`${name.padEnd(40)} ${String(ka?.calls ?? 0).padStart(7)} ${(ka?.ms ?? 0).toFixed(1).padStart(7)} ` +
      `${String(kb?.calls ?? 0).padStart(8)} ${(kb?.ms ?? 0).toFixed(1).padStart(7)}${(ka?.composite ?? kb?.composite) ? ' *' : ''}`);
  }
  console.log(`total of kernels (A/B, composite * left out): A ${total[0]!.toFixed(1)} ms, B ${total[1]!.toFixed(1)} ms`);
}

/** CLI entry; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command('input-grad-ab')
    .description('tfjs\'s vs this project\'s WebGPU Conv2DBackpropInput, per shape, whole step and per kernel, in one process')
    .option('--arch <arch>', 'resnet18|resnet34|resnet50', 'resnet34')
    .option('--size <pixels>', 'image side, pixels (≥ 32)', '224')
    .option('--bs <n>', 'batch size (≥ 2)', '64')
    .option('--reps <n>', 'timed calls per shape and kernel, after one warm-up each', '5')
    .option('--steps <n>', 'timed training steps per run (two runs per setting); 0: per-shape part only', '3')
    .exitOverride();
  try {
    program.parse([...argv], { from: 'user' });
    const flags = program.opts<Flags>();
    for (const [name, min] of [['size', 32], ['bs', 2], ['reps', 1], ['steps', 0]] as const) {
      const v = Number(flags[name]);
      if (!Number.isInteger(v) || v < min) throw new Error(`--${name} must be an integer ≥ ${min}, got ${flags[name]}`);
    }
    if (!['resnet18', 'resnet34', 'resnet50'].includes(flags.arch)) throw new Error(`--arch must be resnet18|resnet34|resnet50, got ${flags.arch}`);
    await run(flags);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    console.error(`input-grad-ab: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
