/**
 * Creating a folder the user named (`--run-dir`, `--dir`), with an error that names the flag and the real cause.
 *
 * Node's `mkdirSync(path, { recursive: true })` is not used for it: where mkdir(2) answers ENOENT although the parent
 * exists (procfs, sysfs) it loops forever in Node 20, and on a read-only file system it reports ENOENT rather than
 * EROFS. Here each missing component is created in turn, so every failure is one system call's own answer.
 */
import { accessSync, constants, existsSync, mkdirSync, rmdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { TrainerError } from '../contract/errors.js';

/**
 * Creates `path` and its missing parents (like `mkdir -p`) and checks that it is a writable folder.
 * @param path - the folder, relative to the working directory or absolute
 * @param flag - the flag that named it, for the message (e.g. `--run-dir`)
 * @returns whether the folder was created (false: it existed)
 * @throws TrainerError ERR_BAD_FLAG naming the flag, the path and the system's reason (EROFS, EACCES, ENOTDIR, …)
 */
export function makeDir(path: string, flag: string): boolean {
  return makeDirs(path, flag).length > 0;
}

/**
 * {@link makeDir}, returning the folders it created, outermost first (absolute; empty: `path` existed), so that a
 * caller that gives up can take back exactly what it made (`runs/` as well as `runs/<date-time>`).
 * @throws TrainerError as {@link makeDir}
 */
export function makeDirs(path: string, flag: string): readonly string[] {
  const abs = resolve(path);
  const missing: string[] = [];
  for (let p = abs; !existsSync(p); p = dirname(p)) {
    missing.unshift(p);
    if (dirname(p) === p) break;
  }
  const fail = (what: string, err: unknown): never => {
    const e = err as NodeJS.ErrnoException;
    throw new TrainerError('ERR_BAD_FLAG', `${flag} ${path}: ${what} (${e.code ?? 'error'}: ${e.message.replace(/^\w+: /, '').split(',')[0]}); choose another folder with ${flag}`);
  };
  for (const dir of missing) {
    try {
      mkdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') fail(`cannot create ${dir}`, err);
    }
  }
  let isDir = false;
  try {
    isDir = statSync(abs).isDirectory();
  } catch (err) {
    fail('cannot read it', err);
  }
  if (!isDir) throw new TrainerError('ERR_BAD_FLAG', `${flag} ${path}: not a folder (a file of that name exists); choose another folder with ${flag}`);
  try {
    accessSync(abs, constants.W_OK);
  } catch (err) {
    fail('not writable', err);
  }
  return missing;
}

/**
 * Removes the folders {@link makeDirs} created that are empty now, innermost first; a folder something else wrote
 * into (another run's `runs/<date-time>`, a file of the user's) stays, and so do its parents.
 * @param created - {@link makeDirs}'s answer
 * @returns the folders removed
 */
export function removeEmptyCreated(created: readonly string[]): string[] {
  const removed: string[] = [];
  for (const dir of [...created].reverse()) {
    try {
      rmdirSync(dir);
      removed.push(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // already gone (the run directory itself)
      break; // not empty, or not ours to remove: its parents are not empty either
    }
  }
  return removed;
}

/**
 * Runs `write`, one of the files a run writes into its folder before it starts (its lock, `data.json`,
 * `config.json`), and reports a failure of the file system as a bad run folder, naming the flag, the file and the
 * system's reason: a full disk (ENOSPC), a quota (EDQUOT), a file-size limit (EFBIG), a read-only or failing mount.
 * Before, the run stopped with the bare `coordinator: ENOSPC: no space left on device, write` (exit 1), saying neither
 * which file nor what to do.
 * @param flag - the flag that named the folder (`--run-dir` or `--resume`)
 * @param file - the file `write` writes
 * @returns what `write` returns
 * @throws TrainerError ERR_BAD_FLAG (nothing has started) for a file-system error; anything else as thrown
 */
export function writeRunFile<T>(flag: string, runDir: string, file: string, write: () => T): T {
  try {
    return write();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e?.code !== 'string' || typeof e.syscall !== 'string') throw err;
    const reason = e.message.replace(/^\w+: /, '').split(',')[0];
    const room = ['ENOSPC', 'EDQUOT', 'EFBIG'].includes(e.code) ? 'free some space or lift the limit, or ' : '';
    throw new TrainerError('ERR_BAD_FLAG', `${flag} ${runDir}: cannot write ${file} (${e.code}: ${reason}); ${room}choose another folder with ${flag}`, { cause: err });
  }
}
