#!/usr/bin/env node
/**
 * Cost of each test file: runs the test files one at a time (`node --import tsx --test <file>`, as `npm run
 * test:only` does) and prints a Markdown table, slowest first: wall seconds, CPU seconds (user + system of the test
 * process and every process it waited for: coordinators, workers, PyTorch, Prometheus) and the exit code.
 *
 * Usage: `npm run test:times -- [--out FILE] [FILE…]` (default: every `test/**\/*.test.ts`). Each file's test output
 * goes to `$TMPDIR/test-times/<file>.log`. On a shared machine compare CPU seconds (load stretches wall time, not CPU
 * time); the table in docs/testing.md was made this way. Needs bash (its `times` builtin reads the children's CPU).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  console.log('Usage: npm run test:times -- [--out FILE] [FILE…]  (default: every test/**/*.test.ts; logs in $TMPDIR/test-times/)');
  process.exit(0);
}
const outAt = args.indexOf('--out');
const out = outAt >= 0 ? args.splice(outAt, 2)[1] : null;

/** Every `*.test.ts` under `dir`, sorted (the order of `npm run test:only`). */
function testFiles(dir) {
  return readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith('.test.ts'))
    .map((f) => join(dir, f)).sort();
}

const files = args.length > 0 ? args : testFiles('test');
const logs = join(tmpdir(), 'test-times');
mkdirSync(logs, { recursive: true });

/** `0m1.250s` → 1.25 */
const seconds = (t) => {
  const m = /^(\d+)m([\d.]+)s$/.exec(t);
  return m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
};

const rows = [];
for (const file of files) {
  const log = join(logs, `${relative('test', file).replaceAll('/', '_')}.log`);
  const started = process.hrtime.bigint();
  // `times` prints the shell's own user/sys, then its children's (all waited-for descendants).
  const res = spawnSync('bash', ['-c', 'node --import tsx --test --test-concurrency=1 "$1" >"$2" 2>&1; rc=$?; times; exit $rc', '_', file, log],
    { encoding: 'utf8' });
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  const children = res.stdout.trim().split('\n').at(-1).split(/\s+/).map(seconds);
  const row = { file, wall, cpu: children[0] + children[1], code: res.status };
  rows.push(row);
  console.error(`${file}: ${wall.toFixed(1)} s wall, ${row.cpu.toFixed(1)} s CPU, exit ${row.code}`);
}

rows.sort((a, b) => b.cpu - a.cpu);
const total = (k) => rows.reduce((s, r) => s + r[k], 0);
const table = [
  '| test file | wall s | CPU s | exit |',
  '| --- | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.file} | ${r.wall.toFixed(1)} | ${r.cpu.toFixed(1)} | ${r.code} |`),
  `| **total** (${rows.length} files) | ${total('wall').toFixed(1)} | ${total('cpu').toFixed(1)} | |`,
].join('\n');
console.log(table);
if (out) writeFileSync(out, `${table}\n`);
