/**
 * What a worker does with its replica for each coordinator command: a training step (micro-batches →
 * gradients → all-reduce in buckets → pending until `commit`), validation over its shard, state transfer,
 * BatchNorm statistics sync and checksums. The replica, data feed and all-reducer are injected; this module
 * holds no sockets of the control plane.
 *
 * Two-phase step: after the all-reduce the averaged gradients are kept as "pending"; the AdamW update is only
 * applied on the coordinator's `commit`. If any rank fails during the step, the coordinator sends `abort` to
 * the survivors, which drop the pending gradients: no rank ever applies a step that another did not, so the
 * step can be redone after the ring re-forms (no step lost, none applied twice).
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { planBuckets } from '../training/allreduce/buckets.js';
import type { AllReducer } from '../training/allreduce/types.js';
import { SkipLog } from '../training/data/decode.js';
import type { ImagePool } from '../training/data/pool.js';
import { TrainerError } from '../contract/errors.js';
import type { Replica } from '../training/learner/replica.js';
import { validateBatches, type ValidResult } from '../training/learner/validate.js';
import { BN_MOMENTUM } from '../training/model/resnet.js';
import { dropoutSeed, microBatchOf, validationBatches } from '../contract/plan/plan.js';
import type { RunSetup } from '../contract/run-setup.js';
import type { StepDoneMessage, StepMessage } from '../contract/protocol/index.js';
import { TrainFeed } from '../training/data/feed.js';

/** Membership as the trainer needs it. */
export interface RankInfo {
  readonly rank: number;
  readonly worldSize: number;
  readonly generation: number;
}

interface Pending {
  readonly step: number;
  /** The averaged gradient: an array, or a backend tensor (world size 1 on a device backend), disposed when dropped. */
  readonly grads: Float32Array | tf.Tensor1D;
  readonly lrs: readonly number[];
  readonly momentum: number;
  /** BatchNorm running statistics from before the step, restored if it is aborted. */
  readonly bnBefore: BnSnapshot;
}

/** BatchNorm running statistics (and batch counters) of a replica at one moment. */
interface BnSnapshot {
  readonly tensors: ReadonlyMap<tf.Variable, tf.Tensor>;
  readonly tracked: { body: number; head: number };
}

/** Copies every BN running mean/var of `replica` (small: channels × 2 per BN layer). */
function snapshotBn(replica: Replica): BnSnapshot {
  const { body, head } = replica.learner;
  const tensors = new Map<tf.Variable, tf.Tensor>();
  for (const v of [...body.buffers.values(), ...head.buffers.values()]) tensors.set(v, tf.clone(v));
  return { tensors, tracked: { body: body.numBatchesTracked, head: head.numBatchesTracked } };
}

/** Puts a snapshot back (an aborted step's training-mode passes must not leave their statistics behind). */
function restoreBn(replica: Replica, snap: BnSnapshot): void {
  for (const [v, t] of snap.tensors) v.assign(t);
  replica.learner.body.numBatchesTracked = snap.tracked.body;
  replica.learner.head.numBatchesTracked = snap.tracked.head;
  disposeBn(snap);
}

function disposeBn(snap: BnSnapshot): void {
  for (const t of snap.tensors.values()) t.dispose();
}

/** Every BatchNorm running mean/var of the replica (body then head, in the models' fixed order). */
export function bnVariables(replica: Replica): tf.Variable[] {
  const { body, head } = replica.learner;
  return [...body.buffers.values(), ...head.buffers.values()];
}

/**
 * Runs one micro-batch's training passes (`run`, e.g. `replica.accumulate(…)`) with the running statistics set to
 * zero, and writes into `slot` (`[1 + Σ sizes] float32`) the number of BatchNorm batches C it ran, then what its
 * passes left in each of `vars`: Δ (for one batch, exactly fl(0.1 · batch statistic)). The buffers are left at Δ;
 * the caller puts the step's starting statistics back before {@link applyBnIncrements}.
 * @returns what `run` returned
 */
