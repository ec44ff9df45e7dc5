#!/usr/bin/env node
// Thin launcher: runs the compiled worker CLI (built into dist/ by `npm install` via the prepare script, or by
// `npm run build`), after checking that dist/ was built from the sources next to it (bin/build-stamp.js).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { staleBuild } from './build-stamp.js';
import { openFilesProblem } from './open-files.js';
// Before anything is loaded: a low `ulimit -n` makes Node's module loader fail with a misleading error.
const fds = openFilesProblem('worker');
if (fds !== null) {
  console.error(`worker: ${fds}`);
  process.exit(1);
}
const entry = new URL('../dist/worker/run.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  console.error('worker: dist/ is missing; run `npm run build` (or `npm install`) in the project first.');
  process.exit(1);
}
const stale = staleBuild(fileURLToPath(new URL('..', import.meta.url)));
if (stale !== null) {
  console.error(`worker: ${stale}`);
  process.exit(1);
}
await import(entry.href);
