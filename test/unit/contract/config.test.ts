import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_RUN_CONFIG, readConfigFile, resolveRunConfig } from '../../../src/contract/config.js';
import { isTrainerError } from '../../../src/contract/errors.js';
import { lrScaleFactor, planScaleOut } from '../../../src/coordinator/scale-out.js';

const badConfig = (re: RegExp) => (err: unknown) => isTrainerError(err, 'ERR_BAD_CONFIG') && re.test(err.message);

test('defaults are the tutorial plan', () => {
  const cfg = resolveRunConfig();
  assert.equal(cfg.arch, 'resnet34');
  assert.equal(cfg.size, 224);
  assert.equal(cfg.bs, 64);
  assert.equal(cfg.validPct, 0.2);
  assert.deepEqual(cfg.stages.map((s) => [s.kind, s.name, s.epochs, s.maxLr, s.frozen]), [
    ['one_cycle', 'stage-1', 4, 'slice(3e-3)', true],
    ['lr_find', 'lr-find', 0, '0', false],
    ['one_cycle', 'stage-2', 2, 'slice(1e-6,1e-4)', false],
  ]);
  assert.ok(Object.isFrozen(DEFAULT_RUN_CONFIG));
});

test('flags override files, and strings from flags are parsed', () => {
  const cfg = resolveRunConfig({ size: 128, workers: 3 }, { size: '64', expect: undefined });
  assert.equal(cfg.size, 64);
  assert.equal(cfg.workers, 3);
  assert.equal(cfg.expect, 3);
});

test('bad values name the field, the rule and the value', () => {
  assert.throws(() => resolveRunConfig({ workers: -1 }), badConfig(/^workers \(--workers\) must be an integer in \[0, 1024\], got -1$/));
  assert.throws(() => resolveRunConfig({ size: '12x' }), badConfig(/^size \(--size\) must be an integer in \[16, 1024\], got "12x"$/));
  // A flag's number is shown as a number (it said got "8"); text that is no number stays quoted.
  assert.throws(() => resolveRunConfig({ size: '8' }), badConfig(/^size \(--size\) must be an integer in \[16, 1024\], got 8$/));
  assert.throws(() => resolveRunConfig({ size: '' }), badConfig(/^size \(--size\) must be an integer in \[16, 1024\], got ""$/));
  assert.throws(() => resolveRunConfig({ arch: 'vgg16' }), badConfig(/^arch \(--arch\) must be one of resnet10\|resnet18\|resnet34\|resnet50, got "vgg16"$/));
  assert.throws(() => resolveRunConfig({ validPct: 1 }), badConfig(/^validPct \(--valid-pct\) must be a number in \(0, 1\), got 1$/));
  assert.throws(() => resolveRunConfig({ labelRe: '([a-z]+' }), badConfig(/^labelRe \(--label-re\) must be a valid regular expression/));
  assert.throws(() => resolveRunConfig({ labelRe: '[a-z]+' }), badConfig(/capture group/));
  assert.throws(() => resolveRunConfig({ colour: 'red' } as never), badConfig(/^colour must be a known setting/));
  for (const key of ['toString', 'constructor', 'hasOwnProperty']) {
    assert.throws(() => resolveRunConfig({ [key]: 1 } as never), badConfig(new RegExp(`^${key} must be a known setting`)), key);
  }
  // The message names the flag beside the field: the same check answers `--valid-pct 1` and a file's validPct: 1.
  assert.throws(() => resolveRunConfig({ globalBs: '0' }), badConfig(/^globalBs \(--global-bs\) must be an integer ≥ 1, got 0$/));
  assert.throws(() => resolveRunConfig({ augment: 'no' }), badConfig(/^augment \(--no-augment\) must be true or false, got "no"$/));
  assert.throws(() => resolveRunConfig({ stages: [] }), badConfig(/^stages must be a non-empty list/));
  assert.throws(() => resolveRunConfig({ stages: [{ kind: 'one_cycle', epochs: 0 }] }), badConfig(/^stages\[0\]\.epochs must be an integer in \[1, 10000\], got 0$/));
  assert.throws(() => resolveRunConfig({ stages: [{ maxLr: 'fast' }] }), badConfig(/^stages\[0\]\.maxLr must be a number, "slice\(b\)" or "slice\(a,b\)", got "fast"$/));
  assert.throws(() => resolveRunConfig({ stages: [{ epochs: 1, speed: 2 }] }), badConfig(/^stages\[0\]\.speed must be a known stage field/));
  assert.throws(() => resolveRunConfig({ stages: [{ kind: 'lr_find' }] }), badConfig(/at least one training stage/));
  assert.throws(() => resolveRunConfig({ stages: [{ name: 'a', epochs: 1 }, { name: 'a', epochs: 1 }] }), badConfig(/^stages must be a list with unique stage names/));
});

