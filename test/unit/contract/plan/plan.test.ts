import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveRunConfig } from '../../../../src/contract/config.js';
import { shardPlan } from '../../../../src/training/data/shard.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import {
  LR_FIND_DATA_EPOCHS_PER_STAGE, LR_FIND_FIRST_DATA_EPOCH, dropoutSeed, epochOrder, microBatchItems, microBatchOf, planStages,
  rankBatches, stageDataEpochBase, stepHyper, trainingSeed, validationBatches,
} from '../../../../src/contract/plan/plan.js';

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
        const mine = microBatchItems(order, { stepInEpoch: k, microBatch: microBatchOf(r, 0, W), microBatches: W, bs });
        assert.deepEqual(Array.from(mine), Array.from(b.indices), `W=${W} r=${r} k=${k}`);
      });
    }
  }
});

test('every global step reads the same micro-batches whatever the world size and accumulation (elastic-safe)', () => {
  const order = epochOrder(97, 1, 0);
  const bs = 4, M = 6;
  /** Micro-batch m's items for a run of W workers × accum, as the ranks' feeds read them. */
  const microBatchesOfStep = (k: number, W: number, accum: number): number[][] => {
    const byM: number[][] = new Array(M);
    for (let r = 0; r < W; r++) {
      for (let a = 0; a < accum; a++) {
        const m = microBatchOf(r, a, W);
        assert.equal(byM[m], undefined, `micro-batch ${m} run twice (W=${W}, accum ${accum})`);
        byM[m] = Array.from(microBatchItems(order, { stepInEpoch: k, microBatch: m, microBatches: W * accum, bs }));
      }
    }
    return byM;
  };
  for (let k = 0; k < 4; k++) {
    const want = microBatchesOfStep(k, 1, 6);
    // The global batch is positions [kG, (k+1)G) of the epoch order, each item in exactly one micro-batch.
    assert.deepEqual(want.flat().sort((x, y) => x - y), Array.from(order.slice(k * 24, (k + 1) * 24)).sort((x, y) => x - y));
    // Micro-batch m = positions kG + m + iM: item i of m is the (m + iM)-th of the step.
    assert.deepEqual(want[4], [0, 1, 2, 3].map((i) => order[k * 24 + 4 + i * 6]));
    for (const [W, accum] of [[2, 3], [3, 2], [6, 1]] as const) assert.deepEqual(microBatchesOfStep(k, W, accum), want, `W=${W} accum ${accum}`);
  }
  assert.throws(() => microBatchItems(order, { stepInEpoch: 4, microBatch: 0, microBatches: 3, bs: 8 }), /past the epoch/);
  assert.throws(() => microBatchItems(order, { stepInEpoch: 0, microBatch: 3, microBatches: 3, bs: 8 }), /micro-batch 3 must be an integer in \[0, 2\]/);
});

test('dropout seeds depend on (seed, step, micro-batch) only', () => {
  assert.equal(dropoutSeed(42, 7, 3), dropoutSeed(42, 7, 3));
  const seeds = new Set<number>();
  for (let step = 0; step < 10; step++) for (let m = 0; m < 10; m++) seeds.add(dropoutSeed(42, step, m));
  assert.equal(seeds.size, 100, 'distinct per (step, micro-batch)');
  assert.notEqual(dropoutSeed(42, 0, 0), dropoutSeed(43, 0, 0));
});

test('validation batches are the split in order, bs at a time, batch j on rank j mod W', () => {
  const flat = (W: number): { rank: number; items: number[] }[] => {
    const out: { rank: number; items: number[] }[] = [];
    for (let r = 0; r < W; r++) for (const b of validationBatches(11, 4, r, W)) { out.push({ rank: r, items: Array.from(b.indices) }); assert.ok(b.real.every((x) => x === 1)); }
    return out.sort((a, b) => a.items[0]! - b.items[0]!);
  };
  const batches = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]];
  for (const W of [1, 2, 3, 5]) {
    const got = flat(W);
    assert.deepEqual(got.map((b) => b.items), batches, `W=${W}`);
    assert.deepEqual(got.map((b) => b.rank), [0, 1, 2].map((j) => j % W), `W=${W}`);
  }
  assert.deepEqual(validationBatches(3, 4, 1, 2), [], 'a rank may get no batch');
});

