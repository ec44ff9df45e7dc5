/**
 * The one training loop (`fitStage`, `lrFindStage`) over a scripted transport: what it asks the transport, what it
 * records and prints, and its hooks. Expected values come from fastai 1.0.61 (`fit` + Recorder smoothing β = 0.98,
 * OneCycleScheduler via `stepHyper`, LRFinder's lrs and stop rule) computed by hand or with the plan's pure functions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LocalAllReducer } from '../../../../src/training/allreduce/local.js';
import { fitStage, newStageRecord, stepLoss, type StepTransport } from '../../../../src/training/learner/loop.js';
import { lrFindStage } from '../../../../src/training/learner/lr-find.js';
import { planStages, stepHyper, type StagePlan } from '../../../../src/contract/plan/plan.js';
import { lrFindLr } from '../../../../src/contract/plan/schedule.js';
import { SmoothedLoss } from '../../../../src/contract/plan/smoothing.js';

/** A transport whose step k returns losses[k] (count 2) and records every call. */
function scripted(losses: readonly number[]): StepTransport<number, string> & { calls: string[]; state: string } {
  const t = {
    calls: [] as string[],
    state: 'w0',
    step: (stage: StagePlan, k: number, hyper: { lrs: number[]; momentum: number }) => {
      t.calls.push(`step ${k} lr ${hyper.lrs[2]!.toExponential(3)}`);
      t.state = `w${k + 1}`;
      const loss = losses[k]!;
      return Promise.resolve({ lossSum: Number.isNaN(loss) ? 0 : 2 * loss, count: Number.isNaN(loss) ? 0 : 2, seconds: 0.5, detail: k });
    },
    validate: () => { t.calls.push('validate'); return Promise.resolve({ validLoss: 1.5, errorRate: 0.25 }); },
    snapshot: () => { t.calls.push('snapshot'); return Promise.resolve(t.state); },
    restore: (s: string) => { t.calls.push(`restore ${s}`); t.state = s; return Promise.resolve(); },
  };
  return t;
}

const fitPlan = (epochs: number): StagePlan => planStages({
  stages: [{ kind: 'one_cycle', name: 's', epochs, maxLr: '1e-2', frozen: true }], trainCount: 12, globalBs: 4, lrFactor: 1,
})[0]!;

test('fitStage: stepHyper per step, fastai-smoothed train_loss, validation and a row at each epoch end', async () => {
  const stage = fitPlan(2); // 3 steps per epoch, 6 steps
  const losses = [4, 3.5, 3, 2.8, 2.5, 2.2];
  const t = scripted(losses);
  const lines: string[] = [];
  const record = newStageRecord();
  const { rows, completed } = await fitStage(t, stage, record, 0, { progress: 'none', out: (l) => lines.push(l), heading: 'title' });
  assert.equal(completed, true);
  assert.deepEqual(t.calls, [0, 1, 2].map((k) => `step ${k} lr ${stepHyper(stage, k).lrs[2]!.toExponential(3)}`)
    .concat('validate', [3, 4, 5].map((k) => `step ${k} lr ${stepHyper(stage, k).lrs[2]!.toExponential(3)}`), 'validate'));
  const s = new SmoothedLoss();
  const smoothed = losses.map((l) => s.add(l));
  assert.deepEqual(rows.map((r) => [r.epoch, r.trainLoss, r.validLoss, r.errorRate]), [[0, smoothed[2], 1.5, 0.25], [1, smoothed[5], 1.5, 0.25]]);
  assert.ok(rows.every((r) => r.seconds >= 1.5), 'three steps of 0.5 s plus the validation');
  assert.deepEqual(record.steps.map((x) => x.loss), losses);
  assert.deepEqual(record.smooth, s.state);
  assert.ok(lines[0]!.startsWith('title\n'));
  assert.equal(lines.length, 3, 'heading + header, then one row per epoch');
});

test('fitStage resumed mid-stage continues the smoothing and the epoch as an undisturbed run', async () => {
  const stage = fitPlan(2);
  const losses = [4, 3.5, 3, 2.8, 2.5, 2.2];
  const straight = await fitStage(scripted(losses), stage, newStageRecord(), 0, { progress: 'none', out: () => {} });
  const record = newStageRecord();
  const stopAt = 4; // a hook asks to stop after step 4 (inside epoch 1)
  const first = await fitStage(scripted(losses), stage, record, 0, { progress: 'none', out: () => {}, afterStep: (_s, k) => k === stopAt });
  assert.equal(first.completed, false);
  const saved = JSON.parse(JSON.stringify(record)) as typeof record; // what a checkpoint keeps
  const t = scripted(losses);
  const resumed = await fitStage(t, stage, saved, stopAt + 1, { progress: 'none', out: () => {} });
  assert.deepEqual(t.calls, [`step 5 lr ${stepHyper(stage, 5).lrs[2]!.toExponential(3)}`, 'validate']);
  assert.equal(resumed.rows[0]!.trainLoss, straight.rows[1]!.trainLoss, 'bit-identical train_loss');
  assert.deepEqual(saved.epochs.map((r) => r.epoch), [0, 1]);
});

