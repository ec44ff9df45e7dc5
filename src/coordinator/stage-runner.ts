/**
 * Runs the stages of the plan over the cluster with the one training loop (`training/learner/loop.ts` `fitStage`,
 * `lr-find.ts` `lrFindStage`, the same the single-process Learner runs) over the cluster's transport: each optimizer
 * step is a collective (`step` → every rank's `step-done` → `commit`), with the learning rate per layer group and
 * momentum of that step computed by the loop from the schedule (`plan/`) — the coordinator drives the one-cycle
 * discriminative schedule. Epoch ends validate (BatchNorm statistics from rank 0 first); lr_find sweeps and then
 * restores the weights and optimizer state it started from. A failed step is aborted everywhere and redone after
 * recovery. The {@link StageContext} holds the coordinator's hooks (metrics, checkpoints, stop requests, recovery).
 */
import { performance } from 'node:perf_hooks';
import { TrainerError, isRetryable, isTrainerError } from '../contract/errors.js';
import { dataWentAwayError } from '../training/data/accounting.js';
import { lrFindStage } from '../training/learner/lr-find.js';
import { fitStage, newStageRecord, type StepOutcome, type StepTransport } from '../training/learner/loop.js';
import { formatDuration } from '../training/learner/table.js';
import { N_LAYER_GROUPS, stepPosition, type StagePlan } from '../contract/plan/plan.js';
import type { StepHyper } from '../contract/plan/schedule.js';
import type { Message, StepDoneMessage, ValidDoneMessage } from '../contract/protocol/index.js';
import { fromWorker, type Cluster, type Reply } from './cluster.js';
import type { RunHistory, StageHistory } from './history.js';
import { counted } from '../contract/log-text.js';

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
  /** Results (the epoch table, lr_find's summary): stdout. */
  readonly out: (line: string) => void;
  /** Progress lines (per-batch): stderr, as tqdm and Lightning write them (undefined: stderr). */
  readonly progressOut?: (line: string) => void;
  /** Log lines (a step aborted and redone): stderr, never among the results on stdout. */
  readonly log: (line: string) => void;
  /** Called after each committed step (metrics, periodic checkpoints, stop requests). Returns true to stop. */
  afterStep(stage: StagePlan, replies: Reply<StepDoneMessage>[], loss: number, lrs: number[], momentum: number, seconds: number): Promise<boolean>;
  /**
   * Called after each committed lr_find step, for the metrics only (no checkpoint: lr_find's weights are restored
   * afterwards): `lrStep` is its step within the sweep (1, 2, …), `loss` its raw mean loss, `lrs` the learning rate per
   * layer group (all equal in the sweep). Without it the dashboard's step, loss and learning rate stood still through
   * the sweep (≈ 2.5 of the README job's 6 minutes).
   */
  afterLrFindStep?(stage: StagePlan, lrStep: number, replies: Reply<StepDoneMessage>[], loss: number, lrs: readonly number[], momentum: number, seconds: number): void;
  /** Called at each epoch end after validation (metrics, checkpoint). */
  afterEpoch(stage: StagePlan, row: { validLoss: number; errorRate: number }): Promise<void>;
  /** Runs an idempotent collective (validation), recovering from a lost worker and running it again. */
  guard<T>(what: string, fn: () => Promise<T>): Promise<T>;
  /** Whether a stop (SIGINT/SIGTERM) was asked for; lr_find checks it between steps. */
  stopRequested(): boolean;
  /** Recovers from a lost worker or failed step (respawn / elastic), re-announcing the ring. */
  recover(reason: string): Promise<void>;
  /** Called with each failure of a step (1, 2, … in a row); ends the run past a bound (`Recovery.failedStep`). */
  stepFailed(step: number, failures: number, reason: string): Promise<void>;
  /**
   * What is on disk to resume from and the command, for an error that ends the run without a checkpoint of its own
   * (`Recovery.resumeAdvice`). @param after - when to resume, e.g. `after restoring the data`
   */
  resumeAdvice(after: string): string;
  /** The newest complete checkpoint directory on disk, or null when none was written (a diverged run names it). */
  newestCheckpoint(): string | null;
  /** Gets the state blob of rank 0 and loads it into every rank (lr_find restore). */
  snapshot(): Promise<Uint8Array>;
  restore(blob: Uint8Array): Promise<void>;
}

/** When to resume after the data went away mid-run (`dataWentAwayError`). */
const DATA_RESTORED = 'after restoring the data';

const isStepDone = (step: number, generation: number) => (m: Message): m is StepDoneMessage =>
  m.type === 'step-done' && m.step === step && m.generation === generation;

/**
 * One committed optimizer step over the cluster, redone after recovery if any rank fails; the run's position moves
 * on once it is committed (lr_find: the global step only, its stage position stays at 0).
 * @returns the ranks' loss sums, the step's wall time and the replies (for the metrics)
 */
