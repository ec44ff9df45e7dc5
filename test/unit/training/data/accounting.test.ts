/**
 * Every file under --data ends in train, valid or a left-out group, with one log line per reason, data.json, the
 * metric and the class checks (fastai's discarding of valid items with unknown labels, the all-bad-class error,
 * warnings). Each case is built from tiny JPEG/PNG files written with sharp into a temp folder.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { accountJson, dataLine, LEFT_OUT_REASONS, recordSkippedFiles } from '../../../../src/training/data/accounting.js';
import { assertTrainable, createDataBunch, type DataBunchOptions } from '../../../../src/training/data/databunch.js';
import { ImagePool } from '../../../../src/training/data/pool.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { TrainingMetrics } from '../../../../src/coordinator/metrics/training-metrics.js';

/** Writes a 24×20 solid JPEG (or PNG by extension; `.JPG` etc. too) at `path`. */
async function image(path: string, shade = 128): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  const img = sharp({ create: { width: 24, height: 20, channels: 3, background: { r: shade, g: 255 - shade, b: 60 } } });
  await (/\.png$/i.test(path) ? img.png() : img.jpeg()).toFile(path);
}

/** A JPEG cut at half its bytes (fails with "truncated/corrupt"). */
async function truncated(path: string): Promise<void> {
  const full = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } }).jpeg().toBuffer();
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, full.subarray(0, full.length >> 1));
}

