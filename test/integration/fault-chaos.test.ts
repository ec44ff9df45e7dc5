/**
 * Fault tolerance end to end on a tiny run (resnet18 at 32 px, 3 WASM workers, 6 optimizer steps; see
 * `fault-harness.ts`): the undisturbed run is the reference; a run whose workers are SIGKILLed three times at
 * seeded-random moments, and a run whose coordinator is SIGKILLed mid-step and then resumed from a checkpoint (the
 * newest one corrupted on purpose), and a run whose every worker is SIGKILLed at once (twice: the whole group is
 * restarted from the run's start, then from a checkpoint) must all end with BIT-IDENTICAL weights (every tensor of the saved model,
 * BatchNorm running statistics included), and leave no process behind.
 *
 * Expected values come from the reference run itself (same seed, same plan), compared byte for byte (tolerance 0):
 * replicas are deterministic on WASM and the data order, dropout seeds and the all-reduce order are functions of
 * (global step, rank), never of which process holds the rank.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, truncateSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { HANG_GUARD_MS, alive, differingTensors, tinyRunArgs, useTinyRunFixture, waitGone } from './fault-harness.js';

const RUN_TIMEOUT_MS = 240_000;
const fx = useTinyRunFixture('fault-chaos-');

/** A 32-bit LCG (Numerical Recipes constants): reproducible kill moments. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
}

const model = (runDir: string): string => path.join(runDir, 'models', 'stage-2.safetensors');

test('fault tolerance: chaos kills, whole-group kills and a SIGKILLed-then-resumed run end bit-identical to the undisturbed run', { timeout: 8 * RUN_TIMEOUT_MS }, async (t) => {
  const refDir = path.join(fx.dir, 'ref');
  await t.test('undisturbed reference run', async () => {
    const run = fx.start(tinyRunArgs(fx.data, refDir));
    const exit = await run.exited;
    assert.equal(exit.code, 0, run.out.slice(-3000));
    assert.ok(existsSync(model(refDir)), 'the reference saves stage-2');
    assert.deepEqual(await waitGone(run.workerPids(), HANG_GUARD_MS), [], 'workers exit after the run');
    // Disk (issue 16): default --keep 2; each stage model shares the bytes of the checkpoint taken at its last
    // step (one inode); the final checkpoint (same step as the last epoch's) links the state instead of writing it
    // again; the run ends by printing the directory's size.
    const ckpts = readdirSync(path.join(refDir, 'checkpoints')).filter((n) => n.startsWith('step-')).sort();
    assert.deepEqual(ckpts, ['step-000000004', 'step-000000006'], 'epoch ends at steps 2, 4, 6; the newest 2 kept');
    const inode = (f: string): number => statSync(f).ino;
    assert.equal(inode(path.join(refDir, 'models', 'stage-1.safetensors')), inode(path.join(refDir, 'checkpoints', ckpts[0]!, 'state.safetensors')));
    assert.equal(inode(model(refDir)), inode(path.join(refDir, 'checkpoints', ckpts[1]!, 'state.safetensors')));
    const finalLines = run.out.split('\n').filter((l) => /checkpoint: \S+step-000000006 /.test(l));
    assert.equal(finalLines.length, 2, finalLines.join('\n'));
    assert.match(finalLines[0]!, /\d+(\.\d)? MB written/);
    assert.match(finalLines[1]!, /state unchanged since the previous checkpoint: hard-linked, \d+ kB written/);
    assert.match(run.out, /^disk: +\S+ [\d.]+ [kMG]B \(checkpoints [\d.]+ [kMG]B, models [\d.]+ [kMG]B, other [\d.]+ [kMG]B; [\d.]+ [kMG]B hard-linked between models and checkpoints, counted once\)$/m);
  });

  await t.test('three SIGKILLs of random workers at random moments: same weights, no orphans', async () => {
    const runDir = path.join(fx.dir, 'chaos');
    const run = fx.start(tinyRunArgs(fx.data, runDir));
    const rand = lcg(20261129);
    // Kill after committed steps 1, 2 and 4 (one lands in an epoch-end validation/checkpoint, others mid-step), at a
    // random fraction of one step's observed time after its line: within the next step (or the validation after an
    // epoch's last), whatever the machine's speed. A fixed delay (was: up to 1.2 s) that spans a step on a loaded
    // machine spans the rest of the run on a fast one, which then has no worker left to kill or to replace.
    for (const afterStep of [1, 2, 4]) {
      await run.waitFor(new RegExp(`(^epoch \\d+: \\d+/\\d+ batches[^]*){${afterStep}}`, 'm'), RUN_TIMEOUT_MS);
      const fraction = rand();
      await new Promise((r) => setTimeout(r, Math.floor(fraction * run.stepMs()!)));
      const live = run.liveWorkerPids();
      assert.ok(live.length > 0, 'some worker is alive to be killed');
      const victim = live[Math.floor(rand() * live.length)]!;
      process.kill(victim, 'SIGKILL');
      const joinedBefore = run.workerPids().length;
      await run.waitFor(new RegExp(`(worker joined: pid \\d+[^]*){${joinedBefore + 1}}`), RUN_TIMEOUT_MS);
    }
    const exit = await run.exited;
    assert.equal(exit.code, 0, run.out.slice(-3000));
    assert.equal([...run.out.matchAll(/respawned local worker slot/g)].length, 3, 'three respawns logged');
    assert.deepEqual(differingTensors(model(refDir), model(runDir)), [], 'every tensor bit-identical to the reference');
    assert.deepEqual(await waitGone(run.workerPids(), HANG_GUARD_MS), [], 'no orphan worker');
  });

  await t.test('every worker SIGKILLed at once, twice (before the first checkpoint, then after one): the whole group is restarted from the start, then from the checkpoint; same weights', async () => {
    // torchrun's behaviour: a failed worker group is restarted as a whole within --max-restarts (each group restart
    // counts once) and resumes from its last checkpoint; the run ends as the undisturbed one did.
    const runDir = path.join(fx.dir, 'group');
    const run = fx.start(tinyRunArgs(fx.data, runDir));
    const killAll = (): void => {
      const live = run.liveWorkerPids();
      assert.equal(live.length, 3, 'three workers alive to be killed');
      for (const pid of live) process.kill(pid, 'SIGKILL');
    };
    // After committed step 1 (epoch ends, so checkpoints, at steps 2, 4, 6): nothing on disk yet.
    await run.waitFor(/^epoch \d+: \d+\/\d+ batches/m, RUN_TIMEOUT_MS);
    killAll();
    await run.waitFor(/restarting the whole worker group \(restart 1 of at most 3\)[^]*?(worker joined: pid \d+[^]*?){3}/, RUN_TIMEOUT_MS);
    // Three committed steps after the restart (so step 3): the epoch-end checkpoint of step 2 is on disk.
    await run.waitFor(/restarting the whole worker group \(restart 1 [^]*?(^epoch \d+: \d+\/\d+ batches[^]*?){3}/m, RUN_TIMEOUT_MS);
    killAll();
    const exit = await run.exited;
    assert.equal(exit.code, 0, run.out.slice(-3000));
    assert.match(run.out, /restarting the whole worker group \(restart 1 of at most 3\) from (the start of the run \(no checkpoint was written yet: the seeded initial weights \(--seed \d+, --pretrained none\)\)|\S+step-000000002)/);
    assert.match(run.out, /worker group restart 1: loading (the start of the run \(the seeded initial weights \(--seed \d+, --pretrained none\)\)|\S+step-000000002)/);
    assert.match(run.out, /restarting the whole worker group \(restart 2 of at most 3\) from \S+step-00000000[24]/);
    assert.match(run.out, /worker group restart 2: continuing from \S+step-00000000[24]: stage stage-\d, step \d \(global step [24]\)/);
    assert.doesNotMatch(run.out, /ERR_WORKER_LOST/);
    // Progress lines are on stderr (tqdm's and Lightning's stream); stdout keeps the results (tables, saved models).
    assert.doesNotMatch(run.stdout, /batches, smoothed loss/);
    assert.match(run.stdout, /^saved \S+stage-2\.safetensors/m);
    assert.deepEqual(differingTensors(model(refDir), model(runDir)), [], 'every tensor bit-identical to the reference');
    assert.deepEqual(await waitGone(run.workerPids(), HANG_GUARD_MS), [], 'no orphan worker');
  });

  await t.test('SIGKILL of the coordinator mid-step: workers exit on their own; --resume (newest checkpoint corrupted) ends bit-identical', async () => {
    const runDir = path.join(fx.dir, 'killed');
    const args = [...tinyRunArgs(fx.data, runDir), '--checkpoint-every', '1', '--keep', '5'];
    const run = fx.start(args);
    await run.waitFor(/(^epoch \d+: \d+\/\d+ batches[^]*){3}/m, RUN_TIMEOUT_MS);
    await run.waitFor(/checkpoint: \S+step-000000003/, RUN_TIMEOUT_MS);
    // Half a step (as observed in this run) after the checkpoint: mid-step 4 on any machine (a fixed 400 ms could
    // outlast the rest of the run on a fast one).
    await new Promise((r) => setTimeout(r, Math.floor(run.stepMs()! / 2)));
    const workers = run.liveWorkerPids();
    process.kill(run.child.pid!, 'SIGKILL');
    await run.exited;
    // Local workers see their control pipe close when the coordinator dies, and exit (no heartbeat timeout involved).
    assert.deepEqual(await waitGone(workers, HANG_GUARD_MS), [], 'workers of a SIGKILLed coordinator exit by themselves');

    const ckpts = readdirSync(path.join(runDir, 'checkpoints')).filter((n) => n.startsWith('step-')).sort();
    assert.ok(ckpts.length >= 2, `at least two checkpoints, got ${ckpts.join(', ')}`);
    const newest = path.join(runDir, 'checkpoints', ckpts.at(-1)!, 'state.safetensors');
    truncateSync(newest, Math.floor(statSync(newest).size / 2));

    const refused = fx.start([...args, '--resume', runDir, '--bs', '4']);
    assert.equal((await refused.exited).code, 2, refused.out);
    assert.match(refused.out, /bs \(--bs\) was 2 in this run, got 4/);

    const resumed = fx.start([...args, '--resume', runDir]);
    const exit = await resumed.exited;
    assert.equal(exit.code, 0, resumed.out.slice(-3000));
    assert.match(resumed.out, /skipping checkpoint \S+: .*truncated/, 'the corrupted newest checkpoint is reported');
    assert.match(resumed.out, new RegExp(`resumed from \\S+${ckpts.at(-2)!}`), 'the previous checkpoint is used');
    assert.deepEqual(differingTensors(model(refDir), model(runDir)), [], 'every tensor bit-identical to the reference');
    assert.deepEqual(await waitGone(resumed.workerPids(), HANG_GUARD_MS), [], 'no orphan worker');
    assert.ok(!alive(resumed.child.pid!));
  });
});
