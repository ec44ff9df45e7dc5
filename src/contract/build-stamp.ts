/**
 * Which build of the compiled code a process runs, so that a coordinator's local workers run the same code as the
 * coordinator. `npm run build` (`scripts/build.mjs`) stamps `dist/` with the hash of the sources it compiled
 * (`dist/build-stamp.json`, see `bin/build-stamp.js`); the launchers refuse a `dist/` whose stamp is not that of the
 * sources beside it. A running coordinator can still meet another build: `dist/` rebuilt (after a `git pull`) while it
 * runs, and a worker it then spawns or respawns loads the new files. So the coordinator passes the build it was
 * loaded from to its local workers ({@link COORDINATOR_BUILD_ENV}), and a worker of another build refuses to start.
 *
 * Run from the TypeScript sources (tsx), there is no build: {@link loadedBuild} is null and nothing is checked.
 */
import { readFileSync } from 'node:fs';

/** The stamp file of `dist/` (written by `scripts/build.mjs`): `{ "sourceHash": "<16 hex digits>" }`. */
export const BUILD_STAMP_FILE = 'build-stamp.json';

/** The environment variable by which a coordinator tells its local workers the build it runs. */
export const COORDINATOR_BUILD_ENV = 'PETS_COORDINATOR_BUILD';

/** The stamp of `dist/` next to this module (`dist/contract/build-stamp.js` → `dist/build-stamp.json`), or null. */
function readLoadedBuild(): string | null {
  try {
    const stamp: unknown = JSON.parse(readFileSync(new URL(`../${BUILD_STAMP_FILE}`, import.meta.url), 'utf8')).sourceHash;
    return typeof stamp === 'string' ? stamp : null;
  } catch {
    return null;
  }
}

/** Read once, when this module is loaded (with the rest of the process's code), not when asked. */
const LOADED_BUILD = readLoadedBuild();

/**
 * The build this process's code was loaded from: the `sourceHash` of `dist/build-stamp.json`, or null when it runs
 * from the TypeScript sources (or from an unstamped `dist/`).
 */
export function loadedBuild(): string | null {
  return LOADED_BUILD;
}

/**
 * Why this process must not serve as its coordinator's local worker, or null: the coordinator said its build
 * ({@link COORDINATOR_BUILD_ENV}) and this process's code is another one.
 * @param env - the process environment (the coordinator's variable, if any)
 * @param loaded - this process's build ({@link loadedBuild})
 * @returns the message (`ERR_STALE_BUILD` is its code), or null when the builds agree or nothing was said
 */
export function buildMismatch(env: NodeJS.ProcessEnv = process.env, loaded: string | null = LOADED_BUILD): string | null {
  const coordinator = env[COORDINATOR_BUILD_ENV];
  if (coordinator === undefined || coordinator === '' || coordinator === loaded) return null;
  return `this worker's code (build ${loaded ?? 'unstamped'}) is not its coordinator's (build ${coordinator}): dist/ was rebuilt ` +
    'since the coordinator started; stop the coordinator and start it again (it resumes with --resume <run dir>)';
}
