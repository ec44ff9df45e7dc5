/**
 * Helpers of the fault-tolerance integration tests (`fault-*.test.ts`): a tiny Pets fixture, the real coordinator
 * started from dist/ (or the sources under tsx; support/entry.ts) as a child process in its own process group, awaitable output lines, the worker pids it
 * logs ("worker joined: pid N"), process liveness checks, a comparison of two saved models tensor by tensor, and
 * `useTinyRunFixture`, the before/after scaffolding every test file of such runs shares.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { commandModule } from './support/entry.js';

/** Project root (two levels above this file). */
export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The shared Pets sample photos (8 per breed), read in place through symlinks, never copied. */
export const SHARED_IMAGES = path.resolve(PROJECT_ROOT, '../shared/datasets/oxford-iiit-pet-sample/images');

/**
 * Makes `<dir>/images/` with symlinks to the shared photos of the first `breeds` breeds (sorted).
 * @returns the `--data` value
 */
export function makeFixture(dir: string, breeds = 2): string {
  const all = readdirSync(SHARED_IMAGES).filter((f) => f.endsWith('.jpg')).sort();
  const names = [...new Set(all.map((f) => f.replace(/_\d+\.jpg$/, '')))].slice(0, breeds);
  mkdirSync(path.join(dir, 'images'), { recursive: true });
  for (const f of all.filter((x) => names.includes(x.replace(/_\d+\.jpg$/, '')))) symlinkSync(path.join(SHARED_IMAGES, f), path.join(dir, 'images', f));
  return dir;
}

/**
 * Flags of the tiny run every fault test uses: resnet18 at 32 px, bs 2, 2 breeds (13 train / 3 valid images),
 * stage-1 2 epochs frozen + stage-2 1 epoch unfrozen (2 steps per epoch with 3 workers: 6 steps), no lr_find
 * (its 100-step sweep is too slow for the suite), WASM, ephemeral ports. The workers are local, so their death is
 * seen from their processes (exit, closed pipe) and the heartbeat flags judge no one: a loaded machine that
 * delays heartbeats by seconds cannot make a test fail.
 */
export function tinyRunArgs(data: string, runDir: string, workers = 3): string[] {
  return ['--workers', String(workers), '--data', data, '--pretrained', 'none', '--arch', 'resnet18', '--size', '32', '--bs', '2',
    '--epochs', '2', '--fine-tune-epochs', '1', '--no-lr-find', '--backend', 'wasm', '--metrics-port', '-1',
    '--bind', 'tcp://127.0.0.1:0', '--run-dir', runDir, '--plain', '--heartbeat-interval-ms', '300', '--heartbeat-timeout-ms', '4000'];
}

/**
 * Upper bound of waits for something that must happen soon (processes gone, a log line after a signal). Only a
 * hang guard: no assertion depends on how fast it happens, since a loaded machine stretches everything.
 */
export const HANG_GUARD_MS = 60_000;

