/**
 * The validation loop of every process: eval-mode loss, correct count and (optionally) probabilities over a list
 * of validation batches, in order, centre crops. The single-process {@link Learner} runs it over all batches of
 * the split (`validationBatches(n, bs, 0, 1)`); a worker over its share (batch j on rank j mod W), and the
 * coordinator adds the ranks' sums — the same per-batch numbers whatever the worker count.
 */
import type { SkipLog } from '../data/decode.js';
import { BatchLoader } from '../data/loader.js';
import type { ImagePool } from '../data/pool.js';
import type { Replica } from './replica.js';

/** Validation sums of one process, and optionally its per-item probabilities. */
export interface ValidResult {
  /** Sum of the per-item cross-entropies over the decoded items, nats. */
  readonly lossSum: number;
  /** Items evaluated (items that failed to decode are excluded). */
  readonly count: number;
  /** Items whose argmax is the label. */
  readonly correct: number;
  /** `[k] int32` validation-split positions of the real items, then `[k × classes] float32` probabilities. */
  readonly items: Int32Array | null;
  readonly probs: Float32Array | null;
}

/** Where the validation images come from. */
export interface ValidationSource {
  readonly pool: ImagePool;
  /** Absolute item paths. */
  readonly paths: readonly string[];
  readonly labels: Int32Array;
  /** The validation split: item indices. */
  readonly split: Int32Array;
  /** Image side, pixels. */
  readonly size: number;
  readonly seed: number;
  readonly skipLog: SkipLog;
  /** Batches decoded ahead (loader default when omitted). */
  readonly prefetchBatches?: number;
}

/**
 * Evaluates `batches` (positions in the validation split) in order with {@link Replica.evaluate}.
 *
 * @param withProbs - also return each decoded item's split position and softmax probabilities
 */
export async function validateBatches(replica: Replica, source: ValidationSource,
  batches: readonly { indices: Int32Array; real: Uint8Array }[], withProbs: boolean): Promise<ValidResult> {
  const plan = { batches: [...batches], itemsPerRank: batches.reduce((s, b) => s + b.indices.length, 0) };
  const loader = new BatchLoader({
    pool: source.pool, paths: source.paths, labels: source.labels, split: source.split, plan, size: source.size,
    augment: false, seed: source.seed, epoch: 0, skipLog: source.skipLog, prefetchBatches: source.prefetchBatches,
  });
  const k = replica.numClasses;
  let lossSum = 0, count = 0, correct = 0;
  const items: number[] = [];
  const probs: Float32Array[] = [];
  try {
    for await (const batch of loader) {
      const r = await replica.evaluate(batch.x, batch.y, batch.valid);
      lossSum += r.lossSum;
      count += r.count;
      correct += r.correct;
      if (!withProbs) continue;
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
  const flatProbs = new Float32Array(probs.length * k);
  probs.forEach((p, i) => flatProbs.set(p, i * k));
  return { lossSum, count, correct, items: Int32Array.from(items), probs: flatProbs };
}
