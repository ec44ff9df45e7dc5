/**
 * The benchmark scripts check the PETS_* settings before they time anything, as the coordinator, the workers and
 * `npm run learn` do (contract/env-settings.ts checkEnvSettings): PETS_NATIVE_THREADS=abc timed the backend on one
 * thread, unsaid, and the figures were read as the setting's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { main } from '../../../scripts/bench-compute.js';

const RULE = 'PETS_NATIVE_THREADS must be an integer ≥ 1 (oneDNN threads per process; unset: 1), got "abc"';

test('bench:compute refuses a bad PETS_* setting, or a bad --ab value of one, before it times anything (exit 2)', async () => {
  const saved = process.env.PETS_NATIVE_THREADS;
  const { error } = console;
  const lines: string[] = [];
  console.error = (line: string) => { lines.push(line); };
  try {
    process.env.PETS_NATIVE_THREADS = 'abc';
    // --backend cpu --reps 1: were the setting passed over, this would time a step; it must stop first.
    assert.equal(await main(['--backend', 'cpu', '--arch', 'resnet18', '--size', '32', '--bs', '1', '--reps', '1']), 2);
    delete process.env.PETS_NATIVE_THREADS;
    assert.equal(await main(['--backend', 'cpu', '--arch', 'resnet18', '--size', '32', '--bs', '1', '--reps', '1', '--ab', 'PETS_NATIVE_THREADS=abc']), 2);
  } finally {
    console.error = error;
    if (saved === undefined) delete process.env.PETS_NATIVE_THREADS;
    else process.env.PETS_NATIVE_THREADS = saved;
  }
  assert.deepEqual(lines, [`bench:compute: ${RULE}`, `bench:compute: ${RULE}`]);
});

test('bench-allreduce refuses a bad PETS_* setting before it starts a child (exit 2, one line)', () => {
  const script = fileURLToPath(new URL('../../../scripts/bench-allreduce.ts', import.meta.url));
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--sizes', '1', '--workers', '2', '--reps', '1'], {
    env: { ...process.env, PETS_RING_ADD: 'JS' }, encoding: 'utf8',
  });
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stderr.trim(), 'bench-allreduce: ERR_BAD_CONFIG: PETS_RING_ADD must be js (the ring\'s sums in JavaScript; unset: native where built) or unset, got "JS"');
  assert.equal(r.stdout, '');
});
