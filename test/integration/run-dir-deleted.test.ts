/**
 * The run directory deleted during the run (`rm -rf` of --run-dir after the first checkpoint): the coordinator notices
 * at its next checkpoint, says so in one warning line and writes again what a resume needs (its lock, config.json,
 * data.json), so the directory stays locked against a second coordinator and `--resume` continues the run. Before,
 * the checkpoint writer recreated the folder, the run ended with exit 0 without a word, and the directory could be
 * neither resumed (no config.json) nor protected (no lock). Tiny run of fault-harness.ts, 1 WASM worker.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { HANG_GUARD_MS, tinyRunArgs, useTinyRunFixture, waitGone } from './fault-harness.js';
import { RUN_LOCK_FILE } from '../../src/coordinator/run-lock.js';

const RUN_TIMEOUT_MS = 240_000;
const fx = useTinyRunFixture('run-dir-deleted-');

test('a run directory deleted mid-run gets its lock, config.json and data.json back at the next checkpoint; --resume then continues it', { timeout: 3 * RUN_TIMEOUT_MS }, async () => {
  const runDir = path.join(fx.dir, 'run');
  const run = fx.start([...tinyRunArgs(fx.data, runDir, 1), '--checkpoint-every', '2']);
  await run.waitFor(/checkpoint: \S+step-000000002 /, RUN_TIMEOUT_MS);
  rmSync(runDir, { recursive: true, force: true });
  await run.waitFor(/warning: the run directory .* was deleted during the run.*\n/, RUN_TIMEOUT_MS);
  const warning = run.out.split('\n').find((l) => l.includes('warning: the run directory'))!;
  assert.match(warning, new RegExp(`the run directory ${runDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} was deleted during the run .*wrote ${RUN_LOCK_FILE.replace('.', '\\.')}, config\\.json, data\\.json again`));
  assert.equal(run.out.split('\n').filter((l) => l.includes('warning: the run directory')).length, 1, 'one line');
  // What resume and the lock need is back while the run goes on.
  for (const f of [RUN_LOCK_FILE, 'config.json', 'data.json']) assert.ok(existsSync(path.join(runDir, f)), `${f} restored`);
  assert.equal(JSON.parse(readFileSync(path.join(runDir, RUN_LOCK_FILE), 'utf8')).pid, run.child.pid, 'the lock names this coordinator');
  // Stopped hard after a checkpoint written since, the run resumes from it.
  await run.waitFor(/checkpoint: \S+step-000000006 /, RUN_TIMEOUT_MS);
  run.killGroup();
  await run.exited;
  await waitGone(run.workerPids(), HANG_GUARD_MS);
  const resumed = fx.start(['--resume', runDir, '--plain', '--metrics-port', '-1', '--bind', 'tcp://127.0.0.1:0']);
  const exit = await resumed.exited;
  assert.equal(exit.code, 0, resumed.out.slice(-3000));
  assert.match(resumed.out, /step-000000006/);
  assert.ok(existsSync(path.join(runDir, 'models', 'stage-2.safetensors')), 'the resumed run ends with its model');
});
