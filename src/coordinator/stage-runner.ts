/**
 * Runs the stages of the plan over the cluster: each optimizer step is a collective (`step` → every rank's
 * `step-done` → `commit`), with the learning rate per layer group and momentum of that step computed here from the
 * schedule (`plan.ts`) — the coordinator drives the one-cycle discriminative schedule. Epoch ends validate
 * (BatchNorm statistics from rank 0 first) and print fastai's table row; lr_find sweeps and then restores the
 * weights and optimizer state it started from. A failed step is aborted everywhere and redone after recovery.
 */
import { TrainerError, isTrainerError } from '../shared/errors.js';
import { lrFindStep, suggestLr } from '../shared/plan/schedule.js';
import { SMOOTHING_BETA, SmoothedLoss } from '../shared/plan/smoothing.js';
import { EpochProgress, formatDuration, formatEpochHeader, formatEpochRow } from '../shared/learner/table.js';
import { stepHyper, type StagePlan } from '../shared/plan/plan.js';
import type { Message, StepDoneMessage, ValidDoneMessage } from '../shared/protocol.js';
import type { Cluster, Reply } from './cluster.js';
import type { RunHistory, StageHistory } from './history.js';

/** What the stage runner needs from the coordinator around it. */
export interface StageContext {
  readonly cluster: Cluster;
  readonly history: RunHistory;
  /** Per-worker micro-batch, accumulation and global batch of the current membership. */
  accum(): number;
  /** Training-set optimizer steps per data epoch (for lr_find's position in the data). */
  readonly stepsPerDataEpoch: number;
  /** Steps of `stage` before this one run over data epochs: the data epoch of stage-local epoch e is base + e. */
  dataEpochBase(stage: StagePlan): number;
  readonly stepTimeoutMs: number;
  readonly progress: 'auto' | 'lines' | 'none';
  readonly out: (line: string) => void;
  /** Called after each committed step (metrics, periodic checkpoints, stop requests). Returns true to stop. */
  afterStep(stage: StagePlan, replies: Reply<StepDoneMessage>[], loss: number, lrs: number[], momentum: number, seconds: number): Promise<boolean>;
  /** Called at each epoch end after validation (metrics, checkpoint). */
  afterEpoch(stage: StagePlan, row: { validLoss: number; errorRate: number }): Promise<void>;
  /** Runs an idempotent collective (validation), recovering from a lost worker and running it again. */
  guard<T>(what: string, fn: () => Promise<T>): Promise<T>;
  /** Whether a stop (SIGINT/SIGTERM) was asked for; lr_find checks it between steps. */
  stopRequested(): boolean;
  /** Recovers from a lost worker or failed step (respawn / elastic), re-announcing the ring. */
  recover(reason: string): Promise<void>;
  /** Gets the state blob of rank 0 and loads it into every rank (lr_find restore). */
  snapshot(): Promise<Uint8Array>;
  restore(blob: Uint8Array): Promise<void>;
}

const isStepDone = (step: number, generation: number) => (m: Message): m is StepDoneMessage =>
  m.type === 'step-done' && m.step === step && m.generation === generation;

/**
 * One committed optimizer step, redone after recovery if any rank fails.
 * @returns the replies, the mean loss over the global batch and the step's wall time
 */
