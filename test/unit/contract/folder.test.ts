/**
 * folderProblem: one wording for "this path is not a folder this process can use", wherever a user names a folder
 * (worker --data, coordinator --data, show-batch --out's folder). The expected answers are what the file system says
 * of each path (stat's ENOENT / ENOTDIR, a file, a device, access(2)'s EACCES), put in the user's words.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { folderProblem } from '../../../src/contract/folder.js';

test('folderProblem names what is wrong with each kind of path, and nothing for a usable folder or a link to one', () => {
  const dir = mkdtempSync(join(tmpdir(), 'folder-problem-'));
  try {
    writeFileSync(join(dir, 'file.txt'), 'x');
    mkdirSync(join(dir, 'sub'));
    symlinkSync(join(dir, 'sub'), join(dir, 'link'));
    assert.equal(folderProblem(join(dir, 'sub')), null);
    assert.equal(folderProblem(join(dir, 'sub'), 'write'), null);
    assert.equal(folderProblem(join(dir, 'link')), null, 'a link to a folder is a folder');
    assert.equal(folderProblem(join(dir, 'nope')), 'no such folder');
    assert.equal(folderProblem(join(dir, 'file.txt')), 'it is a file, not a folder');
    assert.equal(folderProblem(join(dir, 'file.txt', 'images')), 'a part of the path is a file, not a folder');
    assert.equal(folderProblem('/dev/null'), 'it is not a folder');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('folderProblem: a folder the process may not list (read) or create files in (write) is named with the system\'s code', () => {
  // As root, permissions do not stop anything: the check then runs as nobody (uid 65534) in a child process.
  const dir = mkdtempSync(join(tmpdir(), 'folder-problem-'));
  try {
    chmodSync(dir, 0o755);
    const locked = join(dir, 'locked');
    const readOnly = join(dir, 'read-only');
    mkdirSync(locked, { mode: 0o000 });
    mkdirSync(readOnly, { mode: 0o555 });
    chmodSync(locked, 0o000);
    chmodSync(readOnly, 0o555);
    const script = `import { folderProblem } from ${JSON.stringify(new URL('../../../src/contract/folder.ts', import.meta.url).href)};
      console.log(JSON.stringify([folderProblem(${JSON.stringify(locked)}), folderProblem(${JSON.stringify(readOnly)}), folderProblem(${JSON.stringify(readOnly)}, 'write'), folderProblem(${JSON.stringify(join(locked, 'x'))})]));`;
    const asRoot = process.getuid?.() === 0;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), ['it cannot be read (EACCES)', null, 'it cannot be written to (EACCES)', 'it cannot be read (EACCES)']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
