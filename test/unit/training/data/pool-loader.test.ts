/**
 * The piscina pool (under tsx) and the batch loader over the shared real photos: per-item determinism across two
 * separate pools, output shape and normalization against sharp's own pixels, padding flags, bounded prefetch.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { decodeRgb } from '../../../../src/training/data/decode.js';
import { DEFAULT_LABEL_PATTERN, listItems } from '../../../../src/training/data/items.js';
import { BatchLoader } from '../../../../src/training/data/loader.js';
import { ImagePool, workerEntry, type PoolTaskInput } from '../../../../src/training/data/pool.js';
import type { PoolResult } from '../../../../src/training/data/pool-worker.js';
import { shardPlan } from '../../../../src/training/data/shard.js';
import { sortClasses } from '../../../../src/training/data/split.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../../../../src/training/data/transforms.js';

const PHOTOS = fileURLToPath(new URL('../../../../../shared/datasets/oxford-iiit-pet-sample/images', import.meta.url));
const items = listItems(PHOTOS, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN });
const classes = sortClasses(items.labels);
const labels = Int32Array.from(items.labels, (l) => classes.indexOf(l));
const all = Int32Array.from(items.paths, (_, i) => i);
const SIZE = 64;

/** Counts tasks submitted, to observe backpressure. */
class CountingPool extends ImagePool {
  submitted = 0;
  override run(task: PoolTaskInput): Promise<PoolResult> {
    this.submitted++;
    return super.run(task);
  }
}

describe('ImagePool + BatchLoader on the shared Pets sample', () => {
  let a: CountingPool;
  let b: ImagePool;
  before(() => {
    a = new CountingPool({ threads: 2 });
    b = new ImagePool({ threads: 1 });
    a.start();
    b.start();
  });
  after(async () => {
    await a.close();
    await a.close(); // idempotent
    await b.close();
  });

  it('lists 296 labelled photos in 37 classes, Abyssinian first (regex on the path)', () => {
    assert.equal(items.paths.length, 296);
    assert.equal(classes.length, 37);
    assert.equal(classes[0], 'Abyssinian');
    assert.equal(items.labels[0], 'Abyssinian');
  });

  it('resolves the worker file with this module\'s extension and the tsx loader', () => {
    const { filename, execArgv } = workerEntry();
    assert.match(filename, /pool-worker\.ts$/);
    assert.ok(execArgv.some((x) => x.includes('tsx')));
  });

  it('same (seed, epoch, item) → identical bytes from two separate pools; another epoch differs', async () => {
    const task = { kind: 'render' as const, path: items.paths[5]!, size: SIZE, augment: true, seed: 11, epoch: 2, itemIndex: 5 };
    const [r1, r2, r3] = await Promise.all([a.run(task), b.run(task), a.run({ ...task, epoch: 3 })]);
    assert.ok(r1.ok && r2.ok && r3.ok && r1.pixels && r2.pixels && r3.pixels);
    assert.deepEqual(Buffer.from(r1.pixels.buffer), Buffer.from(r2.pixels.buffer));
    assert.notDeepEqual(Buffer.from(r1.pixels.buffer), Buffer.from(r3.pixels.buffer));
  });

  it('valid items equal sharp\'s resized pixels, centre-cropped and normalized (tol 1e-5)', async () => {
    const path = items.paths[0]!;
    const r = await a.run({ kind: 'render', path, size: SIZE, augment: false, seed: 0, epoch: 0, itemIndex: 0 });
    const src = await decodeRgb(path, { shorterSide: SIZE });
    assert.ok(r.ok && r.pixels);
    assert.equal(Math.min(src.width, src.height), SIZE);
    const x0 = Math.min(src.width - SIZE, Math.floor((src.width - SIZE + 1) / 2));
    const y0 = Math.min(src.height - SIZE, Math.floor((src.height - SIZE + 1) / 2));
    for (const [u, v, c] of [[0, 0, 0], [63, 63, 2], [17, 40, 1]] as const) {
      const want = (src.data[((y0 + v) * src.width + x0 + u) * 3 + c]! / 255 - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]!;
      assert.ok(Math.abs(r.pixels[(v * SIZE + u) * 3 + c]! - want) < 1e-5);
    }
  });

  it('yields [b,s,s,3] float32 / [b] int32 batches with ImageNet-normalized statistics and padding flags', async () => {
    const plan = shardPlan({ itemCount: all.length, seed: 1, epoch: 0, worldSize: 3, rank: 2, batchSize: 40, shuffle: false, mode: 'pad' });
    const loader = new BatchLoader({ pool: a, paths: items.paths, labels, split: all, plan, size: SIZE, augment: false, seed: 1, epoch: 0 });
    const batches = [];
    for await (const batch of loader) batches.push(batch);
    await loader.close();
    // ceil(296/3) = 99 per rank → 40 + 40 + 19; rank 2's last slot is position 2 + 98·3 = 296 ≥ 296 → padding.
    assert.deepEqual(batches.map((x) => x.y.length), [40, 40, 19]);
    assert.equal(batches[0]!.x.length, 40 * SIZE * SIZE * 3);
    assert.equal(batches[2]!.valid[18], 0);
    assert.equal(batches[2]!.valid.reduce((s, v) => s + v, 0), 18);
    assert.equal(batches[0]!.y[0], labels[2]);
    // Pet photos normalized with ImageNet stats: per-channel mean within ±0.5 of 0, std within 0.6..1.4 (loose, data-dependent).
    for (let c = 0; c < 3; c++) {
      let s = 0, s2 = 0, n = 0;
      for (let i = c; i < batches[0]!.x.length; i += 3) { const v = batches[0]!.x[i]!; s += v; s2 += v * v; n++; }
      const mean = s / n;
      const std = Math.sqrt(s2 / n - mean * mean);
      assert.ok(Math.abs(mean) < 0.5, `channel ${c} mean ${mean}`);
      assert.ok(std > 0.6 && std < 1.4, `channel ${c} std ${std}`);
    }
  });

  it('prefetch is bounded: a consumer that stops pulling stops new work', async () => {
    const plan = shardPlan({ itemCount: all.length, seed: 1, epoch: 0, worldSize: 1, rank: 0, batchSize: 4, shuffle: true, mode: 'drop' });
    const before = a.submitted;
    const loader = new BatchLoader({ pool: a, paths: items.paths, labels, split: all, plan, size: 32, augment: true, seed: 1, epoch: 0, prefetchBatches: 2 });
    loader.start();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(a.submitted - before, 2 * 4, 'two batches of four in flight, no more');
    const first = await loader.next();
    assert.equal(first?.batchIndex, 0);
    assert.equal(a.submitted - before, 3 * 4, 'pulling one batch lets exactly one more start');
    assert.ok(loader.maxQueued <= 2);
    await loader.close();
    await loader.close();
    assert.equal(await loader.next(), null);
  });
});