async function runStep(ctx: StageContext, stage: StagePlan, stepInStage: number): Promise<{ replies: Reply<StepDoneMessage>[]; loss: number; seconds: number }> {
  const hyper = stepHyper(stage, stepInStage);
  for (;;) {
    const { cluster } = ctx;
    const step = ctx.history.position.globalStep;
    const perEpoch = stage.config.kind === 'lr_find' ? ctx.stepsPerDataEpoch : stage.stepsPerEpoch;
    const epoch = ctx.dataEpochBase(stage) + Math.floor(stepInStage / perEpoch);
    const started = performance.now();
    try {
      const generation = cluster.generation;
      const failed = (m: Message): boolean => m.type === 'step-failed' && m.step === step && m.generation === generation;
      const waiting = cluster.gather(cluster.ranks().map((m) => m.rank), (m): m is StepDoneMessage => isStepDone(step, generation)(m) || failed(m), `step ${step}`, ctx.stepTimeoutMs);
      await cluster.broadcast({
        type: 'step', step, generation, stageIndex: stage.index, epoch, stepInEpoch: stepInStage % perEpoch,
        accum: ctx.accum(), lrs: hyper.lrs, momentum: hyper.momentum,
      });
      const replies = await waiting;
      const bad = replies.find((r) => (r.message as Message).type === 'step-failed');
      if (bad) {
        const m = bad.message as unknown as Extract<Message, { type: 'step-failed' }>;
        throw new TrainerError(m.code, `rank ${bad.rank} failed step ${step}: ${m.message}`);
      }
      await cluster.broadcast({ type: 'commit', step });
      const count = replies.reduce((s, r) => s + r.message.count, 0);
      const loss = replies.reduce((s, r) => s + r.message.lossSum, 0) / Math.max(1, count);
      return { replies, loss, seconds: (performance.now() - started) / 1000 };
    } catch (err) {
      if (!isTrainerError(err) || !['ERR_WORKER_LOST', 'ERR_TIMEOUT'].includes(err.code)) throw err;
      await cluster.broadcast({ type: 'abort', step }).catch(() => undefined);
      ctx.out(`step ${step} aborted (${err.message}); recovering and redoing it`);
      await ctx.recover(err.message);
    }
  }
}

function stageHistory(ctx: StageContext, stage: StagePlan): StageHistory {
  let h = ctx.history.stages[stage.index];
  if (!h) {
    h = { name: stage.config.name, kind: stage.config.kind, epochs: [], steps: [], smooth: { mov: 0, n: 0 }, epochSums: { startedAtMs: Date.now(), elapsedSeconds: 0 } };
    ctx.history.stages[stage.index] = h;
  }
  return h;
}

/** Validates the whole validation set over all ranks (batch j of the split on rank j mod W: the same sums whatever W). */
export async function validateAll(cluster: Cluster, timeoutMs: number, withProbs: boolean): Promise<{ validLoss: number; errorRate: number; replies: Reply<ValidDoneMessage>[] }> {
  await cluster.requestAll((requestId) => ({ type: 'sync-bn', requestId, flag: false, generation: cluster.generation }), 'sync-bn', timeoutMs);
  const requestId = cluster.nextRequestId();
  const waiting = cluster.gather(cluster.ranks().map((m) => m.rank), (m): m is ValidDoneMessage => m.type === 'valid-done' && m.requestId === requestId, 'validation', timeoutMs);
  await cluster.broadcast({ type: 'validate', requestId, flag: withProbs, generation: cluster.generation });
  const replies = await waiting;
  const count = replies.reduce((s, r) => s + r.message.count, 0);
  const correct = replies.reduce((s, r) => s + r.message.correct, 0);
  const lossSum = replies.reduce((s, r) => s + r.message.lossSum, 0);
  return { validLoss: lossSum / Math.max(1, count), errorRate: 1 - correct / Math.max(1, count), replies };
}

