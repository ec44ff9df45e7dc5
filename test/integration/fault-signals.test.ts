/**
 * Signals to the coordinator on a tiny run (see `fault-harness.ts`): the first SIGTERM finishes the current step,
 * checkpoints where the run is, stops the workers and exits 0; a second signal exits at once (code 130) and still
 * takes the workers down (SIGTERM: they close and exit 143). No process may remain. Every way a run ends is in
 * `endings.test.ts`.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { HANG_GUARD_MS, tinyRunArgs, useTinyRunFixture, waitGone } from './fault-harness.js';

const RUN_TIMEOUT_MS = 180_000;
const fx = useTinyRunFixture('fault-signals-');

test('SIGTERM: finishes the step, checkpoints, stops the workers, exits 0', { timeout: RUN_TIMEOUT_MS }, async () => {
  const runDir = path.join(fx.dir, 'term');
  const run = fx.start(tinyRunArgs(fx.data, runDir, 2));
  await run.waitFor(/^epoch \d+: 1\/\d+ batches/m, RUN_TIMEOUT_MS);
  const workers = run.liveWorkerPids();
  assert.equal(workers.length, 2);
  process.kill(run.child.pid!, 'SIGTERM');
  const exit = await run.exited;
  assert.equal(exit.code, 0, run.out.slice(-3000));
  assert.match(run.out, /SIGTERM: finishing the current step/);
  const stopped = /stopped at stage (\S+), step (\d+) \(global step (\d+)\)/.exec(run.out);
  assert.ok(stopped, run.out.slice(-2000));
  const ckpts = readdirSync(path.join(runDir, 'checkpoints')).filter((n) => n.startsWith('step-')).sort();
  const newest = ckpts.at(-1)!;
  assert.equal(Number(newest.slice(5)), Number(stopped[3]), 'the last checkpoint is at the stop step');
  const meta = JSON.parse(readFileSync(path.join(runDir, 'checkpoints', newest, 'manifest.json'), 'utf8')).meta as {
    history: { position: { globalStep: number } }; plan: { globalBs: number }; sampler: { dataEpoch: number }; classes: string[];
  };
  assert.equal(meta.history.position.globalStep, Number(stopped[3]));
  assert.equal(meta.plan.globalBs, 4, '2 workers × bs 2');
  assert.equal(meta.classes.length, 2);
  assert.deepEqual(await waitGone(workers, HANG_GUARD_MS), [], 'workers stopped');
});

test('a second signal exits at once (130), abandoning the step, and takes the workers down (SIGTERM, 143)', { timeout: RUN_TIMEOUT_MS }, async () => {
  const twiceDir = path.join(fx.dir, 'twice');
  const run = fx.start(tinyRunArgs(fx.data, twiceDir, 2));
  await run.waitFor(/^epoch \d+: 1\/\d+ batches/m, RUN_TIMEOUT_MS);
  const workers = run.liveWorkerPids();
  // Two different signals back to back (two SIGTERMs could merge into one pending signal): the second lands before
  // the step in progress can finish, whatever the load, so nothing of this step is checkpointed.
  process.kill(run.child.pid!, 'SIGTERM');
  process.kill(run.child.pid!, 'SIGINT');
  const exit = await run.exited;
  // 130 (not 0) and no checkpoint-and-stop line prove it did not wait for the step; no bound on wall time.
  assert.equal(exit.code, 130, run.out.slice(-2000));
  assert.match(run.out, /SIG(INT|TERM) again: exiting now/, 'pending signals are delivered lowest number first');
  assert.doesNotMatch(run.out, /stopped at stage/, 'abandoned, not checkpointed');
  // Abandoned in epoch 0, before its first checkpoint: no run folder that --resume could not use is left behind.
  assert.equal(existsSync(twiceDir), false, run.out.slice(-2000));
  for (const pid of workers) assert.match(run.out, new RegExp(`worker process ${pid} exited with code 143`), run.out.slice(-2000));
  assert.doesNotMatch(run.out, /terminate called|Napi::Error|Aborted|core dumped/);
  assert.deepEqual(await waitGone(workers, HANG_GUARD_MS), [], 'no orphan worker');
});

test('--max-restarts 0: a lost worker makes the run checkpoint and stop with a clear message', { timeout: RUN_TIMEOUT_MS }, async () => {
  const runDir = path.join(fx.dir, 'restarts');
  const run = fx.start([...tinyRunArgs(fx.data, runDir, 2), '--max-restarts', '0']);
  await run.waitFor(/^epoch \d+: 1\/\d+ batches/m, RUN_TIMEOUT_MS);
  const [victim, survivor] = run.liveWorkerPids();
  process.kill(victim!, 'SIGKILL');
  const exit = await run.exited;
  assert.equal(exit.code, 1, run.out.slice(-3000));
  assert.match(run.out, /lost 1 worker\(s\), more than --max-restarts 0; checkpointed at global step \d+ \(\S+step-\d{9}\); resume with: npx coordinator --resume \S+restarts after fixing the cause/);
  assert.match(run.out, /checkpoint: \S+step-00000000[12]/, 'checkpointed before stopping');
  assert.doesNotMatch(run.out, /respawned local worker/);
  assert.deepEqual(await waitGone([survivor!], HANG_GUARD_MS), [], 'the survivor is stopped');
});