export async function measureBnIncrements<T>(replica: Replica, vars: readonly tf.Variable[], slot: Float32Array,
  run: () => T | Promise<T>): Promise<T> {
  for (const v of vars) tf.tidy(() => v.assign(tf.zerosLike(v)));
  const before = replica.learner.body.numBatchesTracked;
  const out = await run();
  slot[0] = replica.learner.body.numBatchesTracked - before;
  if (vars.length === 0) return out;
  // One asynchronous read of every statistic (a GPU backend cannot read synchronously).
  const flat = tf.tidy(() => tf.concat(vars.map((v) => tf.reshape(v, [-1]))));
  try {
    slot.set(await flat.data() as Float32Array, 1);
  } finally {
    flat.dispose();
  }
  return out;
}

/**
 * Applies the running-statistic updates of a step's micro-batches in micro-batch order m = 0…M−1, from
 * {@link WorkerTrainer}'s gathered buffer: slot m = [C_m BatchNorm batches, then Δ_m per BN variable], where Δ_m is
 * what m's training-mode passes leave in running statistics that start at zero (for one BN batch:
 * fl(0.1 · batch statistic), exactly the second term of PyTorch's `running ← 0.9·running + 0.1·batch`). Each slot
 * does `running ← 0.9·running` C_m times, then `running ← running + Δ_m`, with the same tfjs ops as the model
 * (`resnet.ts`, `head.ts`), so with one BN batch per micro-batch the result is bit for bit what one process gets by
 * running the M micro-batches one after another. Counts C_m BN batches in `num_batches_tracked`.
 */
export function applyBnIncrements(replica: Replica, vars: readonly tf.Variable[], gathered: Float32Array, microBatches: number): void {
  const statSize = vars.reduce((s, v) => s + v.size, 0);
  let batches = 0;
  for (let m = 0; m < microBatches; m++) {
    const base = m * (1 + statSize);
    const c = Math.round(gathered[base]!);
    if (c === 0) continue;
    batches += c;
    let off = base + 1;
    for (const v of vars) {
      const delta = gathered.subarray(off, off + v.size);
      off += v.size;
      tf.tidy(() => {
        let r: tf.Tensor = v;
        for (let k = 0; k < c; k++) r = tf.mul(r, 1 - BN_MOMENTUM);
        v.assign(tf.add(r, tf.tensor(delta, v.shape, 'float32')));
      });
    }
  }
  replica.learner.body.numBatchesTracked += batches;
  replica.learner.head.numBatchesTracked += batches;
}

/** One worker's training logic over an injected replica, pool and all-reducer. */
export class WorkerTrainer {
  private readonly feed: TrainFeed;
  private readonly paths: string[];
  private readonly labels: Int32Array;
  private readonly validSplit: Int32Array;
  private pending: Pending | null = null;
  private lastOptimizerSeconds = 0;
  /** Files that fail to decode during training (e.g. changed after the verify pass): logged once each, counted. */
  readonly skipLog = new SkipLog((path, reason) => process.stderr.write(`[worker ${process.pid}] data: skipped ${path}: ${reason}\n`));

  constructor(
    private readonly setup: RunSetup,
    dataRoot: string,
    private readonly replica: Replica,
    private readonly pool: ImagePool,
    private readonly reducer: () => AllReducer,
    private readonly rankInfo: () => RankInfo,
  ) {
    this.paths = setup.paths.map((p) => join(dataRoot, p));
    this.labels = Int32Array.from(setup.labels);
    this.validSplit = Int32Array.from(setup.valid);
    this.feed = new TrainFeed({
      pool, paths: this.paths, labels: this.labels, train: Int32Array.from(setup.train), size: setup.size, bs: setup.bs,
      seed: setup.seed, skipLog: this.skipLog, transforms: setup.transforms,
    });
  }

  /** Step ids the trainer holds reduced gradients for (null when none). */
  get pendingStep(): number | null {
    return this.pending?.step ?? null;
  }

