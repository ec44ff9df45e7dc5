/**
 * Local worker processes: one per GPU (pinned with `CUDA_VISIBLE_DEVICES`) or, without GPUs, one per CPU core
 * (the WASM backend runs one thread per process). Spawns, respawns and stops them; reports every exit.
 *
 * Death is seen from the process itself, never guessed from silence (as torchrun's local agent watches its
 * children): each child gets an IPC pipe, and the first of "the pipe closed" or "the process exited" is reported
 * at once as `lost`. A busy machine can delay heartbeats by seconds; it cannot fake an exit. The pipe also works
 * the other way: a worker whose coordinator died sees its end of the pipe close and exits (see `worker/cli.ts`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readdirSync } from 'node:fs';
import { siblingEntry } from '../training/entry.js';
import { WORKER_SLOT_ENV, isWorkerExitNotice, type WorkerExitNotice } from '../contract/local-pipe.js';
import { COORDINATOR_BUILD_ENV, loadedBuild } from '../contract/build-stamp.js';

/** Options of {@link LocalWorkers}. */
export interface LocalWorkersOptions {
  /** Coordinator endpoint the workers connect to, e.g. `tcp://127.0.0.1:5555`. */
  readonly endpoint: string;
  /** Extra CLI arguments for every worker (e.g. `--backend wasm --data <dir>`). */
  readonly args: readonly string[];
  /** Number of visible GPUs (null = detect from the NVIDIA driver). */
  readonly gpus?: number | null;
  /** Where the workers' stdout/stderr go (default: inherited). */
  readonly stdio?: 'inherit' | 'pipe' | 'ignore';
  /** Time between SIGTERM and SIGKILL on close, milliseconds (default 5000). */
  readonly killTimeoutMs?: number;
  /**
   * The build the workers must run (`contract/build-stamp.ts`): a worker loaded from another refuses to start.
   * Default: this process's own ({@link loadedBuild}; null when run from the sources: nothing is checked).
   */
  readonly build?: string | null;
}

/** Emitted as `exit` when a local worker process ends. */
export interface WorkerExit {
  /** Slot index (0-based) of the process; a respawn reuses the slot. */
  readonly slot: number;
  readonly pid: number;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** True when the exit was asked for by {@link LocalWorkers.close} or {@link LocalWorkers.retire}. */
  readonly expected: boolean;
  /** The error the worker said it ended on (its {@link WorkerExitNotice}), e.g. `ERR_BACKEND: …`; null if none. */
  readonly error: string | null;
}

/**
 * How a worker process ended, for logs and errors: `exited with code 1: ERR_BACKEND: …` (with the error the worker
 * said it ended on, when it said one) or `exited on SIGKILL`.
 * @param when - words placed before the error, e.g. ` before joining`
 */
export function describeExit(e: Pick<WorkerExit, 'code' | 'signal' | 'error'>, when = ''): string {
  const how = `${e.signal === null ? `exited with code ${e.code}` : `exited on ${e.signal}`}${when}`;
  return e.error === null ? how : `${how}: ${e.error}`;
}

/**
 * Watches for a local worker that exits, unasked, before it joined, so that a wait for workers to join does not run
 * to the join timeout for a process that is gone. Two kinds of exit, told apart by the worker's last word over its
 * control pipe ({@link WorkerExitNotice}, `contract/local-pipe.ts`):
 * - it failed with an error it named (`ERR_BACKEND`, `ERR_STALE_BUILD`, a bad flag…): the wait ends at once with its
 *   exit and error; a replacement would fail the same way;
 * - it crashed or was killed without one (a signal, the OOM killer, a native abort): `respawn` may start a
 *   replacement (torchrun restarts a failed local worker within `--max-restarts`), which is then watched too; when it
 *   does not (no restarts left), the wait ends as above.
 * Only the processes running when the watch begins are watched, and their replacements (a lost member that exits
 * later is not one of them).
 * @param isMember - whether the process of this pid has joined (its exit is then a loss, not an early exit)
 * @param respawn - starts a replacement for a crash without an error and returns its pid, or null to end the wait
 * @returns `signal` aborts with `worker process <pid> exited with code 1 before joining: <error>`; `stop()` ends the watch
 */
