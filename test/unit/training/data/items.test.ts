/** Label rules (regex / folder / csv), the images/ layout, the official split, and createDataBunch on a folder. */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createDataBunch } from '../../../../src/training/data/databunch.js';
import { DEFAULT_LABEL_PATTERN, displayName, listItems, officialSplit } from '../../../../src/training/data/items.js';
import { leftOutLines } from '../../../../src/training/data/accounting.js';
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
    assert.throws(() => listItems(join(dir, 'nope'), { kind: 'folder' }), (e) => isTrainerError(e, 'ERR_BAD_DATA')
      && e.message === `--data must be a folder of images or a folder holding images/, got ${JSON.stringify(join(dir, 'nope'))}: no such folder`);
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

describe('folders the listing does not enter', () => {
  // Seen by the breaker: a link to a folder above it (`loop -> .`) was followed until the path grew too long, so
  // every image was listed 40 times (903 files from 22, copies of one photo in both train and valid); a folder
  // whose name is not UTF-8 or that cannot be read stopped the data step with a bare `ENOENT: … scandir` /
  // `EACCES: … scandir` (exit 1), and a file whose name is not UTF-8 was reported as a decode failure ("cannot be
  // read (permissions, or it vanished)") under a class named with U+FFFD.
  let dir: string;
  const bytes = (...parts: (string | number[])[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'items-folders-'));
    mkdirSync(join(dir, 'z', 'deep'), { recursive: true });
    writeFileSync(join(dir, 'Bengal_1.jpg'), 'x');
    writeFileSync(join(dir, 'z', 'Bengal_2.jpg'), 'x');
    writeFileSync(join(dir, 'z', 'deep', 'Bengal_3.jpg'), 'x');
    symlinkSync('.', join(dir, 'loop'));
    symlinkSync('z', join(dir, 'a'));
    symlinkSync('..', join(dir, 'z', 'deep', 'up'));
    mkdirSync(bytes(dir, '/caf', [0xe9]));
    writeFileSync(bytes(dir, '/caf', [0xe9], '/Bengal_4.jpg'), 'x');
    writeFileSync(bytes(dir, '/Bengal', [0xff], '_5.jpg'), 'x');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a link to a folder already searched (above it or beside it) is not entered: each file is listed once', () => {
    const items = listItems(dir, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN });
    assert.deepEqual(items.paths.map((p) => p.slice(dir.length + 1)), ['Bengal_1.jpg', 'z/Bengal_2.jpg', 'z/deep/Bengal_3.jpg'],
      'real folders first: z is listed as z/, not through the link a');
    assert.deepEqual(items.foldersNotSearched.filter((f) => f.reason === 'already searched'),
      [{ path: 'a', reason: 'already searched', detail: 'z' }, { path: 'loop', reason: 'already searched', detail: '.' },
        { path: 'z/deep/up', reason: 'already searched', detail: 'z' }]);
    assert.equal(items.filesFound, 4, 'three photos and the file whose name is not UTF-8');
  });

  it('names that are not UTF-8: the folder is reported, the file left out as unreadable with that rule, no class made of U+FFFD', () => {
    const items = listItems(dir, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN });
    assert.deepEqual(items.foldersNotSearched.filter((f) => f.reason === 'name not UTF-8'), [{ path: 'caf\\xe9', reason: 'name not UTF-8' }]);
    assert.deepEqual(items.leftOut.map((g) => [g.reason, g.paths.map((p) => basename(p))]), [['unreadable', ['Bengal\\xff_5.jpg']]]);
    assert.match(items.leftOut[0]!.rule, /not valid UTF-8/);
    assert.ok(!items.labels.some((l) => l.includes('\uFFFD')));
    const lines = leftOutLines({ root: items.root, groups: items.leftOut, foldersNotSearched: items.foldersNotSearched, csvRowsWithoutFile: [] });
    assert.ok(lines.some((l) => l.startsWith('not searched: 1 folder(s) whose name is not valid UTF-8 (bytes shown as \\xNN): caf\\xe9 — ') && /convmv/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith('not searched: 3 symbolic link(s) to a folder already searched: a (→ z), loop (→ .), z/deep/up (→ z) — ')), lines.join('\n'));
  });

  it('a folder whose only images are in a hidden folder: ERR_BAD_DATA names it with the log\'s line (it named only the other reasons)', () => {
    const only = mkdtempSync(join(tmpdir(), 'items-hidden-'));
    try {
      mkdirSync(join(only, '.photos'));
      writeFileSync(join(only, '.photos', 'Bengal_1.jpg'), 'x');
      assert.throws(() => listItems(only, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN }), { code: 'ERR_BAD_DATA', message: `no labelled images found under ${only}: 0 file(s) `
        + '(not searched: 1 hidden folder(s): .photos — names starting with "." are not searched; rename them to include their files)' });
    } finally {
      rmSync(only, { recursive: true, force: true });
    }
  });

  it('displayName writes bytes that are not UTF-8 as \\xNN and keeps valid multi-byte characters', () => {
    assert.equal(displayName(bytes('caf', [0xc3, 0xa9])), 'café');
    assert.equal(displayName(bytes('caf', [0xe9], '_1')), 'caf\\xe9_1');
    assert.equal(displayName(bytes([0xf0, 0x9f, 0x90, 0xb1], [0xc3])), '🐱\\xc3');
  });

  it('a folder that cannot be read is reported with its error; the image folder itself is ERR_BAD_DATA', () => {
    // As root, permissions do not stop a read: the listing then runs as nobody (uid 65534) in a child process.
    const locked = join(dir, 'locked');
    mkdirSync(locked, { mode: 0o000 });
    const script = `import { listItems } from ${JSON.stringify(new URL('../../../../src/training/data/items.ts', import.meta.url).href)};
      const out = (f) => { try { return f(); } catch (e) { return { code: e.code, message: e.message }; } };
      console.log(JSON.stringify({ folders: out(() => listItems(${JSON.stringify(dir)}, { kind: 'folder' }).foldersNotSearched),
        root: out(() => listItems(${JSON.stringify(locked)}, { kind: 'folder' })) }));`;
    const asRoot = process.getuid?.() === 0;
    try {
      chmodSync(dir, 0o755);
      const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
      assert.equal(r.status, 0, r.stderr);
      const got = JSON.parse(r.stdout) as { folders: unknown[]; root: { code: string; message: string } };
      assert.deepEqual(got.folders.filter((f) => (f as { reason: string }).reason === 'unreadable'), [{ path: 'locked', reason: 'unreadable', detail: 'EACCES: permission denied' }]);
      assert.equal(got.root.code, 'ERR_BAD_DATA');
      assert.equal(got.root.message, `--data must be a folder of images or a folder holding images/, got ${JSON.stringify(locked)}: it cannot be read (EACCES)`);
    } finally {
      rmSync(locked, { recursive: true, force: true });
    }
  });
});

