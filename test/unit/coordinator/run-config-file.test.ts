import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_RUN_CONFIG, resolveRunConfig, type RunConfigInput } from '../../../src/contract/config.js';
import { isTrainerError } from '../../../src/contract/errors.js';
import { DEFAULT_RUNTIME } from '../../../src/coordinator/options.js';
import { readRunConfigFile, writeRunConfigFile } from '../../../src/coordinator/run-config-file.js';
import { reportInput } from '../../../src/coordinator/stage-report.js';

test('config.json: written then read back, without the runtime\'s resume; missing, cut short and odd files say so', () => {
  const dir = mkdtempSync(join(tmpdir(), 'runcfg-'));
  try {
    assert.equal(readRunConfigFile(dir).state, 'missing');
    writeRunConfigFile(dir, { ...DEFAULT_RUN_CONFIG, runDir: dir }, { ...DEFAULT_RUNTIME, resume: dir });
    const read = readRunConfigFile(dir);
    assert.equal(read.state, 'read');
    if (read.state !== 'read') return;
    assert.equal(read.config?.runDir, dir);
    assert.equal(read.runtime?.bucketMb, DEFAULT_RUNTIME.bucketMb);
    assert.equal('resume' in (read.runtime ?? {}), false, 'a resumed run\'s file does not mark the next start as a resume');
    // Where the stages came from (default plan or config file), for a --resume's stage shorthands.
    writeRunConfigFile(dir, { ...DEFAULT_RUN_CONFIG, runDir: dir }, DEFAULT_RUNTIME, null, 'config');
    assert.equal((JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { stagesFrom?: string }).stagesFrom, 'config');
    writeFileSync(join(dir, 'config.json'), '{"config": {"arch": "resn');
    const cut = readRunConfigFile(dir);
    assert.equal(cut.state, 'unreadable');
    assert.match(cut.state === 'unreadable' ? cut.fault : '', /JSON/);
    writeFileSync(join(dir, 'config.json'), '{"config": [1], "runtime": null}');
    assert.deepEqual(readRunConfigFile(dir), { state: 'read', path: join(dir, 'config.json') });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('config.json records what lr_find runs (fastai lr_find: start_lr 1e-7, end_lr 10, num_it 100, stop_div), not fit fields; the record is accepted back as a config file stage', () => {
  // The tutorial's plan recorded its lr_find stage as {"epochs": 0, "maxLr": "0"}: fit fields that mean nothing to a
  // sweep. fastai 1.0.61's Learner.lr_find(start_lr=1e-7, end_lr=10, num_it=100, stop_div=True) is what it runs.
  const dir = mkdtempSync(join(tmpdir(), 'runcfg-'));
  try {
    writeRunConfigFile(dir, { ...DEFAULT_RUN_CONFIG, runDir: dir }, DEFAULT_RUNTIME);
    const stages = (JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { config: { stages: unknown[] } }).config.stages;
    assert.deepEqual(stages, [
      { kind: 'one_cycle', name: 'stage-1', epochs: 4, maxLr: 'slice(3e-3)', frozen: true },
      { kind: 'lr_find', name: 'lr-find', frozen: false, startLr: 1e-7, endLr: 10, numIt: 100, stopDiv: true },
      { kind: 'one_cycle', name: 'stage-2', epochs: 2, maxLr: 'slice(1e-6,1e-4)', frozen: false },
    ]);
    // A config file made from config.json's stages plans the same run.
    assert.deepEqual(resolveRunConfig({ stages } as RunConfigInput).stages, DEFAULT_RUN_CONFIG.stages);
    assert.throws(() => resolveRunConfig({ stages: [stages[0], { ...(stages[1] as object), numIt: 50 }] } as RunConfigInput),
      (e) => isTrainerError(e, 'ERR_BAD_CONFIG') && /stages\[1\]\.numIt must be 100 \(lr_find runs fastai's lr_find\(start_lr=1e-7, end_lr=10, num_it=100, stop_div=True\)/.test(e.message));
    assert.throws(() => resolveRunConfig({ stages: [stages[0], { kind: 'one_cycle', startLr: 1e-7 }] } as RunConfigInput), (e) => isTrainerError(e) && /stages\[1\]\.startLr must be a known stage field/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('config.json of a --load run records where it started (file, what it is, sha256, a fresh optimizer); the report shows it; the config read back is the run\'s', () => {
  const dir = mkdtempSync(join(tmpdir(), 'runcfg-'));
  try {
    const config = resolveRunConfig({ load: 'runs/a/models/stage-1.safetensors', arch: 'resnet10', runDir: dir });
    const record = { path: '/abs/runs/a/models/stage-1.safetensors', what: 'saved model stage-1 of /abs/runs/a', sha256: 'ab'.repeat(32) };
    writeRunConfigFile(dir, config, DEFAULT_RUNTIME, record);
    const file = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { config: RunConfigInput; startedFrom: unknown };
    assert.deepEqual(file.startedFrom, { ...record, optimizer: 'fresh (the loaded model\'s optimizer state is not loaded)' });
    assert.equal(file.config.load, join(process.cwd(), 'runs/a/models/stage-1.safetensors'));
    // What --resume and interpret read back: the run's settings, the load path included, pretrained none.
    assert.deepEqual(resolveRunConfig(file.config), config);
    const row = reportInput(dir, config, { stages: [], position: { stageIndex: 0, stepInStage: 0, globalStep: 0 } }, undefined, record).config?.startedFrom;
    assert.equal(row, `/abs/runs/a/models/stage-1.safetensors (saved model stage-1 of /abs/runs/a, sha256 ${'ab'.repeat(32)}): weights and BatchNorm statistics; optimizer state fresh`);
    writeRunConfigFile(dir, { ...DEFAULT_RUN_CONFIG, runDir: dir }, DEFAULT_RUNTIME);
    assert.equal('startedFrom' in (JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as object), false, 'none without --load');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