export function watchEarlyExits(workers: LocalWorkers | null, isMember: (pid: number) => boolean,
  respawn: (e: WorkerExit) => number | null = () => null): { readonly signal: AbortSignal; stop(): void } {
  const early = new AbortController();
  const watched = new Set(workers?.pids().values() ?? []);
  const onExit = (e: WorkerExit): void => {
    if (e.expected || !watched.has(e.pid) || isMember(e.pid) || early.signal.aborted) return;
    const replacement = e.error === null ? respawn(e) : null;
    if (replacement !== null) {
      watched.add(replacement);
      return;
    }
    early.abort(`worker process ${e.pid} ${describeExit(e, ' before joining')}${e.error === null ? '; see the worker\'s log above' : ''}`);
  };
  workers?.on('exit', onExit);
  return { signal: early.signal, stop: () => workers?.off('exit', onExit) };
}

/** Emitted as `lost` (once per process) when a local worker's control pipe closes or it exits, unasked. */
export interface WorkerLoss {
  readonly slot: number;
  readonly pid: number;
  /** What was seen, e.g. `process 123 exited on SIGKILL` or `process 123 exited with code 1: ERR_BACKEND: …`. */
  readonly reason: string;
}

/** GPUs the NVIDIA driver lists (0 when there is no driver). */
export function detectGpuCount(): number {
  return detectGpuBusIds().length;
}

/** Where the NVIDIA driver lists its GPUs: one folder per GPU, named by PCI address. */
export const NVIDIA_GPUS_DIR = '/proc/driver/nvidia/gpus';

/**
 * PCI addresses (`0000:3b:00.0`) of the GPUs the NVIDIA driver lists, in PCI order (CUDA's default order,
 * `CUDA_DEVICE_ORDER=PCI_BUS_ID`); [] without a driver.
 * @param dir - the listing to read (tests pass a faked one)
 */
export function detectGpuBusIds(dir: string = NVIDIA_GPUS_DIR): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** Mesa device-select's `DRI_PRIME` tag of a PCI address: `0000:3b:00.0` → `pci-0000_3b_00_0`; null if malformed. */
export function driPrimeTag(busId: string): string | null {
  const m = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/i.exec(busId);
  return m ? `pci-${m[1]}_${m[2]}_${m[3]}_${m[4]}`.toLowerCase() : null;
}

/**
 * The environment of the worker in `slot`: one GPU each when there are GPUs, none (CPU/WASM) otherwise.
 * - CUDA backends (tfjs-node-gpu): `CUDA_VISIBLE_DEVICES=<slot mod gpus>`.
 * - WebGPU (Dawn over Vulkan): Vulkan ignores `CUDA_VISIBLE_DEVICES`, and Dawn takes the first adapter. Mesa's
 *   device-select layer (an implicit Vulkan layer installed with `mesa-vulkan-drivers`; it works with any driver,
 *   NVIDIA's too, through VK_EXT_pci_bus_info) puts the GPU named by `DRI_PRIME=pci-DDDD_BB_SS_F` first, and with
 *   `MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1` hides the others. Without that layer these variables do nothing
 *   and every worker uses the first GPU.
 * @param busIds - PCI addresses of the GPUs, in CUDA's order (default: none known, CUDA pinning only)
 */
export function workerEnv(slot: number, gpus: number, base: NodeJS.ProcessEnv = process.env, busIds: readonly string[] = []): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base, [WORKER_SLOT_ENV]: String(slot) };
  if (gpus > 0) {
    env.CUDA_VISIBLE_DEVICES = String(slot % gpus);
    const tag = busIds.length === gpus ? driPrimeTag(busIds[slot % gpus]!) : null;
    if (tag !== null && base.DRI_PRIME === undefined) {
      env.DRI_PRIME = tag;
      env.MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE = '1';
    }
  } else {
    env.CUDA_VISIBLE_DEVICES = '-1';
  }
  return env;
}

/**
 * A set of local worker processes; `start(n)`, `respawn(slot)`, `close()` (idempotent). A slot is "running" (listed by
 * {@link pids}) until its process's loss is reported (`lost`) or the process is {@link retire}d: never free while
 * the coordinator still counts its member live, never taken once it counts it lost.
 */
