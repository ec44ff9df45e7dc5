#!/usr/bin/env node
// Thin launcher: runs the compiled coordinator CLI (built into dist/ by `npm install` via the prepare script, or by
// `npm run build`), after checking that dist/ was built from the sources next to it (bin/build-stamp.js).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { staleBuild } from './build-stamp.js';
import { openFilesProblem } from './open-files.js';
// Before anything is loaded: a low `ulimit -n` makes Node's module loader fail with a misleading error.
const fds = openFilesProblem('coordinator');
if (fds !== null) {
  console.error(`coordinator: ${fds}`);
  process.exit(1);
}
const entry = new URL('../dist/coordinator/cli.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  console.error('coordinator: dist/ is missing; run `npm run build` (or `npm install`) in the project first.');
  process.exit(1);
}
const stale = staleBuild(fileURLToPath(new URL('..', import.meta.url)));
if (stale !== null) {
  console.error(`coordinator: ${stale}`);
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
