// The Learner's training augmentation setting (`npm run learn --no-augment` / the get_transforms flags): fastai's
// `ds_tfms=None` trains every epoch on the same centre crop of each image, while `get_transforms()` draws a new random
// crop, flip, rotation, zoom, warp and lighting per epoch. Measured on the shared photos: each item's pixels in data
// epoch 0 against data epoch 1.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { createDataBunch, type DataBunch } from '../../../../src/training/data/databunch.js';
import { ImagePool } from '../../../../src/training/data/pool.js';
import { DEFAULT_TRANSFORMS, type TransformSettings } from '../../../../src/contract/transform-settings.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { Learner } from '../../../../src/training/learner/learner.js';
import { Replica } from '../../../../src/training/learner/replica.js';
import { epochOrder, rankBatches } from '../../../../src/contract/plan/plan.js';

const PHOTOS = resolve(process.cwd(), '../shared/datasets/oxford-iiit-pet-sample');
const TINY = { block: 'basic', layers: [1, 1, 1, 1] } as const;
const SIZE = 32, BS = 4;
let pool: ImagePool;
let data: DataBunch;
let dir: string;
let replica: Replica;

before(async () => {
  await initBackend('auto');
  dir = mkdtempSync(join(tmpdir(), 'learner-augment-'));
  pool = new ImagePool({ threads: 1 });
  pool.start();
  const all = await createDataBunch({ data: PHOTOS, verify: false, cacheDir: dir });
  // One class's training photos: few decodes, and every item is seen once per data epoch.
  data = { ...all, train: all.train.filter((i) => all.labels[i] === 0).slice(0, BS) };
  replica = await Replica.create({ arch: TINY, numClasses: data.classes.length, seed: 1, pretrained: null, frozen: true, head: { hidden: 8 } });
});

after(async () => {
  replica.dispose();
  await pool.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Each training item's pixels in data epochs 0 and 1, by item index, as the Learner's training feed gives them. */
async function pixelsByEpoch(transforms: TransformSettings | null | undefined): Promise<Map<number, Float32Array>[]> {
  const learner = new Learner(data, pool, replica, { bs: BS, size: SIZE, seed: 7, dir, progress: 'none', log: () => {}, transforms });
  const per = SIZE * SIZE * 3;
  const out: Map<number, Float32Array>[] = [];
  const feed = learner.trainFeed();
  try {
    for (const epoch of [0, 1]) {
      const at = { epoch, stepInEpoch: 0, accumIndex: 0, accum: 1, rank: 0, worldSize: 1 };
      const positions = rankBatches(epochOrder(data.train.length, 7, epoch), BS, at)[0]!.indices;
      const b = await feed.next(at);
      const byItem = new Map<number, Float32Array>();
      positions.forEach((pos, j) => byItem.set(data.train[pos]!, b.x.slice(j * per, (j + 1) * per)));
      out.push(byItem);
    }
  } finally {
    await feed.close();
  }
  return out;
}

const same = (a: Float32Array, b: Float32Array): boolean => a.length === b.length && a.every((v, i) => v === b[i]);

test('transforms: null (--no-augment) trains on the same pixels of every image in every epoch', async () => {
  const [e0, e1] = await pixelsByEpoch(null);
  assert.equal(e0!.size, BS);
  for (const [item, px] of e0!) assert.ok(same(px, e1!.get(item)!), `item ${item} changed between epochs`);
});

test('the default (fastai get_transforms()) and explicit settings draw new augmentation per epoch', async () => {
  for (const t of [undefined, { ...DEFAULT_TRANSFORMS, maxRotate: 45 }]) {
    const [e0, e1] = await pixelsByEpoch(t);
    const changed = [...e0!].filter(([item, px]) => !same(px, e1!.get(item)!)).length;
    assert.ok(changed >= BS - 1, `${changed} of ${BS} items changed between epochs with ${JSON.stringify(t)}`);
  }
});

test('bad transform settings given to the Learner are refused with the field and the rule', () => {
  assert.throws(() => new Learner(data, pool, replica, { transforms: { ...DEFAULT_TRANSFORMS, maxZoom: 0.5 } }),
    (e) => isTrainerError(e, 'ERR_BAD_CONFIG') && /maxZoom must be .*\[1, 10\].*got 0\.5/.test(e.message));
});
