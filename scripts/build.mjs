#!/usr/bin/env node
/**
 * `npm run build` (and `npm install`'s `prepare`): compiles `src/` into `dist/` (`tsc -p tsconfig.build.json`, extra
 * arguments passed on), then stamps `dist/` with the hash of the sources it was compiled from (`bin/build-stamp.js`),
 * which the launchers check before they load anything of `dist/`.
 *
 * The old stamp is removed first and the new one written only after tsc succeeded, so a failed or interrupted build
 * leaves `dist/` unstamped (refused) rather than stamped as current. The hash is taken before compiling: a source
 * edited during the build makes the stamp stale (refused), never wrongly current.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
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
mkdirSync(dirname(stamp), { recursive: true });
writeFileSync(stamp, `${JSON.stringify({ sourceHash: hash })}\n`);
