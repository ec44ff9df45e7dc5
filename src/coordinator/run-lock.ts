/**
 * One coordinator per run directory. Two coordinators given the same `--run-dir` (or a `--resume` of a run that is
 * still going) used to train side by side, each writing and pruning the other's checkpoints, hard-linking the
 * other's state files as "unchanged", and overwriting models and report: the directory then held a mix of two runs
 * that no `--resume` could trust. As a database or `git` does, the coordinator holds a lock file in the directory
 * for the run's whole life: created exclusively (`O_CREAT | O_EXCL`, atomic on local file systems and NFSv3+), holding
 * the owner's pid, host and start time, removed when the run ends. A lock left by a coordinator that was SIGKILLed
 * (same host; its pid is gone, or now names another process: the lock records the process's start time and the
 * boot id, so a container restarted with its coordinator at pid 1 again, or a reboot, does not see itself or a
 * stranger as the owner) is stale and taken over, with a log line.
 *
 * `coordinator interpret <run-dir>` takes the same lock while it writes the run's report (it would otherwise
 * overwrite, non-atomically, the report a live coordinator writes at the end of its run). Reading needs no lock:
 * saved models and checkpoints are written to a temporary file and renamed (`contract/atomic-write.ts`), so `predict`
 * and `interpret` read a whole model or none, and `predict` writes nothing.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { TrainerError } from '../contract/errors.js';
import { processAlive, processStartTicks } from '../contract/process.js';

/** The lock file's name inside the run directory. */
export const RUN_LOCK_FILE = '.coordinator.lock';

/** What the lock file holds (JSON). */
export interface RunLockOwner {
  readonly pid: number;
  readonly host: string;
  /** ISO 8601 time the owner took the lock. */
  readonly since: string;
  /**
   * The owner process's start time (`/proc/<pid>/stat` field 22, clock ticks after boot) and the kernel's boot id
   * (`/proc/sys/kernel/random/boot_id`): together with `pid` they name one process, so a pid reused after the owner
   * died (a container restarted, where the coordinator is pid 1 again; a reboot) is not taken for the owner. Absent
   * in locks written before they existed, or without procfs.
   */
  readonly startTicks?: number;
  readonly bootId?: string;
}

/** A held lock: {@link release} removes the file (idempotent). */
export interface RunLock {
  readonly path: string;
  release(): void;
}

function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
  } catch {
    return null;
  }
}

/**
 * Whether the process that wrote `owner` still runs. Its pid may have been reused since by another process — after
 * a reboot, or in a restarted container, where the new coordinator gets the dead one's pid (often 1) — so the start
 * time and boot id the lock records must match the live process's too.
 */
function ownerAlive(owner: RunLockOwner): boolean {
  if (owner.bootId !== undefined && bootId() !== null && owner.bootId !== bootId()) return false;
  if (!processAlive(owner.pid)) return false;
  if (owner.startTicks === undefined) return owner.pid !== process.pid; // an older lock with our pid: a dead incarnation
  const ticks = processStartTicks(owner.pid);
  return ticks === null || ticks === owner.startTicks;
}

function readOwner(path: string): RunLockOwner | null {
  try {
    const o = JSON.parse(readFileSync(path, 'utf8')) as Partial<RunLockOwner>;
    if (typeof o.pid !== 'number' || typeof o.host !== 'string' || typeof o.since !== 'string') return null;
    return {
      pid: o.pid, host: o.host, since: o.since,
      ...(typeof o.startTicks === 'number' ? { startTicks: o.startTicks } : {}),
      ...(typeof o.bootId === 'string' ? { bootId: o.bootId } : {}),
    };
  } catch {
    return null;
  }
}

/** `o` without its null fields. */
function withDefined<T extends Record<string, unknown>>(o: T): Partial<{ [K in keyof T]: NonNullable<T[K]> }> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined)) as Partial<{ [K in keyof T]: NonNullable<T[K]> }>;
}

function tryCreate(path: string, owner: RunLockOwner): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, `${JSON.stringify(owner)}\n`);
  } finally {
    closeSync(fd);
  }
  return true;
}

/**
 * Takes the run directory's lock for this process.
 * @param runDir - an existing, writable run directory
 * @param flag - the flag that named it, for the message (`--run-dir` or `--resume`)
 * @param log - where the take-over of a stale lock is reported
 * @param advice - what the user can do when the directory is in use (default: a coordinator's: wait, stop and
 *   `--resume`, or choose another run directory)
 * @returns the held lock; release it when the run ends
 * @throws TrainerError ERR_BAD_FLAG when another live coordinator holds it (its pid, host and start time named),
 *   or when its owner is on another host (cannot be checked from here) or the file cannot be read
 */
export function lockRunDir(runDir: string, flag: string, log: (line: string) => void, advice?: string): RunLock {
  const path = join(runDir, RUN_LOCK_FILE);
  const me: RunLockOwner = {
    pid: process.pid, host: hostname(), since: new Date().toISOString(),
    ...withDefined({ startTicks: processStartTicks(process.pid), bootId: bootId() }),
  };
  for (let attempt = 0; ; attempt++) {
    if (tryCreate(path, me)) break;
    const owner = readOwner(path);
    const stale = owner !== null && owner.host === me.host && !ownerAlive(owner);
    if (!stale || attempt > 0) {
      const who = owner === null ? `an unreadable lock file ${path}` : `the coordinator pid ${owner.pid} on ${owner.host} (since ${owner.since})`;
      const otherHost = owner !== null && owner.host !== me.host;
      throw new TrainerError('ERR_BAD_FLAG', `${flag} ${runDir}: this run directory is in use by ${who}; `
        + (advice ?? `two coordinators must not write one run. Wait for it to end or stop it (Ctrl-C checkpoints; then --resume ${runDir}), or choose another ${flag === '--resume' ? 'run' : '--run-dir'}`)
        + (otherHost || owner === null ? `; if no coordinator uses it any more, delete ${path}` : ''));
    }
    // The owner died without releasing (SIGKILL, power loss): take over, once; the exclusive re-creation refuses a
    // coordinator that took the lock in between (two take-overs within the same microseconds are not excluded).
    log(`${flag} ${runDir}: removed the stale lock of coordinator pid ${owner!.pid} (started ${owner!.since}, no longer running${processAlive(owner!.pid) ? `; pid ${owner!.pid} is now another process` : ''})`);
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  let held = true;
  return {
    path,
    release: () => {
      if (!held) return;
      held = false;
      // Only our own lock: a run directory removed or taken over meanwhile is left as it is.
      const now = readOwner(path);
      if (now?.pid === me.pid && now.since === me.since) {
        try {
          unlinkSync(path);
        } catch { /* already gone */ }
      }
    },
  };
}
