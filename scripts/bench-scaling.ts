/**
 * Data-parallel scaling benchmark: training throughput with 1 and 2 (or more) real worker processes.
 *
 *   npm run bench:scaling -- --arch resnet34 --size 128 --bs 16 [--steps 4 --warmup 2 --workers 1,2 --torch
 *     --torch-data random|photos|both --torch-loader-workers 1 --allreduce auto|ring|shm --allreduce-dtype float16 --json]
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
 *   wait for a slower peer); "unhidden all-reduce" = that / step seconds. Nothing hides it: the worker all-reduces
 *   after the backward (overlapping it gains < 1 % when every core is busy, docs/distributed.md, "Overlapping the
 *   all-reduce with the backward");
 * - scaling efficiency = img/s(W) / (W × img/s(1));
 * - CPU seconds per step (Linux `/proc`, `proc-cpu.ts`) over the measured steps and as many commits: each worker
 *   process in all, its main thread (tfjs, AdamW, the protocol, the ring's calls) and its other threads by name (the
 *   decode thread, libvips, the heartbeat thread and V8's GC helpers are `node`/`libvips worker`; libzmq's I/O is
 *   `ZMQbg/*`), and the coordinator (this process). On a 2-core machine with 2 workers every other thread's CPU
 *   second is taken from a worker's compute;
 * - images per CPU-second of the run (workers + coordinator; beside PyTorch's with `--torch`, its ranks' CPU plus
 *   their loaders'), and where the machine's core-seconds of a step went (`/proc/stat`: this run, other processes,
 *   idle): idle core time is all that overlapping the all-reduce with the backward could use.
 *
 * Warm-up: 2 steps by default. On the native backend the first two steps still fill its output-array pool (fresh
 * allocations, page faults and the major GCs they bring: ≈ 0.2 CPU-s more on the step after the first); steady
 * training pays that once.
 *
 * `--torch [python]` then runs PyTorch DDP (gloo, W processes × 1 thread, `scripts/bench-torch-ddp.py`, default
 * `/usr/bin/python3`) at the same arch, size, per-worker batch, world sizes and step counts, and prints its img/s
 * beside this project's, with the ratio. `--torch-data` says what PyTorch's ranks read: `random` (one random batch:
 * the step alone, no decoding or augmentation), `photos` (the same `--data` photos through a `DataLoader` with
 * `--torch-loader-workers` processes per rank and tutorial-like torchvision transforms), or `both` (default: two
 * runs). pets-trainer's workers always decode and augment the photos.
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { Cluster, type Reply } from '../src/coordinator/cluster.js';
import { ControlServer } from '../src/coordinator/control.js';
import { LocalWorkers } from '../src/coordinator/local-workers.js';
import { ARCHS, checkInt, type Arch } from '../src/contract/config.js';
import { createDataBunch, type DataBunch } from '../src/training/data/databunch.js';
import { ImagePool } from '../src/training/data/pool.js';
import { TrainerError, isTrainerError } from '../src/contract/errors.js';
import { checkEnvSettings } from '../src/contract/env-settings.js';
import { BACKEND_REQUESTS, type BackendRequest } from '../src/training/compute/backend.js';
import type { Message, StepDoneMessage } from '../src/contract/protocol/index.js';
import { encodeRunSetup, type RunSetup } from '../src/contract/run-setup.js';
import { cpuBetween, sampleMachine, sampleThreads, type CpuSplit, type MachineSample, type ThreadSample } from './proc-cpu.js';
import { median } from '../src/contract/median.js';

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
  /** The workers' all-reduce (`--allreduce` of the trainer; default auto, as the trainer's). */
  readonly allreduce: 'auto' | 'ring' | 'shm';
  readonly json: boolean;
  /** The workers' `--backend` (default auto, as the trainer's). */
  readonly backend: BackendRequest;
  /** Python to run the PyTorch DDP reference with, or null. */
  readonly torch: string | null;
  /** Inputs of the PyTorch reference: random tensors, the same photos through a DataLoader, or both runs. */
  readonly torchData: 'random' | 'photos' | 'both';
  /** DataLoader worker processes per PyTorch rank in the photos mode. */
  readonly torchLoaderWorkers: number;
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
  /** Process CPU seconds per measured step (from `/proc`; null where it cannot be read). */
  readonly cpu: StepCpu | null;
}

