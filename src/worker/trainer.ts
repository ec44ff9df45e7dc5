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
import type { AllReducer } from '../shared/allreduce/types.js';
import { SkipLog } from '../shared/data/decode.js';
import { BatchLoader } from '../shared/data/loader.js';
import type { ImagePool } from '../shared/data/pool.js';
import { shardPlan } from '../shared/data/shard.js';
import { hashSeed } from '../shared/data/rng.js';
import { TrainerError } from '../shared/errors.js';
import type { Replica } from '../shared/learner/replica.js';
import type { RunSetup } from '../shared/run-setup.js';
import type { StepDoneMessage, StepMessage } from '../shared/protocol.js';
import { TrainFeed } from './feed.js';

/** Membership as the trainer needs it. */
export interface RankInfo {
  readonly rank: number;
  readonly worldSize: number;
  readonly generation: number;
}

/** Validation sums of one rank, and optionally its per-item probabilities. */
export interface ValidResult {
  readonly lossSum: number;
  readonly count: number;
  readonly correct: number;
  /** `[k] int32` validation-split positions of the real items, then `[k × classes] float32` probabilities. */
  readonly items: Int32Array | null;
  readonly probs: Float32Array | null;
}

interface Pending {
  readonly step: number;
  readonly grads: Float32Array;
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

/** Contiguous ranges of the flat gradient, late layers first (DDP order), each ≤ bucketBytes (first ≤ 1 MB). */
export function bucketRanges(layout: readonly { size: number }[], bucketBytes: number): Array<[start: number, end: number]> {
  const ranges: Array<[number, number]> = [];
  let end = layout.reduce((s, p) => s + p.size, 0);
  let start = end;
  let cap = Math.min(1_000_000, bucketBytes);
  for (let i = layout.length - 1; i >= 0; i--) {
    const size = layout[i]!.size;
    if (start < end && (end - start + size) * 4 > cap) {
      ranges.push([start, end]);
      end = start;
      cap = bucketBytes;
    }
    start -= size;
  }
  if (end > start || ranges.length === 0) ranges.push([start, end]);
  return ranges;
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
      seed: setup.seed, skipLog: this.skipLog,
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

  private async runStep(cmd: StepMessage, bnBefore: BnSnapshot): Promise<Omit<StepDoneMessage, 'type' | 'rank'>> {
    const { rank, worldSize } = this.rankInfo();
    let dataWait = 0, compute = 0, lossSum = 0, count = 0, correct = 0;
    for (let a = 0; a < cmd.accum; a++) {
      const t0 = performance.now();
      const batch = await this.feed.next({ epoch: cmd.epoch, stepInEpoch: cmd.stepInEpoch, accumIndex: a, accum: cmd.accum, rank, worldSize });
      const t1 = performance.now();
      const r = await this.replica.accumulate(batch.x, batch.y, batch.valid, hashSeed(this.setup.seed, cmd.step, rank, a));
      compute += (performance.now() - t1) / 1000;
      dataWait += (t1 - t0) / 1000;
      lossSum += r.lossSum;
      count += r.count;
      correct += r.correct;
    }
    const t2 = performance.now();
    const grads = await this.replica.takeGradients();
    compute += (performance.now() - t2) / 1000;
    const reducer = this.reducer();
    const before = reducer.stats().sentBytesTotal;
    const t3 = performance.now();
    // The layout changes with the freeze state (fastai freeze/unfreeze), so buckets follow the current one.
    const ranges = bucketRanges(this.replica.gradientLayout(), this.setup.bucketBytes);
    for (let b = 0; b < ranges.length; b++) {
      const [start, end] = ranges[b]!;
      await reducer.allReduce(grads.subarray(start, end), { step: cmd.step, bucket: b }, { average: true, timeoutMs: this.setup.allreduceTimeoutMs });
    }
    await this.broadcastBnFromRank0(reducer, { step: cmd.step, bucket: ranges.length });
    const allreduceSeconds = (performance.now() - t3) / 1000;
    this.pending = { step: cmd.step, grads, lrs: cmd.lrs, momentum: cmd.momentum, bnBefore };
    const mem = tf.memory();
    return {
      step: cmd.step, generation: cmd.generation, lossSum, count, correct, dataWaitSeconds: dataWait, computeSeconds: compute, allreduceSeconds,
      optimizerSeconds: this.lastOptimizerSeconds, rssBytes: process.memoryUsage().rss,
      allreduceBytes: reducer.stats().sentBytesTotal - before, tfBytes: mem.numBytes, tfTensors: mem.numTensors,
      queueDepth: this.pool.queueSize, skipped: this.skipLog.countsByReason() as Record<string, number>,
    };
  }

  /** Applies the pending step (AdamW with its lrs and momentum). @throws TrainerError ERR_INTERNAL on a step mismatch */
  commit(step: number): void {
    if (this.pending === null || this.pending.step !== step) {
      throw new TrainerError('ERR_INTERNAL', `commit ${step} but the pending step is ${this.pending?.step ?? 'none'}`);
    }
    const t0 = performance.now();
    this.replica.applyGradients(this.pending.grads, { lrs: [...this.pending.lrs], momentum: this.pending.momentum });
    this.lastOptimizerSeconds = (performance.now() - t0) / 1000;
    disposeBn(this.pending.bnBefore);
    this.pending = null;
  }

  /** Drops the pending step and its BN statistics updates (it will be redone). */
  abort(step: number): void {
    if (this.pending?.step !== step) return;
    restoreBn(this.replica, this.pending.bnBefore);
    this.pending = null;
  }

  /** Evaluates this rank's validation shard (DistributedSampler with padding; padded items not counted). */
  async validate(withProbs: boolean): Promise<ValidResult> {
    const { rank, worldSize } = this.rankInfo();
    const plan = shardPlan({ itemCount: this.validSplit.length, seed: this.setup.seed, epoch: 0, worldSize, rank, batchSize: this.setup.bs, shuffle: false, mode: 'pad' });
    const loader = new BatchLoader({
      pool: this.pool, paths: this.paths, labels: this.labels, split: this.validSplit, plan, size: this.setup.size,
      augment: false, seed: this.setup.seed, epoch: 0, skipLog: this.skipLog,
    });
    let lossSum = 0, count = 0, correct = 0;
    const items: number[] = [];
    const probs: Float32Array[] = [];
    try {
      for await (const batch of loader) {
        const r = await this.replica.evaluate(batch.x, batch.y, batch.valid);
        lossSum += r.lossSum;
        count += r.count;
        correct += r.correct;
        if (!withProbs) continue;
        const k = this.setup.classes.length;
        const planned = plan.batches[batch.batchIndex]!;
        for (let i = 0; i < batch.valid.length; i++) {
          if (batch.valid[i] !== 1) continue;
          items.push(planned.indices[i]!);
          probs.push(r.probs.slice(i * k, (i + 1) * k));
        }
      }
    } finally {
      await loader.close();
    }
    if (!withProbs) return { lossSum, count, correct, items: null, probs: null };
    const flatProbs = new Float32Array(probs.length * this.setup.classes.length);
    probs.forEach((p, i) => flatProbs.set(p, i * this.setup.classes.length));
    return { lossSum, count, correct, items: Int32Array.from(items), probs: flatProbs };
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

  /**
   * Every rank takes rank 0's BatchNorm running statistics after each step (PyTorch DDP's `broadcast_buffers`), as
   * one more small bucket of the step's all-reduce (rank 0 sends its values, the others zeros: the sum is exact).
   * So the statistics are a function of rank 0's data position, not of which process holds rank 0: after a
   * failure, any survivor or newcomer carries on with exactly the statistics an undisturbed run would have.
   */
  private async broadcastBnFromRank0(reducer: AllReducer, tag: { step: number; bucket: number }): Promise<void> {
    const { body, head } = this.replica.learner;
    const vars = [...body.buffers.values(), ...head.buffers.values()];
    const sizes = vars.map((v) => v.size);
    let buf: Float32Array;
    if (this.rankInfo().rank === 0) {
      // One asynchronous read of all the statistics (a GPU backend cannot read synchronously).
      const flat = tf.tidy(() => tf.concat(vars.map((v) => tf.reshape(v, [-1]))));
      try {
        buf = (await flat.data() as Float32Array).slice();
      } finally {
        flat.dispose();
      }
    } else {
      buf = new Float32Array(sizes.reduce((s, n) => s + n, 0));
    }
    await reducer.allReduce(buf, tag, { average: false, timeoutMs: this.setup.allreduceTimeoutMs });
    // One upload, split on the backend.
    tf.tidy(() => {
      const parts = tf.split(tf.tensor1d(buf, 'float32'), sizes);
      vars.forEach((v, i) => v.assign(tf.reshape(parts[i]!, v.shape)));
    });
  }

  /** Stops the feed. */
  async close(): Promise<void> {
    await this.feed.close();
  }
}
