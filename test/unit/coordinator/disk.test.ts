// Disk use of a run directory (hard links counted once, as `du`), the byte formatting of the closing line, and
// the removal of a directory a failed run created: only when nothing but its early files is in it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, linkSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkNewRunDir, diskLine, diskUsage, formatBytes, removeFailedRunDir } from '../../../src/coordinator/disk.js';
import { isTrainerError } from '../../../src/contract/errors.js';

test('diskUsage: checkpoints, models and the rest; a model hard-linked to a checkpoint counts once', () => {
  const dir = mkdtempSync(join(tmpdir(), 'disk-'));
  try {
    mkdirSync(join(dir, 'checkpoints', 'step-000000002'), { recursive: true });
    mkdirSync(join(dir, 'models'));
    writeFileSync(join(dir, 'checkpoints', 'step-000000002', 'state.safetensors'), Buffer.alloc(3000));
    writeFileSync(join(dir, 'checkpoints', 'step-000000002', 'manifest.json'), Buffer.alloc(100));
    linkSync(join(dir, 'checkpoints', 'step-000000002', 'state.safetensors'), join(dir, 'models', 'stage-1.safetensors'));
    writeFileSync(join(dir, 'models', 'stage-1.json'), Buffer.alloc(50));
    writeFileSync(join(dir, 'index.html'), Buffer.alloc(7));
    const u = diskUsage(dir);
    // The linked 3000 bytes belong to the first place they are met (checkpoints, models: readdir order is not
    // guaranteed), and are counted once in the total.
    assert.equal(u.bytes, 3000 + 100 + 50 + 7);
    assert.equal(u.checkpointBytes + u.modelBytes, 3000 + 100 + 50);
    assert.equal(u.otherBytes, 7);
    assert.equal(u.sharedBytes, 3000);
    assert.match(diskLine(dir), /^disk: +\S+ 3 kB \(checkpoints .*; 3 kB hard-linked between models and checkpoints, counted once\)$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('formatBytes: decimal units as the README figures', () => {
  assert.equal(formatBytes(140_123_456), '140 MB');
  assert.equal(formatBytes(51_400_000), '51.4 MB');
  assert.equal(formatBytes(3_412_000_000), '3.41 GB');
  assert.equal(formatBytes(2_000), '2 kB');
});

test('removeFailedRunDir: only early files and empty folders are removed; anything else keeps the directory', () => {
  const root = mkdtempSync(join(tmpdir(), 'failed-run-'));
  try {
    const early = join(root, 'a');
    mkdirSync(join(early, 'checkpoints'), { recursive: true });
    writeFileSync(join(early, 'config.json'), '{}');
    writeFileSync(join(early, 'show-batch.png'), 'png');
    writeFileSync(join(early, 'data.json'), '{}'); // the data account, written before any worker starts
    assert.equal(removeFailedRunDir(early), true);
    assert.equal(existsSync(early), false);
    const kept = join(root, 'b');
    mkdirSync(kept);
    writeFileSync(join(kept, 'config.json'), '{}');
    writeFileSync(join(kept, 'notes.txt'), 'the user\'s');
    assert.equal(removeFailedRunDir(kept), false);
    assert.equal(existsSync(join(kept, 'notes.txt')), true);
    assert.equal(existsSync(join(kept, 'config.json')), true);
    const withModel = join(root, 'c');
    mkdirSync(join(withModel, 'models'), { recursive: true });
    writeFileSync(join(withModel, 'models', 'stage-1.safetensors'), 'x');
    assert.equal(removeFailedRunDir(withModel), false);
    assert.equal(removeFailedRunDir(join(root, 'missing')), false);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a new run refuses a --run-dir holding a run or files of the user\'s, and reuses one left before a first checkpoint', () => {
  // Found: a stopped run's folder given again without --resume was trained over from step 0, its checkpoints replaced
  // (step-000000006 rewritten by the new run) and pruned; a folder of the user's had its config.json and index.html
  // overwritten. Both without a word.
  const dir = mkdtempSync(join(tmpdir(), 'run dir '));
  try {
    const refused = (re: RegExp) => (e: unknown): boolean => isTrainerError(e, 'ERR_BAD_FLAG') && re.test((e as Error).message);
    checkNewRunDir(dir); // empty: fine
    // What a run killed before its first checkpoint leaves: reused, and said.
    writeFileSync(join(dir, 'config.json'), '{}');
    writeFileSync(join(dir, 'data.json'), '{}');
    mkdirSync(join(dir, 'checkpoints', '.tmp-step-000000003-99'), { recursive: true });
    writeFileSync(join(dir, 'config.json.tmp-123'), '');
    const lines: string[] = [];
    checkNewRunDir(dir, (l) => lines.push(l));
    assert.match(lines.join('\n'), /reusing the folder of a run that ended before its first checkpoint \(checkpoints, config\.json, data\.json\)/);
    mkdirSync(join(dir, 'checkpoints', 'step-000000006'));
    mkdirSync(join(dir, 'checkpoints', 'step-000000012'));
    assert.throws(() => checkNewRunDir(dir), refused(new RegExp(`holds a run \\(its newest checkpoint: step-000000012\\); continue it with: npx coordinator --resume '${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}', or choose another --run-dir`)));
    rmSync(join(dir, 'checkpoints'), { recursive: true });
    writeFileSync(join(dir, 'index.html'), '<h1>my site</h1>');
    writeFileSync(join(dir, 'notes.txt'), '');
    assert.throws(() => checkNewRunDir(dir), refused(/is not empty \(index\.html, notes\.txt\): a run writes config\.json, data\.json, index\.html, pictures, models\/ and checkpoints\/ there; choose a new or empty folder/));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
