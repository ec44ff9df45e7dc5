/**
 * The build stamp of `dist/`: what `npm run build` (`scripts/build.mjs`) compiled it from, so that the launchers
 * (`bin/coordinator.js`, `bin/worker.js`) can refuse a `dist/` left over from older sources (after a `git pull` without
 * `npm install` or `npm run build`) instead of silently running the old code. The same idea as the native addon's
 * stamp (`src/training/compute/native/addon.ts`, `nativeSourceHash`).
 *
 * Plain JavaScript with no dependency: it must run before anything of `dist/` is loaded, and from the build script.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The command that rebuilds `dist/`, named by every message about a stale one. */
export const REBUILD_COMMAND = 'npm run build';

/** File of `dist/` that holds the stamp: `{ "sourceHash": "<16 hex digits>" }`. */
export const STAMP_FILE = 'build-stamp.json';

/**
 * The files `dist/` is compiled from: every `*.ts` under `src/` and the root's `tsconfig*.json`, as `/`-separated
 * paths relative to `root`, sorted.
 * @param {string} root - the project directory (the one holding `src/`)
 * @returns {string[]}
 */
export function sourceFiles(root) {
  const files = readdirSync(root).filter((n) => /^tsconfig.*\.json$/.test(n));
  const walk = (rel) => {
    for (const entry of readdirSync(join(root, rel), { withFileTypes: true })) {
      const path = `${rel}/${entry.name}`;
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) files.push(path);
    }
  };
  walk('src');
  return files.sort();
}

/**
 * The sources' stamp: the first 16 hex digits of SHA-256 over `path NUL content NUL` of every {@link sourceFiles}
 * file, in that order (a renamed, added or removed file changes it too). About 2 ms of CPU for this project's ~130 files.
 * @param {string} root - the project directory
 * @returns {string | null} null when there is no `src/` (an installed package: nothing to compare)
 */
export function sourceHash(root) {
  if (!existsSync(join(root, 'src'))) return null;
  return hashFiles(root, sourceFiles(root));
}

/**
 * The stamp rule shared by `dist/` and the native addon (`scripts/build-native.mjs`; the addon's loader,
 * `nativeSourceHash` in `src/training/compute/native/addon.ts`, recomputes it): the first 16 hex digits of SHA-256
 * over `name NUL content NUL` of each file, in the order given.
 * @param {string} dir - the directory the names are relative to
 * @param {readonly string[]} names - `/`-separated paths relative to `dir`, in stamp order
 * @returns {string}
 */
export function hashFiles(dir, names) {
  const hash = createHash('sha256');
  for (const name of names) hash.update(name).update('\0').update(readFileSync(join(dir, name))).update('\0');
  return hash.digest('hex').slice(0, 16);
}

/**
 * The stamp `dist/` was built with.
 * @param {string} root - the project directory
 * @returns {string | null} null when `dist/` has no (readable) stamp
 */
export function readStamp(root) {
  try {
    const stamp = JSON.parse(readFileSync(join(root, 'dist', STAMP_FILE), 'utf8')).sourceHash;
    return typeof stamp === 'string' ? stamp : null;
  } catch {
    return null;
  }
}

/**
 * Why `dist/` must not run, or null: it was built from other sources than `src/` holds now, or it carries no stamp
 * (built by an older build script, or its build failed or was interrupted). Without `src/` (an installed package)
 * there is nothing to compare, and it runs.
 * @param {string} root - the project directory
 * @returns {string | null} the message, naming {@link REBUILD_COMMAND}
 */
export function staleBuild(root) {
  const sources = sourceHash(root);
  if (sources === null) return null;
  const stamp = readStamp(root);
  if (stamp === sources) return null;
  const why = stamp === null
    ? 'dist/ carries no build stamp (it was built before the stamp existed, or its build failed or was interrupted)'
    : `dist/ was built from other sources than src/ holds now (build ${stamp}, sources ${sources}: a git pull or an edit since the last build)`;
  return `ERR_STALE_BUILD: ${why}; run \`${REBUILD_COMMAND}\` in ${resolve(root)}`;
}
