/**
 * Checkpoint metadata and resume checks of the coordinator (`src/coordinator/checkpoint-store.ts`): what the manifest
 * records (plan, per-group max lrs, sampler position), that it is a snapshot (later history changes do not leak in),
 * that a resumed plan must match, and that flags given again must agree. Expected values are worked out by hand
 * from the plan rules in `src/contract/plan/plan.ts` (stated per assertion).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { resolveRunConfig, type StageConfig } from '../../../src/contract/config.js';
import { TrainerError, isTrainerError } from '../../../src/contract/errors.js';
import { planStages, trainingSeed } from '../../../src/contract/plan/plan.js';
import { planResumedScaleOut, planScaleOut } from '../../../src/coordinator/scale-out.js';
import { autoResumeCommand, CheckpointStore, checkpointMeta, dataFingerprint, checkpointWriteFailure, checkResumedPlan, dataEpochOf, loadResumePoint, resumeCommand, type ResumePoint } from '../../../src/coordinator/checkpoint-store.js';
import { newHistory } from '../../../src/coordinator/history.js';
import { checkCheckpointMeta } from '../../../src/coordinator/checkpoint-meta.js';
import { applyStageShorthands, parseTrainArgs } from '../../../src/coordinator/options.js';

const STAGES: StageConfig[] = [
  { kind: 'one_cycle', name: 'stage-1', epochs: 2, maxLr: 'slice(3e-3)', frozen: true },
  { kind: 'lr_find', name: 'lr-find', epochs: 0, maxLr: '0', frozen: false },
  { kind: 'one_cycle', name: 'stage-2', epochs: 1, maxLr: 'slice(1e-6,1e-4)', frozen: false },
];

function plan(trainCount: number, globalBs = 6) {
  const scale = planScaleOut({ bs: 2, worldSize: 3, accum: 1, globalBs, lrScale: 'none', baseBs: 64 });
  return { scale, stages: planStages({ stages: STAGES, trainCount, globalBs: scale.globalBs, lrFactor: scale.lrFactor }) };
}

test('dataEpochOf: fit epochs before the stage plus the epoch within it; lr_find has its own epochs', () => {
  const { stages } = plan(13); // floor(13 / 6) = 2 steps per epoch
  assert.deepEqual(dataEpochOf(stages, 0, 3), { dataEpoch: 1, stepInEpoch: 1 });
  assert.deepEqual(dataEpochOf(stages, 2, 1), { dataEpoch: 2, stepInEpoch: 1 }, 'stage-1 had 2 epochs, lr_find none');
  assert.deepEqual(dataEpochOf(stages, 1, 0), { dataEpoch: 1_000_000 + 1_000, stepInEpoch: 0 });
  assert.deepEqual(dataEpochOf(stages, 3, 0), { dataEpoch: 3, stepInEpoch: 0 }, 'past the last stage: all fit epochs');
});

test('checkpointMeta records plan, max lrs per group, sampler and membership, as a snapshot', () => {
  const { scale, stages } = plan(13);
  const history = newHistory();
  history.position = { stageIndex: 0, stepInStage: 3, globalStep: 3 };
  const config = resolveRunConfig({ bs: 2, stages: STAGES, runDir: '/tmp/x' });
  const meta = checkpointMeta({ runId: 'r', config, classes: ['a', 'b'], history, stages, scale, worldSize: 3, generation: 4 });
  assert.equal(meta.plan!.globalBs, 6);
  assert.deepEqual(meta.plan!.stages.map((s) => s.totalSteps), [4, 100, 2], '2 steps/epoch × 2 epochs, lr_find 100, × 1');
  // slice(3e-3) = [3e-4, 3e-4, 3e-3] (fastai: lr/10 for the body groups, lr for the head).
  assert.deepEqual(meta.plan!.stages[0]!.maxLrs, stages[0]!.maxLrs);
  assert.equal(meta.plan!.stages[0]!.maxLrs.length, 3);
  assert.deepEqual(meta.sampler, { dataEpoch: 1, stepInEpoch: 1, seed: config.seed });
  assert.equal(meta.worldSize, 3);
  assert.equal(meta.generation, 4);
  history.position = { stageIndex: 0, stepInStage: 4, globalStep: 4 };
  assert.equal(meta.history.position.globalStep, 3, 'later changes to the live history do not alter the written meta');
});

test('checkResumedPlan refuses another global batch or another stage plan, accepts the same one', () => {
  const { scale, stages } = plan(13);
  const config = resolveRunConfig({ bs: 2, stages: STAGES, runDir: '/tmp/x' });
  const meta = checkpointMeta({ runId: 'r', config, classes: ['a', 'b'], history: newHistory(), stages, scale, worldSize: 3, generation: 1 });
  const point: ResumePoint = { dir: 'd', state: new Uint8Array(0), meta };
  checkResumedPlan(point, stages, scale);
  const fewer = plan(7); // floor(7 / 6) = 1 step per epoch: the data changed
  assert.throws(() => checkResumedPlan(point, fewer.stages, fewer.scale), (e) => isTrainerError(e, 'ERR_CHECKPOINT') && /stage 0 would be/.test(e.message));
  const bigger = plan(13, 12);
  assert.throws(() => checkResumedPlan(point, bigger.stages, bigger.scale), (e) => isTrainerError(e, 'ERR_CHECKPOINT') && /global batch would be 12, the run used 6/.test(e.message));
});

test('checkpointMeta records the sampler seed the workers train with: --seed, or mixed with a --load run\'s loaded file', () => {
  const { scale, stages } = plan(13);
  const config = resolveRunConfig({ bs: 2, stages: STAGES, runDir: '/tmp/x', seed: 7 });
  const plain = checkpointMeta({ runId: 'r', config, classes: ['a', 'b'], history: newHistory(), stages, scale, worldSize: 3, generation: 1 });
  assert.equal(plain.sampler?.seed, 7);
  const startedFrom = { path: '/m/stage-1.safetensors', what: 'saved model stage-1', sha256: 'ab'.repeat(32) };
  const loaded = checkpointMeta({ runId: 'r', config, classes: ['a', 'b'], history: newHistory(), stages, scale, worldSize: 3, generation: 1, startedFrom });
  assert.equal(loaded.sampler?.seed, trainingSeed(7, startedFrom.sha256));
  assert.notEqual(loaded.sampler?.seed, 7);
});

test('a resumed run trains with its checkpoint\'s sampler seed, whatever trainingSeed would give now', () => {
  // A --load run checkpointed by a build that drew with --seed itself must keep that order to its end: switching the
  // seed mid-epoch would repeat some items of the epoch and skip others.
  const { scale, stages } = plan(13);
  const config = resolveRunConfig({ bs: 2, stages: STAGES, runDir: '/tmp/x', seed: 7 });
  const startedFrom = { path: '/m/stage-1.safetensors', what: 'saved model stage-1', sha256: 'ab'.repeat(32) };
  const older = checkpointMeta({ runId: 'r', config, classes: ['a', 'b'], history: newHistory(), stages, scale, worldSize: 3, generation: 1, startedFrom, samplerSeed: 7 });
  assert.equal(older.sampler?.seed, 7, 'the seed the run trained with is recorded as given');
  assert.notEqual(trainingSeed(7, startedFrom.sha256), 7);
});

test('loadResumePoint: config from the checkpoint; a disagreeing flag is refused naming it; workers may differ', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ckpt-resume-'));
  try {
    const { scale, stages } = plan(13);
    const config = resolveRunConfig({ bs: 2, size: 32, workers: 3, stages: STAGES, runDir: dir });
    const meta = checkpointMeta({ runId: 'r', config, classes: ['a', 'b'], history: newHistory(), stages, scale, worldSize: 3, generation: 1 });
    new CheckpointStore(dir, 2).write(meta, new Uint8Array([1, 2, 3]));
    const ok = loadResumePoint(dir, { workers: 2, bs: 2 }, () => undefined);
    assert.equal(ok.config.size, 32, 'size comes from the checkpoint');
    assert.equal(ok.config.workers, 2, 'workers may differ');
    // Found by adversarial testing: expect stayed 3 (the saved resolved value), so a resume with --workers 2
    // spawned 2 workers and waited for a third forever.
    assert.equal(ok.config.expect, 2, 'expect follows --workers when only --workers is given');
    assert.equal(loadResumePoint(dir, { workers: 1, expect: 3 }, () => undefined).config.expect, 3, 'an explicit --expect wins');
    assert.equal(loadResumePoint(dir, {}, () => undefined).config.expect, 3, 'no flags: the run\'s world size');
    // Seen by the breaker: more workers than the run had was refused, 'expect must be an integer ≥ workers (4), got 3'
    // (the agreement check resolved the flags over the saved expect).
    assert.equal(loadResumePoint(dir, { workers: 4 }, () => undefined).config.expect, 4, 'more workers: expect follows');
    assert.deepEqual([...ok.point.state], [1, 2, 3]);
    assert.throws(() => loadResumePoint(dir, { size: 64 }, () => undefined), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /: size \(--size\) was 32 in this run, got 64;/.test(e.message));
    // Found by a new user: `--resume /nonexistent` exited 1 (ERR_CHECKPOINT, "the run failed") instead of 2 (a bad flag).
    // Found by a new user: `--resume A --run-dir B` went on in A without a word about B.
    assert.throws(() => loadResumePoint(dir, { runDir: path.join(dir, 'elsewhere') }, () => undefined),
      (e) => isTrainerError(e, 'ERR_BAD_FLAG') && e.message.includes(`continues the run in that folder, but --run-dir names another (${path.join(dir, 'elsewhere')})`));
    assert.equal(loadResumePoint(dir, { runDir: `${dir}/./` }, () => undefined).config.runDir, dir, 'the same folder written otherwise is fine (--auto-resume passes it)');
    const missing = path.join(dir, 'no-such-run');
    assert.throws(() => loadResumePoint(missing, {}, () => undefined), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /no such run directory/.test(e.message));
    // Seen (tryout): `--resume <the photos' folder>` or an empty folder exited 1 (ERR_CHECKPOINT, a failed run) while
    // a path that does not exist exits 2; a folder without checkpoints/ is a bad flag too, said as what it is.
    const notRun = path.join(dir, 'photos');
    mkdirSync(notRun);
    assert.throws(() => loadResumePoint(notRun, {}, () => undefined), (e) => isTrainerError(e, 'ERR_BAD_FLAG') &&
      e.message === `--resume ${notRun}: not a run directory (no checkpoints/ in it); --resume takes the folder a run printed (runs/<date-time>)`);
    writeFileSync(path.join(notRun, 'config.json'), '{}');
    assert.throws(() => loadResumePoint(notRun, {}, () => undefined), (e) => isTrainerError(e, 'ERR_BAD_FLAG') &&
      e.message === `--resume ${notRun}: the run there stopped before its first checkpoint (no checkpoints/ in it): nothing to resume; start it again without --resume`);
    mkdirSync(path.join(notRun, 'checkpoints'));
    assert.throws(() => loadResumePoint(notRun, {}, () => undefined), (e) => isTrainerError(e, 'ERR_CHECKPOINT'), 'checkpoints/ without an intact one: the run\'s own fault');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a resumed run shares the checkpoint it resumed from: the same state saved again (a stage model, the final checkpoint) is a hard link', () => {
  // Found with a disk that filled up after the last epoch's checkpoint: the run failed on its final checkpoint, and
  // --resume (at the stage's last step) wrote the stage model again in full, which the nearly full disk refused.
  const dir = mkdtempSync(path.join(tmpdir(), 'ckpt-resumed-'));
  try {
    const { scale, stages } = plan(13);
    const config = resolveRunConfig({ bs: 2, size: 32, workers: 3, stages: STAGES, runDir: dir });
    const history = newHistory();
    history.position = { stageIndex: 0, stepInStage: 2, globalStep: 2 };
    const state = new Uint8Array([5, 6, 7, 8]);
    new CheckpointStore(dir, 2).write(checkpointMeta({ runId: 'r', config, classes: ['a', 'b'], history, stages, scale, worldSize: 3, generation: 1 }), state);
    const { point } = loadResumePoint(dir, {}, () => undefined);
    const resumed = new CheckpointStore(dir, 2);
    resumed.resumedFrom(point);
    assert.equal(resumed.sameStateFile(state), path.join(point.dir, 'state.safetensors'));
    assert.equal(resumed.sameStateFile(new Uint8Array([5, 6, 7, 9])), null, 'another state is written, not linked');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--resume with the data at another place (moved, another mount, another machine) is accepted; the items must be the same', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ckpt-moved-'));
  try {
    const { scale, stages } = plan(13);
    const config = resolveRunConfig({ bs: 2, size: 32, workers: 3, stages: STAGES, runDir: dir, data: '/old/pets' });
    const meta = checkpointMeta({ runId: 'r', config, classes: ['a', 'b'], history: newHistory(), stages, scale, worldSize: 3, generation: 1, dataFingerprint: 'f'.repeat(64) });
    assert.equal(meta.data, 'f'.repeat(64));
    new CheckpointStore(dir, 2).write(meta, new Uint8Array([1]));
    // Before: "--resume …: data was "/old/pets" in this run, got "/new/pets"; drop the flag or start a new run".
    assert.equal(loadResumePoint(dir, { data: '/new/pets' }, () => undefined).config.data, '/new/pets');
    assert.equal(loadResumePoint(dir, {}, () => undefined).config.data, '/old/pets');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // The fingerprint the resumed run must match: items relative to the image folder, their labels and the split.
  const bunch = (root: string, labels = [0, 1, 0, 1], valid = [3]) => ({
    root, paths: ['a_1.jpg', 'b_2.jpg', 'a_3.jpg', 'b_4.jpg'].map((f) => `${root}/${f}`), labels: Int32Array.from(labels),
    train: Int32Array.from([0, 1, 2, 3].filter((i) => !valid.includes(i))), valid: Int32Array.from(valid),
  });
  assert.equal(dataFingerprint(bunch('/old/pets/images')), dataFingerprint(bunch('/mnt/x/images')), 'the same images elsewhere');
  assert.notEqual(dataFingerprint(bunch('/old/pets/images')), dataFingerprint(bunch('/old/pets/images', [0, 1, 1, 1])), 'a label changed');
  assert.notEqual(dataFingerprint(bunch('/old/pets/images')), dataFingerprint(bunch('/old/pets/images', undefined, [2])), 'another split');
});

test('a checkpoint that cannot be written says what to do: disk space needed and free, and the intact checkpoint to resume from', () => {
  const enospc = new TrainerError('ERR_CHECKPOINT', 'writing checkpoint for step 6 in /r/checkpoints failed: ENOSPC: no space left on device, write');
  const e = checkpointWriteFailure(enospc, '/r', 141_000_000, 72_000_000, '/r/checkpoints/step-000000003', 2);
  assert.equal(e.code, 'ERR_CHECKPOINT');
  assert.equal(e.message, 'writing checkpoint for step 6 in /r/checkpoints failed: ENOSPC: no space left on device, write (the disk is full: a checkpoint needs about 141 MB, 72.0 MB are free; free some space, or keep fewer checkpoints with --keep (2 on disk now)); the newest checkpoint, /r/checkpoints/step-000000003, is intact: resume from it with: npx coordinator --resume /r');
  assert.match(checkpointWriteFailure(enospc, '/r', 141_000_000, 72_000_000, '/r/checkpoints/step-000000003', 3).message, /free some space, or keep fewer checkpoints with --keep \(3 on disk now\)\)/);
  // One checkpoint on disk (seen on a 40 MB disk: 26 MB checkpoint, 15.8 MB free): --keep 1 would change nothing.
  assert.match(checkpointWriteFailure(enospc, '/r', 141_000_000, 72_000_000, '/r/checkpoints/step-000000003', 1).message,
    /free some space \(--keep cannot help: the previous checkpoint stays until the next one is complete, so the disk needs room for two\)\); the newest checkpoint/);
  const eio = new TrainerError('ERR_CHECKPOINT', 'writing checkpoint for step 3 in /r/checkpoints failed: EIO: i/o error, write');
  assert.match(checkpointWriteFailure(eio, '/r', 5, null, null, 0).message, /EIO: i\/o error, write; no earlier checkpoint of this run is on disk$/);
});

test('--auto-resume: a --run-dir without a checkpoint starts there, one with a checkpoint is resumed; with --resume or without --run-dir it is a bad flag', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ckpt-auto-'));
  try {
    const lines: string[] = [];
    const cmd = parseTrainArgs(['--run-dir', dir, '--auto-resume']);
    assert.equal(cmd.runtime.autoResume, true);
    const fresh = autoResumeCommand(cmd, (l) => lines.push(l));
    assert.equal(fresh.runtime.resume, null, 'nothing to continue: a new run');
    assert.match(lines.at(-1)!, /holds no checkpoint: starting a new run there/);
    // What a killed container leaves: a complete checkpoint directory (a temporary one does not count).
    mkdirSync(path.join(dir, 'checkpoints', 'step-000000003.tmp-1'), { recursive: true });
    assert.equal(autoResumeCommand(cmd, (l) => lines.push(l)).runtime.resume, null, 'an unfinished write is no checkpoint');
    mkdirSync(path.join(dir, 'checkpoints', 'step-000000002'));
    const again = autoResumeCommand(cmd, (l) => lines.push(l));
    assert.equal(again.runtime.resume, dir);
    assert.match(lines.at(-1)!, /holds a run \(newest checkpoint checkpoints\/step-000000002\): resuming it/);
    assert.equal(autoResumeCommand(parseTrainArgs(['--run-dir', dir]), () => {}).runtime.resume, null, 'off unless asked');
    assert.throws(() => autoResumeCommand(parseTrainArgs(['--run-dir', dir, '--auto-resume', '--resume', dir]), () => {}),
      (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /--auto-resume and --resume: give one/.test(e.message));
    assert.throws(() => autoResumeCommand(parseTrainArgs(['--auto-resume']), () => {}),
      (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /--auto-resume needs --run-dir/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--resume with stage shorthands: they change the run\'s own stages, and a disagreement names the flag', () => {
  // Seen by the breaker: a run made with --epochs 2 --fine-tune-epochs 1 (STAGES: stage-1 2 epochs, lr_find,
  // stage-2 1 epoch) resumed with `--fine-tune-epochs 1` alone was refused: the shorthand was applied to the default
  // plan (4 frozen epochs), and the message printed both stage lists as JSON under the name "stages".
  const dir = mkdtempSync(path.join(tmpdir(), 'ckpt-shorthands-'));
  try {
    const { scale, stages } = plan(13);
    const config = resolveRunConfig({ bs: 2, size: 32, stages: STAGES, runDir: dir });
    const meta = checkpointMeta({ runId: 'r', config, classes: ['a', 'b'], history: newHistory(), stages, scale, worldSize: 3, generation: 1 });
    new CheckpointStore(dir, 2).write(meta, new Uint8Array([1, 2, 3]));
    const resume = (...flags: string[]) => resumeCommand(parseTrainArgs(['--resume', dir, ...flags]), () => undefined);
    assert.deepEqual(resume('--fine-tune-epochs', '1').cmd.config.stages, config.stages, 'the same value as the run: accepted');
    assert.deepEqual(resume('--epochs', '2', '--fine-tune-epochs', '1').cmd.config.stages, config.stages);
    assert.throws(() => resume('--epochs', '5'), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && e.message ===
      `--resume ${dir}: stages (--epochs, --lr, --fine-tune-epochs, --fine-tune-lr, --no-lr-find or the config file's stages) was ` +
      'stage-1 (one_cycle, 2 epochs, slice(3e-3), frozen), lr-find (lr_find), stage-2 (one_cycle, 1 epoch, slice(1e-6,1e-4)) in this run, got ' +
      'stage-1 (one_cycle, 5 epochs, slice(3e-3), frozen), lr-find (lr_find), stage-2 (one_cycle, 1 epoch, slice(1e-6,1e-4)); drop the flag or start a new run');
    assert.deepEqual(resume('--fine-tune-lr', 'slice(1e-6,1e-4)').cmd.config.stages, config.stages, 'the run\'s own max_lr: accepted');
    assert.throws(() => resume('--lr', '1e-3'), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /got stage-1 \(one_cycle, 2 epochs, 1e-3, frozen\)/.test(e.message));
    assert.throws(() => resume('--no-lr-find'), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /got stage-1 \(one_cycle, 2 epochs, slice\(3e-3\), frozen\), stage-2/.test(e.message));
    // The setting named as every other message names it (`validPct (--valid-pct) must be …`), field and flag.
    assert.throws(() => resume('--valid-pct', '0.3'), (e) => isTrainerError(e, 'ERR_BAD_FLAG') &&
      e.message === `--resume ${dir}: validPct (--valid-pct) was 0.2 in this run, got 0.3; drop the flag or start a new run`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--resume addresses the stage shorthands by where the run\'s stages came from (stagesFrom), not by their names', () => {
  // A config file whose stages are named as the default plan's (lr-find, stage-2), run with --epochs 3: --epochs set
  // that stage-2 (its first fit stage, by position) when the run was made, but the resume with the same --epochs took
  // the stages for the default plan and brought stage-1 back, refusing the resume.
  const dir = mkdtempSync(path.join(tmpdir(), 'ckpt-stages-from-'));
  try {
    const file = path.join(dir, 'stages.json');
    writeFileSync(file, JSON.stringify({ bs: 2, size: 32, stages: [
      { kind: 'lr_find', name: 'lr-find', frozen: false },
      { kind: 'one_cycle', name: 'stage-2', epochs: 1, maxLr: 'slice(1e-6,1e-4)', frozen: false }] }));
    const runDir = path.join(dir, 'run');
    mkdirSync(runDir);
    const made = parseTrainArgs(['--config', file, '--epochs', '3', '--run-dir', runDir]);
    assert.equal(made.stagesFrom, 'config');
    assert.deepEqual(made.config.stages.map((x) => [x.name, x.epochs]), [['lr-find', 0], ['stage-2', 3]], 'made: --epochs sets stage-2, by position');
    const { scale, stages } = plan(13);
    const write = (stagesFrom: 'config' | undefined) => {
      rmSync(path.join(runDir, 'checkpoints'), { recursive: true, force: true });
      new CheckpointStore(runDir, 2).write(checkpointMeta({ runId: 'r', config: made.config, classes: ['a', 'b'], history: newHistory(), stages, scale, worldSize: 3, generation: 1, stagesFrom }), new Uint8Array([1]));
    };
    const resume = () => resumeCommand(parseTrainArgs(['--resume', runDir, '--epochs', '3']), () => undefined);
    write('config');
    assert.deepEqual(resume().cmd.config.stages, made.config.stages, 'resumed with the same --epochs: the same stages, accepted');
    // A run recorded before stagesFrom keeps the name rule (stages named as the plan's are the plan's).
    write(undefined);
    assert.throws(resume, (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /got stage-1 \(one_cycle, 3 epochs/.test(e.message));
    // A run made from the default plan records `default`, and its shorthands keep addressing stages by name.
    assert.equal(parseTrainArgs(['--epochs', '0', '--fine-tune-epochs', '2', '--run-dir', runDir]).stagesFrom, 'default');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('checkpointMeta records stagesFrom; a manifest with another value is refused', () => {
  const { scale, stages } = plan(13);
  const config = resolveRunConfig({ bs: 2, size: 32, stages: STAGES });
  const meta = checkpointMeta({ runId: 'r', config, classes: ['a', 'b'], history: newHistory(), stages, scale, worldSize: 3, generation: 1, stagesFrom: 'default' });
  assert.equal(meta.stagesFrom, 'default');
  assert.equal(checkCheckpointMeta(meta).stagesFrom, 'default');
  assert.throws(() => checkCheckpointMeta({ ...meta, stagesFrom: 'file' }), /meta\.stagesFrom must be default or config, got "file"/);
});

test('a stage shorthand for a fit stage the plan lacks is refused, not ignored', () => {
  // --fine-tune-epochs 3 beside a config file of one fit stage used to be dropped without a word.
  const one = [{ kind: 'one_cycle' as const, name: 'only', epochs: 1, maxLr: 'slice(3e-3)', frozen: true }];
  assert.throws(() => applyStageShorthands({ fineTuneEpochs: 3 }, one), (e) => isTrainerError(e, 'ERR_BAD_FLAG') &&
    e.message === '--fine-tune-epochs sets the epochs of fit stage 2, but the stages have 1 fit stage(s) (only); change the config file\'s stages instead');
  assert.throws(() => applyStageShorthands({ fineTuneLr: '1e-4' }, one), (e) => isTrainerError(e, 'ERR_BAD_FLAG') &&
    e.message === '--fine-tune-lr sets the max_lr of fit stage 2, but the stages have 1 fit stage(s) (only); change the config file\'s stages instead');
  assert.deepEqual(applyStageShorthands({ fineTuneEpochs: 0, epochs: 3 }, one), [{ ...one[0], epochs: 3 }], '0 removes a stage 2 there is none of');
});

test('a resumed run keeps its global batch on another world size, or is refused naming the world sizes that divide it', () => {
  // Seen by the breaker: a 1-worker run (bs 4, global batch 4) resumed with --workers 2 was refused as
  // '--global-bs must be a positive multiple of bs × workers = 4 × 2 = 8, got 4', a flag the user had not given.
  assert.deepEqual(planResumedScaleOut({ bs: 2, worldSize: 1, lrScale: 'none', baseBs: 64 }, 4), { accum: 2, globalBs: 4, lrFactor: 1 });
  // ERR_BAD_FLAG, exit 2: the --workers given is to change (it was ERR_CHECKPOINT, exit 1, a failed run).
  assert.throws(() => planResumedScaleOut({ bs: 4, worldSize: 2, lrScale: 'none', baseBs: 64 }, 4), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && e.message ===
    '--resume: this run\'s global batch of 4 cannot be split over 2 worker(s) × bs 4 (accumulation must be a whole number, so that the run goes on with the same batches); resume with --workers (or --expect) 1');
  assert.throws(() => planResumedScaleOut({ bs: 2, worldSize: 5, lrScale: 'none', baseBs: 64 }, 24), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /--expect\) 1, 2, 3, 4, 6, 12$/.test(e.message));
});

test('a checkpoint whose manifest is valid JSON but not the coordinator\'s shape is skipped as damaged: resume falls back to the previous one', async () => {
  // Seen by the breaker: a manifest without meta.config ended --resume with the bare 'coordinator: Cannot convert
  // undefined or null to object', one with history {} ended interpret with 'Cannot read properties of undefined
  // (reading 'filter')': the sha256 sums cover the state file, not the manifest.
  const { readFileSync, writeFileSync } = await import('node:fs');
  const { checkCheckpointMeta } = await import('../../../src/coordinator/checkpoint-meta.js');
  const dir = mkdtempSync(path.join(tmpdir(), 'ckpt-meta-'));
  try {
    const { scale, stages } = plan(13);
    const config = resolveRunConfig({ bs: 2, size: 32, workers: 3, stages: STAGES, runDir: dir });
    const history = newHistory();
    const store = new CheckpointStore(dir, 3);
    history.position = { stageIndex: 0, stepInStage: 2, globalStep: 2 };
    history.stages[0] = { name: 'stage-1', kind: 'one_cycle', epochs: [{ epoch: 0, trainLoss: 1, validLoss: Number.NaN, errorRate: 0.5, seconds: 1 }],
      steps: [{ loss: 1, lrs: [1, 1, 1] }, { loss: Number.NaN, lrs: [1, 1, 1] }], smooth: { mov: 1, n: 1 }, epochSums: { startedAtMs: 0, elapsedSeconds: 1 } };
    store.write(checkpointMeta({ runId: 'r', config, classes: ['a', 'b'], history, stages, scale, worldSize: 3, generation: 1 }), new Uint8Array([2]));
    history.position = { stageIndex: 0, stepInStage: 3, globalStep: 3 };
    const newest = store.write(checkpointMeta({ runId: 'r', config, classes: ['a', 'b'], history, stages, scale, worldSize: 3, generation: 1 }), new Uint8Array([3])).dir;
    const manifestFile = path.join(newest, 'manifest.json');
    const good = JSON.parse(readFileSync(manifestFile, 'utf8')) as { meta: Record<string, unknown> };
    // What the coordinator writes passes, NaN losses (null in JSON) included.
    assert.doesNotThrow(() => checkCheckpointMeta(good.meta));
    const damaged: Array<[string, (m: Record<string, unknown>) => void, RegExp]> = [
      ['no config', (m) => { delete m.config; }, /meta\.config must be an object, got nothing/],
      ['a config breaking its rules', (m) => { (m.config as Record<string, unknown>).bs = 0; }, /meta\.config: bs \(--bs\) must be an integer in \[2, 4096\]/],
      ['history {}', (m) => { m.history = {}; }, /meta\.history\.position must be an object, got nothing/],
      ['a position as text', (m) => { ((m.history as { position: Record<string, unknown> }).position).globalStep = '3'; }, /meta\.history\.position\.globalStep must be an integer ≥ 0, got "3"/],
      ['a stage without steps', (m) => { delete ((m.history as { stages: Record<string, unknown>[] }).stages[0]!).steps; }, /meta\.history\.stages\[0\]\.steps must be a list/],
      ['classes not names', (m) => { m.classes = [1, 2]; }, /meta\.classes must be a non-empty list of class names/],
      ['a plan without its global batch', (m) => { delete (m.plan as Record<string, unknown>).globalBs; }, /meta\.plan\.globalBs must be an integer ≥ 0/],
      // A --load run's record seeds its workers' draws (trainingSeed): a damaged sha256 was an ERR_BAD_CONFIG naming no file.
      ['a --load record with a damaged sha256', (m) => { m.startedFrom = { path: '/m.safetensors', what: 'saved model', sha256: 'zz' }; }, /meta\.startedFrom\.sha256 must be 64 hex digits, got "zz"/],
    ];
    for (const [what, damage, message] of damaged) {
      const meta = structuredClone(good.meta);
      damage(meta);
      writeFileSync(manifestFile, JSON.stringify({ ...good, meta }));
      const lines: string[] = [];
      const resumed = loadResumePoint(dir, {}, (l) => lines.push(l));
      assert.equal(resumed.point.meta.history.position.globalStep, 2, `${what}: the previous checkpoint`);
      assert.equal(lines.length, 1, what);
      assert.match(lines[0]!, new RegExp(`^skipping checkpoint ${newest.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*manifest\\.json is not a manifest this trainer wrote: `), what);
      assert.match(lines[0]!, message, what);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
