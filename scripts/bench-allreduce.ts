/**
 * All-reduce benchmark on loopback: ring vs shared memory (`shm`, same-host ranks) vs star (through a coordinator)
 * vs the raw link.
 *
 *   npm run bench:allreduce [-- --sizes 1,4,16,64,128 --workers 2,3,4 --reps 3 --json]
 *                           [--ring-transport ipc|tcp] [--slice-kb 1024] [--no-star] [--no-shm]
 *                           [--overlap-iters 100]
 *
 * The ring runs as the workers run it: pipelined slices of `--slice-kb`, over Unix sockets between processes of one
 * host (`--ring-transport tcp` forces TCP loopback, as between hosts), the native add when the addon loads
 * (`PETS_RING_ADD=js` forces the JavaScript loop).
 *
 * For each world size N it spawns N worker processes and times `allReduce` (average) of float32 buffers of each
 * size (MiB = 2^20 bytes). Bus bandwidth is NCCL's definition (nccl-tests PERFORMANCE.md):
 * busBw = bytes × 2(N−1)/N / time, comparable to the link bandwidth whatever N. The link's limit is measured in
 * the same run: the same bytes sent point-to-point over one ZeroMQ PAIR socket between two processes (one message
 * plus a 1-byte ack per repetition); the `link-ipc` row is the same over a Unix socket (its of_link: against TCP).
 * Times are per-call medians over `--reps` (the slowest rank's). Processes are children of this script, driven
 * over Node IPC. The `shm` rows run the shared-memory all-reduce of `--allreduce auto` (src/worker/allreduce/shm.ts)
 * between the same kind of processes, right after the ring rows of the same N; their busGB/s applies the same
 * formula (the ring's bytes per rank over the time), so that the two compare directly although shm moves no bytes
 * over a link, and their of_link is against the TCP link as the ring's.
 *
 * `--overlap-iters M` (millions; 0 = off) adds, for the shared-memory all-reduce, a model of a training step on
 * each rank: a CPU-bound "backward" of M million loop iterations on the JavaScript thread (100 ≈ 1.2 CPU-s here,
 * about a ResNet34 128 px bs 16 step), and the buffer all-reduced as 4 buckets, (a) after it, as the trainer does, and
 * (b) overlapped as DDP does: the backward runs in 4 parts and bucket i's all-reduce is started right after part i
 * (it runs on a libuv thread while the next part computes), all awaited at the end. The `overlap` rows print both
 * step times (slowest rank, medians) and their ratio: how much of the all-reduce overlap can hide when each rank
 * also keeps a core busy computing (on a 2-core machine with 2 ranks: every core).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { Pair } from 'zeromq';
import { TrainerError } from '../src/contract/errors.js';
import { checkEnvSettings } from '../src/contract/env-settings.js';
import { errorExit } from '../src/contract/cli-error.js';
import { ringBytesPerRank } from '../src/training/allreduce/ring-schedule.js';
import type { AllReducer, Membership } from '../src/training/allreduce/types.js';
import { StarReduceServer } from '../src/coordinator/star-reduce.js';
import { RingAllReduce } from '../src/worker/allreduce/ring.js';
import { loadShmModule, ShmAllReduce } from '../src/worker/allreduce/shm.js';
import { StarAllReduce } from '../src/worker/allreduce/star.js';
import { hostIdentity } from '../src/contract/host-identity.js';
import { median } from '../src/contract/median.js';

const SCRIPT = fileURLToPath(import.meta.url);
const MIB = 1024 * 1024;

/** Benchmark flags. */
interface BenchArgs {
  readonly sizes: number[];
  readonly workers: number[];
  readonly reps: number;
  readonly json: boolean;
  readonly role?: string;
  readonly rank: number;
  readonly ringTransport: 'ipc' | 'tcp';
  readonly sliceKb: number;
  readonly star: boolean;
  readonly shm: boolean;
  /** Millions of iterations of the modelled backward of the overlap rows; 0: no such rows. */
  readonly overlapIters: number;
}

