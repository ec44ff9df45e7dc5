/**
 * Creating a folder the user named (`--run-dir`, `--dir`, `--curve-keys`, the cache folders of
 * `PETS_TRAINER_CACHE_DIR` and `PETS_TRAINER_WEIGHTS_DIR`), with an error that names the flag or variable, the folder,
 * the rule and the system's reason.
 *
 * Node's `mkdirSync(path, { recursive: true })` (and `fs.promises.mkdir`'s) is not used for it: where mkdir(2) answers
 * ENOENT although the parent exists (procfs, sysfs) it loops forever in Node 20, deaf to SIGTERM
 * (`PETS_TRAINER_CACHE_DIR=/proc/x` hung every command that read data), and on a read-only file system it reports
 * ENOENT rather than EROFS. Here each missing component is created in turn, so every failure is one system call's own
 * answer.
 */
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { TrainerError } from './errors.js';
import { folderProblem } from './folder.js';

/** What named a folder, for the messages of {@link makeDirs}: a flag or an environment variable. */
export interface FolderOrigin {
  /** ERR_BAD_FLAG for a flag, ERR_BAD_CONFIG for an environment variable (both: the input must change, exit 2). */
  readonly code: 'ERR_BAD_FLAG' | 'ERR_BAD_CONFIG';
  /** The folder as the user named it: `--run-dir runs/a`, `PETS_TRAINER_CACHE_DIR=/proc/x`. */
  describe(path: string): string;
  /** What to do instead: `choose another folder with --run-dir`. */
  readonly fix: string;
}

/** A folder named by a command line flag (`--run-dir runs/a: …; choose another folder with --run-dir`). */
export function flagOrigin(flag: string): FolderOrigin {
  return { code: 'ERR_BAD_FLAG', describe: (path) => `${flag} ${path}`, fix: `choose another folder with ${flag}` };
}

/** A folder named by an option of a function (a program's, not a user's flag): `cacheDir /x: …`. */
export function optionOrigin(option: string): FolderOrigin {
  return { code: 'ERR_BAD_CONFIG', describe: (path) => `${option} ${path}`, fix: `choose another folder for ${option}` };
}

/**
 * A folder named by the environment variable `envVar`, or its default when the variable is unset or blank:
 * `PETS_TRAINER_CACHE_DIR=/proc/x: …` or `the cache folder /home/u/.cache/pets-trainer (PETS_TRAINER_CACHE_DIR is not
 * set): …`, both ending `set PETS_TRAINER_CACHE_DIR to a folder this user can create and write in`.
 * @param env - the environment the folder was read from
 */
export function envOrigin(envVar: string, env: NodeJS.ProcessEnv = process.env): FolderOrigin {
  const value = env[envVar];
  const set = value !== undefined && value.trim() !== '';
  return {
    code: 'ERR_BAD_CONFIG',
    describe: (path) => set ? `${envVar}=${value}` : `the cache folder ${path} (${envVar} is not set)`,
    fix: `set ${envVar} to a folder this user can create and write in`,
  };
}

/**
 * Creates `path` and its missing parents (like `mkdir -p`) and checks that it is a writable folder.
 * @param path - the folder, relative to the working directory or absolute
 * @param origin - the flag that named it (e.g. `--run-dir`), or a {@link FolderOrigin}
 * @returns whether the folder was created (false: it existed)
 * @throws TrainerError ERR_BAD_FLAG (a flag) or ERR_BAD_CONFIG (a variable) naming it, the path and the system's
 *   reason (EROFS, EACCES, ENOTDIR, …)
 */
export function makeDir(path: string, origin: string | FolderOrigin): boolean {
  return makeDirs(path, origin).length > 0;
}

/**
 * {@link makeDir}, returning the folders it created, outermost first (absolute; empty: `path` existed), so that a
 * caller that gives up can take back exactly what it made (`runs/` as well as `runs/<date-time>`).
 * @throws TrainerError as {@link makeDir}
 */
export function makeDirs(path: string, origin: string | FolderOrigin): readonly string[] {
  const o = typeof origin === 'string' ? flagOrigin(origin) : origin;
  const abs = resolve(path);
  const missing: string[] = [];
  for (let p = abs; !existsSync(p); p = dirname(p)) {
    missing.unshift(p);
    if (dirname(p) === p) break;
  }
  for (const dir of missing) {
    try {
      mkdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      const e = err as NodeJS.ErrnoException;
      throw new TrainerError(o.code, `${o.describe(path)}: cannot create ${dir} (${e.code ?? 'error'}: ${e.message.replace(/^\w+: /, '').split(',')[0]}); ${o.fix}`, { cause: err });
    }
  }
  const problem = folderProblem(abs, 'write');
  if (problem !== null) throw new TrainerError(o.code, `${o.describe(path)}: ${problem}; ${o.fix}`);
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