/** CPU seconds per step: each worker process (mean over workers) split by thread, and the coordinator process. */
interface StepCpu {
  readonly workerSeconds: number;
  /** The worker's main thread: tfjs compute, optimizer, protocol, all-reduce calls. */
  readonly workerMainSeconds: number;
  /** Every other thread of a worker, by thread name (`node`: decode and heartbeat threads, V8 helpers; `ZMQbg/*`: libzmq I/O). */
  readonly workerOtherSeconds: Readonly<Record<string, number>>;
  /** The busiest non-main thread of a worker (the decode thread when it decodes). */
  readonly workerBusiestOtherSeconds: number;
  /** This benchmark's process, which is the coordinator (control server, cluster, driver loop). */
  readonly coordinatorSeconds: number;
  /**
   * The whole machine over the same window (`/proc/stat`: every process, this run's and others'), per step: busy
   * and idle core-seconds. Idle core time is what overlapping the all-reduce with the backward could put to work;
   * with none idle, overlap only moves the all-reduce's CPU into the backward's. Null where it cannot be read.
   */
  readonly machine: { readonly busySeconds: number; readonly idleSeconds: number } | null;
}

function parseArgs(argv: string[]): ScalingArgs {
  const p = new Command('bench-scaling')
    .option('--arch <name>', ARCHS.join(' | '), 'resnet34')
    .option('--size <px>', 'image side', '128')
    .option('--bs <n>', 'batch per worker', '16')
    .option('--steps <n>', 'measured steps per world size', '4')
    .option('--warmup <n>', 'unmeasured steps first (2: the native backend\'s array pool fills in two)', '2')
    .option('--workers <list>', 'world sizes, comma list', '1,2')
    .option('--data <dir>', 'photos', resolve(process.cwd(), '../shared/datasets/oxford-iiit-pet-sample'))
    .option('--threads <n>', 'decode threads per worker (0 = automatic)', '1')
    .addOption(new Option('--allreduce-dtype <dtype>', 'wire dtype of the ring').choices(['float32', 'float16']).default('float32'))
    .addOption(new Option('--backend <name>', 'the workers\' compute backend, as the trainer\'s flag').choices([...BACKEND_REQUESTS]).default('auto'))
    .addOption(new Option('--allreduce <algo>', 'the workers\' all-reduce, as the trainer\'s flag').choices(['auto', 'ring', 'shm']).default('auto'))
    .option('--json', 'print one JSON object instead of the table')
    .option('--torch [python]', 'also run PyTorch DDP, gloo, W × 1 thread (scripts/bench-torch-ddp.py; python default /usr/bin/python3)')
    .addOption(new Option('--torch-data <inputs>', 'PyTorch inputs: random tensors, the --data photos through a DataLoader, or both').choices(['random', 'photos', 'both']).default('both'))
    .option('--torch-loader-workers <n>', 'DataLoader worker processes per PyTorch rank (photos)', '1')
    .exitOverride();
  p.parse(argv, { from: 'user' });
  const o = p.opts<Record<string, string | boolean | undefined>>();
  if (!(ARCHS as readonly string[]).includes(String(o.arch))) throw new TrainerError('ERR_BAD_FLAG', `--arch must be one of ${ARCHS.join('|')}, got ${String(o.arch)}`);
  const workers = String(o.workers).split(',').map((w) => checkInt('--workers', w, 1, 16));
  return {
    arch: o.arch as Arch, size: checkInt('--size', o.size, 16, 1024), bs: checkInt('--bs', o.bs, 2, 1024), steps: checkInt('--steps', o.steps, 1),
    warmup: checkInt('--warmup', o.warmup, 0), workers, data: String(o.data), threads: checkInt('--threads', o.threads, 0, 64),
    dtype: o.allreduceDtype as ScalingArgs['dtype'], allreduce: o.allreduce as ScalingArgs['allreduce'], json: o.json === true, backend: o.backend as BackendRequest,
    torch: o.torch === true ? '/usr/bin/python3' : typeof o.torch === 'string' ? o.torch : null,
    torchData: o.torchData as ScalingArgs['torchData'], torchLoaderWorkers: checkInt('--torch-loader-workers', o.torchLoaderWorkers, 0, 16),
  };
}

function setupOf(a: ScalingArgs, data: DataBunch): RunSetup {
  return {
    runId: 'bench-scaling', arch: a.arch, size: a.size, bs: a.bs, seed: 42, pretrained: 'none', frozen: false, classes: data.classes,
    dataRoot: data.root, paths: data.paths.map((p) => relative(data.root, p)), labels: Array.from(data.labels), train: Array.from(data.train),
    valid: Array.from(data.valid), allreduce: a.allreduce, allreduceDtype: a.dtype, bucketBytes: 25_000_000, allreduceTimeoutMs: 600_000,
    starAddress: null, threads: a.threads,
  };
}