export class LocalWorkers extends EventEmitter<{ exit: [WorkerExit]; lost: [WorkerLoss] }> {
  private readonly children = new Map<number, ChildProcess>();
  /** Slot of every process this set ever spawned, by pid (a lost member is matched to its slot after it exited). */
  private readonly slotByPid = new Map<number, number>();
  private readonly expectedExit = new Set<number>();
  /** Resolves when the process's `exit` was emitted (after its exit and its pipe's end: {@link spawnSlot}). */
  private readonly exitReported = new WeakMap<ChildProcess, Promise<void>>();
  private readonly gpus: number;
  private readonly busIds: string[];
  private closed = false;
  private closing: Promise<void> | null = null;
  /** SIGTERM-now functions of the workers {@link close} is waiting for. */
  private readonly terminators = new Set<() => void>();
  private readonly onParentExit = (): void => {
    for (const child of this.children.values()) child.kill('SIGKILL');
  };

  constructor(private readonly options: LocalWorkersOptions) {
    super();
    this.busIds = options.gpus == null ? detectGpuBusIds() : [];
    this.gpus = options.gpus ?? this.busIds.length;
    process.on('exit', this.onParentExit);
  }

  /** Spawns workers in slots 0 … n−1. */
  start(n: number): void {
    for (let slot = 0; slot < n; slot++) this.spawnSlot(slot);
  }

  /** Pids by slot of the running workers. */
  pids(): Map<number, number> {
    return new Map([...this.children].map(([slot, c]) => [slot, c.pid ?? -1]));
  }

  /** Slot of a process this set spawned (running or not), or null for any other pid (e.g. a remote worker). */
  slotOf(pid: number): number | null {
    return this.slotByPid.get(pid) ?? null;
  }

  /**
   * Whether the process spawned for `pid` still holds its slot: neither its loss (its exit, reported with its pipe's
   * end, or its pipe closing) was reported nor was it {@link retire}d.
   */
  isRunning(pid: number): boolean {
    const slot = this.slotByPid.get(pid);
    return slot !== undefined && this.children.get(slot)?.pid === pid;
  }

  /**
   * Gives up the process `pid` whose member the coordinator declared lost while the process still runs (a hung worker
   * ended by recovery, any loss not seen from the process itself): its slot is free from now on, so a replacement can
   * be started at once ({@link respawn}), and the process is SIGKILLed with its exit expected, so that exit is never
   * reported as a loss or taken for a replacement that crashed before joining (`watchEarlyExits`). The same ordering
   * as a loss seen from the process: the slot is free exactly when the member is lost, never later.
   * @returns whether `pid` was the running process of its slot (false: it had exited already, or is not ours)
   */
  retire(pid: number): boolean {
    const slot = this.slotByPid.get(pid);
    const child = slot === undefined ? undefined : this.children.get(slot);
    if (slot === undefined || child === undefined || child.pid !== pid) return false;
    this.expectedExit.add(pid);
    this.children.delete(slot);
    child.kill('SIGKILL');
    return true;
  }

  /** Starts a new process in `slot` (after its previous one exited). */
  respawn(slot: number): void {
    if (this.closed || this.children.has(slot)) return;
    this.spawnSlot(slot);
  }

