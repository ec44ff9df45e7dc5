/**
 * The single-process Learner seeds its dropout masks with the workers' rule (`plan.ts` `dropoutSeed`: seed, global
 * step, micro-batch), the global step counting every step of its life as the coordinator's does, lr_find's too. So
 * the Learner and a 1-worker run with the same seed draw the same masks: checked against the single-process replay
 * of a W-worker run (`test/integration/distributed-reference.ts`, itself checked against real workers by
 * distributed-correctness.test.ts) at W = 1, which must then end with the same weights bit for bit (same items,
 * pixels, masks and operations in the same order: tolerance 0).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { archModel, resolveRunConfig, type RunConfigInput } from '../../../../src/contract/config.js';
import { dropoutSeed } from '../../../../src/contract/plan/plan.js';
import { createDataBunch } from '../../../../src/training/data/databunch.js';
import { ImagePool } from '../../../../src/training/data/pool.js';
import { Learner } from '../../../../src/training/learner/learner.js';
import { Replica, type ReplicaState } from '../../../../src/training/learner/replica.js';
import { referenceRun } from '../../../integration/distributed-reference.js';

const PHOTOS = resolve(process.cwd(), '../shared/datasets/oxford-iiit-pet-sample/images');
const MAX_LR = 'slice(1e-3,1e-2)';
let dir: string;
let pool: ImagePool;
let input: RunConfigInput;

before(async () => {
  await initBackend('auto');
  dir = mkdtempSync(join(tmpdir(), 'learner-dropout-'));
  // Two breeds (16 photos: 13 train, 3 valid), as the distributed tests use.
  const files = readdirSync(PHOTOS).filter((f) => f.endsWith('.jpg')).sort();
  const breeds = [...new Set(files.map((f) => f.replace(/_\d+\.jpg$/, '')))].slice(0, 2);
  mkdirSync(join(dir, 'data', 'images'), { recursive: true });
  for (const f of files.filter((x) => breeds.includes(x.replace(/_\d+\.jpg$/, '')))) symlinkSync(join(PHOTOS, f), join(dir, 'data', 'images', f));
  input = { data: join(dir, 'data'), arch: 'resnet10', size: 32, bs: 2, pretrained: 'none', seed: 11,
    stages: [{ kind: 'one_cycle', name: 'stage-1', epochs: 1, maxLr: MAX_LR, frozen: false }] };
  pool = new ImagePool({ threads: 1 });
  pool.start();
});

after(async () => {
  await pool.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A Learner over the data and model a run of `input` would build (same split, same initial weights). */
async function learnerOf(): Promise<Learner> {
  const c = resolveRunConfig(input, { runDir: 'unused' });
  const data = await createDataBunch({ data: c.data, labelFrom: c.labelFrom, labelPattern: c.labelRe, split: c.split, validPct: c.validPct,
    seed: c.seed, verify: true, cacheDir: join(dir, 'cache'), log: () => {} }, pool);
  const replica = await Replica.create({ arch: archModel(c.arch), numClasses: data.classes.length, seed: c.seed, pretrained: null, frozen: false });
  return new Learner(data, pool, replica, { bs: c.bs, size: c.size, seed: c.seed, dir, progress: 'none', log: () => {} });
}

test('the Learner seeds step g\'s dropout with dropoutSeed(seed, g, 0), g counting lr_find and every fit', async () => {
  const learner = await learnerOf();
  try {
    const seeds: number[] = [];
    const accumulate = learner.replica.accumulate.bind(learner.replica);
    learner.replica.accumulate = (x, y, valid, seed) => { seeds.push(seed); return accumulate(x, y, valid, seed); };
    await learner.lrFind({ numIt: 3, endLr: 1e-2 });
    assert.equal(seeds.length, 3);
    await learner.fit(1, 1e-3);
    await learner.fitOneCycle(1, MAX_LR);
    // 13 training items, bs 2: 6 steps per epoch.
    assert.equal(seeds.length, 3 + 6 + 6);
    assert.equal(learner.stepsDone, seeds.length);
    // The worker's rule at world size 1 (micro-batch m = 0), global steps 0, 1, 2, … as the coordinator counts them.
    assert.deepEqual(seeds, seeds.map((_, g) => dropoutSeed(11, g, 0)));
  } finally {
    learner.replica.dispose();
  }
});

test('the Learner and a 1-worker run with the same seed end one_cycle epoch with the same weights, bit for bit', { timeout: 600_000 }, async () => {
  const learner = await learnerOf();
  let mine: ReplicaState;
  try {
    await learner.fitOneCycle(1, MAX_LR);
    mine = await learner.replica.exportState();
  } finally {
    learner.replica.dispose();
  }
  const ref = await referenceRun(input, 1, pool);
  assert.equal(ref.steps, 6);
  assert.deepEqual(mine.tensors.map((t) => t.name), ref.state.tensors.map((t) => t.name));
  for (let i = 0; i < mine.tensors.length; i++) {
    const a = mine.tensors[i]!, b = ref.state.tensors[i]!;
    let worst = 0;
    for (let j = 0; j < a.data.length; j++) worst = Math.max(worst, Math.abs(a.data[j]! - b.data[j]!));
    assert.equal(worst, 0, `${a.name}: max |Learner − 1-worker run| = ${worst}`);
  }
});
