// `npm run learn` takes the coordinator's augmentation flags (fastai get_transforms: do_flip, flip_vert,
// max_rotate, max_zoom, max_lighting, max_warp, p_affine, p_lighting; and ds_tfms=None as --no-augment) with the
// same defaults and checks. The defaults are fastai v1's get_transforms() signature.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommanderError } from 'commander';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main, parseLearnArgs } from '../../../scripts/learn.js';
import { isTrainerError } from '../../../src/contract/errors.js';

const BASE = ['--data', 'x', '--pretrained', 'none'];

test('no augmentation flag: fastai get_transforms() defaults', () => {
  assert.deepEqual(parseLearnArgs(BASE).transforms, {
    doFlip: true, flipVert: false, maxRotate: 10, maxZoom: 1.1, maxLighting: 0.2, maxWarp: 0.2, pAffine: 0.75, pLighting: 0.75,
  });
});

test('each of the eight get_transforms flags sets its field; --no-augment turns augmentation off', () => {
  const t = parseLearnArgs([...BASE, '--no-flip', '--max-rotate', '30', '--max-zoom', '1.5', '--max-lighting', '0.1',
    '--max-warp', '0', '--p-affine', '0.5', '--p-lighting', '1']).transforms;
  assert.deepEqual(t, { doFlip: false, flipVert: false, maxRotate: 30, maxZoom: 1.5, maxLighting: 0.1, maxWarp: 0, pAffine: 0.5, pLighting: 1 });
  assert.equal(parseLearnArgs([...BASE, '--flip-vert']).transforms?.flipVert, true);
  assert.equal(parseLearnArgs([...BASE, '--no-augment']).transforms, null);
  assert.equal(parseLearnArgs([...BASE, '--no-augment', '--max-rotate', '30']).transforms, null, 'as in a run: --no-augment wins');
});

test('bad values are refused with the field, its flag and the rule (the coordinator\'s checks)', () => {
  const cases: Array<[string[], RegExp]> = [
    [['--max-rotate', '200'], /maxRotate \(--max-rotate\) must be .*\[0, 180\].*got 200/],
    [['--max-zoom', '0.5'], /maxZoom \(--max-zoom\) must be .*got 0\.5$/],
    [['--max-lighting', '1'], /maxLighting \(--max-lighting\) must be .*got 1/],
    [['--max-warp', 'lots'], /maxWarp \(--max-warp\) must be .*got "lots"/],
    [['--p-affine', '-0.1'], /pAffine \(--p-affine\) must be .*got -0\.1$/],
    [['--p-lighting', '2'], /pLighting \(--p-lighting\) must be .*got 2/],
  ];
  for (const [flags, re] of cases) {
    assert.throws(() => parseLearnArgs([...BASE, ...flags]), (e) => isTrainerError(e, 'ERR_BAD_CONFIG') && re.test(e.message), flags.join(' '));
  }
  assert.throws(() => parseLearnArgs([...BASE, '--max-rotat', '3']), (e) => e instanceof CommanderError && e.exitCode !== 0);
});

test('--valid-pct as the coordinator\'s: default 0.2, a fraction in (0, 1), refused otherwise naming the flag', () => {
  // The data check tells a user whose classes lack validation images to "raise --valid-pct": learn must have it.
  assert.equal(parseLearnArgs(BASE).validPct, 0.2);
  assert.equal(parseLearnArgs([...BASE, '--valid-pct', '0.35']).validPct, 0.35);
  // 0 too: learn validates after every epoch, and 0 used to train a whole epoch before failing on the empty split.
  for (const bad of ['0', '1', '-0.1', 'lots', '']) {
    assert.throws(() => parseLearnArgs([...BASE, '--valid-pct', bad]), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /--valid-pct must be a number in \(0, 1\)/.test(e.message), bad);
  }
});

test('--seed as the coordinator\'s: an integer in [0, 2^32 − 1], refused before anything loads', () => {
  assert.equal(parseLearnArgs([...BASE, '--seed', '4294967295']).seed, 4294967295);
  for (const bad of ['-1', '4294967296', '5000000000', '1.5', 'x']) {
    assert.throws(() => parseLearnArgs([...BASE, '--seed', bad]), (e) => isTrainerError(e, 'ERR_BAD_CONFIG') && /^--seed must be an integer in \[0, 4294967295\]/.test(e.message), bad);
  }
});

test('--pretrained <file> that is not there is refused when the flags are parsed, before the backend loads', () => {
  // Seen (tryout2): `npm run learn -- --pretrained /nonexist.safetensors` started the backend (its line printed) and
  // only then said 'no such file'; the README says every flag is checked before anything loads.
  const missing = join(tmpdir(), 'no-such-weights-tryout2.safetensors');
  assert.throws(() => parseLearnArgs([...BASE, '--pretrained', missing]), (e) => isTrainerError(e, 'ERR_BAD_FLAG') &&
    e.message === `--pretrained must be imagenet, none or an existing safetensors file, got ${JSON.stringify(missing)} (no such file)`);
  assert.equal(parseLearnArgs([...BASE, '--pretrained', 'none']).pretrained, 'none');
});

