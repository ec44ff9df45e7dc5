/**
 * `coordinator show-batch`: a real grid from 2 breeds of the shared photos (16 items → 13 train / 3 valid, fastai's
 * int(0.2·16) = 3), and flag validation before anything starts. Expected sizes: rows·size wide,
 * rows·(size + 28 px caption band) high (show-batch.ts defaults).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { runShowBatchCommand } from '../../../src/coordinator/show-batch.js';
import { isTrainerError } from '../../../src/contract/errors.js';
import { CACHE_DIR_ENV } from '../../../src/training/data/pets.js';

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
    // 40 px images are drawn 3× (cells of at least 96 px: show-batch-grid.ts MIN_CELL_PX), 120 px + a 28 px caption.
    assert.deepEqual([meta.format, meta.width, meta.height, meta.channels], ['png', 2 * 120, 2 * (120 + 28), 3]);
    assert.match(lines.join('\n'), /show_batch: .*grid\.png \(240×296 px, 2×2 images from .*; items and labels in \S+grid\.json$/);
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

  it('run from an empty folder, leaves only --out and its JSON there; the verify cache goes to the user cache', () => {
    // A new user runs the README's command from any folder: before the fix the data check's verdicts landed in
    // ./.cache/verify-<hash>.json of the current directory (README: "nothing else in the current directory").
    // A child process, since the decode pool's threads resolve `--import tsx` from the current directory: tsx is
    // given by its absolute URL.
    const cwd = path.join(dir, 'empty-cwd');
    const cache = path.join(dir, 'user-cache');
    mkdirSync(cwd);
    const entry = pathToFileURL(path.resolve('src/coordinator/show-batch.ts')).href;
    const script = `const { runShowBatchCommand } = await import(${JSON.stringify(entry)});
      process.exitCode = await runShowBatchCommand(['--data', ${JSON.stringify(dir)}, '--rows', '1', '--size', '16', '--out', 'b.png'], () => {});`;
    execFileSync(process.execPath, ['--import', import.meta.resolve('tsx'), '--input-type=module', '-e', script],
      { cwd, env: { ...process.env, [CACHE_DIR_ENV]: cache }, stdio: ['ignore', 'ignore', 'pipe'] });
    assert.deepEqual(readdirSync(cwd).sort(), ['b.json', 'b.png']);
    assert.ok(readdirSync(cache).some((f) => /^verify-[0-9a-f]{12}\.json$/.test(f)), readdirSync(cache).join(', '));
  });

  it('an --out in a folder that does not exist (or is a file) is ERR_BAD_FLAG naming --out, before the data is read', async () => {
    // Seen by the breaker: `--out /tmp/typo/y.png` scanned and decoded the data, then stopped with libvips' raw
    // multi-line 'unable to open for write\nsystem error: No such file or directory\n…wbuffer_write: write failed…'.
    // (--data names a folder that does not exist either: the --out check must come first.)
    const file = path.join(dir, 'a-file');
    writeFileSync(file, 'x');
    for (const [out, why] of [[path.join(dir, 'no-such-folder', 'y.png'), 'no such folder'], [path.join(file, 'y.png'), 'it is a file, not a folder'],
      [path.join(file, 'sub', 'y.png'), 'a part of the path is a file, not a folder'], ['/dev/null/y.png', 'it is not a folder']] as const) {
      await assert.rejects(runShowBatchCommand(['--data', path.join(dir, 'no-such-data'), '--out', out]), (err) => isTrainerError(err, 'ERR_BAD_FLAG')
        && err.message === `--out ${out}: ${why}: ${path.dirname(out)}; create the folder or choose another --out`);
    }
  });

  it('an --out that is a folder, or not a .png name, is ERR_BAD_FLAG naming --out, before the data is read', async () => {
    // Seen (tryout): `--out /tmp` decoded the data, then ended with libvips' raw multi-line 'unable to open for write …
    // Is a directory … vips2png: unable to write to target /tmp', exit 1; `--out x.jpg` wrote PNG bytes as x.jpg and
    // the items as x.jpg.json (matplotlib's savefig writes what the extension says; this command writes PNG only).
    await assert.rejects(runShowBatchCommand(['--data', path.join(dir, 'no-such-data'), '--out', dir]), (err) => isTrainerError(err, 'ERR_BAD_FLAG')
      && err.message === `--out ${dir}: a folder; give the PNG's file name, e.g. --out ${path.join(dir, 'show-batch.png')}`);
    for (const out of [path.join(dir, 'x.jpg'), path.join(dir, 'grid')]) {
      await assert.rejects(runShowBatchCommand(['--data', path.join(dir, 'no-such-data'), '--out', out]), (err) => isTrainerError(err, 'ERR_BAD_FLAG')
        && err.message === `--out ${out}: show-batch writes a PNG; give a name ending in .png (its items go beside it, <name>.json)`);
    }
  });

  it('an --out in a folder it cannot write is ERR_BAD_FLAG naming --out and the reason, before the data is read', async () => {
    // Seen by the breaker: --out on a read-only mount read and decoded the data, then ended (exit 1) with libvips'
    // 'unable to open for write\nsystem error: Read-only file system\n…wbuffer_write: write failed…'. /proc/1 stands
    // for a folder nobody may write into (root gets EPERM there, others EACCES).
    await assert.rejects(runShowBatchCommand(['--data', path.join(dir, 'no-such-data'), '--out', '/proc/1/y.png']), (err) => isTrainerError(err, 'ERR_BAD_FLAG')
      && /^--out \/proc\/1\/y\.png: it cannot be written to \(E(PERM|ACCES)\): \/proc\/1; create the folder or choose another --out$/.test(err.message));
  });

  it('rejects --rows 0 naming the flag', async () => {
    await assert.rejects(runShowBatchCommand(['--data', dir, '--rows', '0']), (err) => isTrainerError(err) && /--rows/.test(err.message));
  });
});
