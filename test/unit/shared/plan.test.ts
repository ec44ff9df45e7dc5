import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveRunConfig } from '../../../src/shared/config.js';
import { shardPlan } from '../../../src/shared/data/shard.js';
import { isTrainerError } from '../../../src/shared/errors.js';
import { epochOrder, microBatchItems, planStages, stepHyper } from '../../../src/shared/plan.js';

const stages = resolveRunConfig().stages;

test('stage step counts and max lrs (fastai slice semantics × lr factor)', () => {
  const plan = planStages({ stages, trainCount: 5912, globalBs: 64, lrFactor: 2 });
  assert.deepEqual(plan.map((s) => [s.config.name, s.stepsPerEpoch, s.totalSteps]), [
    ['stage-1', 92, 368], ['lr-find', 100, 100], ['stage-2', 92, 184],
  ]);
  // slice(3e-3) → [3e-4, 3e-4, 3e-3]; slice(1e-6,1e-4) → [1e-6, 1e-5, 1e-4]; both ×2.
  assert.deepEqual(plan[0]!.maxLrs.map((x) => +x.toPrecision(12)), [6e-4, 6e-4, 6e-3]);
  assert.deepEqual(plan[2]!.maxLrs.map((x) => +x.toPrecision(12)), [2e-6, 2e-5, 2e-4]);
  // First one-cycle step uses maxLr/25 and momentum 0.95 (fastai-v1.md).
  const h0 = stepHyper(plan[0]!, 0);
  assert.deepEqual(h0.lrs.map((x) => +x.toPrecision(12)), [2.4e-5, 2.4e-5, 2.4e-4]);
  assert.equal(h0.momentum, 0.95);
  // lr_find: 1e-7 · (10/1e-7)^(i/100), the same for every group.
  const h50 = stepHyper(plan[1]!, 50);
  assert.ok(Math.abs(h50.lrs[0]! - 1e-7 * Math.pow(1e8, 0.5)) < 1e-12);
  assert.equal(new Set(h50.lrs).size, 1);
});

test('a training set smaller than one global batch is a clear error', () => {
  assert.throws(() => planStages({ stages, trainCount: 100, globalBs: 128, lrFactor: 1 }),
    (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && /training set \(100 items\) must hold at least one global batch of 128/.test(e.message));
});

test('with accum 1 the micro-batches are exactly DistributedSampler shards (shardPlan)', () => {
  for (const W of [1, 2, 3]) {
    const n = 101, bs = 4, seed = 7, epoch = 3;
    const order = epochOrder(n, seed, epoch);
    for (let r = 0; r < W; r++) {
      const plan = shardPlan({ itemCount: n, seed, epoch, worldSize: W, rank: r, batchSize: bs, shuffle: true, mode: 'drop' });
      plan.batches.forEach((b, k) => {
        const mine = microBatchItems(order, { stepInEpoch: k, accumIndex: 0, rank: r, worldSize: W, bs, accum: 1 });
        assert.deepEqual(Array.from(mine), Array.from(b.indices), `W=${W} r=${r} k=${k}`);
      });
    }
  }
});

test('every global step reads the same items whatever the world size and accumulation (elastic-safe)', () => {
  const order = epochOrder(97, 1, 0);
  const itemsOfStep = (k: number, W: number, accum: number, bs: number) => {
    const all: number[] = [];
    for (let a = 0; a < accum; a++) for (let r = 0; r < W; r++) all.push(...microBatchItems(order, { stepInEpoch: k, accumIndex: a, rank: r, worldSize: W, bs, accum }));
    return all.sort((x, y) => x - y);
  };
  for (let k = 0; k < 4; k++) {
    const want = Array.from(order.slice(k * 24, (k + 1) * 24)).sort((x, y) => x - y);
    assert.deepEqual(itemsOfStep(k, 3, 1, 8), want);
    assert.deepEqual(itemsOfStep(k, 2, 3, 4), want);
    assert.deepEqual(itemsOfStep(k, 1, 6, 4), want);
  }
  assert.throws(() => microBatchItems(order, { stepInEpoch: 4, accumIndex: 0, rank: 0, worldSize: 3, bs: 8, accum: 1 }), /past the epoch/);
});
