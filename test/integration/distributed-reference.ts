/**
 * The single-process reference of a distributed run (not a test file itself): one {@link Replica} that replays,
 * step by step, exactly what W workers compute together — for each global step, micro-batches m = 0…W−1 one after
 * another (items from `plan.ts`'s `microBatchItems`, the same augmented pixels, the same dropout seed as
 * `src/worker/trainer.ts`), their mean gradient summed in the ring's order ({@link ringAverage}), then the AdamW step
 * with the coordinator's `stepHyper`. BatchNorm running statistics are updated by each micro-batch's forward in
 * micro-batch order, as PyTorch does in one process (momentum 0.1 per forward): the distributed run must get the
 * same statistics from its gathered per-micro-batch increments.
 */
import { createDataBunch, type DataBunch } from '../../src/training/data/databunch.js';
import { BatchLoader, type Batch } from '../../src/training/data/loader.js';
import type { ImagePool } from '../../src/training/data/pool.js';
import { archModel, resolveRunConfig, type RunConfigInput } from '../../src/contract/config.js';
import { Replica, type ReplicaState } from '../../src/training/learner/replica.js';
import { DEFAULT_BUCKETS, planBuckets } from '../../src/training/allreduce/buckets.js';
import { chunkBounds } from '../../src/training/allreduce/ring-schedule.js';
import { dropoutSeed, epochOrder, microBatchItems, planStages, stepHyper, validationBatches } from '../../src/contract/plan/plan.js';

/** Result of the reference: final state and the validation of the last epoch. */
export interface ReferenceResult {
  readonly state: ReplicaState;
  readonly validLoss: number;
  readonly errorRate: number;
  readonly steps: number;
}

async function render(data: DataBunch, pool: ImagePool, indices: Int32Array, size: number, seed: number, epoch: number): Promise<Batch> {
  const loader = new BatchLoader({
    pool, paths: data.paths, labels: data.labels, split: data.train, size, augment: true, seed, epoch,
    plan: { batches: [{ indices, real: new Uint8Array(indices.length).fill(1) }], itemsPerRank: indices.length },
  });
  loader.start();
  try {
    const b = await loader.next();
    if (b === null) throw new Error('reference: empty batch');
    return b;
  } finally {
    await loader.close();
  }
}

async function validate(replica: Replica, data: DataBunch, pool: ImagePool, size: number, bs: number, seed: number): Promise<{ validLoss: number; errorRate: number }> {
  const batches = validationBatches(data.valid.length, bs, 0, 1);
  const plan = { batches, itemsPerRank: data.valid.length };
  const loader = new BatchLoader({ pool, paths: data.paths, labels: data.labels, split: data.valid, plan, size, augment: false, seed, epoch: 0 });
  let lossSum = 0, count = 0, correct = 0;
  try {
    for await (const b of loader) {
      const r = await replica.evaluate(b.x, b.y, b.valid);
      lossSum += r.lossSum;
      count += r.count;
      correct += r.correct;
    }
  } finally {
    await loader.close();
  }
  return { validLoss: lossSum / count, errorRate: 1 - correct / count };
}

/**
 * The mean of the ranks' gradients summed in the ring's order (`ring-schedule.ts`): each bucket is split in W
 * chunks; chunk c is summed in float32 along the ring starting at rank c (g_c + g_{c+1} + … mod W), then divided by
 * W. Float32 addition is not associative, and AdamW turns tiny differences of near-zero gradients into steps of
 * ≈ lr, so the reference must add in the same order to be comparable at 1e-6 (a plain g_0 + g_1 + g_2 differs by
 * O(1) in some BatchNorm biases after 4 steps at 32 px, batch 2: measured).
 */
export function ringAverage(grads: readonly Float32Array[], buckets: ReadonlyArray<readonly [number, number]>): Float32Array {
  const w = grads.length;
  const out = new Float32Array(grads[0]!.length);
  for (const [start, end] of buckets) {
    for (let c = 0; c < w; c++) {
      const { start: s, end: e } = chunkBounds(end - start, w, c);
      for (let i = start + s; i < start + e; i++) {
        let acc = grads[c]![i]!;
        for (let j = 1; j < w; j++) acc = Math.fround(acc + grads[(c + j) % w]![i]!);
        out[i] = Math.fround(acc / w);
      }
    }
  }
  return out;
}

/**
 * Replays a one-stage run of `worldSize` workers in this process (stage 0 only, accum 1, lr scale none).
 * @param input - the run's configuration as given to the coordinator (flags and config file fields)
 */
export async function referenceRun(input: RunConfigInput, worldSize: number, pool: ImagePool, bucketBytes = DEFAULT_BUCKETS.bucketBytes): Promise<ReferenceResult> {
  const c = resolveRunConfig(input, { runDir: 'unused' });
  const data = await createDataBunch({
    data: c.data, labelFrom: c.labelFrom, labelPattern: c.labelRe, split: c.split, validPct: c.validPct, seed: c.seed, verify: true,
  }, pool);
  const [stage] = planStages({ stages: c.stages, trainCount: data.train.length, globalBs: c.bs * worldSize, lrFactor: 1 });
  const replica = await Replica.create({ arch: archModel(c.arch), numClasses: data.classes.length, seed: c.seed, pretrained: null, frozen: stage!.config.frozen });
  try {
    replica.setFrozen(stage!.config.frozen);
    for (let k = 0; k < stage!.totalSteps; k++) {
      const epoch = Math.floor(k / stage!.stepsPerEpoch);
      const order = epochOrder(data.train.length, c.seed, epoch);
      const perRank: Float32Array[] = [];
      for (let m = 0; m < worldSize; m++) {
        // With accum 1 rank r runs micro-batch m = r.
        const indices = microBatchItems(order, { stepInEpoch: k % stage!.stepsPerEpoch, microBatch: m, microBatches: worldSize, bs: c.bs });
        const b = await render(data, pool, indices, c.size, c.seed, epoch);
        await replica.accumulate(b.x, b.y, b.valid, dropoutSeed(c.seed, k, m));
        perRank.push(await replica.takeGradients());
      }
      const grads = ringAverage(perRank, planBuckets(replica.gradientLayout(), { bucketBytes }).map((b): [number, number] => [b.start, b.end]));
      replica.applyGradients(grads, stepHyper(stage!, k));
    }
    const v = await validate(replica, data, pool, c.size, c.bs, c.seed);
    return { state: await replica.exportState(), ...v, steps: stage!.totalSteps };
  } finally {
    replica.dispose();
  }
}