test('fitStage resumed mid-epoch counts batches from the epoch start: the same progress lines as an undisturbed run', async () => {
  // fastai's and Lightning's bars show the position in the epoch. Seen: a run killed after step 6 of a 14-batch epoch
  // and resumed printed "epoch 0: 1/8 batches …" on every batch, where the first run printed "8/14" every second one.
  const stage = planStages({ stages: [{ kind: 'one_cycle', name: 's', epochs: 1, maxLr: '1e-2', frozen: true }], trainCount: 56, globalBs: 4, lrFactor: 1 })[0]!;
  assert.equal(stage.stepsPerEpoch, 14);
  const losses = Array.from({ length: 14 }, (_, k) => 4 - k / 10);
  const straight: string[] = [];
  await fitStage(scripted(losses), stage, newStageRecord(), 0, { progress: 'lines', progressOut: (l) => straight.push(l), out: () => {} });
  assert.deepEqual(straight.map((l) => l.split(',')[0]), [2, 4, 6, 8, 10, 12, 14].map((n) => `epoch 0: ${n}/14 batches`));
  const record = newStageRecord();
  const stopAt = 6; // killed after step 6: the checkpoint holds steps 0..6, the resumed run starts at step 7
  await fitStage(scripted(losses), stage, record, 0, { progress: 'none', out: () => {}, afterStep: (_s, k) => k === stopAt });
  const resumed: string[] = [];
  await fitStage(scripted(losses), stage, JSON.parse(JSON.stringify(record)) as typeof record, stopAt + 1,
    { progress: 'lines', progressOut: (l) => resumed.push(l), out: () => {} });
  assert.deepEqual(resumed, straight.slice(3), 'from "epoch 0: 8/14 batches" on, with the same smoothed losses');
});

test('a step with no decoded item has no loss (NaN) and leaves the smoothed loss alone', async () => {
  const stage = fitPlan(1);
  const record = newStageRecord();
  const { rows } = await fitStage(scripted([4, Number.NaN, 3]), stage, record, 0, { progress: 'none', out: () => {} });
  const s = new SmoothedLoss();
  s.add(4);
  assert.equal(rows[0]!.trainLoss, s.add(3));
  assert.ok(Number.isNaN(record.steps[1]!.loss));
  assert.ok(Number.isNaN(stepLoss({ lossSum: 0, count: 0 })));
});

const sweep = (numIt: number): StagePlan => planStages({
  stages: [{ kind: 'lr_find', name: 'f', epochs: 0, maxLr: '0', frozen: true }], trainCount: 12, globalBs: 4, lrFactor: 1, lrFindIterations: numIt,
})[0]!;

test('lrFindStage: fastai lrs, smoothed losses, stop at 4 × best, state restored', async () => {
  const t = scripted([5, 4, 3, 2, 100, 1]);
  const r = (await lrFindStage(t, sweep(6), { progress: 'none', out: () => {} }))!;
  assert.deepEqual(r.lrs, [0, 1, 2, 3, 4].map((i) => lrFindLr(i, { numIt: 6 })));
  const s = new SmoothedLoss();
  assert.deepEqual(r.losses, [5, 4, 3, 2, 100].map((l) => s.add(l)));
  assert.deepEqual(r.rawLosses, [5, 4, 3, 2, 100]);
  // Smoothed: 5, 4.49, 3.99, 3.47 (best), then 23.6 after the 100 > 4 × 3.47: fastai's stop_div.
  assert.equal(r.stop, 'diverged');
  assert.equal(r.suggestion, null);
  assert.match(r.noSuggestion ?? '', /at least 17/);
  assert.equal(t.calls[0], 'snapshot');
  assert.equal(t.calls.at(-1), 'restore w0');
});

test('lrFindStage: a stop request restores and returns null; a failing step restores then rethrows', async () => {
  const t = scripted([5, 4, 3, 2]);
  let asked = 0;
  assert.equal(await lrFindStage(t, sweep(4), { progress: 'none', out: () => {}, stopRequested: () => ++asked === 2 }), null);
  assert.equal(t.state, 'w0');
  assert.equal(t.calls.filter((c) => c.startsWith('step')).length, 2);
  const failing = scripted([5]);
  failing.step = () => Promise.reject(new Error('boom'));
  await assert.rejects(lrFindStage(failing, sweep(4), { progress: 'none', out: () => {} }), /boom/);
  assert.deepEqual(failing.calls, ['snapshot', 'restore w0']);
  const kept = scripted([5]);
  kept.step = () => Promise.reject(new Error('lost'));
  await assert.rejects(lrFindStage(kept, sweep(4), { progress: 'none', out: () => {}, restoreAfterError: false }), /lost/);
  assert.deepEqual(kept.calls, ['snapshot']);
});

test('LocalAllReducer is the identity all-reduce of a world of one', async () => {
  const r = new LocalAllReducer();
  const buf = Float32Array.from([1.5, -2, 3]);
  assert.equal(await r.allReduce(buf, { step: 0, bucket: 0 }, { average: true }), buf);
  assert.deepEqual(Array.from(buf), [1.5, -2, 3]);
  assert.deepEqual([r.worldSize, r.rank, r.stats().callsTotal, r.stats().sentBytesTotal], [1, 0, 1, 0]);
});

test('fitStage stops at a step whose loss is infinite (ERR_DIVERGED, before its hook); a step that decoded nothing (NaN, count 0) is not a divergence', async () => {
  const stage = fitPlan(2);
  const hooked: number[] = [];
  const t = scripted([4, 3.5, Number.POSITIVE_INFINITY, 2.8, 2.5, 2.2]);
  await assert.rejects(fitStage(t, stage, newStageRecord(), 0, { progress: 'none', out: () => {}, afterStep: (_s, k) => { hooked.push(k); return false; } }),
    { code: 'ERR_DIVERGED', message: /^s: the training loss of step 3 of 6 is inf: the training diverged/ });
  assert.deepEqual(hooked, [0, 1]);
  assert.ok(!t.calls.includes('validate'), 'no validation (nor the epoch\'s checkpoint) after the diverged step');
  const { completed } = await fitStage(scripted([4, Number.NaN, 3, 2.8, 2.5, 2.2]), stage, newStageRecord(), 0, { progress: 'none', out: () => {} });
  assert.equal(completed, true);
});