describe('one file under two names', () => {
  // A hard link and a symbolic link to a file are the same image (same device and inode): fastai's get_files would
  // list it twice, training on it twice as often, or with one copy in train and one in valid. It is one item here,
  // under its first name in code-point order, and the other names are reported as skipped files are.
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'items-dup-'));
    mkdirSync(join(dir, 'sub'));
    for (const f of ['Bengal_2.jpg', 'beagle_1.jpg', 'beagle_5.jpg']) writeFileSync(join(dir, f), f);
    linkSync(join(dir, 'Bengal_2.jpg'), join(dir, 'Bengal_7.jpg'));          // hard link: listed after its original
    linkSync(join(dir, 'beagle_5.jpg'), join(dir, 'Bengal_1.jpg'));          // hard link sorted BEFORE its original
    symlinkSync('../beagle_1.jpg', join(dir, 'sub', 'beagle_9.jpg'));        // symbolic link to a file
    writeFileSync(join(dir, 'notes.txt'), 'x');
    linkSync(join(dir, 'notes.txt'), join(dir, 'notes2.txt'));              // not an image: unsupported extension, as before
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('is listed once, under its first name in code-point order; the others are skipped as duplicate with the rule and counted in the files found', () => {
    const items = listItems(dir, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN });
    const rel = (p: string): string => p.slice(dir.length + 1);
    assert.deepEqual(items.paths.map(rel), ['Bengal_1.jpg', 'Bengal_2.jpg', 'beagle_1.jpg']);
    assert.deepEqual(items.labels, ['Bengal', 'Bengal', 'beagle']);
    const dup = items.leftOut.find((g) => g.reason === 'duplicate');
    assert.ok(dup, JSON.stringify(items.leftOut.map((g) => g.reason)));
    assert.deepEqual(dup.paths.map(rel), ['Bengal_7.jpg', 'beagle_5.jpg', 'sub/beagle_9.jpg']);
    assert.match(dup.rule, /^the same file as an image listed under an earlier name \(e\.g\. Bengal_7\.jpg is Bengal_2\.jpg\): a hard link or a symbolic link to it \(same device and inode\)/);
    assert.deepEqual(items.leftOut.find((g) => g.reason === 'unsupported extension')?.paths.map(rel), ['notes.txt', 'notes2.txt']);
    assert.equal(items.filesFound, 8, 'every name is a file found: 3 items + 3 duplicates + 2 text files');
    assert.match(leftOutLines({ root: items.root, groups: items.leftOut, foldersNotSearched: [], csvRowsWithoutFile: [] }).join('\n'),
      /^skipped 3 file\(s\), duplicate: Bengal_7\.jpg, beagle_5\.jpg, sub\/beagle_9\.jpg — the same file as/m);
  });
});