async function runStep(ctx: StageContext, stage: StagePlan, stepInStage: number, hyper: StepHyper): Promise<StepOutcome<Reply<StepDoneMessage>[]>> {
  for (let failures = 1; ; failures++) {
    const { cluster } = ctx;
    const step = ctx.history.position.globalStep;
    const { epoch, stepInEpoch } = stepPosition(stage, stepInStage, ctx.stepsPerDataEpoch);
    const started = performance.now();
    try {
      const generation = cluster.generation;
      const failed = (m: Message): boolean => m.type === 'step-failed' && m.step === step && m.generation === generation;
      // A rank's step-failed ends the wait at once: the others are not waited on until the step timeout (a rank
      // whose peer hangs fails its all-reduce after --allreduce-timeout-ms; the hung one never answers).
      const failure = (m: StepDoneMessage, rank: number): TrainerError | null => {
        if (!failed(m)) return null;
        const f = m as unknown as Extract<Message, { type: 'step-failed' }>;
        return fromWorker(f.code, `rank ${rank} failed step ${step}: ${f.message}`);
      };
      const waiting = cluster.gather(cluster.ranks().map((m) => m.rank), (m): m is StepDoneMessage => isStepDone(step, generation)(m) || failed(m),
        { what: `step ${step}`, timeoutMs: ctx.stepTimeoutMs, failed: failure });
      await cluster.broadcast({
        type: 'step', step, generation, stageIndex: stage.index, epoch: ctx.dataEpochBase(stage) + epoch, stepInEpoch,
        accum: ctx.accum(), lrs: hyper.lrs, momentum: hyper.momentum,
      });
      const replies = await waiting;
      if (replies.every((r) => r.message.count === 0)) {
        // Every image of the global batch failed to decode though each passed the data step: the data went away
        // mid-run. Committing would apply an AdamW update without a gradient (momentum and weight decay alone) and
        // record no loss, step after step: seen with the training images cut short after epoch 0 (epoch 1 'trained'
        // three steps on nothing, its smoothed loss frozen at 1.3876). The step is dropped on every rank.
        await cluster.broadcast({ type: 'abort', step }).catch(() => undefined);
        throw dataWentAwayError(`training step ${step}`, `the step was not applied; ${ctx.resumeAdvice(DATA_RESTORED)}`);
      }
      await cluster.broadcast({ type: 'commit', step });
      const { position } = ctx.history;
      ctx.history.position = stage.config.kind === 'lr_find'
        ? { ...position, globalStep: position.globalStep + 1 }
        : { stageIndex: stage.index, stepInStage: stepInStage + 1, globalStep: position.globalStep + 1 };
      return {
        lossSum: replies.reduce((s, r) => s + r.message.lossSum, 0), count: replies.reduce((s, r) => s + r.message.count, 0),
        seconds: (performance.now() - started) / 1000, detail: replies,
      };
    } catch (err) {
      if (!isRetryable(err)) throw err;
      await cluster.broadcast({ type: 'abort', step }).catch(() => undefined);
      await ctx.stepFailed(step, failures, err.message);
      ctx.log(`${new Date().toISOString()} step ${step} aborted (${err.message}); recovering and redoing it`);
      await ctx.recover(err.message);
    }
  }
}

/** The cluster as the loop's transport: collective steps, validation over all ranks, rank 0's state. */
function clusterTransport(ctx: StageContext): StepTransport<Reply<StepDoneMessage>[], Uint8Array> {
  return {
    step: (stage, k, hyper) => runStep(ctx, stage, k, hyper),
    validate: () => ctx.guard('validation', () => validateAll(ctx.cluster, ctx.stepTimeoutMs, false, () => ctx.resumeAdvice(DATA_RESTORED))),
    snapshot: () => ctx.snapshot(),
    restore: (blob) => ctx.restore(blob),
  };
}

function stageHistory(ctx: StageContext, stage: StagePlan): StageHistory {
  let h = ctx.history.stages[stage.index];
  if (!h) {
    h = { name: stage.config.name, kind: stage.config.kind, ...newStageRecord() };
    ctx.history.stages[stage.index] = h;
  }
  return h;
}

/**
 * Validates the whole validation set over all ranks (batch j of the split on rank j mod W: the same sums whatever W).
 * @param remedy - what is kept and what to do, for the error of a validation that read none of its images
 * @throws TrainerError ERR_DATA ({@link dataWentAwayError}) when no rank read any validation image
 */
export async function validateAll(cluster: Cluster, timeoutMs: number, withProbs: boolean, remedy: () => string): Promise<{ validLoss: number; errorRate: number; replies: Reply<ValidDoneMessage>[] }> {
  await cluster.syncBatchNorm(timeoutMs);
  const replies = await cluster.request('validate', { withProbabilities: withProbs }, { what: 'validation', timeoutMs });
  const count = replies.reduce((s, r) => s + r.message.count, 0);
  if (count === 0) {
    // Every validation image failed to decode, though each one passed the data step: the data went away during the
    // run (folder moved, deleted, unmounted). Before, the epoch table printed valid_loss 0.000000 and error_rate
    // 1.000000 as if measured, and training went on over nothing to the end.
    throw dataWentAwayError('validation', remedy());
  }
  const correct = replies.reduce((s, r) => s + r.message.correct, 0);
  const lossSum = replies.reduce((s, r) => s + r.message.lossSum, 0);
  return { validLoss: lossSum / Math.max(1, count), errorRate: 1 - correct / Math.max(1, count), replies };
}

