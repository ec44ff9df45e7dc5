/**
 * Lock files that name their owner: created exclusively (`O_CREAT | O_EXCL`, atomic on local file systems and
 * NFSv3+), holding the owner's pid, host and start time as JSON, removed by the owner. Two users: the run
 * directory's `.coordinator.lock` (one coordinator per run, `coordinator/run-lock.ts`) and a download's
 * `<dest>.lock` (one download of a file per cache, `training/download.ts`: the local workers of one run all fetch
 * the same ImageNet weights, as huggingface_hub's `FileLock` around a cache entry).
 *
 * An owner that died without removing its lock (SIGKILL, power loss) is told from a live one on the same host by its
 * pid, start time and the kernel's boot id, so a pid reused by another process (a container restarted with its
 * process at pid 1 again, a reboot) is not taken for the owner. An owner on another host cannot be checked.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { processAlive, processStartTicks } from './process.js';
import { kernelBootId } from './host-identity.js';

/** What a lock file holds (JSON). */
export interface LockOwner {
  readonly pid: number;
  readonly host: string;
  /** ISO 8601 time the owner took the lock. */
  readonly since: string;
  /**
   * The owner process's start time (`/proc/<pid>/stat` field 22, clock ticks after boot) and the kernel's boot id
   * (`/proc/sys/kernel/random/boot_id`): together with `pid` they name one process. Absent in locks written before
   * they existed, or without procfs.
   */
  readonly startTicks?: number;
  readonly bootId?: string;
  /**
   * The command holding it, as a user types it (`coordinator train`, `coordinator interpret`), for the messages of
   * whoever finds the lock taken. Absent in locks written before it existed, and in a download's lock.
   */
  readonly command?: string;
}

/**
 * This process as a lock's owner, taking it now.
 * @param command - what it runs, as a user types it (`coordinator interpret`), recorded for {@link LockOwner.command}
 */
export function currentLockOwner(command?: string): LockOwner {
  const startTicks = processStartTicks(process.pid);
  const boot = kernelBootId();
  return {
    pid: process.pid, host: hostname(), since: new Date().toISOString(),
    ...(startTicks !== null ? { startTicks } : {}),
    ...(boot !== null ? { bootId: boot } : {}),
    ...(command !== undefined ? { command } : {}),
  };
}

/**
 * Whether the process that wrote `owner` (on this host) still runs: its pid is alive and, when recorded, its start
 * time and boot id match the live process's.
 */
export function lockOwnerAlive(owner: LockOwner): boolean {
  const boot = kernelBootId();
  if (owner.bootId !== undefined && boot !== null && owner.bootId !== boot) return false;
  if (!processAlive(owner.pid)) return false;
  if (owner.startTicks === undefined) return owner.pid !== process.pid; // an older lock with our pid: a dead incarnation
  const ticks = processStartTicks(owner.pid);
  return ticks === null || ticks === owner.startTicks;
}

/**
 * Whether `owner` is a dead process of this host, so its lock may be taken over. An owner on another host, or an
 * unreadable lock (`null`: being written this instant, or damaged), is never stale.
 */
export function lockIsStale(owner: LockOwner | null): boolean {
  return owner !== null && owner.host === hostname() && !lockOwnerAlive(owner);
}

/** The owner a lock file names, or null when it is missing, empty or not a lock's JSON. */
export function readLockOwner(path: string): LockOwner | null {
  try {
    const o = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockOwner>;
    if (typeof o.pid !== 'number' || typeof o.host !== 'string' || typeof o.since !== 'string') return null;
    return {
      pid: o.pid, host: o.host, since: o.since,
      ...(typeof o.startTicks === 'number' ? { startTicks: o.startTicks } : {}),
      ...(typeof o.bootId === 'string' ? { bootId: o.bootId } : {}),
      ...(typeof o.command === 'string' ? { command: o.command } : {}),
    };
  } catch {
    return null;
  }
}

/**
 * Creates the lock file for `owner` if no file has that path.
 * @returns true when created (the lock is held), false when the file exists
 * @throws the file system's error other than EEXIST (ENOENT: no such folder, EACCES, EROFS, ENOSPC)
 */
export function createLockFile(path: string, owner: LockOwner): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, `${JSON.stringify(owner)}\n`);
  } catch (err) {
    // An empty lock (ENOSPC in a filling cache) would name no owner, so nobody could ever tell it stale: remove it.
    closeSync(fd);
    try {
      unlinkSync(path);
    } catch { /* already gone */ }
    throw err;
  }
  closeSync(fd);
  return true;
}

/** Removes a lock file; one already gone is fine. @throws the file system's error other than ENOENT */
export function removeLockFile(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Removes the lock file if it still names `owner` (the same pid and `since`): a lock removed or taken over meanwhile
 * is left as it is. Never throws.
 */
export function releaseLockFile(path: string, owner: LockOwner): void {
  const now = readLockOwner(path);
  if (now?.pid !== owner.pid || now.since !== owner.since) return;
  try {
    unlinkSync(path);
  } catch { /* already gone */ }
}
