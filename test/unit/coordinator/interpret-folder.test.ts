/**
 * `coordinator interpret` checks where its report goes before anything loads (`checkReportFolder`). Seen by the
 * breaker on a run folder on a read-only mount: `interpret <run>` ended with the bare `coordinator: EROFS: read-only
 * file system, open '…/.coordinator.lock'` (exit 1), and `interpret <run>/models/stage-2.safetensors` evaluated the
 * whole validation set, then ended with `ENOENT: no such file or directory, mkdir '…/interpret-stage-2'` (Node's
 * recursive mkdir reports EROFS as ENOENT). Checked by hand on a read-only tmpfs: both now exit 2 with the message
 * below, at once. Here /proc/1 stands for a folder nobody may write into (root gets EPERM there, others EACCES).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkReportFolder } from '../../../src/coordinator/inference.js';

test('interpret refuses a report folder it cannot write (ERR_BAD_FLAG naming it and the reason), and takes a writable one', () => {
  for (const [target, outDir] of [['/proc/1', '/proc/1'], ['/proc/1/models/stage-2.safetensors', '/proc/1/interpret-stage-2']] as const) {
    assert.throws(() => checkReportFolder(target, outDir), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_BAD_FLAG');
      assert.match(err.message, new RegExp(`^interpret ${target}: cannot write its report into ${outDir} \\(/proc/1: it cannot be written to \\(E(PERM|ACCES)\\)\\); copy the run folder to a writable place and interpret the copy$`));
      return true;
    });
  }
  const dir = mkdtempSync(join(tmpdir(), 'interpret-folder-'));
  try {
    assert.doesNotThrow(() => checkReportFolder(dir, dir));
    assert.doesNotThrow(() => checkReportFolder(join(dir, 'models', 'stage-1.safetensors'), join(dir, 'interpret-stage-1')), 'a folder still to create in a writable run folder');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