describe('data accounting', () => {
  const pool = new ImagePool({ threads: 1 });
  let dir: string;
  before(() => {
    pool.start();
    dir = mkdtempSync(join(tmpdir(), 'accounting-'));
  });
  after(async () => {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const build = (data: string, o: DataBunchOptions = {}): Promise<{ bunch: Awaited<ReturnType<typeof createDataBunch>>; lines: string[] }> => {
    const lines: string[] = [];
    return createDataBunch({ data, cacheDir: join(dir, 'cache'), verify: true, log: (l) => lines.push(l), ...o }, pool).then((bunch) => ({ bunch, lines }));
  };

  it("the issue's case: files the tutorial's regex does not match, bad files, other files — each counted once by reason", async () => {
    const d = join(dir, 'pets', 'images');
    for (let i = 1; i <= 5; i++) await image(join(d, `Bengal_${i}.jpg`), 10 * i);
    for (let i = 1; i <= 5; i++) await image(join(d, `beagle_${i}.jpg`), 200 - 10 * i);
    // The four of issue #13: upper-case extension, .jpeg, .png, a dash instead of the underscore.
    for (const f of ['Bengal_300.JPG', 'beagle_302.jpeg', 'Abyssinian_301.png', 'pug-303.jpg']) await image(join(d, f));
    writeFileSync(join(d, 'Bengal_400.jpg'), ''); // empty
    await truncated(join(d, 'beagle_401.jpg'));
    writeFileSync(join(d, 'notes.txt'), 'x');
    writeFileSync(join(d, 'Abyssinian_9005.mat'), 'x');
    writeFileSync(join(d, '.DS_Store'), 'x');
    mkdirSync(join(d, '.git'));
    writeFileSync(join(d, '.git', 'HEAD'), 'x');

    const { bunch, lines } = await build(join(dir, 'pets'), { validPct: 0.2, seed: 42 });
    const a = bunch.account;
    assert.equal(a.filesFound, 19, '10 good + 4 unmatched + 2 bad + 2 other extensions + 1 hidden (the .git folder is not searched)');
    assert.deepEqual(a.groups.map((g) => [g.reason, g.paths.map((p) => basename(p))]), [
      ['empty', ['Bengal_400.jpg']],
      ['truncated/corrupt', ['beagle_401.jpg']],
      ['hidden file', ['.DS_Store']],
      ['unsupported extension', ['Abyssinian_9005.mat', 'notes.txt']],
      ['unlabelled', ['Abyssinian_301.png', 'Bengal_300.JPG', 'beagle_302.jpeg', 'pug-303.jpg']],
    ]);
    // fastai split_by_rand_pct: int(0.2 · 12 labelled) = 2 valid; the two bad files leave whichever split they were in.
    assert.equal(a.train + a.valid, 10);
    assert.equal(a.train + a.valid + 2 + 1 + 2 + 4, a.filesFound);
    assert.deepEqual([bunch.train.length, bunch.valid.length], [a.train, a.valid]);
    assert.deepEqual(bunch.classes, ['Bengal', 'beagle']);
    assert.equal(bunch.paths.length, 10, 'only items in a split reach the workers');
    assert.equal(dataLine(a, bunch.classes.length),
      `data: 2 classes, ${a.train} train / ${a.valid} valid images from ${d}; 19 files found: ${a.train} train, ${a.valid} valid, 9 skipped ` +
      '(1 empty, 1 truncated/corrupt, 1 hidden file, 2 unsupported extension, 4 unlabelled; see above)');
    assert.equal(lines.find((l) => l.includes(', unlabelled:')),
      'skipped 4 file(s), unlabelled: Abyssinian_301.png, Bengal_300.JPG, beagle_302.jpeg (+1 more) — the label regex /([^/]+)_\\d+.jpg$ ' +
      '(label = first group, matched against the path; case-sensitive) matches nothing in their path; change --label-re ' +
      "(e.g. '/([^/]+)_\\d+\\.\\w+$' for any extension), or label by --label-from folder|csv");
    assert.equal(lines.filter((l) => l.startsWith('skipped ')).length, 5, 'one line per reason');
    assert.ok(lines.includes('not searched: 1 hidden folder(s): .git — names starting with "." are not searched; rename them to include their files'), lines.join('\n'));

    const json = accountJson(a);
    assert.deepEqual(json.groups.find((g) => g.reason === 'unlabelled')?.paths, ['Abyssinian_301.png', 'Bengal_300.JPG', 'beagle_302.jpeg', 'pug-303.jpg']);
    assert.equal(json.skipped, 9);
    assert.deepEqual(json.hiddenFolders, ['.git']);

    // The metric: pets_skipped_files_total{reason} counts the same groups (every reason exported, 0 when none).
    const metrics = new TrainingMetrics({ runId: 'acct', defaultMetrics: false });
    recordSkippedFiles(metrics, a);
    const text = await metrics.scrape();
    const value = (reason: string): number => Number(new RegExp(`^pets_skipped_files_total\\{reason="${reason.replace('/', '\\/')}",run="acct"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 'NaN');
    const expected: Record<string, number> = { empty: 1, 'truncated/corrupt': 1, 'hidden file': 1, 'unsupported extension': 2, unlabelled: 4 };
    for (const reason of LEFT_OUT_REASONS) assert.equal(value(reason), expected[reason] ?? 0, reason);
  });

  it('--label-re can take the four back: every file that was unlabelled is now trained or validated', async () => {
    const { bunch } = await build(join(dir, 'pets'), { labelPattern: '/([^/_-]+)[_-]\\d+\\.\\w+$' });
    assert.equal(bunch.account.groups.find((g) => g.reason === 'unlabelled'), undefined);
    assert.equal(bunch.account.train + bunch.account.valid, 14);
  });

  it('a class whose every image is bad is dropped with a warning naming it and its files; training goes on', async () => {
    const d = join(dir, 'allbad');
    for (let i = 1; i <= 3; i++) await image(join(d, `cat_${i}.jpg`));
    for (let i = 1; i <= 3; i++) await image(join(d, `dog_${i}.jpg`));
    writeFileSync(join(d, 'Sphynx_1.jpg'), '');
    await truncated(join(d, 'Sphynx_2.jpg'));
    const { bunch, lines } = await build(d);
    assert.deepEqual(bunch.classes, ['cat', 'dog']);
    assert.deepEqual(bunch.account.classes.find((c) => c.name === 'Sphynx'), { name: 'Sphynx', train: 0, valid: 0, bad: 2, discarded: 0 });
    assert.deepEqual(bunch.account.groups.map((g) => [g.reason, g.paths.map((p) => basename(p))]), [['empty', ['Sphynx_1.jpg']], ['truncated/corrupt', ['Sphynx_2.jpg']]]);
    assert.ok(lines.includes('1 class(es) dropped, every image failed to decode: Sphynx (2: Sphynx_1.jpg: empty, Sphynx_2.jpg: truncated/corrupt); repair or replace these files to train them'), lines.join('\n'));
    assert.ok(lines.includes('skipped 1 file(s), empty: Sphynx_1.jpg — decoding failed: the file is empty (0 bytes); repair, replace or delete them'), lines.join('\n'));
    assert.equal(bunch.account.train + bunch.account.valid, 6);
  });

  it("from_folder with train/ and valid/: labels from the class folder, split by the top folder; valid classes unknown to train are discarded as fastai does", async () => {
    const d = join(dir, 'folders');
    for (const [split, cls, n] of [['train', 'cat', 3], ['train', 'dog', 3], ['train', 'owl', 1], ['valid', 'cat', 2], ['valid', 'dog', 1], ['valid', 'bird', 2]] as const) {
      for (let i = 0; i < n; i++) await image(join(d, split, cls, `${i}.png`), 40 * i);
    }
    await image(join(d, 'test', 'cat', '0.jpg'));
    await image(join(d, 'train', 'loose.jpg'));
    const { bunch, lines } = await build(d, { labelFrom: 'folder', split: 'folder' });
    const a = bunch.account;
    assert.deepEqual(bunch.classes, ['cat', 'dog', 'owl']);
    assert.deepEqual([a.train, a.valid, a.filesFound], [7, 3, 14]);
    assert.deepEqual(a.groups.map((g) => [g.reason, g.paths.map((p) => p.slice(d.length + 1))]), [
      ['unlabelled', ['train/loose.jpg']],
      ['not in split', ['test/cat/0.jpg']],
      ['unknown label', ['valid/bird/0.png', 'valid/bird/1.png']],
    ]);
    assert.deepEqual(a.classes.find((c) => c.name === 'bird'), { name: 'bird', train: 0, valid: 0, bad: 0, discarded: 2 });
    assert.ok(lines.includes('1 class(es) have a single image, in train: owl; the model learns each from one example and never validates it — add images'), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith('skipped 2 file(s), unknown label: valid/bird/0.png, valid/bird/1.png — validation images of 1 class(es) with no training image (bird); fastai v1 discards them too')), lines.join('\n'));
    assert.ok(bunch.valid.every((i) => bunch.classes[bunch.labels[i]!] !== undefined));
    await assert.rejects(build(d, { labelFrom: 'folder', split: 'folder', validFolder: 'validation' }),
      (e: unknown) => isTrainerError(e, 'ERR_BAD_DATA') && e.message === `--split folder needs train/ and validation/ under ${d}, but validation/ is missing (folders there: test, train, valid); name them with --train-folder/--valid-folder`);
  });

  it("from_csv with an is_valid column (fastai valid_col): split from the CSV; unlisted files and rows without a file are reported", async () => {
    const d = join(dir, 'csv');
    for (const f of ['a1.jpg', 'a2.jpg', 'a3.jpg', 'b1.png', 'b2.png', 'b3.png', 'extra.jpg']) await image(join(d, f));
    const csv = join(dir, 'labels.csv');
    writeFileSync(csv, 'name,label,is_valid\na1.jpg,ant,False\na2.jpg,ant,False\na3.jpg,ant,True\nb1.png,bee,0\n"b2.png",bee,false\nb3.png,bee,TRUE\ngone.jpg,bee,False\n');
    const { bunch, lines } = await build(d, { labelFrom: 'csv', labelCsv: csv, split: 'csv' });
    assert.deepEqual(bunch.classes, ['ant', 'bee']);
    assert.deepEqual(Array.from(bunch.valid, (i) => basename(bunch.paths[i]!)), ['a3.jpg', 'b3.png']);
    assert.deepEqual(Array.from(bunch.train, (i) => basename(bunch.paths[i]!)), ['a1.jpg', 'a2.jpg', 'b1.png', 'b2.png']);
    assert.deepEqual(bunch.account.groups.map((g) => [g.reason, g.paths.map((p) => basename(p))]), [['unlabelled', ['extra.jpg']]]);
    assert.deepEqual(bunch.account.csvRowsWithoutFile, ['gone.jpg (line 8)']);
    assert.ok(lines.some((l) => l.startsWith(`1 CSV row(s) name no file under ${d}: gone.jpg (line 8)`)), lines.join('\n'));
    writeFileSync(csv, 'name,label,is_valid\na1.jpg,ant,maybe\n');
    await assert.rejects(build(d, { labelFrom: 'csv', labelCsv: csv, split: 'csv' }),
      (e: unknown) => isTrainerError(e, 'ERR_BAD_DATA') && e.message === `${csv}:2: column is_valid must be true|false (or 1|0, yes|no), got "maybe"`);
    writeFileSync(csv, 'name,label\na1.jpg,ant\n');
    await assert.rejects(build(d, { labelFrom: 'csv', labelCsv: csv, split: 'csv' }),
      (e: unknown) => isTrainerError(e, 'ERR_BAD_DATA') && e.message.includes('--split csv needs a header row with a "is_valid" column') && e.message.endsWith('got columns name, label'));
    await assert.rejects(build(d, { split: 'csv' }), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') && /--split csv reads the CSV's is_valid column, so it needs --label-from csv/.test(e.message));
  });

  it('a file name or label holding a newline or another control character stays on its log line, escaped', async () => {
    // The tryout's folder: a newline after the extension (unsupported extension) and one inside the label (a class of a
    // single image, 'Abys\nsinian'); each split its line in two. Escaped as GNU ls -b / sha256sum write such names.
    const d = join(dir, 'control-names');
    for (let i = 1; i <= 4; i++) await image(join(d, `Bengal_${i}.jpg`), 10 * i);
    for (let i = 1; i <= 4; i++) await image(join(d, `beagle_${i}.jpg`), 200 - 10 * i);
    await image(join(d, 'Abyssinian_900.jpg\n'));
    await image(join(d, 'Abys\nsinian_901.jpg'));
    await image(join(d, 'Sia\x1b[2Jmese_1.jpg'));
    const { lines } = await build(d, { validPct: 0.25, seed: 42 });
    for (const l of lines) assert.ok(![...l].some((c) => c === '\n' || c === '\r' || c === '\u001b'), `a control character in the log line ${JSON.stringify(l)}`);
    assert.ok(lines.some((l) => l.startsWith('skipped 1 file(s), unsupported extension: Abyssinian_900.jpg\\n — ')), lines.join('\n'));
    // Each is a class of one image: in train (a single-image warning) or in valid (unknown label), as the split falls.
    for (const label of ['Abys\\nsinian', 'Sia\\x1b[2Jmese']) {
      assert.ok(lines.some((l) => (l.includes('have a single image') || l.includes('unknown label')) && l.includes(label)), lines.join('\n'));
    }
  });

  it('an empty validation split and a single class are refused by assertTrainable before any worker', async () => {
    const d = join(dir, 'one-class');
    for (let i = 1; i <= 4; i++) await image(join(d, `cat_${i}.jpg`));
    const { bunch } = await build(d);
    assert.throws(() => assertTrainable(bunch), (e: unknown) => isTrainerError(e, 'ERR_BAD_DATA') &&
      e.message === `${d} must give ≥ 2 classes and ≥ 1 train and ≥ 1 valid image (after skipped files), got 1 class(es), 4 train / 0 valid image(s); add images, raise --valid-pct or check --label-re/--labels`);
  });
});
