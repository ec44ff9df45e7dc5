/**
 * A run directory deleted (or emptied) while its run goes on: `rm -rf runs/x` by mistake, a clean-up script. The
 * checkpoint writer recreates the folders it writes into, so the run used to go on and end with exit 0 without a
 * word, leaving a directory without its lock (a second coordinator could take it), `config.json` and `data.json`
 * (`--resume` refused it). Before each checkpoint and saved model the coordinator checks that its lock file and
 * `config.json` are still there; when one is gone it says so in one line and writes again what a resume needs: the
 * lock, `config.json` and `data.json` (as a database that finds its lock file removed recreates it, or stops).
 */
import { existsSync } from 'node:fs';
import { makeDirs } from '../contract/make-dir.js';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../contract/atomic-write.js';
import { TrainerError } from '../contract/errors.js';
import { RUN_CONFIG_FILE } from './run-config-file.js';
import { RUN_LOCK_FILE, type RunLock } from './run-lock.js';

/** What the coordinator holds of its run directory's files, to write them again. */
export interface RunDirFiles {
  /** The run directory (absolute). */
  readonly runDir: string;
  /** This coordinator's lock of it. */
  readonly lock: RunLock;
  /** Writes `config.json` as the run wrote it at its start. */
  readonly writeConfig: () => void;
  /** The `data.json` text the run wrote (null: none written, e.g. a resumed run before its data was checked). */
  readonly dataAccount: string | null;
}

/**
 * Checks the run directory still holds its lock and `config.json`; when either is gone, recreates the directory,
 * the lock, `config.json` and `data.json` (the files `--resume` reads besides the checkpoints, which the caller is
 * about to write) and logs one line naming what was missing.
 * @returns the names of the files that were missing (empty: nothing was gone)
 * @throws TrainerError ERR_BAD_FLAG when another process took the lock meanwhile: two runs must not write one directory
 */
export function restoreRunDir(files: RunDirFiles, log: (line: string) => void): string[] {
  const { runDir } = files;
  const watched = [RUN_LOCK_FILE, RUN_CONFIG_FILE, 'data.json'];
  const missing = watched.filter((f) => !existsSync(join(runDir, f)));
  if (!missing.includes(RUN_LOCK_FILE) && !missing.includes(RUN_CONFIG_FILE)) return [];
  const folderGone = !existsSync(runDir);
  makeDirs(runDir, '--run-dir');
  if (files.lock.restore() === 'taken') {
    throw new TrainerError('ERR_BAD_FLAG', `the run directory ${runDir} lost its lock during the run and another process holds it now: two runs must not write one directory; this run stops (its checkpoints are in ${join(runDir, 'checkpoints')} if still there)`);
  }
  files.writeConfig();
  if (files.dataAccount !== null) writeFileAtomicSync(join(runDir, 'data.json'), files.dataAccount);
  const restored = [RUN_LOCK_FILE, RUN_CONFIG_FILE, ...(files.dataAccount !== null ? ['data.json'] : [])];
  log(`warning: the run directory ${runDir} ${folderGone ? 'was deleted' : `lost ${missing.join(', ')}`} during the run (by another program or a person); ` +
    `wrote ${restored.join(', ')} again so the run stays locked and --resume works; earlier checkpoints, models and pictures (show-batch.png) deleted with it are not restored`);
  return missing;
}