/** One measured row. */
interface Row {
  readonly algo: 'ring' | 'shm' | 'star' | 'link' | 'link-ipc';
  readonly workers: number;
  readonly sizeMiB: number;
  readonly seconds: number;
  /**
   * CPU seconds (user + system, all threads, ZeroMQ's I/O thread included) per call: ring/star the busiest rank's
   * median, link the sender's plus the receiver's. Less stretched by other jobs on a shared machine than wall time.
   */
  readonly cpuSeconds: number;
  /** Bus bandwidth for ring/star, plain bandwidth for the link, in GB/s (10^9 bytes/s). */
  readonly busGBps: number;
  /**
   * Ring rows: the address each rank's PUSH sends to (`ipc://` = Unix socket, `tcp://` = loopback TCP), by rank, so
   * that a row says which transport it measured (`--ring-transport ipc` falls back to TCP when a rank's neighbour
   * is not proven on its host).
   */
  readonly sendsTo?: readonly string[];
  /** busGBps of this row / link GB/s for the same size (1 for the link itself). */
  readonly ofLink: number;
}

function intList(flag: string, min: number): (v: string) => number[] {
  return (v) => {
    const xs = v.split(',').map(Number);
    if (xs.length === 0 || !xs.every((x) => Number.isInteger(x) && x >= min)) {
      throw new TrainerError('ERR_BAD_FLAG', `${flag} must be a comma list of integers ≥ ${min}, got ${v}`);
    }
    return xs;
  };
}

function parseArgs(argv: string[]): BenchArgs {
  const program = new Command('bench-allreduce')
    .option('--sizes <MiB,...>', 'buffer sizes in MiB', intList('--sizes', 1), [1, 4, 16, 64, 128])
    .option('--workers <N,...>', 'world sizes', intList('--workers', 2), [2, 3, 4])
    .option('--reps <n>', 'timed repetitions per size (after 1 warm-up)', intList('--reps', 1), [3])
    .option('--json', 'print JSON rows instead of a table', false)
    .option('--ring-transport <t>', 'ring between local processes: ipc (Unix sockets, as local workers) or tcp', 'ipc')
    .option('--slice-kb <k>', 'ring slice size in KiB (RingOptions.sliceBytes)', intList('--slice-kb', 4), [1024])
    .option('--no-star', 'skip the star baseline')
    .option('--no-shm', 'skip the shared-memory all-reduce')
    .option('--overlap-iters <M>', 'overlap rows: millions of iterations of the modelled backward (0 = none)', intList('--overlap-iters', 0), [0])
    .option('--role <role>', 'internal: child role')
    .option('--rank <r>', 'internal: child rank', intList('--rank', 0), [0]);
  const o = program.parse(argv).opts<{ sizes: number[]; workers: number[]; reps: number[]; json: boolean; role?: string; rank: number[];
    ringTransport: string; sliceKb: number[]; star: boolean; shm: boolean; overlapIters: number[] }>();
  if (o.ringTransport !== 'ipc' && o.ringTransport !== 'tcp') {
    throw new TrainerError('ERR_BAD_FLAG', `--ring-transport must be ipc or tcp, got ${JSON.stringify(o.ringTransport)}`);
  }
  return { sizes: o.sizes, workers: o.workers, reps: o.reps[0], json: o.json, role: o.role, rank: o.rank[0],
    ringTransport: o.ringTransport, sliceKb: o.sliceKb[0], star: o.star, shm: o.shm, overlapIters: o.overlapIters[0] };
}

// ---------------------------------------------------------------------------------------------------------------
// Parent side: child processes driven over IPC.

type Reply = { kind: string; address?: string; local?: string; sendsTo?: string; seconds?: number; cpu?: number; message?: string };

/** A benchmark child process with a reply queue. */
class Proc {
  readonly child: ChildProcess;
  private readonly inbox: Reply[] = [];
  private waiter: (() => void) | undefined;

  constructor(role: string, rank: number, extra: string[] = []) {
    this.child = spawn(process.execPath, ['--import', 'tsx', SCRIPT, '--role', role, '--rank', String(rank), ...extra], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (m: Reply) => {
      this.inbox.push(m);
      this.waiter?.();
    });
    this.child.on('exit', () => this.waiter?.());
  }

  /** Next reply; fails when the child exits or reports an error. */
  async next(): Promise<Reply> {
    while (this.inbox.length === 0) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`child ${this.child.pid} exited`);
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
    const m = this.inbox.shift() as Reply;
    if (m.kind === 'error') throw new Error(`child ${this.child.pid}: ${m.message}`);
    return m;
  }

  send(m: object): void {
    this.child.send(m);
  }

  stop(): void {
    if (this.child.connected) this.send({ kind: 'exit' });
  }
}

/** Times `reps` calls on every child; the collective's time (and CPU) is the slowest (busiest) rank's median. */
async function timeOnAll(procs: Proc[], bytes: number, reps: number): Promise<{ seconds: number; cpu: number }> {
  procs.forEach((p) => p.send({ kind: 'run', bytes, reps }));
  const replies = await Promise.all(procs.map((p) => p.next()));
  return { seconds: Math.max(...replies.map((r) => r.seconds as number)), cpu: Math.max(...replies.map((r) => r.cpu as number)) };
}

