/**
 * Names of the files a run of this trainer keeps in its run directory, shared by the coordinator (which writes them)
 * and the data listing (which must not take a run directory inside `--data` for photos).
 */

/** The coordinator's lock file inside the run directory (`coordinator/run-lock.ts`). */
export const RUN_LOCK_FILE = '.coordinator.lock';

/** The run configuration inside the run directory (`coordinator/run-config-file.ts`). */
export const RUN_CONFIG_FILE = 'config.json';