test('stages accept numbers and slices for maxLr', () => {
  const cfg = resolveRunConfig({ stages: [{ epochs: 1, maxLr: 0.01 }, { epochs: 2, maxLr: 'slice(1e-6, 1e-4)', frozen: false }] });
  assert.deepEqual(cfg.stages.map((s) => s.maxLr), ['0.01', 'slice(1e-6, 1e-4)']);
  assert.equal(cfg.stages[0]!.name, 'stage-1');
  assert.equal(cfg.stages[1]!.name, 'stage-2');
});

test('config files: YAML and JSON, and clear errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  writeFileSync(join(dir, 'a.yaml'), 'arch: resnet18\nsize: 64\nstages:\n  - {epochs: 1, maxLr: 1e-3, frozen: true}\n');
  writeFileSync(join(dir, 'b.json'), '{"bs": 8}');
  writeFileSync(join(dir, 'c.yaml'), '- 1\n- 2\n');
  writeFileSync(join(dir, 'd.json'), '{"bs": ');
  const cfg = resolveRunConfig(readConfigFile(join(dir, 'a.yaml')), readConfigFile(join(dir, 'b.json')));
  assert.equal(cfg.arch, 'resnet18');
  assert.equal(cfg.bs, 8);
  assert.equal(cfg.stages.length, 1);
  assert.throws(() => readConfigFile(join(dir, 'c.yaml')), badConfig(/must hold a mapping of settings \(e\.g\. "bs: 32"\), got a list/));
  // Seen by the breaker: an empty file, one of comments only, or `~` said 'got object' (typeof null).
  for (const [name, text] of [['empty.yaml', ''], ['comments.yaml', '# bs: 32\n'], ['tilde.yaml', '~\n']]) {
    writeFileSync(join(dir, name), text);
    assert.throws(() => readConfigFile(join(dir, name)), badConfig(/: must hold a mapping of settings \(e\.g\. "bs: 32"\), got an empty file \(or only comments, or null\); write settings in it, or drop --config$/));
  }
  writeFileSync(join(dir, 'scalar.yaml'), 'resnet34\n');
  assert.throws(() => readConfigFile(join(dir, 'scalar.yaml')), badConfig(/got a string \("resnet34"\)$/));
  assert.throws(() => readConfigFile(join(dir, 'd.json')), badConfig(/not valid JSON/));
  assert.throws(() => readConfigFile(join(dir, 'missing.yaml')), badConfig(/cannot read the file/));
});

test('scale-out: global batch, accumulation from --global-bs, lr rules (Goyal et al. 2017)', () => {
  assert.deepEqual(planScaleOut({ bs: 64, worldSize: 4, accum: 1, globalBs: null, lrScale: 'linear', baseBs: 64 }),
    { accum: 1, globalBs: 256, lrFactor: 4 });
  assert.deepEqual(planScaleOut({ bs: 16, worldSize: 2, accum: 1, globalBs: 128, lrScale: 'sqrt', baseBs: 32 }),
    { accum: 4, globalBs: 128, lrFactor: 2 });
  assert.equal(lrScaleFactor('none', 512, 64), 1);
  assert.throws(() => planScaleOut({ bs: 16, worldSize: 3, accum: 1, globalBs: 100, lrScale: 'none', baseBs: 64 }),
    badConfig(/--global-bs must be a positive multiple of bs × workers = 16 × 3 = 48, got 100/));
});