async function benchCollective(algo: 'ring' | 'shm' | 'star', n: number, args: BenchArgs, link: Map<number, number>): Promise<Row[]> {
  const server = algo === 'star' ? new StarReduceServer() : undefined;
  const address = server === undefined ? '' : await server.start();
  server?.reconfigure(n, 1);
  const extra = ['--ring-transport', args.ringTransport, '--slice-kb', String(args.sliceKb)];
  const procs = Array.from({ length: n }, (_, rank) => new Proc(algo, rank, extra));
  try {
    const hellos = await Promise.all(procs.map((p) => p.next()));
    const peers = hellos.map((h) => h.address as string);
    const localPeers = hellos.map((h) => h.local);
    procs.forEach((p, rank) => p.send({ kind: 'membership', peers, localPeers, rank, generation: 1, worldSize: n, address }));
    const ready = await Promise.all(procs.map((p) => p.next()));
    const sendsTo = algo === 'ring' ? ready.map((r) => r.sendsTo ?? '') : undefined;
    if (sendsTo !== undefined && !args.json) console.log(`(ring N=${n} --ring-transport ${args.ringTransport}: ${sendsTo.map((a, r) => `rank ${r} sends to ${a}`).join(', ')})`);
    const rows: Row[] = [];
    for (const sizeMiB of args.sizes) {
      const bytes = sizeMiB * MIB;
      const { seconds, cpu } = await timeOnAll(procs, bytes, args.reps);
      const busGBps = ringBytesPerRank(bytes, n) / seconds / 1e9;
      rows.push({ algo, workers: n, sizeMiB, seconds, cpuSeconds: cpu, busGBps, ofLink: busGBps / (link.get(sizeMiB) ?? NaN), ...(sendsTo === undefined ? {} : { sendsTo }) });
      report(args, rows[rows.length - 1]);
    }
    return rows;
  } finally {
    procs.forEach((p) => p.stop());
    await server?.close();
  }
}

async function benchLink(args: BenchArgs, transport: 'tcp' | 'ipc', tcpLink?: Map<number, number>): Promise<Row[]> {
  const receiver = new Proc('link-recv', 0, ['--ring-transport', transport]);
  const sender = new Proc('link-send', 1);
  try {
    const { address } = await receiver.next();
    await sender.next();
    sender.send({ kind: 'membership', peers: [address] });
    await sender.next();
    const rows: Row[] = [];
    for (const sizeMiB of args.sizes) {
      receiver.send({ kind: 'run', bytes: sizeMiB * MIB, reps: args.reps });
      const { seconds, cpu } = await timeOnAll([sender], sizeMiB * MIB, args.reps);
      const cpuSeconds = cpu + ((await receiver.next()).cpu as number);
      const busGBps = (sizeMiB * MIB) / seconds / 1e9;
      const ofLink = tcpLink === undefined ? 1 : busGBps / (tcpLink.get(sizeMiB) ?? NaN);
      rows.push({ algo: transport === 'tcp' ? 'link' : 'link-ipc', workers: 2, sizeMiB, seconds, cpuSeconds, busGBps, ofLink });
      report(args, rows[rows.length - 1]);
    }
    return rows;
  } finally {
    sender.stop();
    receiver.stop();
  }
}

/** One overlap row: a modelled step with its all-reduce after the backward, and overlapped with it. */
interface OverlapRow {
  readonly workers: number;
  readonly sizeMiB: number;
  /** Step seconds (backward, then 4 buckets), slowest rank's median. */
  readonly afterSeconds: number;
  /** Step seconds with bucket i started after part i of the backward, slowest rank's median. */
  readonly overlappedSeconds: number;
  /** The all-reduce alone (4 buckets, no backward), slowest rank's median. */
  readonly allreduceSeconds: number;
  /** CPU seconds per step, busiest rank's median: after / overlapped. */
  readonly afterCpuSeconds: number;
  readonly overlappedCpuSeconds: number;
}

