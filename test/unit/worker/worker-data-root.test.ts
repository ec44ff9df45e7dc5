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
