/** shardPlan: DistributedSampler properties (torch/utils/data/distributed.py) checked exhaustively on small cases. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { shardPlan, type ShardPlanOptions } from '../../../../src/training/data/shard.js';

const base: ShardPlanOptions = { itemCount: 103, seed: 5, epoch: 0, worldSize: 3, rank: 0, batchSize: 8, shuffle: true, mode: 'drop' };
const ranks = (o: Partial<ShardPlanOptions>) =>
  Array.from({ length: o.worldSize ?? base.worldSize }, (_, rank) => shardPlan({ ...base, ...o, rank }));
const flat = (p: ReturnType<typeof shardPlan>) => p.batches.flatMap((b) => [...b.indices]);

describe('shardPlan', () => {
  it('train (drop): equal full batches per rank, disjoint, tail dropped', () => {
    const plans = ranks({});
    // 103 items / 3 ranks = 34 per rank → 4 batches of 8 (32 items); 96 used, 7 dropped.
    for (const p of plans) {
      assert.equal(p.batches.length, 4);
      assert.ok(p.batches.every((b) => b.indices.length === 8 && b.real.every((r) => r === 1)));
    }
    const all = plans.flatMap(flat);
    assert.equal(new Set(all).size, 96, 'disjoint');
    assert.ok(all.every((i) => i >= 0 && i < 103));
  });

  it('single rank, bs 64 over 5912 items gives 92 batches (fastai drop_last: 5912 // 64)', () => {
    assert.equal(shardPlan({ ...base, itemCount: 5912, worldSize: 1, batchSize: 64 }).batches.length, 92);
  });

  it('valid (pad): ceil(n/N) per rank, in order, last partial batch kept, repeats flagged', () => {
    const plans = ranks({ mode: 'pad', shuffle: false, itemCount: 10, worldSize: 4, batchSize: 2 });
    // ceil(10/4) = 3 items per rank → batches of 2 and 1 on every rank; 12 slots, 2 padded.
    for (const p of plans) assert.deepEqual(p.batches.map((b) => b.indices.length), [2, 1]);
    assert.deepEqual(flat(plans[0]!), [0, 4, 8]);
    assert.deepEqual(flat(plans[1]!), [1, 5, 9]);
    assert.deepEqual(flat(plans[2]!), [2, 6, 0]);
    assert.deepEqual(plans[2]!.batches[1]!.real, Uint8Array.from([0]));
    const real = plans.flatMap((p) => p.batches.flatMap((b) => [...b.indices].filter((_, k) => b.real[k] === 1)));
    assert.deepEqual(real.sort((a, b) => a - b), Array.from({ length: 10 }, (_, i) => i), 'each real item exactly once');
  });

  it('reshuffles per epoch, is identical whoever computes it, and differs by seed', () => {
    const e0 = flat(shardPlan(base));
    assert.deepEqual(flat(shardPlan({ ...base })), e0);
    assert.notDeepEqual(flat(shardPlan({ ...base, epoch: 1 })), e0);
    assert.notDeepEqual(flat(shardPlan({ ...base, seed: 6 })), e0);
  });

  it('the union of the ranks does not depend on the world size beyond the dropped tail', () => {
    // With shuffle, the global order is fixed by (seed, epoch); N only decides who takes which position.
    const two = ranks({ worldSize: 2, batchSize: 1, itemCount: 12 }).flatMap(flat).sort((a, b) => a - b);
    const four = ranks({ worldSize: 4, batchSize: 1, itemCount: 12 }).flatMap(flat).sort((a, b) => a - b);
    assert.deepEqual(two, four);
  });

  it('validates its options naming the field', () => {
    assert.throws(() => shardPlan({ ...base, rank: 3 }), /rank must be an integer in \[0, 2\], got 3/);
    assert.throws(() => shardPlan({ ...base, worldSize: 0 }), /worldSize must be an integer ≥ 1, got 0/);
    assert.throws(() => shardPlan({ ...base, batchSize: 1.5 }), /batchSize must be an integer ≥ 1, got 1.5/);
  });
});