  private spawnSlot(slot: number): void {
    const { filename, execArgv } = siblingEntry(import.meta.url, '../worker/run');
    const env = workerEnv(slot, this.gpus, process.env, this.busIds);
    // The coordinator's build, so that a worker loaded from a dist/ rebuilt since (a respawn after a `git pull` and
    // `npm run build`) refuses to run instead of training with other code.
    const build = this.options.build === undefined ? loadedBuild() : this.options.build;
    if (build === null) delete env[COORDINATOR_BUILD_ENV];
    else env[COORDINATOR_BUILD_ENV] = build;
    const child = spawn(process.execPath, [...execArgv, filename, '--connect', this.options.endpoint, ...this.options.args], {
      env,
      stdio: ['ignore', this.options.stdio ?? 'inherit', this.options.stdio ?? 'inherit', 'ipc'],
    });
    // The pipe must not keep the coordinator alive (the child process handle already does while it runs).
    child.channel?.unref();
    this.children.set(slot, child);
    const pid = child.pid ?? -1;
    this.slotByPid.set(pid, slot);
    let exitReported!: () => void;
    this.exitReported.set(child, new Promise((resolve) => { exitReported = resolve; }));
    let reported = false;
    const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
    const lost = (reason: string): void => {
      if (reported || this.closed || this.expectedExit.has(pid)) return;
      reported = true;
      // The slot is free from now on (a respawn must not wait for the exit); a process whose pipe closed while it
      // still runs is ended, so a replacement never meets its predecessor.
      if (this.children.get(slot) === child) this.children.delete(slot);
      if (!exited()) child.kill('SIGKILL');
      this.emit('lost', { slot, pid, reason });
    };
    // The worker's last word (worker/cli.ts): it has closed everything and is exiting with this code. The pipe closes
    // just before the process ends, so without it that closing would be taken for a lost worker and SIGKILLed, and
    // its exit reported as SIGKILL instead of its own code and error.
    let notice: WorkerExitNotice | null = null;
    let exitGuard: NodeJS.Timeout | undefined;
    child.on('message', (m) => { if (isWorkerExitNotice(m)) notice = m; });
    child.on('disconnect', () => {
      if (exited()) return; // the exit handler reports
      if (notice === null) return lost(`process ${pid}'s control pipe closed`);
      // Ending by itself: only one that does not end within the kill timeout is ended.
      exitGuard = setTimeout(() => child.kill('SIGKILL'), this.options.killTimeoutMs ?? 5000);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(exitGuard);
      // Reported once the pipe is read to its end too (it holds the notice; it closes right after the exit), or
      // after the kill timeout should something else hold the pipe open. The slot is freed by the report, in the same
      // turn as the `lost` event that marks its member lost: a slot is never free while its member is still live (a
      // respawn then would start a second worker for one place, and the member's loss come later as another event).
      let done = false;
      const report = (): void => {
        if (done) return;
        done = true;
        if (this.children.get(slot) === child) this.children.delete(slot);
        const e = { code, signal, error: notice?.error ?? null };
        lost(`process ${pid} ${describeExit(e)}`);
        const expected = this.closed || this.expectedExit.delete(pid);
        this.emit('exit', { slot, pid, ...e, expected });
        exitReported();
      };
      if (!child.connected) return report();
      const fallback = setTimeout(report, this.options.killTimeoutMs ?? 5000);
      child.once('disconnect', () => {
        clearTimeout(fallback);
        report();
      });
    });
    // A spawn failure (e.g. EAGAIN) emits `error` and maybe no `exit`: it is a loss too, never an uncaught error.
    child.on('error', (err) => lost(`process in slot ${slot} failed: ${err.message}`));
  }

  /**
   * Stops every worker: each gets a grace period to exit by itself (after the coordinator's `shutdown` message),
   * then SIGTERM (a worker closes everything and exits 143), then SIGKILL after `killTimeoutMs`. Resolves when all
   * have exited. Idempotent: a later call waits for the same close, and one with grace 0 (a second Ctrl-C) sends
   * the SIGTERMs now.
   * @param grace - milliseconds, or a function of the worker's pid (0 for one that was sent no `shutdown`)
   */
  close(grace: number | ((pid: number) => number) = 0): Promise<void> {
    const graceOf = typeof grace === 'number' ? () => grace : grace;
    if (grace === 0) for (const terminate of this.terminators) terminate();
    this.closing ??= (async () => {
      this.closed = true;
      await Promise.all([...this.children.values()].map((child) => new Promise<void>((resolve) => {
        const done = this.exitReported.get(child)!;
        if (child.exitCode !== null || child.signalCode !== null) return void done.then(resolve);
        let killTimer: NodeJS.Timeout | undefined;
        const terminate = (): void => {
          if (killTimer !== undefined || child.exitCode !== null || child.signalCode !== null) return;
          clearTimeout(graceTimer);
          child.kill('SIGTERM');
          killTimer = setTimeout(() => child.kill('SIGKILL'), this.options.killTimeoutMs ?? 5000);
        };
        const graceTimer = setTimeout(terminate, Math.max(0, graceOf(child.pid ?? -1)));
        this.terminators.add(terminate);
        child.once('exit', () => {
          clearTimeout(graceTimer);
          clearTimeout(killTimer);
          this.terminators.delete(terminate);
        });
        // Resolved once the exit is reported (with the worker's own code and error), so every exit is logged before
        // the coordinator goes on closing and exits.
        void done.then(resolve);
      })));
      process.off('exit', this.onParentExit);
    })();
    return this.closing;
  }
}
