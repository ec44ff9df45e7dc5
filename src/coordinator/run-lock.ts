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
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TrainerError } from '../contract/errors.js';
import {
  createLockFile, currentLockOwner, lockIsStale, readLockOwner, releaseLockFile, removeLockFile, type LockOwner,
} from '../contract/lock-file.js';
import { processAlive } from '../contract/process.js';

import { RUN_LOCK_FILE } from '../contract/run-files.js';

export { RUN_LOCK_FILE };

/** A held lock: {@link release} removes the file (idempotent). */
export interface RunLock {
  readonly path: string;
  release(): void;
  /**
   * Writes the lock file again when it is gone (the run directory deleted during the run), exclusively as when it was
   * taken. @returns `restored` (it was gone and is ours again), `held` (it is there and ours), or `taken` (another
   * process holds it now, or it cannot be written: the run directory is no longer this run's alone)
   */
  restore(): 'restored' | 'held' | 'taken';
}

/** The command a run-directory lock taken with `flag` stands for: `coordinator interpret`, else a training run. */
function lockCommand(flag: string): string {
  return flag === 'interpret' ? 'coordinator interpret' : 'coordinator train';
}

/**
 * Who holds a lock, for messages: `coordinator interpret (pid 4242 on h, since …)`; a lock written before locks
 * named their command says only the pid. It said `the coordinator pid …` for an interpret too.
 */
function holder(owner: LockOwner): string {
  return owner.command !== undefined ? `${owner.command} (pid ${owner.pid} on ${owner.host}, since ${owner.since})` : `pid ${owner.pid} on ${owner.host} (since ${owner.since})`;
}

/**
 * Who holds `runDir` now, as lock messages name it (`coordinator train (pid 812 on host, since 2026-…)`), or null
 * when no live process does (no lock, an unreadable one, or a dead owner's). Reads only; takes nothing.
 */
export function liveRunHolder(runDir: string): string | null {
  const owner = readLockOwner(join(runDir, RUN_LOCK_FILE));
  return owner === null || lockIsStale(owner) ? null : holder(owner);
}

/** What to do when `owner` holds the run directory that `flag` names. */
function lockAdvice(owner: LockOwner | null, flag: string, runDir: string): string {
  const another = `choose another ${flag === '--resume' ? 'run' : '--run-dir'}`;
  if (owner?.command === lockCommand('interpret')) return `it writes the run's report: wait for it to end, or ${another}`;
  return `two coordinators must not write one run. Wait for it to end or stop it (Ctrl-C checkpoints; then --resume ${runDir}), or ${another}`;
}

/**
 * Takes the run directory's lock for this process.
 * @param runDir - an existing, writable run directory
 * @param flag - the flag that named it, for the message (`--run-dir` or `--resume`), or `interpret` (the command
 *   that writes the run's report); the lock records the command (`coordinator train` or `coordinator interpret`)
 * @param log - where the take-over of a stale lock is reported
 * @param advice - what the user can do when the directory is in use (default: wait for its holder to end, stop a
 *   training run and `--resume`, or choose another run directory)
 * @returns the held lock; release it when the run ends
 * @throws TrainerError ERR_BAD_FLAG when another live process holds it (its command, pid, host and start time
 *   named), or when its owner is on another host (cannot be checked from here) or the file cannot be read
 */
export function lockRunDir(runDir: string, flag: string, log: (line: string) => void, advice?: string): RunLock {
  const path = join(runDir, RUN_LOCK_FILE);
  const me = currentLockOwner(lockCommand(flag));
  for (let attempt = 0; ; attempt++) {
    if (createLockFile(path, me)) break;
    const owner = readLockOwner(path);
    if (!lockIsStale(owner) || attempt > 0) {
      const who = owner === null ? `an unreadable lock file ${path}` : holder(owner);
      const otherHost = owner !== null && owner.host !== me.host;
      throw new TrainerError('ERR_BAD_FLAG', `${flag} ${runDir}: this run directory is in use by ${who}; `
        + (advice ?? lockAdvice(owner, flag, runDir))
        + (otherHost || owner === null ? `; if no coordinator uses it any more, delete ${path}` : ''));
    }
    // The owner died without releasing (SIGKILL, power loss): take over, once; the exclusive re-creation refuses a
    // coordinator that took the lock in between (two take-overs within the same microseconds are not excluded).
    log(`${flag} ${runDir}: removed the stale lock of ${owner!.command !== undefined ? `${owner!.command} ` : ''}pid ${owner!.pid} (started ${owner!.since}, no longer running${processAlive(owner!.pid) ? `; pid ${owner!.pid} is now another process` : ''})`);
    removeLockFile(path);
  }
  removeDeadWritersTemps(runDir, flag, log);
  let held = true;
  return {
    path,
    release: () => {
      if (!held) return;
      held = false;
      // Only our own lock: a run directory removed or taken over meanwhile is left as it is.
      releaseLockFile(path, me);
    },
    restore: () => {
      if (!held) return 'taken';
      try {
        if (createLockFile(path, me)) return 'restored';
      } catch {
        return 'taken';
      }
      const now = readLockOwner(path);
      return now?.pid === me.pid && now.since === me.since ? 'held' : 'taken';
    },
  };
}

/**
 * Removes the temporary files (`<name>.tmp-<pid>`, contract/atomic-write.ts) that writers no longer running left in
 * the run directory and its `models/`: a second Ctrl-C during the report left `index.html.tmp-<pid>`, a kill during a
 * saved model `models/<stage>.safetensors.tmp-<pid>` (tens of MB), kept for good. The lock holder is the run's only
 * writer, so a dead pid's file is no one's; a live pid's (or a name without one) is left alone. (`checkpoints/` has
 * its own cleanup: contract/checkpoint-format.ts.)
 */
function removeDeadWritersTemps(runDir: string, flag: string, log: (line: string) => void): void {
  const removed: string[] = [];
  for (const sub of ['', 'models']) {
    let names: string[];
    try {
      names = readdirSync(join(runDir, sub));
    } catch {
      continue; // no models/ yet
    }
    for (const name of names.sort()) {
      const pid = Number(/\.tmp-(\d+)$/.exec(name)?.[1]);
      if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || processAlive(pid)) continue;
      try {
        rmSync(join(runDir, sub, name), { force: true });
        removed.push(sub === '' ? name : `${sub}/${name}`);
      } catch { /* left for the next start */ }
    }
  }
  if (removed.length > 0) log(`${flag} ${runDir}: removed ${removed.length} temporary file(s) of writers no longer running: ${removed.join(', ')}`);
}
