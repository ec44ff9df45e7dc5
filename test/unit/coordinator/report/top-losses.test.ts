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
  await assert.rejects(renderTopLossesGrid([]), (e: unknown) => isTrainerError(e, 'ERR_DATA'));
  assert.throws(() => resolveTopLossesGridOptions({ tileSizePx: 10 }),
    (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && /tileSizePx must be an integer in \[64, 1024\], got 10/.test(e.message));
});

test('an image deleted or changed since the data step gets a grey "image unreadable" tile; the grid is still drawn', async () => {
  // Found by deleting the data folder mid-run: its validation images had no prediction (uniform, so among the worst)
  // and the finished run ended at its report with "ERR_BAD_IMAGE: top losses: cannot read image …".
  const tileSizePx = 96;
  const tiles: TopLossTile[] = [
    { path: '/nonexistent/x.jpg', pred: 'a', actual: 'b', loss: 2, probActual: 0.1 },
    { path: resolve(IMAGES, FILES[0]!), pred: 'a', actual: 'b', loss: 1, probActual: 0.3 },
  ];
  const grid = await renderTopLossesGrid(tiles, { tileSizePx });
  const tile = async (col: number): Promise<Buffer> => (await sharp(grid.png)
    .extract({ left: 16 + col * (tileSizePx + 16), top: grid.height - 16 - tileSizePx, width: tileSizePx, height: tileSizePx }).removeAlpha().raw().toBuffer());
  const missing = await tile(0);
  let grey = 0;
  for (let i = 0; i < missing.length; i += 3) if (missing[i] === 0xd9 && missing[i + 1] === 0xd9 && missing[i + 2] === 0xd9) grey++;
  assert.ok(grey / (missing.length / 3) > 0.8, `the unreadable image's tile is grey (${grey} of ${missing.length / 3} pixels)`);
  assert.ok(await darkFraction(grid.png, { left: 16, top: grid.height - 16 - tileSizePx, width: tileSizePx, height: tileSizePx }) > 0.001, 'with its words');
  const expected = await sharp(tiles[1]!.path).rotate().resize(tileSizePx, tileSizePx, { fit: 'cover' }).removeAlpha().raw().toBuffer();
  const real = await tile(1);
  let diff = 0;
  for (let i = 0; i < real.length; i++) diff += Math.abs(real[i]! - expected[i]!);
  assert.ok(diff / real.length < 2, 'the readable image is drawn as before');
});
