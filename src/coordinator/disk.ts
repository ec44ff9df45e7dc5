/**
 * Disk use of a run directory, made visible: its size at the end of every run, split into checkpoints, models and
 * the rest, with hard-linked files (a stage model sharing a checkpoint's bytes) counted once, as `du` does.
 * Also the clean-up of a run directory that a failed run created and left with nothing worth keeping.
 */
import { existsSync, lstatSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { listCheckpoints } from '../contract/checkpoint-format.js';
import { RUN_LOCK_FILE } from './run-lock.js';
import { RUN_CONFIG_FILE } from './run-config-file.js';
import { TrainerError } from '../contract/errors.js';
import { resumeCommandLine } from './shell-arg.js';

/** Size of a run directory. All sizes are apparent file sizes in bytes; each inode counted once. */
export interface DiskUsage {
  readonly bytes: number;
  readonly checkpointBytes: number;
  readonly modelBytes: number;
  /** Everything else: pictures, JSON, the report. */
  readonly otherBytes: number;
  /** Bytes of files reachable under two or more names here (counted once in `bytes`). */
  readonly sharedBytes: number;
}

/** Walks `dir` (symlinks are not followed). @returns zeros for a missing directory */
export function diskUsage(dir: string): DiskUsage {
  const seen = new Map<string, number>();
  const sums = { checkpoints: 0, models: 0, other: 0 };
  let shared = 0;
  const visit = (p: string, part: keyof typeof sums): void => {
    const st = lstatSync(p);
    if (st.isDirectory()) {
      for (const name of readdirSync(p)) visit(join(p, name), part);
    } else if (st.isFile()) {
      const key = `${st.dev}:${st.ino}`;
      const n = seen.get(key) ?? 0;
      seen.set(key, n + 1);
      if (n === 0) sums[part] += st.size;
      else if (n === 1) shared += st.size;
    }
  };
  if (existsSync(dir)) {
    for (const name of readdirSync(dir)) visit(join(dir, name), name === 'checkpoints' ? 'checkpoints' : name === 'models' ? 'models' : 'other');
  }
  return { bytes: sums.checkpoints + sums.models + sums.other, checkpointBytes: sums.checkpoints, modelBytes: sums.models, otherBytes: sums.other, sharedBytes: shared };
}

/** Bytes as MB or GB (10^6 / 10^9, as `df -H` and the README's figures), e.g. `431 MB`, `1.24 GB`. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(bytes >= 1e8 ? 0 : 1)} MB`;
  return `${(bytes / 1e3).toFixed(0)} kB`;
}

/** The closing line of a run: `disk:    <dir> 431 MB (checkpoints 281 MB, models 141 MB, other 9 MB; 141 MB shared …)`. */
export function diskLine(dir: string): string {
  const u = diskUsage(dir);
  const shared = u.sharedBytes > 0 ? `; ${formatBytes(u.sharedBytes)} hard-linked between models and checkpoints, counted once` : '';
  return `disk:    ${dir} ${formatBytes(u.bytes)} (checkpoints ${formatBytes(u.checkpointBytes)}, models ${formatBytes(u.modelBytes)}, other ${formatBytes(u.otherBytes)}${shared})`;
}

/** What a run writes into its directory before its first checkpoint (removable when the run fails early). */
const EARLY_FILES = [RUN_CONFIG_FILE, 'data.json', 'show-batch.png', 'show-batch.json', RUN_LOCK_FILE];
const EARLY_DIRS = ['checkpoints', 'models'];

/** A temporary entry of a write in progress or killed (`<name>.tmp-<pid>`, `step-….tmp-…`): never worth keeping. */
const isTemporary = (name: string): boolean => name.includes('.tmp-');

/** Whether entry `name` of run directory `dir` is only what a run writes before its first checkpoint. */
function isEarlyEntry(dir: string, name: string): boolean {
  return EARLY_FILES.includes(name) || (EARLY_DIRS.includes(name) && readdirSync(join(dir, name)).filter((x) => !isTemporary(x)).length === 0);
}

/**
 * Refuses an existing `--run-dir` that a new run (no `--resume`) would overwrite: one holding a run (checkpoints:
 * a new run replaced them step by step, a stopped run's included, and its models and report), or files of the
 * user's (its `config.json`, `index.html`, … were overwritten). Before, both happened without a word; PyTorch
 * Lightning warns on a non-empty checkpoint folder. What a run leaves before its first checkpoint (its early files,
 * empty folders, temporary files) is nothing to keep: such a folder is reused.
 * @throws TrainerError ERR_BAD_FLAG naming the folder, what it holds and what to do
 */
export function checkNewRunDir(dir: string, log?: (line: string) => void): void {
  const names = readdirSync(dir).filter((n) => !isTemporary(n)).sort();
  const newest = listCheckpoints(dir).at(-1);
  if (newest !== undefined) {
    throw new TrainerError('ERR_BAD_FLAG', `--run-dir ${dir} holds a run (its newest checkpoint: ${basename(newest)}); continue it with: ${resumeCommandLine(dir)}, `
      + 'or choose another --run-dir (a new run there would replace its checkpoints, models and report)');
  }
  const others = names.filter((n) => !isEarlyEntry(dir, n));
  if (others.length > 0) {
    throw new TrainerError('ERR_BAD_FLAG', `--run-dir ${dir} is not empty (${others.slice(0, 3).join(', ')}${others.length > 3 ? `, +${others.length - 3} more` : ''}): `
      + 'a run writes config.json, data.json, index.html, pictures, models/ and checkpoints/ there; choose a new or empty folder');
  }
  if (names.length > 0) log?.(`--run-dir ${dir}: reusing the folder of a run that ended before its first checkpoint (${names.join(', ')})`);
}

/**
 * Removes a run directory that this run created and that holds nothing but its early files (configuration, data account,
 * show_batch) and empty folders: a run that failed before its first checkpoint leaves no `runs/<date-time>` behind.
 * Anything else in it (a checkpoint, a model, a file of the user's) keeps the directory.
 * @returns whether the directory was removed
 */
export function removeFailedRunDir(dir: string): boolean {
  if (!existsSync(dir)) return false;
  const names = readdirSync(dir);
  const removable = names.every((n) => isEarlyEntry(dir, n));
  if (!removable) return false;
  for (const n of names) rmSync(join(dir, n), { recursive: true, force: true });
  rmdirSync(dir);
  return true;
}