/** One world size: start, set up, run the steps, stop. */
async function measure(a: ScalingArgs, data: DataBunch, w: number, log: (line: string) => void): Promise<Omit<ScalingRow, 'efficiency'>> {
  const control = new ControlServer({ bind: 'tcp://127.0.0.1:0', heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 120_000, log });
  const endpoint = await control.start();
  const cluster = new Cluster(control, log);
  const workers = new LocalWorkers({ endpoint, args: ['--backend', a.backend, '--heartbeat-interval-ms', '1000', '--heartbeat-timeout-ms', '120000'], stdio: 'ignore' });
  try {
    workers.start(w);
    await cluster.admit(w, 300_000);
    await cluster.announce();
    const ranks = cluster.ranks().map((m) => m.rank);
    log(`W=${w} backend: ${[...new Set(cluster.ranks().map((m) => m.hello.capabilities.backend))].join(', ')} (--backend ${a.backend})`);
    const frame = encodeRunSetup(setupOf(a, data));
    await cluster.request('setup', { byteLength: frame.byteLength }, { frames: [frame], what: 'ready', timeoutMs: 600_000 });
    await cluster.request('stage', { stageIndex: 0, frozen: false }, { timeoutMs: 60_000 });
    const rows: Array<{ wall: number; replies: Reply<StepDoneMessage>[] }> = [];
    const pids = [...workers.pids().values()];
    let cpuBefore: { threads: (ThreadSample | null)[]; coordinator: NodeJS.CpuUsage; machine: MachineSample | null } | null = null;
    let cpuAfter: (ThreadSample | null)[] = [];
    let machineAfter: MachineSample | null = null;
    // CPU window: from the last warm-up step's step-done (workers idle until its commit) to the last step-done, so it
    // holds the measured steps and as many commits (AdamW): the warm-up's, and those of all measured steps but the last.
    const sampleBefore = (): void => { cpuBefore = { threads: pids.map(sampleThreads), coordinator: process.cpuUsage(), machine: sampleMachine() }; };
    if (a.warmup === 0) sampleBefore();
    for (let step = 0; step < a.warmup + a.steps; step++) {
      const t0 = performance.now();
      const done = cluster.gather(ranks, (m: Message): m is StepDoneMessage => m.type === 'step-done' && m.step === step, { what: `step ${step}`, timeoutMs: 1_200_000 });
      await cluster.broadcast({ type: 'step', step, generation: cluster.generation, stageIndex: 0, epoch: 0, stepInEpoch: step, accum: 1, lrs: [1e-5, 1e-4, 1e-3], momentum: 0.9 });
      const replies = await done;
      const wall = (performance.now() - t0) / 1000;
      if (step === a.warmup - 1) sampleBefore();
      if (step === a.warmup + a.steps - 1) {
        cpuAfter = pids.map(sampleThreads);
        machineAfter = sampleMachine();
      }
      await cluster.broadcast({ type: 'commit', step });
      log(`W=${w} step ${step}${step < a.warmup ? ' (warm-up)' : ''}: ${wall.toFixed(2)} s; all-reduce ${replies.map((r) => r.message.allreduceSeconds.toFixed(3)).join('/')} s`);
      if (step >= a.warmup) rows.push({ wall, replies });
    }
    const cpu = stepCpu(cpuBefore!, cpuAfter, process.cpuUsage(cpuBefore!.coordinator), machineAfter, a.steps);
    const stepSeconds = median(rows.map((r) => r.wall));
    const allreduceSeconds = median(rows.map((r) => Math.min(...r.replies.map((x) => x.message.allreduceSeconds))));
    return {
      workers: w, stepSeconds, imagesPerSecond: (w * a.bs) / stepSeconds,
      computeSeconds: median(rows.map((r) => Math.max(...r.replies.map((x) => x.message.forwardBackwardSeconds)))),
      dataWaitSeconds: median(rows.map((r) => Math.max(...r.replies.map((x) => x.message.dataWaitSeconds)))),
      allreduceSeconds, unhiddenAllreduce: median(rows.map((r) => Math.min(...r.replies.map((x) => x.message.allreduceSeconds)) / r.wall)),
      cpu,
    };
  } finally {
    await cluster.broadcast({ type: 'shutdown', reason: 'benchmark done' }).catch(() => undefined);
    await workers.close();
    control.close();
  }
}

