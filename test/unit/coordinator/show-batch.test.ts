/**
 * `coordinator show-batch`: a real grid from 2 breeds of the shared photos (16 items → 13 train / 3 valid, fastai's
 * int(0.2·16) = 3), and flag validation before anything starts. Expected sizes: rows·size wide,
 * rows·(size + 28 px caption band) high (show-batch.ts defaults).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { runShowBatchCommand } from '../../../src/coordinator/show-batch.js';
import { isTrainerError } from '../../../src/contract/errors.js';

const SHARED = path.resolve(process.cwd(), '../shared/datasets/oxford-iiit-pet-sample/images');

describe('coordinator show-batch', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pets-show-batch-'));
    mkdirSync(path.join(dir, 'images'));
    for (const f of readdirSync(SHARED).filter((n) => /^(beagle|pug)_\d+\.jpg$/.test(n))) symlinkSync(path.join(SHARED, f), path.join(dir, 'images', f));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a rows × rows captioned grid of training images', async () => {
    const out = path.join(dir, 'grid.png');
    const lines: string[] = [];
    assert.equal(await runShowBatchCommand(['--data', dir, '--rows', '2', '--size', '40', '--out', out], (l) => lines.push(l)), 0);
    const meta = await sharp(out).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height, meta.channels], ['png', 2 * 40, 2 * (40 + 28), 3]);
    assert.match(lines.join('\n'), /show_batch: .*grid\.png \(80×136 px, 2×2 images from .*; items and labels in \S+grid\.json$/);
  });

  it('writes its JSON beside --out, never into the current directory', async () => {
    const sub = path.join(dir, 'pictures');
    mkdirSync(sub);
    const before = readdirSync(process.cwd()).sort();
    const lines: string[] = [];
    assert.equal(await runShowBatchCommand(['--data', dir, '--rows', '1', '--size', '16', '--out', path.join(sub, 'batch.png')], (l) => lines.push(l)), 0);
    assert.deepEqual(readdirSync(sub).sort(), ['batch.json', 'batch.png']);
    assert.deepEqual(readdirSync(process.cwd()).sort(), before, 'nothing new in the current directory');
    const said = lines.find((l) => l.startsWith('show_batch:'));
    assert.ok(said?.endsWith(path.join(sub, 'batch.json')), lines.join('\n'));
  });

  it('rejects --rows 0 naming the flag', async () => {
    await assert.rejects(runShowBatchCommand(['--data', dir, '--rows', '0']), (err) => isTrainerError(err) && /--rows/.test(err.message));
  });
});