  /**
   * Runs one step up to the pending state.
   * @throws TrainerError ERR_TIMEOUT / ERR_WORKER_LOST from the all-reduce (nothing is applied)
   */
  async step(cmd: StepMessage): Promise<Omit<StepDoneMessage, 'type' | 'rank'>> {
    if (this.pending !== null) throw new TrainerError('ERR_INTERNAL', `step ${cmd.step} arrived while step ${this.pending.step} is neither committed nor aborted`);
    // Training-mode passes update BN running statistics right away; a step that is not committed must undo them,
    // or a redone step would count its batches twice (survivors would no longer match an undisturbed run).
    const bnBefore = snapshotBn(this.replica);
    try {
      return await this.runStep(cmd, bnBefore);
    } catch (err) {
      restoreBn(this.replica, bnBefore);
      throw err;
    }
  }

  /**
   * The step as a function of the global batch alone: this rank runs micro-batches m = a·W + rank (a < accum) of
   * the M = W·accum micro-batches (`plan.ts`), with dropout seeded by (seed, step, m); its gradient is the mean of
   * its micro-batches' gradients (each the mean loss gradient over its items), averaged over the ranks: the mean
   * over all M micro-batches. BatchNorm running statistics: each micro-batch's increments are measured from zero
   * and gathered in micro-batch order (see {@link applyBnIncrements}).
   */
  private async runStep(cmd: StepMessage, bnBefore: BnSnapshot): Promise<Omit<StepDoneMessage, 'type' | 'rank'>> {
    const { rank, worldSize } = this.rankInfo();
    const microBatches = worldSize * cmd.accum;
    const bnVars = bnVariables(this.replica);
    const statSize = bnVars.reduce((s, v) => s + v.size, 0);
    // Slot m of every micro-batch: [BN batches, increments]; this rank fills its own slots, the all-reduce (a sum
    // with zeros elsewhere: exact) gives every rank all of them.
    const bnGathered = new Float32Array(microBatches * (1 + statSize));
    let dataWait = 0, compute = 0, lossSum = 0, count = 0, correct = 0;
    for (let a = 0; a < cmd.accum; a++) {
      const m = microBatchOf(rank, a, worldSize);
      const t0 = performance.now();
      const batch = await this.feed.next({ epoch: cmd.epoch, stepInEpoch: cmd.stepInEpoch, accumIndex: a, accum: cmd.accum, rank, worldSize });
      const t1 = performance.now();
      const slot = bnGathered.subarray(m * (1 + statSize), (m + 1) * (1 + statSize));
      const r = await measureBnIncrements(this.replica, bnVars, slot, () => this.replica.accumulate(batch.x, batch.y, batch.valid, dropoutSeed(this.setup.seed, cmd.step, m)));
      compute += (performance.now() - t1) / 1000;
      dataWait += (t1 - t0) / 1000;
      lossSum += r.lossSum;
      count += r.count;
      correct += r.correct;
    }
    for (const [v, t] of bnBefore.tensors) v.assign(t);
    this.replica.learner.body.numBatchesTracked = bnBefore.tracked.body;
    this.replica.learner.head.numBatchesTracked = bnBefore.tracked.head;
    const t2 = performance.now();
    // World size 1 on a device backend (WebGPU): the all-reduce is the identity (as PyTorch DDP with one process), so
    // the gradient stays there: no read to the CPU, no upload for AdamW (docs/performance-gpu.md, host cost per step).
    // The mean is over all cmd.accum micro-batches, one whose items all failed to decode counting as zeros.
    const grads = await this.replica.takeStepGradients({ reduced: worldSize > 1, over: cmd.accum });
    compute += (performance.now() - t2) / 1000;
    const reducer = this.reducer();
    const before = reducer.stats().sentBytesTotal;
    const t3 = performance.now();
    // The layout changes with the freeze state (fastai freeze/unfreeze), so buckets follow the current one.
    const buckets = planBuckets(this.replica.gradientLayout(), { bucketBytes: this.setup.bucketBytes });
    try {
      if (grads instanceof Float32Array) {
        for (const b of buckets) {
          await reducer.allReduce(grads.subarray(b.start, b.end), { step: cmd.step, bucket: b.id }, { average: true, timeoutMs: this.setup.allreduceTimeoutMs });
        }
      }
      await reducer.allReduce(bnGathered, { step: cmd.step, bucket: buckets.length }, { average: false, timeoutMs: this.setup.allreduceTimeoutMs });
    } catch (err) {
      // An array is not given back to the pool here: a failed call's transfer may still read or write it.
      if (!(grads instanceof Float32Array)) grads.dispose();
      throw err;
    }
    applyBnIncrements(this.replica, bnVars, bnGathered, microBatches);
    const allreduceSeconds = (performance.now() - t3) / 1000;
    this.pending = { step: cmd.step, grads, lrs: cmd.lrs, momentum: cmd.momentum, bnBefore };
    const mem = tf.memory();
    return {
      step: cmd.step, generation: cmd.generation, lossSum, count, correct, dataWaitSeconds: dataWait, forwardBackwardSeconds: compute, allreduceSeconds,
      optimizerSeconds: this.lastOptimizerSeconds, rssBytes: process.memoryUsage().rss,
      allreduceBytes: reducer.stats().sentBytesTotal - before, tfjsBytes: mem.numBytes, tfjsTensors: mem.numTensors,
      decodeQueueTasks: this.pool.queueSize, skipped: this.skipLog.countsByReason() as Record<string, number>,
    };
  }