/** CPU per step between two samples of every worker (mean over workers) and the coordinator's usage meanwhile. */
function stepCpu(before: { threads: (ThreadSample | null)[]; machine: MachineSample | null }, after: (ThreadSample | null)[], coordinator: NodeJS.CpuUsage,
  machineAfter: MachineSample | null, steps: number): StepCpu | null {
  const splits = after.map((s, i) => (s === null || before.threads[i] == null ? null : cpuBetween(before.threads[i]!, s)));
  if (splits.length === 0 || splits.some((s) => s === null)) return null;
  const per = (f: (s: CpuSplit) => number): number => splits.reduce((t, s) => t + f(s!), 0) / splits.length / steps;
  const names = [...new Set(splits.flatMap((s) => Object.keys(s!.otherSeconds)))].sort();
  return {
    workerSeconds: per((s) => s.totalSeconds), workerMainSeconds: per((s) => s.mainSeconds),
    workerOtherSeconds: Object.fromEntries(names.map((n) => [n, per((s) => s.otherSeconds[n] ?? 0)])),
    workerBusiestOtherSeconds: per((s) => s.busiestOtherSeconds),
    coordinatorSeconds: (coordinator.user + coordinator.system) / 1e6 / steps,
    machine: before.machine === null || machineAfter === null ? null : {
      busySeconds: (machineAfter.busySeconds - before.machine.busySeconds) / steps,
      idleSeconds: (machineAfter.idleSeconds - before.machine.idleSeconds) / steps,
    },
  };
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  // As the coordinator, workers and learn: a bad PETS_* setting is refused before any worker is started (exit 2).
  checkEnvSettings(process.env);
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
  const load = loadavg().map((l) => l.toFixed(2)).join(' ');
  const one = rows.find((r) => r.workers === 1);
  for (const r of rows) r.efficiency = one ? r.imagesPerSecond / (r.workers * one.imagesPerSecond) : Number.NaN;
  const torchModes = a.torchData === 'both' ? (['random', 'photos'] as const) : [a.torchData];
  const torch = a.torch === null ? null : torchModes.flatMap((mode) => torchDdp(a.torch!, a, mode));
  if (a.json) {
    console.log(JSON.stringify({ arch: a.arch, size: a.size, bs: a.bs, dtype: a.dtype, steps: a.steps, warmup: a.warmup, loadAverage: loadavg(), rows,
      ...(torch === null ? {} : { torch }) }, null, 2));
    return;
  }
  console.log(`${a.arch} at ${a.size}px, bs ${a.bs} per worker, --allreduce ${a.allreduce} (${a.dtype}), ${a.steps} measured steps after ${a.warmup} warm-up (medians)`);
  console.log('workers  step_s  img/s   compute_s  data_wait_s  allreduce_s  unhidden_allreduce  efficiency');
  for (const r of rows) {
    const cells = [String(r.workers).padEnd(8), r.stepSeconds.toFixed(2).padEnd(7), r.imagesPerSecond.toFixed(2).padEnd(7), r.computeSeconds.toFixed(2).padEnd(10),
      r.dataWaitSeconds.toFixed(3).padEnd(12), r.allreduceSeconds.toFixed(3).padEnd(12), `${(100 * r.unhiddenAllreduce).toFixed(1)} %`.padEnd(19), Number.isNaN(r.efficiency) ? 'n/a (no 1-worker row)' : `${(100 * r.efficiency).toFixed(1)} %`];
    console.log(cells.join(' '));
  }
  console.log(`CPU seconds per step (process CPU from /proc; load average at the end ${load}):`);
  console.log('workers  worker_cpu  main_thread  other_threads (busiest; by name)                     coordinator_cpu');
  for (const r of rows) {
    if (r.cpu === null) continue;
    const others = Object.entries(r.cpu.workerOtherSeconds).filter(([, v]) => v >= 0.005).map(([n, v]) => `${n} ${v.toFixed(2)}`).join(', ');
    const other = `${(r.cpu.workerSeconds - r.cpu.workerMainSeconds).toFixed(2)} (${r.cpu.workerBusiestOtherSeconds.toFixed(2)}; ${others})`;
    console.log([String(r.workers).padEnd(8), r.cpu.workerSeconds.toFixed(2).padEnd(11), r.cpu.workerMainSeconds.toFixed(2).padEnd(12), other.padEnd(54), r.cpu.coordinatorSeconds.toFixed(3)].join(' '));
  }
  // Images per CPU-second of the whole run (workers + coordinator): the throughput a CPU-bound run gets per core, the
  // figure a loaded machine changes least; and where the machine's core-seconds of a step went.
  console.log(`Per step: images per CPU-second of this run's processes, and the machine's ${availableParallelism()} cores (/proc/stat: this run, other processes, idle):`);
  for (const r of rows) {
    if (r.cpu === null) continue;
    const ours = r.workers * r.cpu.workerSeconds + r.cpu.coordinatorSeconds;
    const m = r.cpu.machine;
    const where = m === null ? 'n/a' : `busy ${m.busySeconds.toFixed(2)} core-s (this run ${ours.toFixed(2)}, others ${Math.max(0, m.busySeconds - ours).toFixed(2)}), ` +
      `idle ${m.idleSeconds.toFixed(2)} core-s = ${(100 * m.idleSeconds / (m.busySeconds + m.idleSeconds)).toFixed(1)} % of the cores`;
    console.log(`${String(r.workers).padEnd(8)} ${((r.workers * a.bs) / ours).toFixed(2)} img/CPU-s; ${where}`);
  }
  if (torch !== null) console.log('PyTorch DDP reference (pets-trainer always decodes and augments the photos: "random" compares it with PyTorch\'s step alone, "photos" with PyTorch reading the same photos):');
  for (const t of torch ?? []) {
    const ours = rows.find((r) => r.workers === t.workers);
    const inputs = t.data === 'photos' ? `photos, DataLoader num_workers=${t.loaderWorkers} per rank (loader CPU ${t.rank0LoaderCpuSecondsPerStep.toFixed(2)} s/step)` : 'random tensors';
    // Per CPU-second: W ranks, each its rank-0-like CPU plus its loader's (rank 0's figures stand for every rank's).
    const torchPerCpu = (t.workers * a.bs) / (t.workers * (t.rank0CpuSecondsPerStep + t.rank0LoaderCpuSecondsPerStep));
    const oursPerCpu = ours?.cpu ? (ours.workers * a.bs) / (ours.workers * ours.cpu.workerSeconds + ours.cpu.coordinatorSeconds) : null;
    console.log(`${t.framework}, ${t.workers} × 1 thread, ${inputs}: ${t.stepSeconds.toFixed(2)} s/step, ${t.imagesPerSecond.toFixed(2)} img/s, rank 0 CPU ${t.rank0CpuSecondsPerStep.toFixed(2)} s/step` +
      `, ${torchPerCpu.toFixed(2)} img/CPU-s` +
      (ours ? `; pets-trainer / PyTorch: ${(ours.imagesPerSecond / t.imagesPerSecond).toFixed(2)}× img/s` : '') +
      (oursPerCpu !== null ? `, ${(oursPerCpu / torchPerCpu).toFixed(2)}× img/CPU-s` : ''));
  }
}

