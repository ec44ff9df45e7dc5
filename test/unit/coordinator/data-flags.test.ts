/**
 * The data flags of `coordinator`: labelling layouts (--split folder|csv and their names), fastai's get_transforms
 * parameters and --no-augment as flags and config fields, checked at the edge with the field, flag and range in the
 * message; --bs 1 refused before anything starts (BatchNorm); the setup frame carries the transforms to the workers.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkPretrainedFile } from '../../../src/coordinator/setup.js';
import { parseTrainArgs } from '../../../src/coordinator/options.js';
import { augmentOf } from '../../../src/contract/config.js';
import { DEFAULT_TRANSFORMS } from '../../../src/contract/transform-settings.js';
import { isTrainerError } from '../../../src/contract/errors.js';
import { decodeRunSetup, encodeRunSetup, type RunSetup } from '../../../src/contract/run-setup.js';

const bad = (argv: string[], message: string): void => assert.throws(() => parseTrainArgs(argv),
  (e: unknown) => isTrainerError(e) && e.code === 'ERR_BAD_CONFIG' && e.message === message);

test('defaults: the tutorial augmentation (fastai get_transforms()), random split, fastai folder/column names', () => {
  const { config } = parseTrainArgs([]);
  assert.deepEqual(augmentOf(config), DEFAULT_TRANSFORMS);
  assert.deepEqual([config.split, config.trainFolder, config.validFolder, config.validCol], ['random', 'train', 'valid', 'is_valid']);
});

test('get_transforms flags and --no-augment reach the config', () => {
  const { config, explicit } = parseTrainArgs(['--max-rotate', '30', '--max-zoom', '1.5', '--max-lighting', '0.4', '--max-warp', '0', '--p-affine', '0.5',
    '--p-lighting', '1', '--no-flip', '--flip-vert']);
  assert.deepEqual(augmentOf(config), { doFlip: false, flipVert: true, maxRotate: 30, maxZoom: 1.5, maxLighting: 0.4, maxWarp: 0, pAffine: 0.5, pLighting: 1 });
  assert.deepEqual(Object.keys(explicit).sort(), ['doFlip', 'flipVert', 'maxLighting', 'maxRotate', 'maxWarp', 'maxZoom', 'pAffine', 'pLighting']);
  assert.equal(augmentOf(parseTrainArgs(['--no-augment']).config), null);
});

test('config file fields; a switch not given on the command line leaves the file value alone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dflags-'));
  const file = join(dir, 'run.yaml');
  writeFileSync(file, 'doFlip: false\nflipVert: true\nmaxRotate: 0\naugment: true\nsplit: folder\ntrainFolder: training\nvalidFolder: testing\n');
  const { config } = parseTrainArgs(['--config', file, '--max-zoom', '1.2']);
  assert.deepEqual([config.doFlip, config.flipVert, config.maxRotate, config.maxZoom, config.augment], [false, true, 0, 1.2, true]);
  assert.deepEqual([config.split, config.trainFolder, config.validFolder], ['folder', 'training', 'testing']);
  assert.equal(parseTrainArgs(['--config', file, '--no-augment']).config.augment, false);
});

test('out-of-range augmentation values name the field, the flag and the range', () => {
  bad(['--max-rotate', '200'], 'maxRotate (--max-rotate) must be a number in [0, 180], got 200');
  bad(['--max-zoom', '0.5'], 'maxZoom (--max-zoom) must be a number in [1, 10], got 0.5');
  bad(['--max-lighting', '1'], 'maxLighting (--max-lighting) must be a number in [0, 1), got 1');
  bad(['--max-warp', 'lots'], 'maxWarp (--max-warp) must be a number in [0, 1), got "lots"');
  bad(['--p-affine', '-0.1'], 'pAffine (--p-affine) must be a number in [0, 1], got -0.1');
  bad(['--p-lighting', '2'], 'pLighting (--p-lighting) must be a number in [0, 1], got 2');
});

test('--bs 1 is refused at the edge: BatchNorm needs more than one image per batch in training', () => {
  bad(['--bs', '1'], 'bs (--bs) must be an integer in [2, 4096]: the BatchNorm layers need more than one image per batch in training (PyTorch: "Expected more than 1 value per channel when training"), got 1');
  for (const v of ['0', '-3']) {
    bad(['--bs', v], `bs (--bs) must be an integer in [2, 4096]: the BatchNorm layers need more than one image per batch in training (PyTorch: "Expected more than 1 value per channel when training"), got ${v}`);
  }
  bad(['--bs', 'abc'], 'bs (--bs) must be an integer in [2, 4096], got "abc"');
  bad(['--bs', '5000'], 'bs (--bs) must be an integer in [2, 4096], got 5000');
  assert.equal(parseTrainArgs(['--bs', '2']).config.bs, 2);
});

test('layout flags: --split folder|csv with their names, checked together', () => {
  const { config } = parseTrainArgs(['--split', 'folder', '--train-folder', 'training', '--valid-folder', 'testing']);
  assert.deepEqual([config.split, config.trainFolder, config.validFolder], ['folder', 'training', 'testing']);
  const csv = parseTrainArgs(['--label-from', 'csv', '--labels', 'l.csv', '--split', 'csv', '--valid-col', 'valid']).config;
  assert.deepEqual([csv.split, csv.validCol], ['csv', 'valid']);
  bad(['--split', 'csv'], 'split (--split) must be random|official|folder unless labelFrom (--label-from) is csv (split csv reads the CSV\'s is_valid column), got "csv"');
  bad(['--split', 'folder', '--valid-folder', 'train'], 'validFolder (--valid-folder) must be a folder other than trainFolder (--train-folder: train), got "train"');
  bad(['--train-folder', 'a/b'], 'trainFolder (--train-folder) must be a folder name directly under the image folder (no "/"), got "a/b"');
  bad(['--split', 'folders'], 'split (--split) must be one of random|official|folder|csv, got "folders"');
});

test('the setup frame carries the transforms (null = no augmentation) and rejects bad ones, naming the field', () => {
  const base: RunSetup = {
    runId: 'r', arch: 'resnet10', size: 32, bs: 2, seed: 1, pretrained: 'none', frozen: true, classes: ['a', 'b'], dataRoot: '/d',
    paths: ['a_1.jpg', 'b_1.jpg'], labels: [0, 1], train: [0], valid: [1], allreduce: 'ring', allreduceDtype: 'float32', bucketBytes: 1 << 20,
    allreduceTimeoutMs: 1000, starAddress: null, threads: 0,
  };
  const t = { ...DEFAULT_TRANSFORMS, maxRotate: 45 };
  assert.deepEqual(decodeRunSetup(encodeRunSetup({ ...base, transforms: t })).transforms, t);
  assert.equal(decodeRunSetup(encodeRunSetup({ ...base, transforms: null })).transforms, null);
  assert.equal(decodeRunSetup(encodeRunSetup(base)).transforms, undefined);
  assert.throws(() => decodeRunSetup(encodeRunSetup({ ...base, transforms: { ...t, pAffine: 3 } })),
    (e: unknown) => isTrainerError(e, 'ERR_PROTOCOL') && e.message.startsWith('setup.transforms must be null or get_transforms settings (pAffine must be a number in [0, 1], got 3)'));
});

test('pretrained checks that need only the flags: resnet10 has no ImageNet weights; a weights file must match --arch', async () => {
  bad(['--arch', 'resnet10'], 'pretrained (--pretrained) must be none or a safetensors file with arch resnet10 (torchvision publishes no ImageNet weights for it), got "imagenet"');
  const tiny = new URL('../../../../shared/fixtures/resnet-tiny/weights.safetensors', import.meta.url).pathname;
  await checkPretrainedFile(tiny, 'resnet10');
  await checkPretrainedFile('none', 'resnet18');
  await assert.rejects(checkPretrainedFile(tiny, 'resnet18'), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') &&
    e.message.startsWith(`--pretrained must be a torchvision resnet18 state dict for --arch resnet18: ${tiny}: not a torchvision resnet18 state dict: `));
});