test('data epochs: a fit stage continues after the fit epochs before it; each lr_find stage has its own range', () => {
  const plan = planStages({
    stages: [
      { kind: 'one_cycle', name: 'a', epochs: 2, maxLr: '1e-3', frozen: true },
      { kind: 'lr_find', name: 'b', epochs: 0, maxLr: '0', frozen: false },
      { kind: 'fit', name: 'c', epochs: 3, maxLr: '1e-4', frozen: false },
      { kind: 'lr_find', name: 'd', epochs: 0, maxLr: '0', frozen: false },
    ],
    trainCount: 640, globalBs: 64, lrFactor: 1,
  });
  // Stage a reads epochs 0, 1; c reads 2, 3, 4 (lr_find's sweep adds none); past the end: 5 fit epochs.
  assert.deepEqual([0, 2, 4].map((i) => stageDataEpochBase(plan, i)), [0, 2, 5]);
  // lr_find stage i: 1_000_000 + 1_000·i, far from every fit epoch.
  assert.equal(stageDataEpochBase(plan, 1), LR_FIND_FIRST_DATA_EPOCH + 1 * LR_FIND_DATA_EPOCHS_PER_STAGE);
  assert.equal(stageDataEpochBase(plan, 3), 1_003_000);
});

test('rankBatches: from any position to the epoch end, a rank reads micro-batches m = a·W + rank of each step', () => {
  const order = epochOrder(50, 7, 3);
  // W = 2, accum 2, bs 3: G = 12, ⌊50/12⌋ = 4 steps; rank 1 from step 2, slot 1: (2,1), (3,0), (3,1).
  const got = rankBatches(order, 3, { epoch: 3, stepInEpoch: 2, accumIndex: 1, accum: 2, rank: 1, worldSize: 2 });
  const want = [[2, 1], [3, 0], [3, 1]].map(([k, a]) =>
    microBatchItems(order, { stepInEpoch: k!, microBatch: microBatchOf(1, a!, 2), microBatches: 4, bs: 3 }));
  assert.deepEqual(got.map((b) => Array.from(b.indices)), want.map((w) => Array.from(w)));
  assert.ok(got.every((b) => b.real.every((r) => r === 1)));
  // One process (W = 1, accum 1): step k reads positions [k·bs, (k+1)·bs) of the order, the last partial batch dropped.
  const single = rankBatches(order, 4, { epoch: 3, stepInEpoch: 0, accumIndex: 0, accum: 1, rank: 0, worldSize: 1 });
  assert.equal(single.length, 12);
  assert.deepEqual(Array.from(single[5]!.indices), Array.from(order.subarray(20, 24)));
});

test('trainingSeed: a --load run draws other shuffles and dropout masks than the run it loaded; a plain run keeps --seed', () => {
  // A --load run counts data epochs and steps from 0 again: with the same --seed it replayed the loaded run's first
  // epoch batch for batch (tryout2: train_loss 0.1 against valid_loss 4.5). fastai's learn.load(); fit_one_cycle()
  // shuffles anew. The right value: the first epoch's order and the first step's dropout seeds differ from the loaded run's.
  const sha = 'c0ffee00'.repeat(8), other = '0badf00d'.repeat(8);
  assert.equal(trainingSeed(42, null), 42);
  const loaded = trainingSeed(42, sha);
  assert.equal(loaded, trainingSeed(42, sha), 'deterministic: a --resume of the --load run replays its own order');
  assert.notEqual(loaded, 42);
  assert.notEqual(loaded, trainingSeed(42, other), 'another loaded file, other draws');
  assert.notEqual(loaded, trainingSeed(43, sha), 'another --seed, other draws');
  assert.ok(Number.isInteger(loaded) && loaded >= 0 && loaded < 2 ** 32);
  const first = epochOrder(64, 42, 0), again = epochOrder(64, loaded, 0);
  const samePlace = first.filter((v, i) => again[i] === v).length;
  assert.ok(samePlace < 8, `epoch 0 of the --load run is not the loaded run's epoch 0 (${samePlace} of 64 in place)`);
  assert.notEqual(dropoutSeed(loaded, 0, 0), dropoutSeed(42, 0, 0));
  assert.throws(() => trainingSeed(42, 'not-hex'), (e) => isTrainerError(e, 'ERR_BAD_CONFIG'));
});