/** One line of `scripts/bench-torch-ddp.py`. */
interface TorchDdpRow {
  readonly framework: string;
  readonly workers: number;
  readonly stepSeconds: number;
  readonly imagesPerSecond: number;
  readonly rank0CpuSecondsPerStep: number;
  readonly data: 'random' | 'photos';
  readonly loaderWorkers: number;
  /** CPU seconds per step of rank 0's DataLoader processes (0 with random inputs). */
  readonly rank0LoaderCpuSecondsPerStep: number;
}

/** Runs the PyTorch DDP reference for the same world sizes. @throws TrainerError ERR_BACKEND when it fails */
function torchDdp(python: string, a: ScalingArgs, mode: 'random' | 'photos'): TorchDdpRow[] {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'bench-torch-ddp.py');
  const inputs = mode === 'photos' ? ['--data', 'photos', a.data, '--num-workers', String(a.torchLoaderWorkers)] : ['--data', 'random'];
  const res = spawnSync(python, [script, '--arch', a.arch, '--size', String(a.size), '--bs', String(a.bs),
    '--workers', a.workers.join(','), '--steps', String(a.steps), '--warmup', String(a.warmup), ...inputs], { encoding: 'utf8' });
  const lines = (res.stdout ?? '').trim().split('\n').filter((l) => l.startsWith('{'));
  if (res.status !== 0 || lines.length !== a.workers.length) {
    const why = res.error?.message ?? res.stderr?.trim().split('\n').pop() ?? `exit ${res.status}`;
    throw new TrainerError('ERR_BACKEND', `PyTorch DDP reference (${python} ${script}) failed: ${why}`);
  }
  return lines.map((l) => JSON.parse(l) as TorchDdpRow);
}

main().catch((err: unknown) => {
  // --help (commander's exitOverride throws after printing it) ends with 0; a bad flag, already said by commander, 2.
  if (err instanceof CommanderError) { process.exitCode = err.exitCode === 0 ? 0 : 2; return; }
  console.error(`bench-scaling: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = isTrainerError(err, 'ERR_BAD_FLAG') || isTrainerError(err, 'ERR_BAD_CONFIG') ? 2 : 1;
});
