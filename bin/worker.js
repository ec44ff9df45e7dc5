#!/usr/bin/env node
// Thin launcher: runs the compiled worker CLI (built into dist/ by `npm install` via the prepare script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const entry = new URL('../dist/worker/run.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  console.error('worker: dist/ is missing; run `npm run build` (or `npm install`) in the project first.');
  process.exit(1);
}
await import(entry.href);
