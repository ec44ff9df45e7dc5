/**
 * Data-parallel scaling benchmark: training throughput with 1 and 2 (or more) real worker processes.
 *
 *   npm run bench:scaling -- --arch resnet34 --size 128 --bs 16 [--steps 4 --warmup 1 --workers 1,2 --torch
 *     --allreduce-dtype float16 --json]
 *
 * For each world size W it starts the coordinator's control plane (`ControlServer` + `Cluster`, the same code as
 * `coordinator`) and W local worker processes (`LocalWorkers`: `worker` children), sends the run setup
 * (`--pretrained none`, unfrozen, the shared sample photos), then drives `--warmup` + `--steps` optimizer steps
 * exactly as the driver does (`step` → every `step-done` → `commit`). Weak scaling: the per-worker batch is fixed,
 * so the global batch is W × bs.
 *
 * Reported per W (medians over the measured steps):
 * - step seconds: wall time from one step's broadcast to the last `step-done` (the worker applies the previous
 *   step's AdamW on `commit` before it starts the next step, so this includes the optimizer);
 * - img/s = W × bs / step seconds;
 * - compute / data-wait / all-reduce seconds as the workers report them in `step-done`; the all-reduce figure is
 *   the smallest over ranks (the slowest rank waits least, so its time is the communication itself, not the
 *   wait for a slower peer); "unhidden all-reduce" = that / step seconds. Nothing hides it: tfjs computes all
 *   gradients in one synchronous call, so buckets cannot start during backward (see docs/distributed.md);
 * - scaling efficiency = img/s(W) / (W × img/s(1)).
 *
 * `--torch [python]` then runs PyTorch DDP (gloo, W processes × 1 thread, `scripts/bench-torch-ddp.py`, default
 * `/usr/bin/python3`) at the same arch, size, per-worker batch, world sizes and step counts, and prints its img/s
 * beside this project's, with the ratio (PyTorch's ranks compute on random tensors: no decoding or augmentation).
 */
import { spawnSync } from 'node:child_process';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { Cluster, type Reply } from '../src/coordinator/cluster.js';
import { ControlServer } from '../src/coordinator/control.js';
import { LocalWorkers } from '../src/coordinator/local-workers.js';
import { ARCHS, checkInt, type Arch } from '../src/contract/config.js';
import { createDataBunch, type DataBunch } from '../src/training/data/databunch.js';
import { ImagePool } from '../src/training/data/pool.js';
import { TrainerError } from '../src/contract/errors.js';
import type { Message, ReadyMessage, StepDoneMessage } from '../src/contract/protocol/index.js';
import { encodeRunSetup, type RunSetup } from '../src/contract/run-setup.js';

/** Flags of the benchmark. */
interface ScalingArgs {
  readonly arch: Arch;
  readonly size: number;
  readonly bs: number;
  readonly steps: number;
  readonly warmup: number;
  readonly workers: number[];
  readonly data: string;
  readonly threads: number;
  readonly dtype: 'float32' | 'float16';
  readonly json: boolean;
  /** Python to run the PyTorch DDP reference with, or null. */
  readonly torch: string | null;
}

/** Result for one world size. */
interface ScalingRow {
  readonly workers: number;
  readonly stepSeconds: number;
  readonly imagesPerSecond: number;
  readonly computeSeconds: number;
  readonly dataWaitSeconds: number;
  readonly allreduceSeconds: number;
  /** allreduceSeconds / stepSeconds, 0..1. */
  readonly unhiddenAllreduce: number;
  /** imagesPerSecond / (workers × imagesPerSecond with 1 worker), 0..1 (1 for W = 1). */
  efficiency: number;
}