describe('run folders inside the data', () => {
  // Seen by the breaker: `npx coordinator --data . --label-from folder` run from the photos' folder put its run in
  // ./runs/<date-time> (the default --run-dir), and the next run there trained on the first run's pictures
  // (show-batch.png, training-curves.png, …) as a class named after the run: '3 classes' from 2 breeds.
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'items-runs-'));
    for (const c of ['beagle', 'pug']) {
      mkdirSync(join(dir, c));
      writeFileSync(join(dir, c, `${c}_1.jpg`), 'x');
    }
    // A finished run (config.json + checkpoints/), and one starting now (its lock only).
    mkdirSync(join(dir, 'runs', 'old', 'checkpoints'), { recursive: true });
    for (const f of ['config.json', 'show-batch.png', 'training-curves.png']) writeFileSync(join(dir, 'runs', 'old', f), 'x');
    mkdirSync(join(dir, 'runs', 'now'));
    writeFileSync(join(dir, 'runs', 'now', '.coordinator.lock'), '{}');
    // A folder of the user's with a config.json but no checkpoints/ is data like any other.
    mkdirSync(join(dir, 'pug', 'extra'));
    writeFileSync(join(dir, 'pug', 'extra', 'config.json'), '{}');
    writeFileSync(join(dir, 'pug', 'extra', 'pug_2.jpg'), 'x');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a folder holding a run of this trainer is not searched, and is reported with the rule', () => {
    const items = listItems(dir, { kind: 'folder' });
    assert.deepEqual([...new Set(items.labels)].sort(), ['beagle', 'extra', 'pug'], 'no class made of a run\'s pictures');
    assert.deepEqual(items.paths.map((p) => p.slice(dir.length + 1)), ['beagle/beagle_1.jpg', 'pug/extra/pug_2.jpg', 'pug/pug_1.jpg'].sort());
    assert.deepEqual(items.foldersNotSearched, [{ path: 'runs/now', reason: 'run folder' }, { path: 'runs/old', reason: 'run folder' }]);
    const lines = leftOutLines({ root: items.root, groups: items.leftOut, foldersNotSearched: items.foldersNotSearched, csvRowsWithoutFile: [] });
    assert.ok(lines.some((l) => l.startsWith('not searched: 2 run folder(s) of this trainer: runs/now, runs/old — ')), lines.join('\n'));
  });
});

describe('a --data that is no folder', () => {
  // Seen (tryout): the README's relative ../shared/datasets/… from a checkout not beside ../shared was refused as
  // "(not a folder)" though nothing was there; the user looks for a file of that name. Each case says what it is.
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'items-nofolder-'));
    writeFileSync(join(dir, 'photo.jpg'), 'x');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('says no such folder, a file, or a part of the path that is a file', () => {
    for (const [data, why] of [
      [join(dir, 'no-such'), 'no such folder'],
      [join(dir, 'photo.jpg'), 'it is a file, not a folder'],
      [join(dir, 'photo.jpg', 'images'), 'a part of the path is a file, not a folder'],
    ] as const) {
      assert.throws(() => listItems(data, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN }), (e: unknown) => isTrainerError(e, 'ERR_BAD_DATA')
        && e.message === `--data must be a folder of images or a folder holding images/, got ${JSON.stringify(data)}: ${why}`);
    }
  });
});
