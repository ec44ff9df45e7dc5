/**
 * The worker's training feed applies the run's augmentation settings (from the setup frame): none (`--no-augment`)
 * renders centre crops, settings with every transform off render the same pixels on size×size images (crop offset
 * 0), and the tutorial's defaults change them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { SkipLog } from '../../../../src/training/data/decode.js';
import { ImagePool } from '../../../../src/training/data/pool.js';
import { DEFAULT_TRANSFORMS, type TransformSettings } from '../../../../src/contract/transform-settings.js';
import { TrainFeed } from '../../../../src/training/data/feed.js';

let dir: string;
let paths: string[];
const pool = new ImagePool({ threads: 1 });

before(async () => {
  pool.start();
  dir = mkdtempSync(join(tmpdir(), 'feed-tfm-'));
  paths = [];
  for (let i = 0; i < 4; i++) {
    const raw = Buffer.from(Uint8Array.from({ length: 32 * 32 * 3 }, (_, k) => (k * (i + 3)) % 253));
    const p = join(dir, `x${i}.png`);
    await sharp(raw, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(p);
    paths.push(p);
  }
});
after(async () => {
  await pool.close();
  rmSync(dir, { recursive: true, force: true });
});

async function firstBatch(transforms: TransformSettings | null | undefined): Promise<Float32Array> {
  const feed = new TrainFeed({ pool, paths, labels: Int32Array.from([0, 1, 0, 1]), train: Int32Array.from([0, 1, 2, 3]), size: 32, bs: 2, seed: 7, skipLog: new SkipLog(), transforms });
  try {
    return (await feed.next({ epoch: 0, stepInEpoch: 0, accumIndex: 0, accum: 1, rank: 0, worldSize: 1 })).x;
  } finally {
    await feed.close();
  }
}

test('the feed renders with the setup frame transforms: none, all off, and the defaults', async () => {
  const none = await firstBatch(null);
  const off = await firstBatch({ ...DEFAULT_TRANSFORMS, doFlip: false, maxRotate: 0, maxZoom: 1, maxWarp: 0, maxLighting: 0 });
  const tutorial = await firstBatch(undefined);
  assert.deepEqual(off, none);
  assert.notDeepEqual(tutorial, none);
  assert.deepEqual(await firstBatch(DEFAULT_TRANSFORMS), tutorial, 'absent settings mean the tutorial defaults');
});
