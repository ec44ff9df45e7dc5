/** Label rules (regex / folder / csv), the images/ layout, the official split, and createDataBunch on a folder. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createDataBunch } from '../../../../src/training/data/databunch.js';
import { DEFAULT_LABEL_PATTERN, listItems, officialSplit } from '../../../../src/training/data/items.js';
import { isTrainerError } from '../../../../src/contract/errors.js';

describe('items and labels', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'items-'));
    mkdirSync(join(dir, 'images', 'cats'), { recursive: true });
    mkdirSync(join(dir, 'annotations'));
    for (const f of ['Bengal_1.jpg', 'Bengal_2.jpg', 'beagle_10.jpg', 'german_shorthaired_3.jpg', 'README.md']) writeFileSync(join(dir, 'images', f), 'x');
    writeFileSync(join(dir, 'images', 'cats', 'tabby.png'), 'x');
    writeFileSync(join(dir, 'annotations', 'trainval.txt'), 'Bengal_1 6 2 1\nbeagle_10 2 2 1\n');
    writeFileSync(join(dir, 'annotations', 'test.txt'), 'german_shorthaired_3 16 2 16\n');
    writeFileSync(join(dir, 'labels.csv'), 'file,label\nBengal_1.jpg,cat\ncats/tabby.png,cat\nbeagle_10.jpg,dog\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('regex: first group of the tutorial pattern on the full path; multi-word breeds keep their underscores', () => {
    const items = listItems(dir, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN });
    assert.equal(items.root, join(dir, 'images'), 'a folder holding images/ resolves to it');
    assert.deepEqual(items.paths.map((p) => basename(p)), ['Bengal_1.jpg', 'Bengal_2.jpg', 'beagle_10.jpg', 'german_shorthaired_3.jpg']);
    assert.deepEqual(items.labels, ['Bengal', 'Bengal', 'beagle', 'german_shorthaired']);
    assert.deepEqual(items.leftOut.map((g) => [g.reason, g.paths.map((p) => basename(p))]), [
      ['unsupported extension', ['README.md']],
      ['unlabelled', ['tabby.png']],
    ]);
    assert.equal(items.filesFound, 6);
  });

  it('folder and csv label rules', () => {
    const byFolder = listItems(dir, { kind: 'folder' });
    assert.deepEqual(byFolder.labels, ['cats']);
    const byCsv = listItems(dir, { kind: 'csv', file: join(dir, 'labels.csv') });
    assert.deepEqual(byCsv.paths.map((p) => basename(p)), ['Bengal_1.jpg', 'beagle_10.jpg', 'tabby.png']);
    assert.deepEqual(byCsv.labels, ['cat', 'dog', 'cat']);
    assert.throws(() => listItems(dir, { kind: 'csv', file: join(dir, 'missing.csv') }),
      (e: unknown) => (e as { code?: string }).code === 'ERR_BAD_DATA' && /^--labels .*missing\.csv: cannot read the CSV of file,label rows/.test((e as Error).message));
  });

  it('official split from annotations/trainval.txt and test.txt; items in neither are left out', () => {
    const items = listItems(dir, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN });
    const s = officialSplit(dir, items);
    assert.ok(s);
    assert.deepEqual([...s.train].map((i) => basename(items.paths[i]!)), ['Bengal_1.jpg', 'beagle_10.jpg']);
    assert.deepEqual([...s.valid].map((i) => basename(items.paths[i]!)), ['german_shorthaired_3.jpg']);
    assert.equal(officialSplit(join(dir, 'images'), items), null);
  });

  it('errors name the flag: missing folder, pattern without a group', () => {
    assert.throws(() => listItems(join(dir, 'nope'), { kind: 'folder' }), (e) => isTrainerError(e, 'ERR_BAD_DATA') && /--data must be a folder/.test(e.message));
    assert.throws(() => listItems(dir, { kind: 'regex', pattern: '_\\d+.jpg$' }), /--label-re must have a capture group/);
  });

  it('createDataBunch on a folder: code-point class order, labels as indices, official split', async () => {
    const lines: string[] = [];
    const bunch = await createDataBunch({ data: dir, split: 'official', verify: false, cacheDir: join(dir, 'cache'), log: (l) => lines.push(l) });
    // german_shorthaired is only in test.txt: a class with no training image, whose valid item fastai discards.
    assert.deepEqual(bunch.classes, ['Bengal', 'beagle']);
    // Bengal_2.jpg is in neither annotation list: left out as 'not in split', so the items are renumbered.
    assert.deepEqual(bunch.paths.map((p) => basename(p)), ['Bengal_1.jpg', 'beagle_10.jpg']);
    assert.deepEqual([...bunch.labels], [0, 1]);
    assert.equal(bunch.train.length, 2);
    assert.equal(bunch.valid.length, 0);
    assert.deepEqual(bunch.account.groups.map((g) => [g.reason, g.paths.map((p) => basename(p))]), [
      ['unsupported extension', ['README.md']], ['unlabelled', ['tabby.png']], ['not in split', ['Bengal_2.jpg']], ['unknown label', ['german_shorthaired_3.jpg']],
    ]);
    assert.equal(lines.length, 5, lines.join('\n'));
    assert.equal(lines[4], '2 class(es) have a single image, in train: Bengal, beagle; the model learns each from one example and never validates it — add images');
    const random = await createDataBunch({ data: dir, validPct: 0.5, seed: 1, verify: false, cacheDir: join(dir, 'cache'), log: () => {} });
    // int(0.5 · 4) = 2 valid items; those whose class has no training item are discarded (fastai), all counted.
    const unknown = random.account.groups.find((g) => g.reason === 'unknown label')?.paths.length ?? 0;
    assert.equal(random.train.length, 2);
    assert.equal(random.valid.length + unknown, 2);
    assert.equal(random.account.train + random.account.valid + random.account.groups.reduce((s, g) => s + g.paths.length, 0), random.account.filesFound);
  });
});

describe('entries that are no readable file', () => {
  // "Every file accounted for" (docs/data.md): a broken symbolic link, a link loop and a FIFO named like photos are
  // counted and reported as `unreadable`, never opened (a FIFO would block the decoder forever) and never dropped
  // silently; a folder named like a photo is searched as a folder.
  let dir: string;
  let fifo = true;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'items-special-'));
    writeFileSync(join(dir, 'Bengal_1.jpg'), 'x');
    symlinkSync('/nonexistent/pets-trainer', join(dir, 'Bengal_2.jpg'));
    symlinkSync('Bengal_4.jpg', join(dir, 'Bengal_3.jpg'));
    symlinkSync('Bengal_3.jpg', join(dir, 'Bengal_4.jpg'));
    mkdirSync(join(dir, 'Bengal_6.jpg'));
    try {
      execFileSync('mkfifo', [join(dir, 'Bengal_5.jpg')]);
    } catch {
      fifo = false;
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('are left out as unreadable with their rule, and counted in the files found', () => {
    const items = listItems(dir, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN });
    assert.deepEqual(items.paths.map((p) => basename(p)), ['Bengal_1.jpg']);
    const special = ['Bengal_2.jpg', 'Bengal_3.jpg', 'Bengal_4.jpg', ...(fifo ? ['Bengal_5.jpg'] : [])];
    assert.deepEqual(items.leftOut.map((g) => [g.reason, g.paths.map((p) => basename(p))]), [['unreadable', special]]);
    assert.match(items.leftOut[0]!.rule, /broken or looping symbolic link, a FIFO/);
    assert.equal(items.filesFound, 1 + special.length);
  });
});
