/**
 * The coordinator's step collective (`src/coordinator/stage-runner.ts` runStep, through runFitStage) against a
 * scripted cluster (no processes): a global batch of which no image could be read is not committed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planStages } from '../../../src/contract/plan/plan.js';
import type { Message } from '../../../src/contract/protocol/index.js';
import type { Cluster } from '../../../src/coordinator/cluster.js';
import { newHistory } from '../../../src/coordinator/history.js';
import { Recovery, type RecoveryOptions } from '../../../src/coordinator/recovery.js';
import { resumeCommandLine } from '../../../src/coordinator/shell-arg.js';
import { runFitStage, runLrFind, type StageContext } from '../../../src/coordinator/stage-runner.js';
import { StepMetricsRecorder } from '../../../src/coordinator/run-metrics.js';
import { MetricsServer } from '../../../src/coordinator/metrics/server.js';

/** The data-went-away error's cause, as `dataWentAwayError` words it. */
const GONE = 'read none of its images: every one failed to decode (each was readable when the run started: was the data folder '
  + 'moved, deleted or unmounted? the log lines above name the files)';

/**
 * A 2-rank cluster whose step-done replies carry `counts[step][rank]` items and valid-done replies `validCount` each;
 * it records what was broadcast. Resume advice is the coordinator's (`Recovery.resumeAdvice`) for run `runs/my run`
 * whose newest checkpoint is `newest` (null: none written yet).
 */
function scripted(counts: (step: number) => number[], newest: string | null = 'runs/my run/checkpoints/step-000000001', validCount = 2,
  lossSum: (step: number, count: number) => number = (_step, count) => count * 0.5, validLossSum = validCount / 2) {
  const sent: string[] = [];
  const cluster = {
    generation: 1,
    ranks: () => [{ rank: 0 }, { rank: 1 }],
    async broadcast(m: Message) { sent.push(m.type === 'step' || m.type === 'commit' || m.type === 'abort' ? `${m.type} ${m.step}` : m.type); },
    async gather(ranks: number[]) {
      await new Promise((r) => setImmediate(r));
      const step = Number(sent.filter((s) => s.startsWith('step ')).at(-1)!.slice(5));
      return ranks.map((rank) => ({
        rank, frames: [],
        message: { type: 'step-done', step, generation: 1, rank, lossSum: lossSum(step, counts(step)[rank]!), count: counts(step)[rank]!, correct: 0, dataWaitSeconds: 0, forwardBackwardSeconds: 0, allreduceSeconds: 0, optimizerSeconds: 0, allreduceBytes: 0, decodeQueueTasks: 0, tfjsBytes: 0, tfjsTensors: 0, rssBytes: 0, skipped: {} },
      }));
    },
    async request() { return [0, 1].map((rank) => ({ rank, frames: [], message: { type: 'valid-done', lossSum: validLossSum, count: validCount, correct: validCount / 2 } })); },
    async syncBatchNorm() {},
  };
  const history = newHistory();
  // Only what resumeAdvice reads: the resume command and the newest checkpoint on disk.
  const recovery = new Recovery({ resumeCommand: resumeCommandLine('runs/my run'), newestCheckpoint: () => newest } as unknown as RecoveryOptions);
  const ctx: StageContext = {
    cluster: cluster as unknown as Cluster, history, accum: () => 1, stepsPerDataEpoch: 2, dataEpochBase: () => 0, stepTimeoutMs: 1000,
    progress: 'none', out: () => {}, log: () => {}, afterStep: async () => false, afterEpoch: async () => {},
    guard: (_what, fn) => fn(), stopRequested: () => false, recover: async () => {}, stepFailed: async () => {},
    snapshot: async () => new Uint8Array(0), restore: async () => {}, resumeAdvice: (after) => recovery.resumeAdvice(after),
    newestCheckpoint: () => newest,
  };
  const [stage] = planStages({ stages: [{ kind: 'one_cycle', name: 'stage-1', epochs: 1, maxLr: 'slice(3e-3)', frozen: true }], trainCount: 8, globalBs: 4, lrFactor: 1 });
  return { ctx, stage: stage!, sent, history };
}

test('a step where one rank read nothing but another did is committed (its items are masked, not the step)', async () => {
  const s = scripted(() => [0, 2]);
  assert.equal(await runFitStage(s.ctx, s.stage), true);
  assert.deepEqual(s.sent.filter((x) => /^(commit|abort)/.test(x)), ['commit 0', 'commit 1']);
  assert.equal(s.history.position.globalStep, 2);
});