function parseArgs(argv: string[]): ScalingArgs {
  const p = new Command('bench-scaling')
    .option('--arch <name>', ARCHS.join(' | '), 'resnet34')
    .option('--size <px>', 'image side', '128')
    .option('--bs <n>', 'batch per worker', '16')
    .option('--steps <n>', 'measured steps per world size', '4')
    .option('--warmup <n>', 'unmeasured steps first', '1')
    .option('--workers <list>', 'world sizes, comma list', '1,2')
    .option('--data <dir>', 'photos', resolve(process.cwd(), '../shared/datasets/oxford-iiit-pet-sample'))
    .option('--threads <n>', 'decode threads per worker (0 = automatic)', '1')
    .addOption(new Option('--allreduce-dtype <dtype>', 'wire dtype of the ring').choices(['float32', 'float16']).default('float32'))
    .option('--json', 'print one JSON object instead of the table')
    .option('--torch [python]', 'also run PyTorch DDP, gloo, W × 1 thread (scripts/bench-torch-ddp.py; python default /usr/bin/python3)')
    .exitOverride();
  p.parse(argv, { from: 'user' });
  const o = p.opts<Record<string, string | boolean | undefined>>();
  if (!(ARCHS as readonly string[]).includes(String(o.arch))) throw new TrainerError('ERR_BAD_FLAG', `--arch must be one of ${ARCHS.join('|')}, got ${String(o.arch)}`);
  const workers = String(o.workers).split(',').map((w) => checkInt('--workers', w, 1, 16));
  return {
    arch: o.arch as Arch, size: checkInt('--size', o.size, 16, 1024), bs: checkInt('--bs', o.bs, 2, 1024), steps: checkInt('--steps', o.steps, 1),
    warmup: checkInt('--warmup', o.warmup, 0), workers, data: String(o.data), threads: checkInt('--threads', o.threads, 0, 64),
    dtype: o.allreduceDtype as ScalingArgs['dtype'], json: o.json === true,
    torch: o.torch === true ? '/usr/bin/python3' : typeof o.torch === 'string' ? o.torch : null,
  };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function setupOf(a: ScalingArgs, data: DataBunch): RunSetup {
  return {
    runId: 'bench-scaling', arch: a.arch, size: a.size, bs: a.bs, seed: 42, pretrained: 'none', frozen: false, classes: data.classes,
    dataRoot: data.root, paths: data.paths.map((p) => relative(data.root, p)), labels: Array.from(data.labels), train: Array.from(data.train),
    valid: Array.from(data.valid), allreduce: 'ring', allreduceDtype: a.dtype, bucketBytes: 25_000_000, allreduceTimeoutMs: 600_000,
    starAddress: null, threads: a.threads,
  };
}

/** One world size: start, set up, run the steps, stop. */
async function measure(a: ScalingArgs, data: DataBunch, w: number, log: (line: string) => void): Promise<Omit<ScalingRow, 'efficiency'>> {
  const control = new ControlServer({ bind: 'tcp://127.0.0.1:0', heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 120_000, log });
  const endpoint = await control.start();
  const cluster = new Cluster(control, log);
  const workers = new LocalWorkers({ endpoint, args: ['--backend', 'auto', '--heartbeat-interval-ms', '1000', '--heartbeat-timeout-ms', '120000'], stdio: 'ignore' });
  try {
    workers.start(w);
    await cluster.admit(w, 300_000);
    await cluster.announce();
    const ranks = cluster.ranks().map((m) => m.rank);
    const frame = encodeRunSetup(setupOf(a, data));
    const ready = cluster.gather(ranks, (m: Message): m is ReadyMessage => m.type === 'ready', 'ready', 600_000);
    await cluster.broadcast({ type: 'setup', byteLength: frame.byteLength }, [frame]);
    await ready;
    await cluster.request('stage', { stageIndex: 0, frozen: false }, { timeoutMs: 60_000 });
    const rows: Array<{ wall: number; replies: Reply<StepDoneMessage>[] }> = [];
    for (let step = 0; step < a.warmup + a.steps; step++) {
      const t0 = performance.now();
      const done = cluster.gather(ranks, (m: Message): m is StepDoneMessage => m.type === 'step-done' && m.step === step, `step ${step}`, 1_200_000);
      await cluster.broadcast({ type: 'step', step, generation: cluster.generation, stageIndex: 0, epoch: 0, stepInEpoch: step, accum: 1, lrs: [1e-5, 1e-4, 1e-3], momentum: 0.9 });
      const replies = await done;
      const wall = (performance.now() - t0) / 1000;
      await cluster.broadcast({ type: 'commit', step });
      log(`W=${w} step ${step}${step < a.warmup ? ' (warm-up)' : ''}: ${wall.toFixed(2)} s; all-reduce ${replies.map((r) => r.message.allreduceSeconds.toFixed(3)).join('/')} s`);
      if (step >= a.warmup) rows.push({ wall, replies });
    }
    const stepSeconds = median(rows.map((r) => r.wall));
    const allreduceSeconds = median(rows.map((r) => Math.min(...r.replies.map((x) => x.message.allreduceSeconds))));
    return {
      workers: w, stepSeconds, imagesPerSecond: (w * a.bs) / stepSeconds,
      computeSeconds: median(rows.map((r) => Math.max(...r.replies.map((x) => x.message.forwardBackwardSeconds)))),
      dataWaitSeconds: median(rows.map((r) => Math.max(...r.replies.map((x) => x.message.dataWaitSeconds)))),
      allreduceSeconds, unhiddenAllreduce: median(rows.map((r) => Math.min(...r.replies.map((x) => x.message.allreduceSeconds)) / r.wall)),
    };
  } finally {
    await cluster.broadcast({ type: 'shutdown', reason: 'benchmark done' }).catch(() => undefined);
    await workers.close();
    control.close();
  }
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const pool = new ImagePool({ threads: 1 });
  pool.start();
  const data = await createDataBunch({ data: a.data, verify: false }, pool).finally(() => pool.close());
  const maxW = Math.max(...a.workers);
  const stepsPerEpoch = Math.floor(data.train.length / (maxW * a.bs));
  if (a.warmup + a.steps > stepsPerEpoch) {
    throw new TrainerError('ERR_BAD_FLAG', `--warmup + --steps must be ≤ ${stepsPerEpoch} (one epoch of ${data.train.length} images at ${maxW} × bs ${a.bs}), got ${a.warmup + a.steps}`);
  }
  const log = (line: string): void => console.error(`[bench-scaling] ${line}`);
  const rows: ScalingRow[] = [];
  for (const w of a.workers) rows.push({ ...(await measure(a, data, w, log)), efficiency: 1 });
  const one = rows.find((r) => r.workers === 1);
  for (const r of rows) r.efficiency = one ? r.imagesPerSecond / (r.workers * one.imagesPerSecond) : Number.NaN;
  const torch = a.torch === null ? null : torchDdp(a.torch, a);
  if (a.json) {
    console.log(JSON.stringify({ arch: a.arch, size: a.size, bs: a.bs, dtype: a.dtype, steps: a.steps, warmup: a.warmup, rows,
      ...(torch === null ? {} : { torch }) }, null, 2));
    return;
  }
  console.log(`${a.arch} at ${a.size}px, bs ${a.bs} per worker, ${a.dtype} ring, ${a.steps} measured steps after ${a.warmup} warm-up (medians)`);
  console.log('workers  step_s  img/s   compute_s  data_wait_s  allreduce_s  unhidden_allreduce  efficiency');
  for (const r of rows) {
    const cells = [String(r.workers).padEnd(8), r.stepSeconds.toFixed(2).padEnd(7), r.imagesPerSecond.toFixed(2).padEnd(7), r.computeSeconds.toFixed(2).padEnd(10),
      r.dataWaitSeconds.toFixed(3).padEnd(12), r.allreduceSeconds.toFixed(3).padEnd(12), `${(100 * r.unhiddenAllreduce).toFixed(1)} %`.padEnd(19), `${(100 * r.efficiency).toFixed(1)} %`];
    console.log(cells.join(' '));
  }
  for (const t of torch ?? []) {
    const ours = rows.find((r) => r.workers === t.workers);
    console.log(`${t.framework}, ${t.workers} × 1 thread: ${t.stepSeconds.toFixed(2)} s/step, ${t.imagesPerSecond.toFixed(2)} img/s` +
      (ours ? `; pets-trainer / PyTorch: ${(ours.imagesPerSecond / t.imagesPerSecond).toFixed(2)}×` : ''));
  }
}

/** One line of `scripts/bench-torch-ddp.py`. */
interface TorchDdpRow {
  readonly framework: string;
  readonly workers: number;
  readonly stepSeconds: number;
  readonly imagesPerSecond: number;
  readonly rank0CpuSecondsPerStep: number;
}

/** Runs the PyTorch DDP reference for the same world sizes. @throws TrainerError ERR_BACKEND when it fails */
function torchDdp(python: string, a: ScalingArgs): TorchDdpRow[] {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'bench-torch-ddp.py');
  const res = spawnSync(python, [script, '--arch', a.arch, '--size', String(a.size), '--bs', String(a.bs),
    '--workers', a.workers.join(','), '--steps', String(a.steps), '--warmup', String(a.warmup)], { encoding: 'utf8' });
  const lines = (res.stdout ?? '').trim().split('\n').filter((l) => l.startsWith('{'));
  if (res.status !== 0 || lines.length !== a.workers.length) {
    const why = res.error?.message ?? res.stderr?.trim().split('\n').pop() ?? `exit ${res.status}`;
    throw new TrainerError('ERR_BACKEND', `PyTorch DDP reference (${python} ${script}) failed: ${why}`);
  }
  return lines.map((l) => JSON.parse(l) as TorchDdpRow);
}

main().catch((err: unknown) => {
  console.error(`bench-scaling: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
