/** show_batch writes a captioned PNG grid of the right size that is not blank. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it, test } from 'node:test';
import sharp from 'sharp';
import { DEFAULT_LABEL_PATTERN, listItems } from '../../../src/training/data/items.js';
import { BatchLoader } from '../../../src/training/data/loader.js';
import { ImagePool } from '../../../src/training/data/pool.js';
import { shardPlan } from '../../../src/training/data/shard.js';
import { captionLayout, cellScale, denormalize, showBatch } from '../../../src/coordinator/show-batch-grid.js';
import { sortClasses } from '../../../src/training/data/split.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../../../src/training/data/transforms.js';

const PHOTOS = fileURLToPath(new URL('../../../../shared/datasets/oxford-iiit-pet-sample/images', import.meta.url));

describe('showBatch', () => {
  const dir = mkdtempSync(join(tmpdir(), 'show-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('denormalize inverts ImageNet normalization (exact for 0..255 integers after rounding)', () => {
    const x = Float32Array.from([0, 128, 255], (v, c) => (v / 255 - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]!);
    assert.deepEqual([...denormalize(x, 0, 1)], [0, 128, 255]);
  });

  it('writes a rows×cols grid: width cols·size, height rows·(size+caption), with varied pixels', async () => {
    const items = listItems(PHOTOS, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN });
    const classes = sortClasses(items.labels);
    const labels = Int32Array.from(items.labels, (l) => classes.indexOf(l));
    const split = Int32Array.from(items.paths, (_, i) => i);
    const pool = new ImagePool({ threads: 2 });
    pool.start();
    try {
      const plan = shardPlan({ itemCount: split.length, seed: 4, epoch: 0, worldSize: 1, rank: 0, batchSize: 6, shuffle: true, mode: 'drop' });
      const loader = new BatchLoader({ pool, paths: items.paths, labels, split, plan, size: 96, augment: true, seed: 4, epoch: 0, prefetchBatches: 1 });
      loader.start();
      const batch = await loader.next();
      await loader.close();
      assert.ok(batch);
      const out = join(dir, 'batch.png');
      const dims = await showBatch(batch, classes, out, { rows: 2, cols: 3 });
      assert.ok(existsSync(out));
      const meta = await sharp(out).metadata();
      assert.equal(meta.format, 'png');
      assert.deepEqual([meta.width, meta.height], [3 * 96, 2 * (96 + 28)]);
      assert.deepEqual([dims.width, dims.height], [meta.width, meta.height]);
      assert.equal(meta.channels, 3, 'opaque RGB');
      const stats = await sharp(out).stats();
      assert.ok(stats.channels.every((c) => c.stdev > 20), `not blank (stdevs ${stats.channels.map((c) => c.stdev.toFixed(1))})`);
    } finally {
      await pool.close();
    }
  });

  it('enlarges a small image size by a whole factor (each pixel a block) to cells of at least MIN_CELL_PX, captions readable', async () => {
    // Seen by the breaker: --size 16 gave a 48×132 px show-batch.png captioned 'B…', 'A…'; --size 64 cut 'Abyssinian'
    // short. fastai draws show_batch in a fixed figsize whatever the image size.
    assert.deepEqual([16, 31, 64, 95, 96, 224].map(cellScale), [6, 4, 2, 2, 1, 1]);
    const size = 16, b = 2;
    // Item 0: pixel (y, x) has red = 10·y + x (ImageNet-normalized), so each enlarged block can be checked.
    const x = new Float32Array(b * size * size * 3);
    for (let y = 0; y < size; y++) for (let xx = 0; xx < size; xx++) for (let c = 0; c < 3; c++) x[(y * size + xx) * 3 + c] = ((c === 0 ? 10 * y + xx : 7) / 255 - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]!;
    const out = join(dir, 'small.png');
    const dims = await showBatch({ x, y: Int32Array.from([0, 1]), valid: Uint8Array.from([1, 1]), batchIndex: 0 }, ['Abyssinian', 'Bengal'], out, { rows: 1, cols: 2 });
    assert.deepEqual(dims, { width: 2 * 96, height: 96 + 28 }, '16 px × 6 = 96 px cells');
    const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    for (const [y, xx] of [[0, 0], [5, 5], [6, 0], [95, 95], [47, 13]]) {
      assert.equal(data[(y! * info.width + xx!) * info.channels], 10 * Math.floor(y! / 6) + Math.floor(xx! / 6), `pixel (${y}, ${xx}) shows source pixel (${Math.floor(y! / 6)}, ${Math.floor(xx! / 6)})`);
    }
    assert.deepEqual(captionLayout(['Abyssinian', 'Bengal'], 96, 28).texts, ['Abyssinian', 'Bengal'], 'the caption fits a 96 px cell whole');
  });

  it('rejects a bad grid size naming the field', async () => {
    const batch = { x: new Float32Array(3), y: new Int32Array(1), valid: new Uint8Array(1), batchIndex: 0 };
    await assert.rejects(showBatch(batch, ['a'], join(dir, 'x.png'), { rows: 0 }), /show_batch rows must be an integer ≥ 1, got 0/);
  });
});

test('captionLayout: one font size for every label of the grid, each fitting its cell; too long at the floor → "…"', () => {
  // 32 px cells, 28 px band: room 28 px. The longest label (american_pit_bull_terrier, 25 chars) at 7 px is
  // 25 · 0.6 · 7 = 105 px: too wide, so the floor 7 px applies and long labels are cut to floor(28 / 4.2) = 6 chars.
  const small = captionLayout(['pug', 'american_pit_bull_terrier', 'beagle'], 32, 28);
  assert.equal(small.fontPx, 7);
  assert.deepEqual(small.texts, ['pug', 'ameri…', 'beagle']);
  // 224 px cells: room 220 px; 'american_pit_bull_terrier' fits at floor(220 / 15) = 14 px, under 0.6 · 28 = 17.
  const big = captionLayout(['pug', 'american_pit_bull_terrier'], 224, 28);
  assert.equal(big.fontPx, 14);
  assert.deepEqual(big.texts, ['pug', 'american_pit_bull_terrier']);
  for (const [{ fontPx, texts }, room] of [[small, 28], [big, 220]] as const) for (const t of texts) assert.ok(t.length * 0.6 * fontPx <= room, t);
  // Short labels only: capped by the band (0.6 · 28 ≈ 17 px), the same for all.
  assert.equal(captionLayout(['pug', 'cat'], 224, 28).fontPx, 17);
});