test('a step of which no rank read any image is dropped (abort, not commit) and ends the run with ERR_DATA', async () => {
  // Seen by the breaker: the training images cut short after epoch 0; epoch 1 committed three steps on nothing (an
  // AdamW update from momentum and weight decay alone), its smoothed loss frozen, until validation found nothing.
  const s = scripted((step) => (step === 0 ? [2, 2] : [0, 0]));
  // The error names the newest checkpoint and the exact command, as recovery's errors do (it said "the newest
  // checkpoint is kept … resume the run with --resume": no folder, and even when no checkpoint existed).
  await assert.rejects(runFitStage(s.ctx, s.stage), { code: 'ERR_DATA', message: `training step 1 ${GONE}; the step was not applied; `
    + 'the newest checkpoint on disk stands (runs/my run/checkpoints/step-000000001; later steps are redone); '
    + 'resume with: npx coordinator --resume \'runs/my run\' after restoring the data' });
  assert.deepEqual(s.sent.filter((x) => /^(commit|abort)/.test(x)), ['commit 0', 'abort 1']);
  assert.equal(s.history.position.globalStep, 1, 'the position stays at the step that read nothing');
  // Before the first checkpoint there is nothing to resume: it says so.
  await assert.rejects(runFitStage(scripted(() => [0, 0], null).ctx, s.stage), { code: 'ERR_DATA', message: `training step 0 ${GONE}; `
    + 'the step was not applied; no checkpoint was written yet, so there is nothing to resume: start the run again after restoring the data' });
});

test('an epoch whose validation read none of its images ends the run with ERR_DATA naming the resume command', async () => {
  const s = scripted(() => [2, 2], 'runs/my run/checkpoints/step-000000002', 0);
  await assert.rejects(runFitStage(s.ctx, s.stage), { code: 'ERR_DATA', message: `validation ${GONE}; `
    + 'the newest checkpoint on disk stands (runs/my run/checkpoints/step-000000002; later steps are redone); '
    + 'resume with: npx coordinator --resume \'runs/my run\' after restoring the data' });
});

test('lr_find reports every committed sweep step to the metrics hook (step, raw loss, the sweep\'s lr, momentum), and the recorder exports them', async () => {
  // Seen by the tryout: during lr_find (≈ 2.5 min of the README's job) pets_global_step, pets_train_loss and
  // pets_learning_rate stood still at stage 1's end: the dashboard looked stalled.
  const s = scripted(() => [2, 2]);
  const [lrFind] = planStages({ stages: [{ kind: 'lr_find', name: 'lr-find', epochs: 0, maxLr: '0', frozen: false }], trainCount: 8, globalBs: 4, lrFactor: 1 });
  const seen: Array<{ lrStep: number; loss: number; lrs: readonly number[]; momentum: number; globalStep: number }> = [];
  const metrics = new MetricsServer({ defaultMetrics: false });
  const recorder = new StepMetricsRecorder(metrics);
  s.ctx.afterLrFindStep = (stage, lrStep, replies, loss, lrs, momentum, seconds) => {
    seen.push({ lrStep, loss, lrs, momentum, globalStep: s.history.position.globalStep });
    recorder.record(stage, lrStep, s.history.position.globalStep, replies, loss, lrs, momentum, seconds);
  };
  assert.equal(await runLrFind(s.ctx, lrFind!), true);
  assert.equal(seen.length, 100, 'fastai\'s 100 iterations, none diverging on a constant loss');
  assert.deepEqual(seen.map((x) => x.lrStep), Array.from({ length: 100 }, (_, i) => i + 1));
  assert.deepEqual(seen.map((x) => x.globalStep), Array.from({ length: 100 }, (_, i) => i + 1), 'the global step moves on');
  for (const x of seen) {
    assert.equal(x.loss, 0.5, 'lossSum / count of the ranks');
    assert.equal(x.momentum, 0.9);
    assert.equal(new Set(x.lrs).size, 1, 'one lr for every layer group');
  }
  // fastai v1's exponential sweep (LRFinder, annealing_exp): iteration k at start_lr·(end_lr/start_lr)^(k/num_it),
  // start_lr 1e-7, end_lr 10, num_it 100.
  for (const k of [0, 50, 99]) {
    const want = 1e-7 * 1e8 ** (k / 100);
    assert.ok(Math.abs(seen[k]!.lrs[0]! / want - 1) < 1e-12, `${k}: ${seen[k]!.lrs[0]} vs ${want}`);
  }
  const text = await metrics.registry.metrics();
  assert.match(text, /^pets_global_step(\{[^}]*\})? 100$/m);
  assert.match(text, /^pets_train_loss(\{[^}]*\})? 0\.5$/m);
  assert.match(text, new RegExp(`^pets_learning_rate\\{[^}]*group="2"[^}]*\\} ${seen[99]!.lrs[0]}$`, 'm'));
});

