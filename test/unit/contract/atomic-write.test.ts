/**
 * The one crash-safe write (temp file, fsync, rename, fsync the directory) and the retryable-error list.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tryHardLink, writeFileAtomic, writeFileSynced } from '../../../src/contract/atomic-write.js';
import { isRetryable, isTrainerError, RETRYABLE_CODES, TrainerError } from '../../../src/contract/errors.js';

test('writeFileAtomic replaces the file whole and leaves no temporary file behind', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'atomic-'));
  try {
    const path = join(dir, 'model.json');
    writeFileSync(path, 'old');
    await writeFileAtomic(path, new TextEncoder().encode('new bytes'));
    assert.equal(readFileSync(path, 'utf8'), 'new bytes');
    assert.deepEqual(readdirSync(dir), ['model.json'], 'only the target remains');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writeFileAtomic reports a failure with the caller\'s code (default ERR_CHECKPOINT), naming the path, and cleans up', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'atomic-'));
  try {
    const missing = join(dir, 'no-such-dir', 'cache.json');
    await assert.rejects(writeFileAtomic(missing, new Uint8Array(1)), (e) => isTrainerError(e, 'ERR_CHECKPOINT') && e.message.includes(missing) && /ENOENT/.test(e.message));
    await assert.rejects(writeFileAtomic(missing, new Uint8Array(1), 'ERR_DATA'), (e) => isTrainerError(e, 'ERR_DATA'));
    // The target is a directory: the rename fails after the temp file was written; the temp file must go.
    await assert.rejects(writeFileAtomic(dir, new Uint8Array(1)), (e) => isTrainerError(e, 'ERR_CHECKPOINT'));
    assert.ok(!existsSync(`${dir}.tmp-${process.pid}`), 'the temp file is removed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writeFileSynced writes every byte; tryHardLink links, or says false when it cannot', () => {
  const dir = mkdtempSync(join(tmpdir(), 'atomic-'));
  try {
    const bytes = new Uint8Array(300_000).map((_, i) => i % 251);
    writeFileSynced(join(dir, 'a'), bytes);
    assert.deepEqual(new Uint8Array(readFileSync(join(dir, 'a'))), bytes);
    assert.equal(tryHardLink(join(dir, 'a'), join(dir, 'b')), true);
    assert.equal(statSync(join(dir, 'a')).ino, statSync(join(dir, 'b')).ino);
    assert.equal(tryHardLink(join(dir, 'missing'), join(dir, 'c')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('retryable errors: a lost worker or a timeout (recovery redoes them), nothing else', () => {
  assert.deepEqual([...RETRYABLE_CODES].sort(), ['ERR_TIMEOUT', 'ERR_WORKER_LOST']);
  assert.ok(isRetryable(new TrainerError('ERR_WORKER_LOST', 'rank 1 lost')));
  assert.ok(isRetryable(new TrainerError('ERR_TIMEOUT', 'step 3')));
  for (const code of ['ERR_REPLICA_MISMATCH', 'ERR_PROTOCOL', 'ERR_DATA', 'ERR_INTERNAL'] as const) {
    assert.ok(!isRetryable(new TrainerError(code, 'x')), code);
  }
  assert.ok(!isRetryable(new Error('ERR_TIMEOUT')), 'a plain Error is not retryable, whatever its message');
});
