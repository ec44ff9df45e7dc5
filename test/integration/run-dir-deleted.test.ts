/**
 * The run directory deleted during the run (`rm -rf` of --run-dir after the first checkpoint): the coordinator notices
 * at its next checkpoint, says so in one warning line and writes again what a resume needs (its lock, config.json,
 * data.json), so the directory stays locked against a second coordinator and `--resume` continues the run. Before,
 * the checkpoint writer recreated the folder, the run ended with exit 0 without a word, and the directory could be
 * neither resumed (no config.json) nor protected (no lock). Tiny run of fault-harness.ts, 1 WASM worker.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CoordinatorRun, HANG_GUARD_MS, makeFixture, tinyRunArgs, waitGone } from './fault-harness.js';
import { RUN_LOCK_FILE } from '../../src/coordinator/run-lock.js';

const RUN_TIMEOUT_MS = 240_000;
let dir = '';
let data = '';
const started: CoordinatorRun[] = [];

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'run-dir-deleted-'));
  data = makeFixture(path.join(dir, 'data'));
});

after(async () => {
  for (const run of started) run.killGroup();
  await waitGone(started.flatMap((r) => [r.child.pid!, ...r.workerPids()]), HANG_GUARD_MS);
  rmSync(dir, { recursive: true, force: true });
});

test('a run directory deleted mid-run gets its lock, config.json and data.json back at the next checkpoint; --resume then continues it', { timeout: 3 * RUN_TIMEOUT_MS }, async () => {
  const runDir = path.join(dir, 'run');
  const run = new CoordinatorRun([...tinyRunArgs(data, runDir, 1), '--checkpoint-every', '2'], dir);
  started.push(run);
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
  const resumed = new CoordinatorRun(['--resume', runDir, '--plain', '--metrics-port', '-1', '--bind', 'tcp://127.0.0.1:0'], dir);
  started.push(resumed);
  const exit = await resumed.exited;
  assert.equal(exit.code, 0, resumed.out.slice(-3000));
  assert.match(resumed.out, /step-000000006/);
  assert.ok(existsSync(path.join(runDir, 'models', 'stage-2.safetensors')), 'the resumed run ends with its model');
});