test('a NaN or infinite training loss stops the fit at that step (fastai TerminateOnNaNCallback): ERR_DIVERGED, no hook (checkpoint) after it', async () => {
  // Seen by the breaker: a stage with max_lr 1e3 trained on through 43982 and 9.2e36 to NaN and ended with
  // 'ERR_PROTOCOL: rank 0: validate: valid-done.lossSum must be a finite number, got null'.
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
    const s = scripted(() => [2, 2], 'runs/my run/checkpoints/step-000000001', 2, (step, count) => (step === 1 ? bad : count * 0.5));
    const hooks: string[] = [];
    s.ctx.afterStep = async (_st, replies) => { hooks.push(`step ${replies[0]!.message.step}`); return false; };
    s.ctx.afterEpoch = async () => { hooks.push('epoch'); };
    await assert.rejects(runFitStage(s.ctx, s.stage), {
      code: 'ERR_DIVERGED',
      message: `stage-1: the training loss of step 2 of 2 is ${bad > 0 ? 'inf' : 'nan'}: the training diverged and stops here, as fastai's TerminateOnNaNCallback stops fit; `
        + 'the learning rate is likely too high for it (max_lr slice(3e-3)); '
        + 'nothing after global step 2 was checkpointed (the newest checkpoint, runs/my run/checkpoints/step-000000001, was taken before it and stays, as do the saved models); '
        + '--resume would repeat the same steps and diverge again: start a new run with a lower max_lr for this stage (--lr sets the first fit stage\'s, --fine-tune-lr the second\'s, a config file any stage\'s maxLr; lr_find suggests one)',
    });
    assert.deepEqual(hooks, ['step 0'], 'neither the step\'s hook (periodic checkpoint) nor the epoch end (validation, checkpoint) ran after it');
    assert.ok(!s.sent.includes('validate'));
  }
});

test('a NaN or infinite validation loss stops the fit after printing its row, before the epoch\'s checkpoint', async () => {
  const s = scripted(() => [2, 2], null, 2, undefined, Number.POSITIVE_INFINITY);
  const lines: string[] = [];
  let epochs = 0;
  s.ctx = { ...s.ctx, out: (l) => lines.push(l), afterEpoch: async () => { epochs++; } };
  await assert.rejects(runFitStage(s.ctx, s.stage), (err: Error & { code?: string }) => err.code === 'ERR_DIVERGED'
    && err.message.startsWith('stage-1: the validation loss after epoch 0 is inf: the training diverged')
    && err.message.includes('(no checkpoint was written before it)'));
  assert.equal(epochs, 0);
  assert.match(lines.at(-1)!, /^0 +[0-9.]+ +inf +0\.500000 +00:00$/, 'the row shows it, as fastai\'s table would');
});

test('lr_find takes a NaN loss as its stop rule says (stopped: nan), restores the weights and goes on', async () => {
  // The NaN crosses the wire now (step-done.lossSum); before, it ended the run with ERR_PROTOCOL.
  const s = scripted(() => [2, 2], null, 2, (step, count) => (step >= 10 ? Number.NaN : count * 0.5));
  const [lrFind] = planStages({ stages: [{ kind: 'lr_find', name: 'lr-find', epochs: 0, maxLr: '0', frozen: false }], trainCount: 8, globalBs: 4, lrFactor: 1 });
  const lines: string[] = [];
  s.ctx = { ...s.ctx, out: (l) => lines.push(l) };
  assert.equal(await runLrFind(s.ctx, lrFind!), true);
  assert.match(lines.join('\n'), /lr_find: 11 steps in .*, stopped: nan;/);
});

test('a stage of one step is headed "1 step", not "1 steps"; lr_find stopped after one step says "1 step in"', async () => {
  const s = scripted(() => [2, 2]);
  const lines: string[] = [];
  s.ctx = { ...s.ctx, out: (l) => lines.push(l) };
  // 4 training images in global batches of 4: one step per epoch, one epoch.
  const [one] = planStages({ stages: [{ kind: 'one_cycle', name: 'stage-1', epochs: 1, maxLr: 'slice(3e-3)', frozen: true }], trainCount: 4, globalBs: 4, lrFactor: 1 });
  assert.equal(await runFitStage(s.ctx, one!), true);
  assert.match(lines.join('\n'), /^stage-1: fit_one_cycle\(1, max_lr=slice\(3e-3\)\) — frozen, 1 step$/m);
  // lr_find whose first loss is NaN stops after one step.
  const n = scripted(() => [2, 2], null, 2, () => Number.NaN);
  const [lrFind] = planStages({ stages: [{ kind: 'lr_find', name: 'lr-find', epochs: 0, maxLr: '0', frozen: false }], trainCount: 8, globalBs: 4, lrFactor: 1 });
  const found: string[] = [];
  n.ctx = { ...n.ctx, out: (l) => found.push(l) };
  assert.equal(await runLrFind(n.ctx, lrFind!), true);
  assert.match(found.join('\n'), /lr_find: 1 step in .*, stopped: nan;/);
  assert.match(found.join('\n'), /^lr-find: lr_find over 100 steps/m);
});