/** Runs (or continues) a one-cycle or constant-lr stage. @returns false when a stop was requested */
export async function runFitStage(ctx: StageContext, stage: StagePlan): Promise<boolean> {
  const h = stageHistory(ctx, stage);
  const from = ctx.history.position.stepInStage;
  const resuming = from > 0 ? ` — resumed at step ${from}` : '';
  ctx.out(`\n${stage.config.name}: ${stage.config.kind === 'one_cycle' ? 'fit_one_cycle' : 'fit'}(${stage.config.epochs}, max_lr=${stage.config.maxLr}) — ${stage.config.frozen ? 'frozen' : 'unfrozen'}, ${stage.totalSteps} steps${resuming}\n${formatEpochHeader()}`);
  let progress: EpochProgress | null = null;
  for (let k = ctx.history.position.stepInStage; k < stage.totalSteps; k++) {
    if (k % stage.stepsPerEpoch === 0 || progress === null) {
      progress = new EpochProgress(stage.stepsPerEpoch - (k % stage.stepsPerEpoch), `epoch ${Math.floor(k / stage.stepsPerEpoch)}`, ctx.progress, ctx.out);
      if (k % stage.stepsPerEpoch === 0) h.epochSums = { startedAtMs: Date.now(), elapsedSeconds: 0 };
    }
    const hyper = stepHyper(stage, k);
    const { replies, loss, seconds } = await runStep(ctx, stage, k);
    const smoother = new SmoothedLoss(SMOOTHING_BETA, h.smooth);
    const smooth = smoother.add(loss);
    h.smooth = smoother.state;
    h.steps.push({ loss, lrs: hyper.lrs });
    h.epochSums.elapsedSeconds += seconds;
    ctx.history.position = { stageIndex: stage.index, stepInStage: k + 1, globalStep: ctx.history.position.globalStep + 1 };
    progress.tick(smooth);
    if ((k + 1) % stage.stepsPerEpoch === 0) {
      progress.stop();
      const t0 = performance.now();
      const v = await ctx.guard('validation', () => validateAll(ctx.cluster, ctx.stepTimeoutMs, false));
      const row = { epoch: Math.floor(k / stage.stepsPerEpoch), trainLoss: smooth, validLoss: v.validLoss, errorRate: v.errorRate, seconds: h.epochSums.elapsedSeconds + (performance.now() - t0) / 1000 };
      h.epochs.push(row);
      ctx.out(formatEpochRow(row));
      await ctx.afterEpoch(stage, v);
    }
    if (await ctx.afterStep(stage, replies, loss, hyper.lrs, hyper.momentum, seconds)) {
      progress.stop();
      return false;
    }
  }
  return true;
}

/**
 * lr_find (fastai 1.0.61 `LRFinder`): exponential lr sweep per step, smoothed loss, stop at 4× the best or NaN;
 * weights and optimizer state are restored afterwards. Always runs from its first step (a resumed run repeats it,
 * from the same global step, so it reads the same data and dropout seeds and is bit-identical).
 * @returns false when a stop was requested mid-sweep: weights and the global step are back at the sweep's start
 */
export async function runLrFind(ctx: StageContext, stage: StagePlan): Promise<boolean> {
  const h = stageHistory(ctx, stage);
  h.steps.length = 0;
  const start = ctx.history.position;
  const t0 = performance.now();
  ctx.out(`\n${stage.config.name}: lr_find over ${stage.totalSteps} steps (weights restored afterwards)`);
  const snapshot = await ctx.snapshot();
  const smoothed = new SmoothedLoss();
  const losses: number[] = [];
  let best = Number.POSITIVE_INFINITY;
  let stop = 'done';
  const progress = new EpochProgress(stage.totalSteps, 'lr_find', ctx.progress, ctx.out);
  for (let k = 0; k < stage.totalSteps; k++) {
    const hyper = stepHyper(stage, k);
    const { loss } = await runStep(ctx, stage, k);
    ctx.history.position = { ...ctx.history.position, globalStep: ctx.history.position.globalStep + 1 };
    smoothed.add(loss);
    h.steps.push({ loss, lrs: hyper.lrs });
    losses.push(smoothed.value);
    progress.tick(smoothed.value);
    const verdict = lrFindStep(k, smoothed.value, best, stage.totalSteps);
    best = verdict.best;
    if (verdict.stop) {
      stop = verdict.stop;
      break;
    }
    if (ctx.stopRequested()) {
      progress.stop();
      await ctx.restore(snapshot);
      ctx.history.position = start;
      h.steps.length = 0;
      return false;
    }
  }
  progress.stop();
  await ctx.restore(snapshot);
  const lrs = h.steps.map((s) => s.lrs[0]!);
  let suggestion: number | null = null, minLossDiv10: number | null = null;
  try {
    const s = suggestLr(lrs, losses);
    suggestion = s.steepest;
    minLossDiv10 = s.minLossDiv10;
  } catch (err) {
    ctx.out(`lr_find: no suggestion (${(err as Error).message})`);
  }
  h.lrFind = { smoothed: losses, stop, suggestion, minLossDiv10 };
  // Its duration, as fastai's table gives each epoch's: lr_find is a large part of a short run's wall time.
  ctx.out(`lr_find: ${lrs.length} steps in ${formatDuration((performance.now() - t0) / 1000)}, stopped: ${stop}; suggested lr (steepest descent) ${suggestion?.toExponential(2) ?? 'n/a'}, min loss/10 ${minLossDiv10?.toExponential(2) ?? 'n/a'}`);
  return true;
}