/** Runs (or continues) a one-cycle or constant-lr stage. @returns false when a stop was requested */
export async function runFitStage(ctx: StageContext, stage: StagePlan): Promise<boolean> {
  const from = ctx.history.position.stepInStage;
  const resuming = from > 0 ? ` — resumed at step ${from}` : '';
  try {
    const { completed } = await fitStage(clusterTransport(ctx), stage, stageHistory(ctx, stage), from, {
      progress: ctx.progress, out: ctx.out, progressOut: ctx.progressOut,
      heading: `\n${stage.config.name}: ${stage.config.kind === 'one_cycle' ? 'fit_one_cycle' : 'fit'}(${stage.config.epochs}, max_lr=${stage.config.maxLr}) — ${stage.config.frozen ? 'frozen' : 'unfrozen'}, ${counted(stage.totalSteps, 'step')}${resuming}`,
      afterEpoch: (s, row) => ctx.afterEpoch(s, row),
      afterStep: (s, _k, outcome, loss, hyper) => ctx.afterStep(s, outcome.detail, loss, hyper.lrs, hyper.momentum, outcome.seconds),
    });
    return completed;
  } catch (err) {
    if (!isTrainerError(err, 'ERR_DIVERGED')) throw err;
    throw new TrainerError('ERR_DIVERGED', `${err.message}; ${divergedAdvice(ctx.newestCheckpoint(), ctx.history.position.globalStep)}`, { cause: err });
  }
}

/**
 * What a diverged run leaves: no checkpoint of the broken weights (the loop stops before the step's hooks), so the
 * newest checkpoint on disk is from before the divergence. `--resume` would redo the same steps bit for bit and
 * diverge again: the remedy is a new run with a lower learning rate.
 * @param globalStep - the run's global step when it stopped (the diverged step is not counted)
 */
export function divergedAdvice(newest: string | null, globalStep: number): string {
  const kept = newest === null ? 'no checkpoint was written before it' : `the newest checkpoint, ${newest}, was taken before it and stays, as do the saved models`;
  return `nothing after global step ${globalStep} was checkpointed (${kept}); --resume would repeat the same steps and diverge again: start a new run with a lower max_lr for this stage (--lr sets the first fit stage's, --fine-tune-lr the second's, a config file any stage's maxLr; lr_find suggests one)`;
}

/**
 * lr_find (fastai 1.0.61 `LRFinder`, `lrFindStage`): exponential lr sweep per step, smoothed loss, stop at 4× the
 * best or NaN; weights and optimizer state are restored afterwards. Always runs from its first step (a resumed run
 * repeats it, from the same global step, so it reads the same data and dropout seeds and is bit-identical).
 * @returns false when a stop was requested mid-sweep: weights and the global step are back at the sweep's start
 */
export async function runLrFind(ctx: StageContext, stage: StagePlan): Promise<boolean> {
  const h = stageHistory(ctx, stage);
  h.steps.length = 0;
  const start = ctx.history.position;
  ctx.out(`\n${stage.config.name}: lr_find over ${counted(stage.totalSteps, 'step')} (weights restored afterwards)`);
  const transport = clusterTransport(ctx);
  const sweep: typeof transport = {
    ...transport,
    step: async (st, k, hyper) => {
      const outcome = await transport.step(st, k, hyper);
      if (outcome.count > 0) ctx.afterLrFindStep?.(st, k + 1, outcome.detail, outcome.lossSum / outcome.count, hyper.lrs, hyper.momentum, outcome.seconds);
      return outcome;
    },
  };
  const r = await lrFindStage(sweep, stage, { progress: ctx.progress, out: ctx.out, progressOut: ctx.progressOut, stopRequested: () => ctx.stopRequested(), restoreAfterError: false });
  if (r === null) {
    ctx.history.position = start;
    return false;
  }
  h.steps.push(...r.lrs.map((lr, i) => ({ loss: r.rawLosses[i]!, lrs: new Array<number>(N_LAYER_GROUPS).fill(lr) })));
  if (r.noSuggestion !== null) ctx.out(`lr_find: no suggestion (${r.noSuggestion})`);
  const suggestion = r.suggestion?.steepest ?? null, minLossDiv10 = r.suggestion?.minLossDiv10 ?? null;
  h.lrFind = { smoothed: r.losses, stop: r.stop, suggestion, minLossDiv10 };
  // Its duration, as fastai's table gives each epoch's: lr_find is a large part of a short run's wall time.
  ctx.out(`lr_find: ${counted(r.lrs.length, 'step')} in ${formatDuration(r.seconds)}, stopped: ${r.stop}; suggested lr (steepest descent) ${suggestion?.toExponential(2) ?? 'n/a'}, min loss/10 ${minLossDiv10?.toExponential(2) ?? 'n/a'}`);
  return true;
}
