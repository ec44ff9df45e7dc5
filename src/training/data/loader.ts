/**
 * Yields one rank's batches for one epoch from a {@link ShardPlan}, decoding/augmenting through an
 * {@link ImagePool} with a bounded prefetch queue (at most `prefetchBatches` batches in flight or waiting: a slow
 * consumer stops new work, i.e. backpressure).
 */
import { TrainerError } from '../../contract/errors.js';
import { SkipLog } from './decode.js';
import type { ImagePool } from './pool.js';
import type { ShardPlan } from './shard.js';
import type { TransformSettings } from '../../contract/transform-settings.js';

/** One batch, ready for the trainer to wrap in tensors. */
export interface Batch {
  /** `[b, size, size, 3]` float32 NHWC, ImageNet-normalized. */
  readonly x: Float32Array;
  /** `[b]` int32 class indices. */
  readonly y: Int32Array;
  /** `[b]` uint8: 1 = real item, 0 = padding or an item that failed to decode (exclude from loss/metrics). */
  readonly valid: Uint8Array;
  /** Position of this batch in the plan, 0-based. */
  readonly batchIndex: number;
}

/** Options of {@link BatchLoader}. */
export interface BatchLoaderOptions {
  /** A started pool (owned by the caller). */
  readonly pool: ImagePool;
  /** Every item's path (dataset order). */
  readonly paths: readonly string[];
  /** Every item's class index, `[items]` int32. */
  readonly labels: Int32Array;
  /** Item indices of this split; plan indices point into it. */
  readonly split: Int32Array;
  /** This rank's plan for this epoch. */
  readonly plan: ShardPlan;
  /** Output side in pixels (224 in the tutorial). */
  readonly size: number;
  /** Random augmentation (train) or centre crop (valid). */
  readonly augment: boolean;
  /** fastai `get_transforms(...)` settings when `augment`; omitted → the tutorial's defaults. */
  readonly transforms?: TransformSettings;
  readonly seed: number;
  readonly epoch: number;
  /** Batches prepared ahead (integer ≥ 1); default 2. */
  readonly prefetchBatches?: number;
  /** Where decode failures are reported once; default a fresh SkipLog. */
  readonly skipLog?: SkipLog;
}

/** Loader of one rank's epoch. `start()`, iterate (or `next()`), `close()` (idempotent). */
export class BatchLoader implements AsyncIterable<Batch> {
  private readonly o: BatchLoaderOptions;
  private readonly prefetch: number;
  private readonly queue: Promise<Batch>[] = [];
  private nextToSubmit = 0;
  private started = false;
  private closed = false;
  /** Most batches ever in flight or waiting at once (for tests and metrics). */
  maxQueued = 0;
  /** Decode failures met while loading. */
  readonly skipLog: SkipLog;

  constructor(options: BatchLoaderOptions) {
    const prefetch = options.prefetchBatches ?? 2;
    if (!Number.isInteger(prefetch) || prefetch < 1) throw new TrainerError('ERR_BAD_FLAG', `--prefetch must be an integer ≥ 1, got ${prefetch}`);
    if (options.labels.length !== options.paths.length) {
      throw new TrainerError('ERR_DATA', `labels must have one entry per path: expected ${options.paths.length}, got ${options.labels.length}`);
    }
    this.o = options;
    this.prefetch = prefetch;
    this.skipLog = options.skipLog ?? new SkipLog();
  }

  /** Number of batches this loader yields. */
  get length(): number {
    return this.o.plan.batches.length;
  }

  /** Begins prefetching (idempotent). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.fill();
  }

  private fill(): void {
    while (!this.closed && this.queue.length < this.prefetch && this.nextToSubmit < this.o.plan.batches.length) {
      const p = this.load(this.nextToSubmit++);
      p.catch(() => {}); // surfaced by next(); avoid an unhandled rejection while it waits in the queue
      this.queue.push(p);
      this.maxQueued = Math.max(this.maxQueued, this.queue.length);
    }
  }

  private async load(batchIndex: number): Promise<Batch> {
    const { plan, split, paths, labels, size, pool } = this.o;
    const planned = plan.batches[batchIndex]!;
    const b = planned.indices.length;
    const per = size * size * 3;
    const x = new Float32Array(b * per);
    const y = new Int32Array(b);
    const valid = Uint8Array.from(planned.real);
    await Promise.all(Array.from(planned.indices, async (splitIdx, k) => {
      const itemIndex = split[splitIdx]!;
      y[k] = labels[itemIndex]!;
      const r = await pool.run({ kind: 'render', path: paths[itemIndex]!, size, augment: this.o.augment, transforms: this.o.transforms, seed: this.o.seed, epoch: this.o.epoch, itemIndex });
      if (r.ok && r.pixels) {
        x.set(r.pixels, k * per);
      } else {
        valid[k] = 0;
        if (!r.ok) this.skipLog.report(paths[itemIndex]!, r.reason);
      }
    }));
    return { x, y, valid, batchIndex };
  }

  /** The next batch, or null at the end of the plan or after close(). @throws TrainerError ERR_DATA before start(). */
  async next(): Promise<Batch | null> {
    if (!this.started) throw new TrainerError('ERR_DATA', 'BatchLoader.next() before start()');
    const head = this.queue.shift();
    if (!head || this.closed) return null;
    this.fill();
    return head;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Batch> {
    this.start();
    for (let b = await this.next(); b; b = await this.next()) yield b;
  }

  /** Stops prefetching and waits for in-flight batches to settle (the pool is the caller's). Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const pending = this.queue.splice(0);
    await Promise.allSettled(pending);
  }
}
