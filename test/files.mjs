#!/usr/bin/env node
/**
 * The test files in the order `npm run test:only` hands them to `node --test --test-concurrency=2`: the longest first
 * (the list below, longest first), then every other `*.test.ts` under test/ in path order. Node starts the files in
 * the order given, each in the first free lane of two; with the longest first the two lanes end together (longest
 * processing time first, the classic greedy for 2 machines), whereas in path order the 5-minute parity file started
 * last and ran alone for minutes while the other lane sat idle. Order cannot change a result: no test file shares
 * state with another (docs/testing.md, "How the files run").
 *
 * Seconds: each file's tests in the quiet fresh-clone CI run of main at bd65938 (`duration_ms`, two files at a time,
 * 2 cores), before this order; re-measure with `npm run test:times` and keep the list roughly sorted when a file
 * grows. A file listed here that no longer exists is skipped; a new file runs with the rest in path order.
 *
 * Usage: `node test/files.mjs` prints one path per line.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Longest first (CI seconds, see above). */
const LONGEST_FIRST = [
  'test/unit/training/model/parity-generated-cpu.test.ts', // 321 + PyTorch in before()
  'test/integration/fault-chaos.test.ts', // 134
  'test/integration/endings.test.ts', // 106
  'test/integration/distributed-remote-loss.test.ts', // 100
  'test/unit/training/model/parity-generated-224.test.ts', // 88 + ~25 of PyTorch in before()
  'test/integration/batch-invariance.test.ts', // 74
  'test/unit/training/compute/float64-reference.test.ts', // 73
  'test/integration/main-job.test.ts', // 72
  'test/integration/webgpu-distributed.test.ts', // 50
  'test/integration/distributed-correctness.test.ts', // 38
  'test/integration/fault-signals.test.ts', // 37
  'test/unit/training/compute/webgpu/webgpu-kernels.test.ts', // 36
  'test/integration/prometheus.test.ts', // 35
  'test/integration/distributed-remote.test.ts', // 35
  'test/integration/load-model.test.ts', // ≈ 30: 29.7 CPU s alone (83.6 s wall on the shared machine), not yet timed in CI
  'test/integration/distributed-failures.test.ts', // 29
  'test/unit/training/model/parity.test.ts', // 26
  'test/integration/data-checks.test.ts', // 17
];

/** Every `*.test.ts` under `dir`, `/`-separated, sorted. */
function testFiles(dir) {
  return readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith('.test.ts'))
    .map((f) => join(dir, f).split('\\').join('/')).sort();
}

const all = testFiles('test');
const first = LONGEST_FIRST.filter((f) => existsSync(f));
const firstSet = new Set(first);
process.stdout.write(`${[...first, ...all.filter((f) => !firstSet.has(f))].join('\n')}\n`);
