// `--run-dir` / `--dir` / the cache folders of PETS_TRAINER_CACHE_DIR and PETS_TRAINER_WEIGHTS_DIR: created like
// `mkdir -p`, and every failure is a clear error naming the flag or variable, the folder and the system's reason, at
// once (Node 20's recursive mkdir loops forever under /proc and says ENOENT for a read-only file system).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTrainerError } from '../../../src/contract/errors.js';
import { envOrigin, makeDir, makeDirs, removeEmptyCreated } from '../../../src/contract/make-dir.js';

test('creates missing parents, says whether it created the folder, accepts an existing one', () => {
  const root = mkdtempSync(join(tmpdir(), 'make-dir-'));
  try {
    const dir = join(root, 'a', 'b', 'run');
    assert.equal(makeDir(dir, '--run-dir'), true);
    assert.ok(statSync(dir).isDirectory());
    assert.equal(makeDir(dir, '--run-dir'), false);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a file in the way: ERR_BAD_FLAG naming the flag and the path', () => {
  const root = mkdtempSync(join(tmpdir(), 'make-dir-'));
  try {
    const file = join(root, 'run');
    writeFileSync(file, 'x');
    assert.throws(() => makeDir(file, '--run-dir'), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && e.message === `--run-dir ${file}: it is a file, not a folder; choose another folder with --run-dir`);
    assert.throws(() => makeDir(join(file, 'sub'), '--dir'), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /^--dir .*: cannot create .*run\/sub \(ENOTDIR/.test(e.message));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a folder that the system refuses to create (under /proc): an error, not a hang', { skip: !existsSync('/proc/self') && 'no /proc here' }, () => {
  assert.throws(() => makeDir('/proc/pets-trainer-test/run', '--run-dir'),
    (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /^--run-dir \/proc\/pets-trainer-test\/run: cannot create \/proc\/pets-trainer-test \(ENOENT/.test(e.message) && /choose another folder with --run-dir/.test(e.message));
});

test('makeDirs says which folders it made; removeEmptyCreated takes back the empty ones only, innermost first', () => {
  // A first run that fails before its first checkpoint removed runs/<date-time> but left the runs/ it had created.
  const root = mkdtempSync(join(tmpdir(), 'make-dir-'));
  try {
    const run = join(root, 'runs', 'r1');
    assert.deepEqual(makeDirs(run, '--run-dir'), [join(root, 'runs'), run]);
    assert.deepEqual(makeDirs(run, '--run-dir'), []);
    rmSync(run, { recursive: true });
    assert.deepEqual(removeEmptyCreated([join(root, 'runs'), run]), [join(root, 'runs')], 'a folder already gone is passed over');
    assert.equal(existsSync(join(root, 'runs')), false);
    const mine = makeDirs(join(root, 'runs', 'r2'), '--run-dir');
    mkdirSync(join(root, 'runs', 'r3')); // another run started beside it
    rmSync(join(root, 'runs', 'r2'), { recursive: true });
    assert.deepEqual(removeEmptyCreated(mine.slice(0, -1)), []);
    assert.ok(existsSync(join(root, 'runs', 'r3')), 'another run\'s folder and its parent stay');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a folder named by an environment variable: ERR_BAD_CONFIG naming the variable, its value and what to set; its unset default is named as such', { skip: !existsSync('/proc/self') && 'no /proc here' }, () => {
  assert.throws(() => makeDir('/proc/x/data', envOrigin('PETS_TRAINER_CACHE_DIR', { PETS_TRAINER_CACHE_DIR: '/proc/x' })), (e) => isTrainerError(e, 'ERR_BAD_CONFIG')
    && e.message === 'PETS_TRAINER_CACHE_DIR=/proc/x: cannot create /proc/x (ENOENT: no such file or directory); set PETS_TRAINER_CACHE_DIR to a folder this user can create and write in');
  // Unset (or blank): the default folder is named, and the variable that moves it.
  for (const env of [{}, { PETS_TRAINER_CACHE_DIR: ' ' }]) {
    assert.throws(() => makeDir('/proc/y', envOrigin('PETS_TRAINER_CACHE_DIR', env)), (e) => isTrainerError(e, 'ERR_BAD_CONFIG')
      && e.message === 'the cache folder /proc/y (PETS_TRAINER_CACHE_DIR is not set): cannot create /proc/y (ENOENT: no such file or directory); set PETS_TRAINER_CACHE_DIR to a folder this user can create and write in');
  }
});