async function benchOverlap(n: number, args: BenchArgs): Promise<OverlapRow[]> {
  const procs = Array.from({ length: n }, (_, rank) => new Proc('shm', rank));
  try {
    const hellos = await Promise.all(procs.map((p) => p.next()));
    const peers = hellos.map((h) => h.address as string);
    procs.forEach((p, rank) => p.send({ kind: 'membership', peers, rank, generation: 1, worldSize: n }));
    await Promise.all(procs.map((p) => p.next()));
    const rows: OverlapRow[] = [];
    if (!args.json) console.log(`overlap   N   MiB  backward_M  after_ms  overlapped_ms  overlapped/after  allreduce_alone_ms  cpu_ms after/overlapped`);
    for (const sizeMiB of args.sizes) {
      procs.forEach((p) => p.send({ kind: 'overlap', bytes: sizeMiB * MIB, reps: args.reps, iters: args.overlapIters * 1e6 }));
      const replies = await Promise.all(procs.map((p) => p.next()));
      const most = (k: string): number => Math.max(...replies.map((r) => (r as unknown as Record<string, number>)[k]!));
      const row: OverlapRow = { workers: n, sizeMiB, afterSeconds: most('after'), overlappedSeconds: most('overlapped'), allreduceSeconds: most('alone'),
        afterCpuSeconds: most('afterCpu'), overlappedCpuSeconds: most('overlappedCpu') };
      rows.push(row);
      if (!args.json) {
        console.log([`overlap`, String(n).padStart(5), String(sizeMiB).padStart(5), String(args.overlapIters).padStart(11), (row.afterSeconds * 1e3).toFixed(0).padStart(9),
          (row.overlappedSeconds * 1e3).toFixed(0).padStart(14), (row.overlappedSeconds / row.afterSeconds).toFixed(3).padStart(17),
          (row.allreduceSeconds * 1e3).toFixed(0).padStart(19), `${(row.afterCpuSeconds * 1e3).toFixed(0)}/${(row.overlappedCpuSeconds * 1e3).toFixed(0)}`.padStart(24)].join(' '));
      }
    }
    return rows;
  } finally {
    procs.forEach((p) => p.stop());
  }
}

function report(args: BenchArgs, r: Row): void {
  if (args.json) return;
  const cells = [r.algo.padEnd(8), String(r.workers).padStart(2), String(r.sizeMiB).padStart(6),
    (r.seconds * 1e3).toFixed(1).padStart(10), (r.cpuSeconds * 1e3).toFixed(1).padStart(9), r.busGBps.toFixed(3).padStart(9), r.ofLink.toFixed(2).padStart(8)];
  console.log(cells.join('  '));
}

async function runParent(args: BenchArgs): Promise<void> {
  if (!args.json) console.log('algo       N   MiB     time_ms   cpu_ms   busGB/s  of_link');
  const linkRows = await benchLink(args, 'tcp');
  const link = new Map(linkRows.map((r) => [r.sizeMiB, r.busGBps]));
  const rows = [...linkRows, ...(await benchLink(args, 'ipc', link))];
  const shm = loadShmModule();
  if (args.shm && 'reason' in shm && !args.json) console.log(`(no shm rows: ${shm.reason})`);
  for (const n of args.workers) {
    rows.push(...(await benchCollective('ring', n, args, link)));
    if (args.shm && 'module' in shm) rows.push(...(await benchCollective('shm', n, args, link)));
    if (args.star) rows.push(...(await benchCollective('star', n, args, link)));
  }
  const overlap: OverlapRow[] = [];
  if (args.overlapIters > 0 && 'module' in shm) for (const n of args.workers) overlap.push(...(await benchOverlap(n, args)));
  if (args.json) console.log(JSON.stringify({ measuredUnderLoad: true, rows, ...(overlap.length > 0 ? { overlap } : {}) }, null, 2));
}

// ---------------------------------------------------------------------------------------------------------------
// Child side.

const reply = (m: object): void => void process.send?.(m);

/** Child loop shared by all roles: `setup` on membership, `run` on each timing request. */
function serve(setup: (m: Record<string, unknown>) => Promise<void | object>, run: (bytes: number, reps: number) => Promise<{ seconds: number; cpu: number }>,
  close: () => Promise<void>, overlap?: (bytes: number, reps: number, iters: number) => Promise<object>): void {
  process.on('message', (m: Record<string, unknown>) => {
    const job = async (): Promise<void> => {
      if (m.kind === 'membership') return reply({ kind: 'ready', ...(await setup(m) ?? {}) });
      if (m.kind === 'run') return reply({ kind: 'timing', ...(await run(m.bytes as number, m.reps as number)) });
      if (m.kind === 'overlap' && overlap !== undefined) return reply({ kind: 'overlap', ...(await overlap(m.bytes as number, m.reps as number, m.iters as number)) });
      await close();
      process.disconnect();
    };
    job().catch((err: unknown) => reply({ kind: 'error', message: String(err) }));
  });
}