/** A committed step's progress line (`epoch 0: 2/4 batches, …`, one per optimizer step, `--plain`). */
const STEP_LINE = /^epoch \d+: \d+\/\d+ batches/;
/** A stage's header, printed before its first step (`stage-1: fit_one_cycle(2, …) — frozen, 18 steps`). */
const STAGE_LINE = /^\S+: fit_one_cycle\(/;

/** How a coordinator process ended. */
export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A running coordinator (`node [--import tsx] <entry> ...args`, support/entry.ts) in its own process group. */
export class CoordinatorRun {
  /** stdout and stderr, interleaved as received. */
  out = '';
  /** stdout alone (results: the plan, epoch tables, saved paths; progress lines go to stderr). */
  stdout = '';
  readonly exited: Promise<Exit>;
  readonly child: ChildProcess;
  private readonly watchers: { re: RegExp; resolve: () => void }[] = [];
  /** Arrival times (ms, `Date.now()`) of stage headers (`stage-1: fit_one_cycle(…`) and progress lines, in order. */
  private readonly marks: { at: number; step: boolean }[] = [];

  /** @param env - extra environment variables (e.g. test hooks), inherited by the workers it spawns */
  constructor(args: readonly string[], entryDir: string, env: Record<string, string> = {}) {
    const m = commandModule('coordinator');
    const entry = path.join(entryDir, 'coordinator-entry.mjs');
    writeFileSync(entry, `const m = await import(${JSON.stringify(pathToFileURL(m.file).href)});\nprocess.exitCode = await m.main(process.argv.slice(2));\n`);
    this.child = spawn(process.execPath, [...m.execArgv, entry, ...args], { cwd: PROJECT_ROOT, env: { ...process.env, ...env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const onData = (): ((c: Buffer) => void) => {
      let partial = ''; // this stream's unfinished last line
      return (c) => {
        this.out += c.toString();
        const lines = (partial + c.toString()).split('\n');
        partial = lines.pop()!;
        for (const line of lines) {
          if (STEP_LINE.test(line)) this.marks.push({ at: Date.now(), step: true });
          else if (STAGE_LINE.test(line)) this.marks.push({ at: Date.now(), step: false });
        }
        for (const w of [...this.watchers]) if (w.re.test(this.out)) { this.watchers.splice(this.watchers.indexOf(w), 1); w.resolve(); }
      };
    };
    const onStdout = onData();
    this.child.stdout!.on('data', (c: Buffer) => { this.stdout += c.toString(); onStdout(c); });
    this.child.stderr!.on('data', onData());
    this.exited = new Promise((resolve) => this.child.once('close', (code, signal) => resolve({ code, signal })));
  }

  /** Resolves when `re` matches the whole output so far (stdout and stderr); rejects on exit or after `timeoutMs`. */
  waitFor(re: RegExp, timeoutMs: number): Promise<void> {
    if (re.test(this.out)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${re} after ${timeoutMs} ms:\n${this.out.slice(-3000)}`)), timeoutMs);
      this.watchers.push({ re, resolve: () => { clearTimeout(timer); resolve(); } });
      void this.exited.then(() => { clearTimeout(timer); if (!re.test(this.out)) reject(new Error(`exited before ${re}:\n${this.out.slice(-3000)}`)); });
    });
  }

  /** Every worker pid the coordinator logged as joined, in order. */
  workerPids(): number[] {
    return [...this.out.matchAll(/worker joined: pid (\d+)/g)].map((m) => Number(m[1]));
  }

  /** Worker pids that joined and are still alive. */
  liveWorkerPids(): number[] {
    return this.workerPids().filter(alive);
  }

  /** Committed steps so far, counted from the progress lines (`epoch e: k/n batches`). */
  committedSteps(): number {
    return [...this.out.matchAll(/^epoch \d+: \d+\/\d+ batches/gm)].length;
  }

  /**
   * The shortest time one optimizer step was seen to take so far, ms: the least positive gap between a progress line
   * and the line before it (the previous step's, or its stage's header for a stage's first step, which includes the
   * stage's set-up and so only ever overestimates). Gaps that hold a validation, a checkpoint or a respawn are longer,
   * so the least gap is an undisturbed step. Tests that must act *during* a later step wait a fraction of this after
   * a progress line, never a fixed delay: a fixed delay that spans a step on a loaded machine spans the rest of the
   * run on a fast one. `undefined` before the first step.
   */
  stepMs(): number | undefined {
    const gaps = this.marks.slice(1).flatMap((m, i) => (m.step && m.at > this.marks[i]!.at ? [m.at - this.marks[i]!.at] : []));
    return gaps.length > 0 ? Math.min(...gaps) : undefined;
  }

  /** Kills the whole process group (coordinator and workers) with SIGKILL; safe to call twice. */
  killGroup(): void {
    try {
      process.kill(-this.child.pid!, 'SIGKILL');
    } catch { /* already gone */ }
  }
}

/** Whether a process exists (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Polls until none of `pids` is alive. @returns the ones still alive after `timeoutMs` */
export async function waitGone(pids: readonly number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return pids.filter(alive);
}

/** What `useTinyRunFixture` gives a test file; `dir` and `data` are read once its `before` hook has run. */
export interface TinyRunFixture {
  /** The file's temporary folder (`<tmpdir>/<prefix>XXXXXX`): run directories and entry scripts go under it. */
  readonly dir: string;
  /** The `--data` value: `<dir>/data`, made by `makeFixture` (2 breeds of the shared sample photos). */
  readonly data: string;
  /**
   * Starts a coordinator (`new CoordinatorRun(args, dir, env)`) and registers it, so that the `after` hook kills its
   * process group and waits until it and its workers are gone, whatever the test did.
   * @param env - extra environment variables, as for `CoordinatorRun`
   */
  start(args: readonly string[], env?: Record<string, string>): CoordinatorRun;
}

/** Options of `useTinyRunFixture`. */
export interface TinyRunFixtureOptions {
  /** Run by the `after` hook once every run's group is killed and before the folder is removed (other processes). */
  readonly teardown?: () => void | Promise<void>;
}

/**
 * Registers the `before`/`after` hooks (node:test, in the current suite) that the tiny-run test files share:
 * `before` makes a temporary folder named `prefix…` and the photo fixture in it; `after` SIGKILLs the process group of
 * every run started through the returned `start` (coordinator and local workers), runs `options.teardown`, waits
 * (at most `HANG_GUARD_MS`) until those processes are gone, then removes the folder.
 * @param prefix - the temporary folder's name prefix, e.g. `'fault-signals-'`
 */
export function useTinyRunFixture(prefix: string, options: TinyRunFixtureOptions = {}): TinyRunFixture {
  let dir = '';
  let data = '';
  const started: CoordinatorRun[] = [];
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), prefix));
    data = makeFixture(path.join(dir, 'data'));
  });
  after(async () => {
    for (const run of started) run.killGroup();
    await options.teardown?.();
    await waitGone(started.flatMap((r) => [r.child.pid!, ...r.workerPids()]), HANG_GUARD_MS);
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });
  return {
    get dir() { return dir; },
    get data() { return data; },
    start(args, env = {}) {
      const run = new CoordinatorRun(args, dir, env);
      started.push(run);
      return run;
    },
  };
}

/** Tensors of a safetensors file (float32 only, as the trainer writes them): name → raw bytes. */
export function readTensors(file: string): Map<string, Buffer> {
  const b = readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  const data = b.subarray(8 + n);
  const out = new Map<string, Buffer>();
  for (const [name, v] of Object.entries(header)) if (name !== '__metadata__') out.set(name, data.subarray(v.data_offsets[0], v.data_offsets[1]));
  return out;
}

/** Names of the tensors whose bytes differ between two saved models (or exist in only one). */
export function differingTensors(a: string, b: string): string[] {
  const ta = readTensors(a), tb = readTensors(b);
  const names = new Set([...ta.keys(), ...tb.keys()]);
  return [...names].filter((n) => !ta.has(n) || !tb.has(n) || !ta.get(n)!.equals(tb.get(n)!)).sort();
}
