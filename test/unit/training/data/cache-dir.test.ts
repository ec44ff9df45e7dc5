/**
 * A cache folder the system will not create (PETS_TRAINER_CACHE_DIR=/proc/x, PETS_TRAINER_WEIGHTS_DIR=/proc/x): Node
 * 20's recursive mkdir loops forever where mkdir(2) answers ENOENT though the parent exists, so every command that
 * read data or fetched weights hung at 100 % CPU, deaf to SIGTERM. Now: the dataset download and the weights stop at
 * once with ERR_BAD_CONFIG naming the variable, its value and what to set (as `--run-dir /proc/x` does); the data
 * check's verdict cache (only a cache) is given up with one line, and the run goes on.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { createDataBunch } from '../../../../src/training/data/databunch.js';
import { CACHE_DIR_ENV, fetchPets } from '../../../../src/training/data/pets.js';
import { ImagePool } from '../../../../src/training/data/pool.js';
import { WEIGHTS_CACHE_ENV, resolvePretrainedWeights } from '../../../../src/training/model/pretrained.js';
import { isTrainerError } from '../../../../src/contract/errors.js';

const BAD = fileURLToPath(new URL('../../../../../shared/datasets/bad-inputs/images', import.meta.url));
const rule = (envVar: string): string => `set ${envVar} to a folder this user can create and write in`;

describe('a cache folder under /proc: an error naming the variable, never a hang', { skip: !existsSync('/proc/self') && 'no /proc here', timeout: 120_000 }, () => {
  const saved = { [CACHE_DIR_ENV]: process.env[CACHE_DIR_ENV], [WEIGHTS_CACHE_ENV]: process.env[WEIGHTS_CACHE_ENV] };
  let pool: ImagePool;
  before(() => {
    process.env[CACHE_DIR_ENV] = '/proc/pets-trainer-test';
    process.env[WEIGHTS_CACHE_ENV] = '/proc/pets-trainer-test-weights';
    pool = new ImagePool({ threads: 1 });
    pool.start();
  });
  after(async () => {
    await pool.close();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('the Oxford-IIIT Pet download: ERR_BAD_CONFIG naming PETS_TRAINER_CACHE_DIR, before any network', async () => {
    // No mirror is reachable (port 9): a request would say ERR_OFFLINE; the folder is refused before it.
    for (const fetch of [() => fetchPets({ imagesUrls: ['http://127.0.0.1:9/images.tar.gz'] }),
      () => createDataBunch({ fetch: { imagesUrls: ['http://127.0.0.1:9/images.tar.gz'] } })]) {
      await assert.rejects(fetch(), (e) => isTrainerError(e, 'ERR_BAD_CONFIG')
        && e.message === `${CACHE_DIR_ENV}=/proc/pets-trainer-test: cannot create /proc/pets-trainer-test (ENOENT: no such file or directory); ${rule(CACHE_DIR_ENV)}`);
    }
  });

  it('the ImageNet weights: ERR_BAD_CONFIG naming PETS_TRAINER_WEIGHTS_DIR', async () => {
    await assert.rejects(resolvePretrainedWeights('imagenet', 'resnet18', { retries: 0, quiet: true }), (e) => isTrainerError(e, 'ERR_BAD_CONFIG')
      && e.message === `${WEIGHTS_CACHE_ENV}=/proc/pets-trainer-test-weights: cannot create /proc/pets-trainer-test-weights (ENOENT: no such file or directory); ${rule(WEIGHTS_CACHE_ENV)}`);
  });

  it('--data <folder>: the data check\'s cache is given up with one line naming PETS_TRAINER_CACHE_DIR; the run goes on', async () => {
    const lines: string[] = [];
    const bunch = await createDataBunch({ data: BAD, verify: true, validPct: 0.25, seed: 1, log: (l) => lines.push(l) }, pool);
    assert.ok(bunch.train.length > 0, 'the data bunch is built');
    assert.deepEqual(lines.filter((l) => /^could not write the data check's cache /.test(l)).map((l) => l.replace(/verify-[0-9a-f]{12}/, 'verify-H')),
      ['could not write the data check\'s cache /proc/pets-trainer-test/verify-H.json (ENOENT: no such file or directory, mkdir \'/proc/pets-trainer-test\'): this run goes on, later runs decode every file again; set PETS_TRAINER_CACHE_DIR to a writable folder'],
      lines.join('\n'));
  });
});
