import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import sharp from 'sharp';
import {
  renderTopLossesGrid, resolveTopLossesGridOptions, topLossTiles, topLossTitle, wrapTitle, type TopLossTile,
} from '../../../../src/coordinator/report/top-losses.js';
import { ClassificationInterpretation } from '../../../../src/coordinator/interpret/interpretation.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { assertPngNotBlank, darkFraction } from './png-checks.js';

const IMAGES = resolve(process.cwd(), '../shared/datasets/oxford-iiit-pet-sample/images');
const FILES = readdirSync(IMAGES).filter((f) => f.endsWith('.jpg')).sort().slice(0, 5);

test('topLossTitle is fastai\'s `pred/actual / loss / prob` with 2 decimals', () => {
  const tile: TopLossTile = { path: 'x.jpg', pred: 'beagle', actual: 'basset_hound', loss: 4.5678, probActual: 0.0104 };
  assert.equal(topLossTitle(tile), 'beagle/basset_hound / 4.57 / 0.01');
});

test('wrapTitle breaks only after pred/ or before the numbers, never inside a name', () => {
  const t = 'american_pit_bull_terrier/staffordshire_bull_terrier / 5.12 / 0.01';
  assert.deepEqual(wrapTitle(t, 30), ['american_pit_bull_terrier/', 'staffordshire_bull_terrier', '/ 5.12 / 0.01']);
  assert.deepEqual(wrapTitle('pug/boxer / 1.00 / 0.37', 30), ['pug/boxer / 1.00 / 0.37']);
  assert.deepEqual(wrapTitle('pug/boxer / 1.00 / 0.37', 12), ['pug/boxer', '/ 1.00 / 0.37']);
});

test('grid of 5 real images: ceil(√5) = 3 columns, 2 rows, images placed under their titles', async () => {
  const tiles: TopLossTile[] = FILES.map((f, i) => ({
    path: resolve(IMAGES, f), pred: 'staffordshire_bull_terrier', actual: f.replace(/_\d+\.jpg$/, ''), loss: 5 - i, probActual: Math.exp(i - 5),
  }));
  const tileSizePx = 96;
  const grid = await renderTopLossesGrid(tiles, { tileSizePx });
  // Width = 16 + cols·(tile + 16) (layout in top-losses.ts); 3 columns.
  await assertPngNotBlank(grid.png, { width: 16 + 3 * (tileSizePx + 16), height: grid.height, minStdev: 20 });
  assert.ok(grid.height > 2 * (tileSizePx + 16) + 40, `height ${grid.height} fits 2 rows + titles`);
  // The bottom-left corner of the last row's first tile holds the 4th image (resized the same way), not white.
  const expected = await sharp(tiles[3].path).rotate().resize(tileSizePx, tileSizePx, { fit: 'cover' }).removeAlpha().raw().toBuffer();
  const bottom = grid.height - 16 - 1;
  const { data } = await sharp(grid.png).extract({ left: 16, top: bottom - tileSizePx + 1, width: tileSizePx, height: tileSizePx })
    .removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let diff = 0;
  for (let i = 0; i < data.length; i++) diff += Math.abs(data[i] - expected[i]);
  assert.ok(diff / data.length < 2, `tile differs from its image by ${(diff / data.length).toFixed(2)} per channel`);
  // The figure title band has ink (text drew).
  assert.ok(await darkFraction(grid.png, { left: 0, top: 0, width: grid.width, height: 40 }) > 0.01);
});

test('topLossTiles maps an interpretation\'s worst items to paths and names; bad inputs are typed errors', async () => {
  const interp = new ClassificationInterpretation({
    probs: Float32Array.from([0.9, 0.1, 0.2, 0.8, 0.6, 0.4]),
    targets: Int32Array.from([0, 0, 1]),
    classes: ['cat', 'dog'],
    items: ['a.jpg', 'b.jpg', 'c.jpg'],
  });
  // Losses: −ln 0.9, −ln 0.2, −ln 0.4 → worst two: item 1 (dog for cat), item 2 (cat for dog).
  assert.deepEqual(topLossTiles(interp, 2).map((t) => [t.path, t.pred, t.actual]), [['b.jpg', 'dog', 'cat'], ['c.jpg', 'cat', 'dog']]);
  await assert.rejects(renderTopLossesGrid([{ path: '/nonexistent/x.jpg', pred: 'a', actual: 'b', loss: 1, probActual: 0.3 }]),
    (e: unknown) => isTrainerError(e, 'ERR_BAD_IMAGE') && /\/nonexistent\/x\.jpg/.test(e.message));
  await assert.rejects(renderTopLossesGrid([]), (e: unknown) => isTrainerError(e, 'ERR_DATA'));
  assert.throws(() => resolveTopLossesGridOptions({ tileSizePx: 10 }),
    (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && /tileSizePx must be an integer in \[64, 1024\], got 10/.test(e.message));
});
