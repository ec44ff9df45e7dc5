/**
 * One coordinator per run directory. Two coordinators given the same `--run-dir` (or a `--resume` of a run that is
 * still going) used to train side by side, each writing and pruning the other's checkpoints, hard-linking the
 * other's state files as "unchanged", and overwriting models and report: the directory then held a mix of two runs
 * that no `--resume` could trust. As a database or `git` does, the coordinator holds a lock file in the directory
 * for the run's whole life: created exclusively (`O_CREAT | O_EXCL`, atomic on local file systems and NFSv3+), holding
 * the owner's pid, host and start time, removed when the run ends. A lock left by a coordinator that was SIGKILLed
 * (its pid is gone, same host) is stale and taken over, with a log line.
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

/** The lock file's name inside the run directory. */
export const RUN_LOCK_FILE = '.coordinator.lock';

/** What the lock file holds (JSON). */
export interface RunLockOwner {
  readonly pid: number;
  readonly host: string;
  /** ISO 8601 time the owner took the lock. */
  readonly since: string;
}

/** A held lock: {@link release} removes the file (idempotent). */
export interface RunLock {
  readonly path: string;
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A killed coordinator whose parent has not reaped it yet is a zombie: signal 0 reaches it, but it holds nothing.
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no procfs (not Linux): trust the signal
  }
}

function readOwner(path: string): RunLockOwner | null {
  try {
    const o = JSON.parse(readFileSync(path, 'utf8')) as Partial<RunLockOwner>;
    return typeof o.pid === 'number' && typeof o.host === 'string' && typeof o.since === 'string' ? (o as RunLockOwner) : null;
  } catch {
    return null;
  }
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
  const me: RunLockOwner = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    if (tryCreate(path, me)) break;
    const owner = readOwner(path);
    const stale = owner !== null && owner.host === me.host && owner.pid !== me.pid && !alive(owner.pid);
    if (!stale || attempt > 0) {
      const who = owner === null ? `an unreadable lock file ${path}` : `the coordinator pid ${owner.pid} on ${owner.host} (since ${owner.since})`;
      const otherHost = owner !== null && owner.host !== me.host;
      throw new TrainerError('ERR_BAD_FLAG', `${flag} ${runDir}: this run directory is in use by ${who}; `
        + (advice ?? `two coordinators must not write one run. Wait for it to end or stop it (Ctrl-C checkpoints; then --resume ${runDir}), or choose another ${flag === '--resume' ? 'run' : '--run-dir'}`)
        + (otherHost || owner === null ? `; if no coordinator uses it any more, delete ${path}` : ''));
    }
    // The owner died without releasing (SIGKILL, power loss): take over, once; the exclusive re-creation refuses a
    // coordinator that took the lock in between (two take-overs within the same microseconds are not excluded).
    log(`${flag} ${runDir}: removed the stale lock of coordinator pid ${owner!.pid} (started ${owner!.since}, no longer running)`);
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
      if (readOwner(path)?.pid === me.pid) {
        try {
          unlinkSync(path);
        } catch { /* already gone */ }
      }
    },
  };
}
