/**
 * Every file of ../shared/datasets/bad-inputs/images gets what its README says: listed or ignored by extension,
 * skipped with the stated reason (once, counted), or loaded as 3-channel RGB. Plus the verify cache.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { DEFAULT_RUN_CONFIG } from '../../../../src/contract/config.js';
import { VERIFY_ANNOUNCE_MIN, createDataBunch, dataBunchOptions } from '../../../../src/training/data/databunch.js';
import { SkipLog, decodeRgb } from '../../../../src/training/data/decode.js';
import { DEFAULT_LABEL_PATTERN, listItems } from '../../../../src/training/data/items.js';
import { BatchLoader } from '../../../../src/training/data/loader.js';
import { ImagePool } from '../../../../src/training/data/pool.js';
import { shardPlan } from '../../../../src/training/data/shard.js';
import { verifyItems } from '../../../../src/training/data/verify.js';
import { isTrainerError } from '../../../../src/contract/errors.js';

const BAD = fileURLToPath(new URL('../../../../../shared/datasets/bad-inputs/images', import.meta.url));

// Expected outcomes, from bad-inputs/README.md.
const SKIPPED: Record<string, string> = {
  'Bengal_9001.jpg': 'truncated/corrupt',
  'Sphynx_9004.jpg': 'empty',
  'samoyed_9008.jpg': 'not an image',
};
const LOADED = ['beagle_9002.jpg', 'boxer_9006.jpg', 'havanese_9007.jpg', 'pug_9003.jpg'];

describe('bad inputs', () => {
  const pool = new ImagePool({ threads: 2 });
  let dir: string;
  before(() => {
    pool.start();
    dir = mkdtempSync(join(tmpdir(), 'verify-'));
  });
  after(async () => {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ignores .mat and .txt by extension; lists the seven .jpg candidates with their labels', () => {
    const items = listItems(BAD, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN });
    assert.deepEqual(items.paths.map((p) => basename(p)).sort(), [...Object.keys(SKIPPED), ...LOADED].sort());
    assert.deepEqual(items.leftOut.map((g) => [g.reason, g.paths.map((p) => basename(p))]), [['unsupported extension', ['Abyssinian_9005.mat', 'notes.txt']]]);
    assert.equal(items.labels[items.paths.findIndex((p) => p.endsWith('pug_9003.jpg'))], 'pug');
  });

  it('verify skips each bad file once with its reason and counts them; a second pass uses the cache', async () => {
    const items = listItems(BAD, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN });
    const reported: string[] = [];
    const log = new SkipLog((p, r) => reported.push(`${basename(p)}:${r}`));
    const cacheFile = join(dir, 'verify.json');
    const told: number[] = [];
    const first = await verifyItems(pool, items.paths, log, cacheFile, (n) => told.push(n));
    assert.equal(first.decoded, 7);
    const second = await verifyItems(pool, items.paths, log, cacheFile, (n) => told.push(n));
    assert.deepEqual(told, [7], 'told once, before decoding the 7 files not cached; not at all when all are cached');
    assert.equal(second.cached, 7);
    assert.equal(second.decoded, 0);
    assert.deepEqual(second.ok, first.ok);
    assert.deepEqual(reported.sort(), Object.entries(SKIPPED).map(([f, r]) => `${f}:${r}`).sort(), 'each reported once');
    const counts = log.countsByReason();
    assert.equal(counts['truncated/corrupt'], 1);
    assert.equal(counts.empty, 1);
    assert.equal(counts['not an image'], 1);
    items.paths.forEach((p, i) => assert.equal(first.ok[i], LOADED.includes(basename(p)) ? 1 : 0, basename(p)));
  });

  it(`a first pass over ${VERIFY_ANNOUNCE_MIN}+ files says so before decoding; the cached second pass says nothing`, async () => {
    // The full Pets set (7390 files) decoded for a minute or more before any line of training, without a word.
    const folder = join(dir, 'many');
    mkdirSync(folder);
    // Copies, not links: links to one file are one item (a duplicate name is skipped), and this needs 1000 files.
    const tiny = readFileSync(join(BAD, 'havanese_9007.jpg'));
    for (let i = 0; i < VERIFY_ANNOUNCE_MIN; i++) writeFileSync(join(folder, `${i % 2 ? 'a' : 'b'}_${i}.jpg`), tiny);
    const lines: string[] = [];
    const opts = { data: folder, cacheDir: join(dir, 'many-cache'), verify: true, log: (l: string) => lines.push(l) };
    await createDataBunch(opts, pool);
    const said = lines.filter((l) => l.startsWith('checking '));
    assert.equal(said.length, 1, lines.join('\n'));
    assert.match(said[0]!, new RegExp(`^checking ${VERIFY_ANNOUNCE_MIN} image files: each is decoded once before training \\(verdicts cached in \\S+many-cache/verify-[0-9a-f]{12}\\.json, so later runs skip this\\)$`));
    lines.length = 0;
    await createDataBunch(opts, pool);
    assert.deepEqual(lines.filter((l) => l.startsWith('checking ')), []);
  });

  it('a cache folder that cannot be written costs the cache, not the run: one line says so', async () => {
    // The cache is in the user's home now; a container user without a writable one used to fail with ERR_DATA.
    const blocker = join(dir, 'a-file');
    writeFileSync(blocker, 'x');
    const lines: string[] = [];
    const bunch = await createDataBunch({ data: BAD, cacheDir: join(blocker, 'cache'), verify: true, validPct: 0.25, seed: 1, log: (l) => lines.push(l) }, pool);
    assert.ok(bunch.train.length > 0, 'the data bunch is built');
    // The cacheDir option named the folder here (a program's, not the user's): the one advice is about it.
    assert.equal(lines.filter((l) => /^could not write the data check's cache \S+a-file\/cache\/verify-[0-9a-f]{12}\.json, this run goes on \(later runs decode every file again\): cacheDir \S+a-file\/cache: cannot create \S+a-file\/cache \(ENOTDIR: not a directory\); choose another folder for cacheDir$/.test(l)).length, 1, lines.join('\n'));
  });

  it('loads PNG-behind-jpg, RGBA, greyscale and 12x9 files as 3-channel RGB', async () => {
    for (const f of LOADED) {
      const img = await decodeRgb(join(BAD, f), { shorterSide: 32 });
      assert.equal(Math.min(img.width, img.height), 32, f);
      assert.equal(img.data.length, img.width * img.height * 3, f);
    }
    const grey = await decodeRgb(join(BAD, 'pug_9003.jpg'));
    let maxChroma = 0;
    for (let i = 0; i < grey.data.length; i += 3) maxChroma = Math.max(maxChroma, Math.abs(grey.data[i]! - grey.data[i + 1]!), Math.abs(grey.data[i]! - grey.data[i + 2]!));
    assert.ok(maxChroma <= 2, `greyscale stays grey after conversion (max R/G/B gap ${maxChroma})`);
    const tiny = await decodeRgb(join(BAD, 'havanese_9007.jpg'));
    assert.deepEqual([tiny.width, tiny.height], [12, 9]);
  });

  it('decodeRgb throws ERR_BAD_IMAGE starting with the reason', async () => {
    await assert.rejects(decodeRgb(join(BAD, 'Bengal_9001.jpg')), (e) => isTrainerError(e, 'ERR_BAD_IMAGE') && e.message.startsWith('truncated/corrupt:'));
    await assert.rejects(decodeRgb(join(BAD, 'Sphynx_9004.jpg')), (e) => isTrainerError(e, 'ERR_BAD_IMAGE') && e.message.startsWith('empty:'));
    await assert.rejects(decodeRgb(join(BAD, 'beagle_9002.jpg'), { maxInputPixels: 1000 }), (e) => isTrainerError(e, 'ERR_BAD_IMAGE') && e.message.startsWith('too large:'));
  });

  it('a thin strip under the pixel ceiling as decoded but over it once resized to --size is skipped as too large', async () => {
    // A 1.3 KB 2×30000 PNG passed the 50-megapixel ceiling (60 000 pixels) and was then resized for training to
    // 64×960000 (184 MB in 5 s; 224 px: 224×3360000, 2.3 GB) in a pool thread, every epoch. fastai crops on the
    // original instead; here the same ceiling applies to the resized image: skipped as 'too large', before training.
    const strip = join(dir, 'strip_1.png');
    await sharp({ create: { width: 2, height: 30000, channels: 3, background: '#808080' } }).png().toFile(strip);
    await assert.rejects(decodeRgb(strip, { shorterSide: 64 }), (e) => isTrainerError(e, 'ERR_BAD_IMAGE')
      && e.message === `too large: ${strip} (resized to a shorter side of 64 px the 2×30000 image would be 64×960000 = 61 megapixels, over the pixel limit of 50 megapixels)`);
    const fine = await decodeRgb(strip, { shorterSide: 16 }); // 16×240000 = 3.84 megapixels: under the ceiling
    assert.deepEqual([fine.width, fine.height], [16, 240000]);
    const paths = [strip, join(BAD, 'havanese_9007.jpg')];
    const cacheFile = join(dir, 'strip-verify.json');
    const reported: string[] = [];
    const at64 = await verifyItems(pool, paths, new SkipLog((p, r) => reported.push(`${basename(p)}:${r}`)), cacheFile, undefined, 64);
    assert.deepEqual([...at64.ok], [0, 1]);
    assert.deepEqual(reported, ['strip_1.png:too large']);
    // The cached verdict is the file's; another --size is judged again from the cached size, without decoding.
    const at16 = await verifyItems(pool, paths, new SkipLog(), cacheFile, undefined, 16);
    assert.deepEqual([at16.decoded, ...at16.ok], [0, 1, 1]);
    assert.equal(dataBunchOptions({ ...DEFAULT_RUN_CONFIG, size: 64 }).size, 64, 'the run\'s --size reaches the verify pass');
  });

  it('a loader that meets bad files without a verify pass masks them (valid = 0) and reports each once', async () => {
    const items = listItems(BAD, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN });
    const split = Int32Array.from(items.paths, (_, i) => i);
    const labels = new Int32Array(items.paths.length);
    const log = new SkipLog();
    for (const epoch of [0, 1]) {
      const plan = shardPlan({ itemCount: split.length, seed: 0, epoch, worldSize: 1, rank: 0, batchSize: 7, shuffle: false, mode: 'pad' });
      const loader = new BatchLoader({ pool, paths: items.paths, labels, split, plan, size: 16, augment: true, seed: 0, epoch, skipLog: log });
      loader.start();
      const batch = await loader.next();
      await loader.close();
      assert.ok(batch);
      items.paths.forEach((p, k) => assert.equal(batch.valid[k], LOADED.includes(basename(p)) ? 1 : 0, basename(p)));
      assert.ok(batch.x.every(Number.isFinite));
    }
    assert.equal(log.entries().length, 3, 'three bad files, reported once over two epochs');
  });
});
