/**
 * How the integration tests start the project's commands (`coordinator`, `worker`) as processes: from `dist/`, the
 * JavaScript `npx coordinator` / `npx worker` run, when `dist/` was built from the sources as they are now (its build
 * stamp, `bin/build-stamp.js`, the check the launchers make); otherwise from the TypeScript sources under tsx.
 *
 * Why: `npm test` builds `dist/` before the tests, and a process started from the sources pays tsx's loader (about
 * 1.1 s of CPU per process on the 2-core CI machine, measured: `node --import tsx src/worker/run.ts --help` 1.9 s of
 * CPU against 0.75 s for `node dist/worker/run.js --help`), again in every worker it spawns and every worker thread
 * those start; the suite starts a few hundred. The code under test is the same either way (dist/ is compiled from
 * exactly these sources, which the stamp proves), and a test file run alone after an edit, without a build, still
 * runs the edited sources (the stamp no longer matches). `PETS_TEST_FROM_SOURCES=1` forces the sources.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { staleBuild } from '../../../bin/build-stamp.js';

/** Project root (three levels above this file). */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** A module to import and the Node flags it needs (`--import tsx` for a `.ts` module, none for `dist/`). */
export interface CommandModule {
  /** Absolute path of the module (`src/<which>/cli.ts` or `dist/<which>/cli.js`); it exports `main(argv)`. */
  readonly file: string;
  /** Flags for `node` before the script: `['--import', 'tsx']` or `[]`. */
  readonly execArgv: readonly string[];
  /** `'dist'` or `'sources'`, for logs. */
  readonly from: 'dist' | 'sources';
}

let distFresh: boolean | null = null;

/** Whether `dist/` holds the current sources' build (computed once per test process: ~2 ms of hashing). */
export function distIsFresh(): boolean {
  if (distFresh === null) {
    distFresh = process.env.PETS_TEST_FROM_SOURCES !== '1'
      && existsSync(path.join(ROOT, 'dist/coordinator/cli.js')) && existsSync(path.join(ROOT, 'dist/worker/cli.js'))
      && staleBuild(ROOT) === null;
  }
  return distFresh;
}

/** The module whose `main(argv)` runs `which` (see the file comment for dist/ versus sources). */
export function commandModule(which: 'coordinator' | 'worker'): CommandModule {
  return distIsFresh()
    ? { file: path.join(ROOT, 'dist', which, 'cli.js'), execArgv: [], from: 'dist' }
    : { file: path.join(ROOT, 'src', which, 'cli.ts'), execArgv: ['--import', 'tsx'], from: 'sources' };
}
