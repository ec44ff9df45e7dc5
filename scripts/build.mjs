#!/usr/bin/env node
/**
 * `npm run build` (and `npm install`'s `prepare`): compiles `src/` into `dist/` (`tsc -p tsconfig.build.json`, extra
 * arguments passed on), then stamps `dist/` with the hash of the sources it was compiled from (`bin/build-stamp.js`),
 * which the launchers check before they load anything of `dist/`.
 *
 * The old stamp is removed first and the new one written only after tsc succeeded, so a failed or interrupted build
 * leaves `dist/` unstamped (refused) rather than stamped as current. The hash is taken before compiling: a source
 * edited during the build makes the stamp stale (refused), never wrongly current.
 *
 * tsc never deletes: the output of a source that was removed or renamed would stay in `dist/` and could still be
 * imported (a stale module that no longer exists in `src/`). After a successful compile, every `dist/` file whose
 * source `src/<path>.ts` is gone (`.js`, `.js.map`, `.d.ts`) is removed, and directories left empty with it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sourceHash, STAMP_FILE } from '../bin/build-stamp.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stamp = join(root, 'dist', STAMP_FILE);
rmSync(stamp, { force: true });
const hash = sourceHash(root);
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const res = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });
if (res.error !== undefined) console.error(`build: could not run tsc: ${res.error.message}`);
if (res.status !== 0) process.exit(res.status ?? 1);
removeOrphans(join(root, 'dist'));
mkdirSync(dirname(stamp), { recursive: true });
writeFileSync(stamp, `${JSON.stringify({ sourceHash: hash })}\n`);

/**
 * Removes compiled files under `dir` whose TypeScript source no longer exists, then empty directories.
 * @param {string} dir - a directory under `dist/`
 * @returns {boolean} whether `dir` is empty afterwards
 */
function removeOrphans(dir) {
  if (!existsSync(dir)) return true;
  let left = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (removeOrphans(path)) rmdirSync(path);
      else left += 1;
      continue;
    }
    const compiled = /^(.*)\.(js|js\.map|d\.ts)$/.exec(relative(join(root, 'dist'), path));
    if (compiled !== null && !existsSync(join(root, 'src', `${compiled[1]}.ts`))) rmSync(path);
    else left += 1;
  }
  return left === 0;
}
