/**
 * The training feed of every process (a worker's rank, or the single-process Learner as rank 0 of 1): yields, in
 * order, the micro-batches this rank runs for each optimizer step (`rankBatches` of `src/contract/plan/plan.ts`:
 * micro-batch m = slot·W + rank, whose items depend on the step and m only), decoding and augmenting ahead through
 * the image pool. When a request is not the next expected one (a redone step after a failure, a
 * new epoch, a membership change that alters world size, rank or accumulation), the prefetch is rebuilt from
 * that point; the items are a pure function of the request, so a redone step reads exactly the same pixels.
 */
import type { Batch } from './loader.js';
import { BatchLoader } from './loader.js';
import type { SkipLog } from './decode.js';
import type { ImagePool } from './pool.js';
import type { TransformSettings } from '../../contract/transform-settings.js';
import { epochOrder, rankBatches, type FeedPosition } from '../../contract/plan/plan.js';

/** Which micro-batch is wanted: the one `rank` runs at slot `accumIndex`, m = accumIndex·worldSize + rank. */
export type FeedRequest = FeedPosition;

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
    const batches = rankBatches(epochOrder(this.o.train.length, this.o.seed, from.epoch), this.o.bs, from);
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