test('--arch as the coordinator\'s: resnet10 too, checked before anything loads naming the flag; resnet10 has no ImageNet weights', () => {
  // New-user tryout: `npm run learn -- --arch resnet10` (the coordinator's fast-test arch) was refused with "arch must
  // be one of resnet18|resnet34|resnet50", naming no flag, after the run had started.
  for (const arch of ['resnet10', 'resnet18', 'resnet34', 'resnet50']) assert.equal(parseLearnArgs([...BASE, '--arch', arch]).arch, arch);
  for (const bad of ['resnet99', 'ResNet34', '']) {
    assert.throws(() => parseLearnArgs([...BASE, '--arch', bad]), (e) => isTrainerError(e, 'ERR_BAD_CONFIG') && e.message === `arch (--arch) must be one of resnet10|resnet18|resnet34|resnet50, got ${JSON.stringify(bad)}`, bad);
  }
  assert.throws(() => parseLearnArgs(['--data', 'x', '--arch', 'resnet10']), (e) => isTrainerError(e, 'ERR_BAD_CONFIG') && /^pretrained \(--pretrained\) must be none or a safetensors file with arch resnet10/.test(e.message));
});

test('every value is checked and converted once, before anything loads: the defaults are the tutorial\'s numbers', () => {
  const o = parseLearnArgs(BASE);
  // fastai's pets tutorial: size 224, bs 64, fit_one_cycle(4, slice(3e-3)) (learn's documented defaults).
  assert.deepEqual({ size: o.size, bs: o.bs, epochs: o.epochs, seed: o.seed, backend: o.backend, lrFind: o.lrFind, maxMicroBatch: o.maxMicroBatch, dataThreads: o.dataThreads },
    { size: 224, bs: 64, epochs: 4, seed: 42, backend: 'auto', lrFind: false, maxMicroBatch: undefined, dataThreads: undefined });
  const given = parseLearnArgs([...BASE, '--size', '128', '--bs', '16', '--epochs', '2', '--lr', '1e-3', '--backend', 'cpu', '--lr-find',
    '--max-micro-batch', '8', '--data-threads', '3']);
  assert.deepEqual({ size: given.size, bs: given.bs, epochs: given.epochs, backend: given.backend, lrFind: given.lrFind, maxMicroBatch: given.maxMicroBatch, dataThreads: given.dataThreads },
    { size: 128, bs: 16, epochs: 2, backend: 'cpu', lrFind: true, maxMicroBatch: 8, dataThreads: 3 });
  // A bad value of a flag learn alone has was found only once the backend and the data had loaded.
  const cases: Array<[string[], RegExp]> = [
    [['--epochs', '0'], /^--epochs must be an integer ≥ 1, got 0$/],
    [['--lr', 'fast'], /^--lr must be a number or slice\(start,end\) or slice\(end\)/],
    [['--backend', 'gpu'], /^--backend must be one of /],
    [['--max-micro-batch', '1'], /^--max-micro-batch must be an integer ≥ 2, got 1$/],
    [['--data-threads', '0'], /^--data-threads must be an integer ≥ 1, got 0$/],
  ];
  for (const [flags, re] of cases) {
    assert.throws(() => parseLearnArgs([...BASE, ...flags]), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && re.test(e.message), flags.join(' '));
  }
});

test('a --data folder that is not there: `learn: ERR_BAD_DATA: …`, exit 2 as the coordinator, and --dir is not created', async () => {
  const root = mkdtempSync(join(tmpdir(), 'learn-data-'));
  const lines: string[] = [];
  const original = console.error;
  console.error = (line: string) => { lines.push(line); };
  try {
    assert.equal(await main(['--data', join(root, 'nope'), '--dir', join(root, 'out'), '--pretrained', 'none']), 2);
    assert.deepEqual(lines, [`learn: ERR_BAD_DATA: --data must be a folder of images or a folder holding images/, got ${JSON.stringify(join(root, 'nope'))}: no such folder`]);
    assert.deepEqual(readdirSync(root), [], 'nothing created');
  } finally {
    console.error = original;
    rmSync(root, { recursive: true, force: true });
  }
});

test('a bad PETS_* setting: `learn: ERR_BAD_CONFIG: …`, exit 2 as the coordinator, before anything loads; blank means unset', async () => {
  // PETS_NATIVE_THREADS=abc was 'ERR_BACKEND: --backend native requested but unavailable' (exit 1) with --backend
  // native, and unsaid with another backend; PETS_RING_ADD=JS ran as unset.
  const root = mkdtempSync(join(tmpdir(), 'learn-env-'));
  const lines: string[] = [];
  const original = console.error;
  const saved = { threads: process.env.PETS_NATIVE_THREADS, ring: process.env.PETS_RING_ADD };
  console.error = (line: string) => { lines.push(line); };
  try {
    const args = ['--data', join(root, 'nope'), '--dir', join(root, 'out'), '--pretrained', 'none', '--backend', 'wasm'];
    process.env.PETS_NATIVE_THREADS = 'abc';
    assert.equal(await main(args), 2);
    process.env.PETS_NATIVE_THREADS = ' ';
    process.env.PETS_RING_ADD = 'JS';
    assert.equal(await main(args), 2);
    assert.deepEqual(lines, ['learn: ERR_BAD_CONFIG: PETS_NATIVE_THREADS must be an integer ≥ 1 (oneDNN threads per process; unset: 1), got "abc"',
      'learn: ERR_BAD_CONFIG: PETS_RING_ADD must be js (the ring\'s sums in JavaScript; unset: native where built) or unset, got "JS"']);
    assert.deepEqual(readdirSync(root), [], 'nothing created');
  } finally {
    console.error = original;
    for (const [name, value] of [['PETS_NATIVE_THREADS', saved.threads], ['PETS_RING_ADD', saved.ring]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    rmSync(root, { recursive: true, force: true });
  }
});
