/**
 * A cache folder the system will not create (PETS_TRAINER_CACHE_DIR=/proc/x, PETS_TRAINER_WEIGHTS_DIR=/proc/x): Node
 * 20's recursive mkdir loops forever where mkdir(2) answers ENOENT though the parent exists, so every command that
 * read data or fetched weights hung at 100 % CPU, deaf to SIGTERM. Now: the dataset download and the weights stop at
 * once with ERR_BAD_CONFIG naming the variable, its value and what to set (as `--run-dir /proc/x` does); the data
 * check's verdict cache (only a cache) is given up with one line, and the run goes on.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { createDataBunch } from '../../../../src/training/data/databunch.js';
import { CACHE_DIR_ENV, fetchPets } from '../../../../src/training/data/pets.js';
import { ImagePool } from '../../../../src/training/data/pool.js';
import { WEIGHTS_CACHE_ENV, resolvePretrainedWeights } from '../../../../src/training/model/pretrained.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { folderProblem } from '../../../../src/contract/folder.js';

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
      [`could not write the data check's cache /proc/pets-trainer-test/verify-H.json, this run goes on (later runs decode every file again): ${CACHE_DIR_ENV}=/proc/pets-trainer-test: cannot create /proc/pets-trainer-test (ENOENT: no such file or directory); ${rule(CACHE_DIR_ENV)}`],
      lines.join('\n'));
  });
});

describe('the data check\'s cache where the system refuses it: one line, the folder as PETS_TRAINER_CACHE_DIR names it, one advice', () => {
  // A cache folder that is a file ended 'choose another folder for the data check's cache folder' (no flag does
  // that), then '; set PETS_TRAINER_CACHE_DIR to a writable folder': two pieces of advice, one a user cannot follow.
  const saved = process.env[CACHE_DIR_ENV];
  let pool: ImagePool;
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cache-dir-'));
    pool = new ImagePool({ threads: 1 });
    pool.start();
  });
  after(async () => {
    await pool.close();
    if (saved === undefined) delete process.env[CACHE_DIR_ENV];
    else process.env[CACHE_DIR_ENV] = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  async function cacheLines(): Promise<string[]> {
    const lines: string[] = [];
    const bunch = await createDataBunch({ data: BAD, verify: true, validPct: 0.25, seed: 1, log: (l) => lines.push(l) }, pool);
    assert.ok(bunch.train.length > 0, 'the data bunch is built');
    return lines.filter((l) => /could not write the data check's cache/.test(l)).map((l) => l.replace(/verify-[0-9a-f]{12}/, 'verify-H'));
  }

  it('PETS_TRAINER_CACHE_DIR is a file: the folder check\'s words, then what to set', async () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    process.env[CACHE_DIR_ENV] = file;
    assert.deepEqual(await cacheLines(), [`could not write the data check's cache ${file}/verify-H.json, this run goes on (later runs decode every file again): ` +
      `${CACHE_DIR_ENV}=${file}: ${folderProblem(file, 'write')}; ${rule(CACHE_DIR_ENV)}`]);
  });

  it('the cache file cannot be written in the folder (a folder in its place): the same origin and advice', async () => {
    const folder = join(dir, 'cache');
    process.env[CACHE_DIR_ENV] = folder;
    await cacheLines(); // writes the cache file: its name is known from now on
    const [name] = readdirSync(folder).filter((f) => /^verify-[0-9a-f]{12}\.json$/.test(f));
    rmSync(join(folder, name!));
    mkdirSync(join(folder, name!)); // rename(2) cannot put a file in place of a folder
    writeFileSync(join(folder, name!, 'keep'), '');
    const lines = await cacheLines();
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, new RegExp(`^could not write the data check's cache ${folder}/verify-H\\.json, this run goes on \\(later runs decode every file again\\): ` +
      `${CACHE_DIR_ENV}=${folder}: cannot write ${folder}/verify-[0-9a-f]{12}\\.json \\(E[A-Z]+\\); ${rule(CACHE_DIR_ENV)}$`));
  });
});