  /** Applies the pending step (AdamW with its lrs and momentum). @throws TrainerError ERR_INTERNAL on a step mismatch */
  commit(step: number): void {
    if (this.pending === null || this.pending.step !== step) {
      throw new TrainerError('ERR_INTERNAL', `commit ${step} but the pending step is ${this.pending?.step ?? 'none'}`);
    }
    const t0 = performance.now();
    try {
      this.replica.applyGradients(this.pending.grads, { lrs: [...this.pending.lrs], momentum: this.pending.momentum });
    } finally {
      this.replica.releaseStepGradients(this.pending.grads);
    }
    this.lastOptimizerSeconds = (performance.now() - t0) / 1000;
    disposeBn(this.pending.bnBefore);
    this.pending = null;
  }

  /** Drops the pending step and its BN statistics updates (it will be redone). */
  abort(step: number): void {
    if (this.pending?.step !== step) return;
    restoreBn(this.replica, this.pending.bnBefore);
    this.replica.releaseStepGradients(this.pending.grads);
    this.pending = null;
  }

  /**
   * Evaluates this rank's validation batches: batch j of the split in order (bs items) on rank j mod W
   * (`validationBatches`), so each batch's numbers are the same whatever the worker count.
   */
  async validate(withProbs: boolean): Promise<ValidResult> {
    const { rank, worldSize } = this.rankInfo();
    const batches = validationBatches(this.validSplit.length, this.setup.bs, rank, worldSize);
    return validateBatches(this.replica, {
      pool: this.pool, paths: this.paths, labels: this.labels, split: this.validSplit, size: this.setup.size,
      seed: this.setup.seed, skipLog: this.skipLog,
    }, batches, withProbs);
  }

  /** Replaces every rank's BatchNorm running statistics with rank 0's (sum over the ring with zeros elsewhere: exact). */
  async syncBatchNorm(requestId: number): Promise<void> {
    const state = await this.replica.exportState();
    const isStat = (n: string): boolean => n.endsWith('running_mean') || n.endsWith('running_var');
    const stats = state.tensors.filter((t) => isStat(t.name));
    const buf = new Float32Array(stats.reduce((s, t) => s + t.data.length, 0));
    if (this.rankInfo().rank === 0) {
      let off = 0;
      for (const t of stats) { buf.set(t.data, off); off += t.data.length; }
    }
    await this.reducer().allReduce(buf, { step: 0x7fffffff - (requestId % 0x7fff), bucket: 0 }, { average: false, timeoutMs: this.setup.allreduceTimeoutMs });
    let off = 0;
    const tensors = state.tensors.map((t) => {
      if (!isStat(t.name)) return t;
      const data = buf.slice(off, off + t.data.length);
      off += t.data.length;
      return { ...t, data };
    });
    this.replica.importState({ ...state, tensors });
  }

  /** Stops the feed; frees a pending step's device-resident gradient. */
  async close(): Promise<void> {
    if (this.pending !== null) this.replica.releaseStepGradients(this.pending.grads);
    await this.feed.close();
  }
}
