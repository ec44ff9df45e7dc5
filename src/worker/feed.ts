/**
 * The worker's training feed: yields, in order, the micro-batches this rank runs for each optimizer step
 * (micro-batch m = slot·W + rank of `src/shared/plan/plan.ts`, whose items depend on the step and m only), decoding and augmenting
 * ahead through the image pool. When a request is not the next expected one (a redone step after a failure, a
 * new epoch, a membership change that alters world size, rank or accumulation), the prefetch is rebuilt from
 * that point; the items are a pure function of the request, so a redone step reads exactly the same pixels.
 */
import type { Batch } from '../shared/data/loader.js';
import { BatchLoader } from '../shared/data/loader.js';
import type { SkipLog } from '../shared/data/decode.js';
import type { ImagePool } from '../shared/data/pool.js';
import type { PlannedBatch } from '../shared/data/shard.js';
import type { TransformSettings } from '../shared/data/transforms.js';
import { epochOrder, microBatchItems, microBatchOf } from '../shared/plan/plan.js';

/** Which micro-batch is wanted: the one `rank` runs at slot `accumIndex`, m = accumIndex·worldSize + rank. */
export interface FeedRequest {
  readonly epoch: number;
  readonly stepInEpoch: number;
  /** Accumulation slot, 0 ≤ accumIndex < accum. */
  readonly accumIndex: number;
  readonly accum: number;
  readonly rank: number;
  readonly worldSize: number;
}

/** Static inputs of a {@link TrainFeed}. */
export interface TrainFeedOptions {
  readonly pool: ImagePool;
  /** Absolute item paths. */
  readonly paths: readonly string[];
  readonly labels: Int32Array;
  /** Training item indices (the split). */
  readonly train: Int32Array;
  readonly size: number;
  readonly bs: number;
  readonly seed: number;
  readonly skipLog: SkipLog;
  /** Batches decoded ahead (default 2). */
  readonly prefetchBatches?: number;
  /** Augmentation settings; null = none (centre crop); omitted = the tutorial's `get_transforms()`. */
  readonly transforms?: TransformSettings | null;
}

function sameRun(a: FeedRequest, b: FeedRequest): boolean {
  return a.epoch === b.epoch && a.accum === b.accum && a.rank === b.rank && a.worldSize === b.worldSize;
}

/** Ordered micro-batch source of one rank; `next(request)`, `close()` (idempotent). */
export class TrainFeed {
  private loader: BatchLoader | null = null;
  private expected: FeedRequest | null = null;

  constructor(private readonly o: TrainFeedOptions) {}

  /** Batches waiting or in flight (for the queue-depth metric). */
  get queueDepth(): number {
    return this.loader?.maxQueued ?? 0;
  }

  /** The micro-batch for `request`. */
  async next(request: FeedRequest): Promise<Batch> {
    if (this.loader === null || this.expected === null || !sameRun(request, this.expected)
      || request.stepInEpoch !== this.expected.stepInEpoch || request.accumIndex !== this.expected.accumIndex) {
      await this.rebuild(request);
    }
    const batch = await this.loader!.next();
    if (batch === null) throw new Error(`feed ran past the epoch at step ${request.stepInEpoch}`);
    const nextAccum = request.accumIndex + 1 < request.accum;
    this.expected = { ...request, stepInEpoch: nextAccum ? request.stepInEpoch : request.stepInEpoch + 1, accumIndex: nextAccum ? request.accumIndex + 1 : 0 };
    return batch;
  }

  private async rebuild(from: FeedRequest): Promise<void> {
    await this.loader?.close();
    const order = epochOrder(this.o.train.length, this.o.seed, from.epoch);
    const G = this.o.bs * from.worldSize * from.accum;
    const stepsPerEpoch = Math.floor(order.length / G);
    const batches: PlannedBatch[] = [];
    for (let k = from.stepInEpoch; k < stepsPerEpoch; k++) {
      for (let a = k === from.stepInEpoch ? from.accumIndex : 0; a < from.accum; a++) {
        const microBatch = microBatchOf(from.rank, a, from.worldSize);
        const indices = microBatchItems(order, { stepInEpoch: k, microBatch, microBatches: from.worldSize * from.accum, bs: this.o.bs });
        batches.push({ indices, real: new Uint8Array(indices.length).fill(1) });
      }
    }
    this.loader = new BatchLoader({
      pool: this.o.pool, paths: this.o.paths, labels: this.o.labels, split: this.o.train,
      plan: { batches, itemsPerRank: batches.length * this.o.bs }, size: this.o.size,
      augment: this.o.transforms !== null, transforms: this.o.transforms ?? undefined,
      seed: this.o.seed, epoch: from.epoch, prefetchBatches: this.o.prefetchBatches ?? 2, skipLog: this.o.skipLog,
    });
    this.loader.start();
    this.expected = from;
  }

  /** Stops prefetching. */
  async close(): Promise<void> {
    await this.loader?.close();
    this.loader = null;
    this.expected = null;
  }
}
