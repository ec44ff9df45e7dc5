import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTrainerError } from '../../../src/contract/errors.js';
import { localDataRoot } from '../../../src/worker/worker.js';

test('worker --data accepts the images folder or the folder holding images/, and names what is missing otherwise', () => {
  const dir = mkdtempSync(join(tmpdir(), 'worker-root-'));
  try {
    mkdirSync(join(dir, 'images'));
    writeFileSync(join(dir, 'images', 'Bengal_1.jpg'), 'x');
    const setup = { dataRoot: '/elsewhere/images', paths: ['Bengal_1.jpg'] };
    assert.equal(localDataRoot(join(dir, 'images'), setup), join(dir, 'images'));
    assert.equal(localDataRoot(dir, setup), join(dir, 'images'));
    assert.equal(localDataRoot(null, { dataRoot: join(dir, 'images'), paths: setup.paths }), join(dir, 'images'));
    assert.throws(() => localDataRoot(join(dir, 'nope'), setup),
      (err) => isTrainerError(err, 'ERR_DATA') && /item Bengal_1\.jpg not found in .*nope or .*nope\/images/.test(err.message));
    assert.throws(() => localDataRoot(null, setup), (err) => isTrainerError(err, 'ERR_DATA') && /coordinator's/.test(err.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('worker --data must hold the run\'s whole listing: a folder with the first item but not the others (another copy) is refused, naming what is missing', () => {
  // A remote worker started on an older or partial copy used to pass the first-item check and skip the rest as
  // unreadable, on that worker alone; now its setup fails, and the coordinator refuses it (recovery.test.ts).
  const dir = mkdtempSync(join(tmpdir(), 'worker-root-'));
  try {
    mkdirSync(join(dir, 'images'));
    for (const f of ['Bengal_1.jpg', 'Bengal_2.jpg']) writeFileSync(join(dir, 'images', f), 'x');
    const paths = ['Bengal_1.jpg', 'Bengal_2.jpg', 'Bengal_3.jpg', 'Bengal_4.jpg', 'Bengal_5.jpg', 'Bengal_6.jpg'];
    assert.throws(() => localDataRoot(dir, { dataRoot: '/elsewhere/images', paths }), (err) => isTrainerError(err, 'ERR_DATA')
      && err.message === `worker --data ${dir}: 4 of the run's 6 items are not in ${join(dir, 'images')} (Bengal_3.jpg, Bengal_4.jpg, Bengal_5.jpg, …): it is not a copy of the coordinator's data; pass --data <this machine's copy of the coordinator's data folder>`);
    assert.equal(localDataRoot(dir, { dataRoot: '/elsewhere/images', paths: paths.slice(0, 2) }), join(dir, 'images'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