async function timeCalls(reducer: AllReducer, bytes: number, reps: number, stepBase: { next: number }): Promise<{ seconds: number; cpu: number }> {
  const buffer = new Float32Array(bytes / 4).fill(reducer.rank + 1);
  await reducer.allReduce(buffer, { step: stepBase.next++, bucket: 0 }, { average: true }); // warm-up and barrier
  const times: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await reducer.allReduce(buffer, { step: stepBase.next++, bucket: 0 }, { average: true });
    times.push((performance.now() - t0) / 1e3);
    cpus.push(cpuSecondsSince(c0));
  }
  return { seconds: median(times), cpu: median(cpus) };
}

/** The modelled backward: `iters` iterations of dependent float arithmetic on this thread (≈ 12 ns each here). */
function burn(iters: number): number {
  let x = 0;
  for (let i = 0; i < iters; i++) x = (x * 1.0000001 + i) % 1e9;
  return x;
}

/**
 * The overlap rows' child side (see the module comment): per rep, the all-reduce alone, a step with the all-reduce
 * after the backward and one with bucket i started after part i; medians of wall and CPU seconds.
 */
async function timeOverlap(reducer: AllReducer, bytes: number, reps: number, iters: number, stepBase: { next: number }): Promise<object> {
  const buffer = new Float32Array(bytes / 4).fill(reducer.rank + 1);
  const parts = 4;
  const bucket = (i: number): Float32Array => buffer.subarray(Math.floor((i * buffer.length) / parts), Math.floor(((i + 1) * buffer.length) / parts));
  const reduceAll = async (): Promise<void> => {
    const step = stepBase.next++;
    for (let i = 0; i < parts; i++) await reducer.allReduce(bucket(i), { step, bucket: i }, { average: true });
  };
  await reduceAll(); // warm-up and barrier
  const timed = async (f: () => Promise<void>): Promise<[number, number]> => {
    await reducer.allReduce(new Float32Array(1), { step: stepBase.next++, bucket: 0 }); // both ranks start together
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await f();
    return [(performance.now() - t0) / 1e3, cpuSecondsSince(c0)];
  };
  const alone: number[] = [], after: number[] = [], overlapped: number[] = [], afterCpu: number[] = [], overlappedCpu: number[] = [];
  let sink = 0;
  for (let r = 0; r < reps; r++) {
    alone.push((await timed(reduceAll))[0]);
    const [a, ac] = await timed(async () => {
      sink += burn(iters);
      await reduceAll();
    });
    after.push(a);
    afterCpu.push(ac);
    const [o, oc] = await timed(async () => {
      const step = stepBase.next++;
      const calls: Promise<Float32Array>[] = [];
      for (let i = 0; i < parts; i++) {
        sink += burn(iters / parts);
        calls.push(reducer.allReduce(bucket(i), { step, bucket: i }, { average: true }));
        // Let the finished bucket's completion start the next queued one (the reducer serves calls in order).
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      await Promise.all(calls);
    });
    overlapped.push(o);
    overlappedCpu.push(oc);
  }
  return { alone: median(alone), after: median(after), overlapped: median(overlapped), afterCpu: median(afterCpu), overlappedCpu: median(overlappedCpu), sink };
}

/** User + system CPU seconds of this process (every thread) since `c0`. */
function cpuSecondsSince(c0: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
}

async function runCollectiveChild(role: 'ring' | 'shm' | 'star', args: BenchArgs): Promise<void> {
  const steps = { next: 0 };
  const timeoutMs = 120_000;
  if (role === 'shm') {
    const shm = new ShmAllReduce({ timeoutMs });
    // The segment's name is derived from the peers' addresses: each child announces a distinct placeholder.
    serve((m) => shm.reconfigure({ peers: m.peers as string[], rank: m.rank as number, generation: m.generation as number }),
      (b, r) => timeCalls(shm, b, r, steps), () => shm.close(), (b, r, i) => timeOverlap(shm, b, r, i, steps));
    return reply({ kind: 'hello', address: `tcp://127.0.0.1:${process.pid}` });
  }
  if (role === 'ring') {
    const ring = new RingAllReduce({ timeoutMs, ipc: args.ringTransport === 'ipc', sliceBytes: args.sliceKb * 1024 });
    // Node IPC sends JSON: an absent same-host address arrives as null. Every child runs on this host, so each rank's
    // host identity is this one's (as the workers announce in `hello`): without it the ring takes no peer for a
    // same-host one (`sameHostAddress`) and `--ring-transport ipc` would measure TCP.
    const membership = (m: Record<string, unknown>): Membership => ({ peers: m.peers as string[], rank: m.rank as number,
      generation: m.generation as number, localPeers: (m.localPeers as (string | null)[]).map((p) => p ?? undefined),
      hostIds: (m.peers as string[]).map(() => hostIdentity() ?? undefined) });
    serve(async (m) => (await ring.reconfigure(membership(m)), { sendsTo: ring.rightAddress }), (b, r) => timeCalls(ring, b, r, steps), () => ring.close());
    const address = await ring.start();
    return reply({ kind: 'hello', address, local: ring.localAddress === '' ? undefined : ring.localAddress });
  }
  let star: StarAllReduce | undefined;
  const setup = async (m: Record<string, unknown>): Promise<void> => {
    star = new StarAllReduce(m.address as string, { timeoutMs });
    await star.start();
    await star.reconfigure({ rank: m.rank as number, worldSize: m.worldSize as number, generation: 1 });
  };
  serve(setup, (b, r) => timeCalls(star as StarAllReduce, b, r, steps), async () => star?.close());
  reply({ kind: 'hello', address: 'tcp://star' });
}

async function runLinkChild(role: 'link-send' | 'link-recv', args: BenchArgs): Promise<void> {
  const pair = new Pair({ linger: 0, sendHighWaterMark: 0, receiveHighWaterMark: 0 });
  const close = async (): Promise<void> => pair.close();
  if (role === 'link-recv') {
    await pair.bind(args.ringTransport === 'ipc' ? `ipc://${join(tmpdir(), `pets-bench-link-${process.pid}`)}` : 'tcp://127.0.0.1:*');
    // A `run` request returns this side's CPU per message once the sender's reps + 1 messages have been echoed. The
    // count is cumulative over runs: the sender, told at the same time, may start before this side reads its `run`
    // (a loaded machine), and a count started at the `run` then waited forever for echoes already sent.
    let echoed = 0;
    let expected = 0;
    let onEcho: (() => void) | undefined;
    const run = async (_bytes: number, reps: number): Promise<{ seconds: number; cpu: number }> => {
      const c0 = process.cpuUsage();
      expected += reps + 1;
      const until = expected;
      while (echoed < until) await new Promise<void>((resolve) => (onEcho = resolve));
      return { seconds: 0, cpu: cpuSecondsSince(c0) / (reps + 1) };
    };
    serve(async () => {}, run, close);
    reply({ kind: 'hello', address: pair.lastEndpoint });
    for await (const [msg] of pair) {
      await pair.send(Buffer.from([msg.byteLength & 0xff]));
      echoed++;
      onEcho?.();
    }
    return;
  }
  const roundTrip = async (payload: Buffer): Promise<void> => {
    await pair.send(payload);
    await pair.receive();
  };
  const run = async (bytes: number, reps: number): Promise<{ seconds: number; cpu: number }> => {
    const make = (): Buffer => Buffer.alloc(bytes, 1); // fresh buffer per send: ZeroMQ sends large buffers zero-copy
    await roundTrip(make());
    const times: number[] = [];
    const cpus: number[] = [];
    for (let i = 0; i < reps; i++) {
      const payload = make(); // allocated outside the timed region: the link's limit, not our copies
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      await roundTrip(payload);
      times.push((performance.now() - t0) / 1e3);
      cpus.push(cpuSecondsSince(c0));
    }
    return { seconds: median(times), cpu: median(cpus) };
  };
  serve(async (m) => pair.connect((m.peers as string[])[0]), run, close);
  reply({ kind: 'hello' });
}

// As the coordinator, workers and learn: a bad PETS_* setting (PETS_RING_ADD=JS timed the native sums) is refused
// before anything is timed, in one line, exit 2. The children inherit the environment the parent checked.
try {
  checkEnvSettings(process.env);
} catch (err) {
  process.exit(errorExit('bench-allreduce', err));
}
const args = parseArgs(process.argv);
// A child whose parent is gone (killed, or a test's timeout) exits instead of holding its sockets forever.
if (args.role !== undefined) process.once('disconnect', () => process.exit(0));
if (args.role === 'ring' || args.role === 'shm' || args.role === 'star') await runCollectiveChild(args.role, args);
else if (args.role === 'link-send' || args.role === 'link-recv') await runLinkChild(args.role, args);
else await runParent(args);
