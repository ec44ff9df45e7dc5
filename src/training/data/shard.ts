/**
 * Which items each rank reads, per epoch: PyTorch `DistributedSampler` semantics as a pure function, so every
 * process computes the same plan without talking to anyone.
 */
import { TrainerError } from '../../contract/errors.js';
import { hashSeed, permutation } from '../../contract/plan/rng.js';

/** Options of {@link shardPlan}; every field is required. */
export interface ShardPlanOptions {
  /** Number of items in the split (integer ≥ 1). */
  readonly itemCount: number;
  /** Run seed (integer). */
  readonly seed: number;
  /** Epoch number (integer ≥ 0); reshuffles when `shuffle` (DistributedSampler's `set_epoch`). */
  readonly epoch: number;
  /** Number of ranks N (integer ≥ 1). */
  readonly worldSize: number;
  /** This rank, 0 ≤ rank < N. */
  readonly rank: number;
  /** Per-rank batch size (integer ≥ 1). */
  readonly batchSize: number;
  /** Shuffle with (seed, epoch) — train; otherwise dataset order — valid. */
  readonly shuffle: boolean;
  /** `drop`: drop the tail so all ranks get full batches (train, fastai `drop_last=True`); `pad`: repeat items from
   *  the start so all ranks get ceil(n/N) items, keeping a last partial batch (valid), and flag the repeats. */
  readonly mode: 'drop' | 'pad';
}

/** One batch of a rank's plan. */
export interface PlannedBatch {
  /** Item indices into the split, `[b]` int32. */
  readonly indices: Int32Array;
  /** `[b]` uint8: 1 = real item, 0 = padding repeat (exclude from metrics). */
  readonly real: Uint8Array;
}

/** A rank's plan for one epoch. */
export interface ShardPlan {
  /** Batches in order; the same count on every rank. */
  readonly batches: readonly PlannedBatch[];
  /** Items this rank sees including padding (the same on every rank). */
  readonly itemsPerRank: number;
}

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new TrainerError('ERR_BAD_FLAG', `shardPlan ${name} must be an integer ≥ ${min}, got ${v}`);
}

/**
 * Plans one rank's batches for one epoch. Order: a permutation seeded by hash(seed, epoch) when `shuffle`, else
 * 0..n−1; `drop` keeps the first floor(n/N)·N positions and per rank floor(·/batchSize) full batches; `pad` extends
 * to ceil(n/N)·N positions by repeating from the start; rank r takes positions r, r+N, r+2N, … (PyTorch
 * `DistributedSampler`, torch/utils/data/distributed.py).
 *
 * @throws TrainerError ERR_BAD_FLAG naming the field when an option breaks its rule.
 */
export function shardPlan(o: ShardPlanOptions): ShardPlan {
  checkInt('itemCount', o.itemCount, 1);
  checkInt('worldSize', o.worldSize, 1);
  checkInt('batchSize', o.batchSize, 1);
  checkInt('epoch', o.epoch, 0);
  if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize) {
    throw new TrainerError('ERR_BAD_FLAG', `shardPlan rank must be an integer in [0, ${o.worldSize - 1}], got ${o.rank}`);
  }
  const n = o.itemCount;
  const order = o.shuffle ? permutation(n, hashSeed(o.seed, o.epoch, 0x5a4d)) : Int32Array.from({ length: n }, (_, i) => i);
  const perRank = o.mode === 'drop'
    ? Math.floor(Math.floor(n / o.worldSize) / o.batchSize) * o.batchSize
    : Math.ceil(n / o.worldSize);
  const batches: PlannedBatch[] = [];
  for (let start = 0; start < perRank; start += o.batchSize) {
    const b = Math.min(o.batchSize, perRank - start);
    const indices = new Int32Array(b);
    const real = new Uint8Array(b);
    for (let k = 0; k < b; k++) {
      const pos = o.rank + (start + k) * o.worldSize;
      indices[k] = order[pos % n]!;
      real[k] = pos < n ? 1 : 0;
    }
    batches.push({ indices, real });
  }
  return { batches, itemsPerRank: perRank };
}
