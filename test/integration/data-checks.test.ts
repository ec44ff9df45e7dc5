/**
 * Data that cannot be trained stops the real `coordinator` with exit code 2 before any worker process starts:
 * every node process started under the test records its argv through a preload (NODE_OPTIONS --import), and no
 * worker entry (`worker/run`) may appear. A control run shows the preload does record a worker process.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { CoordinatorProcess, PROJECT_ROOT } from './support/coordinator.js';
import { CheckpointStore, checkpointMeta } from '../../src/coordinator/checkpoint-store.js';
import { resolveRunConfig } from '../../src/contract/config.js';
import { newHistory } from '../../src/coordinator/history.js';
import { planScaleOut } from '../../src/coordinator/scale-out.js';
import { planStages } from '../../src/contract/plan/plan.js';

let tmp: string;
let preload: string;

before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'data-checks-'));
  preload = join(tmp, 'record-argv.mjs');
  writeFileSync(preload, "import { appendFileSync } from 'node:fs';\nimport { isMainThread } from 'node:worker_threads';\n" +
    'if (isMainThread && process.env.PETS_ARGV_LOG) appendFileSync(process.env.PETS_ARGV_LOG, JSON.stringify(process.argv) + "\\n");\n');
});
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Env that makes every node process append its argv to `log`. */
function recordingEnv(log: string): NodeJS.ProcessEnv {
  return { ...process.env, PETS_ARGV_LOG: log, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(preload).href}`.trim() };
}

/** The argv of every node process recorded in `log`. */
function recorded(log: string): string[][] {
  return existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as string[]) : [];
}

const isWorker = (argv: string[]): boolean => argv.some((a) => /worker[/\\]run\.(ts|js)$/.test(a));

async function jpegs(dir: string, names: string[]): Promise<void> {
  mkdirSync(dir, { recursive: true });
  for (const [i, n] of names.entries()) {
    await sharp({ create: { width: 40, height: 32, channels: 3, background: { r: (i * 37) % 256, g: 90, b: 200 } } }).jpeg().toFile(join(dir, n));
  }
}

async function runCoordinator(name: string, data: string, extra: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string; argvs: string[][]; runDir: string }> {
  const log = join(tmp, `${name}.argv`);
  const runDir = join(tmp, `run-${name}`);
  const proc = new CoordinatorProcess(['--data', data, '--workers', '1', '--arch', 'resnet10', '--size', '32', '--bs', '2', '--pretrained', 'none',
    '--bind', 'tcp://127.0.0.1:0', '--metrics-port', '-1', '--run-dir', runDir, '--plain', ...extra], recordingEnv(log));
  try {
    const r = await proc.exited;
    return { code: r.code, stdout: r.stdout, stderr: r.stderr, argvs: recorded(log), runDir };
  } finally {
    await proc.close();
  }
}

test('control: the preload records a worker process', { timeout: 60_000 }, () => {
  const log = join(tmp, 'control.argv');
  execFileSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src/worker/run.ts'), '--help'], { cwd: PROJECT_ROOT, env: recordingEnv(log), stdio: 'ignore' });
  assert.ok(recorded(log).some(isWorker), JSON.stringify(recorded(log)));
});

test('one class: exit 2, ERR_BAD_DATA naming what was found, the data step accounted for, no worker started', { timeout: 120_000 }, async () => {
  const data = join(tmp, 'one-class');
  await jpegs(data, ['cat_1.jpg', 'cat_2.jpg', 'cat_3.jpg', 'cat_4.jpg', 'cat_5.jpg', 'dog-6.jpg']);
  const r = await runCoordinator('one-class', data);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /coordinator: ERR_BAD_DATA: .* must give ≥ 2 classes and ≥ 1 train and ≥ 1 valid image \(after skipped files\), got 1 class\(es\), 4 train \/ 1 valid image\(s\)/);
  assert.match(r.stderr, /\[coordinator\] data: skipped 1 file\(s\), unlabelled: dog-6\.jpg — the label regex/);
  assert.ok(r.stdout.includes(`data: 1 classes, 4 train / 1 valid images from ${data}; 6 files found: 4 train, 1 valid, 1 skipped (1 unlabelled; see above)`), r.stdout);
  const json = JSON.parse(readFileSync(join(r.runDir, 'data.json'), 'utf8')) as { filesFound: number; skippedByReason: Record<string, number> };
  assert.equal(json.filesFound, 6);
  assert.equal(json.skippedByReason.unlabelled, 1);
  assert.ok(r.argvs.length >= 1, 'the coordinator itself was recorded');
  assert.equal(r.argvs.filter(isWorker).length, 0, `no worker process: ${JSON.stringify(r.argvs)}`);
  assert.doesNotMatch(r.stdout + r.stderr, /worker joined|run finished/);
});

test('a layout whose valid/ folder is missing, and a training set smaller than one batch: exit 2 before any worker', { timeout: 120_000 }, async () => {
  const data = join(tmp, 'folders');
  await jpegs(join(data, 'train', 'cat'), ['1.jpg', '2.jpg', '3.jpg']);
  await jpegs(join(data, 'train', 'dog'), ['1.jpg', '2.jpg', '3.jpg']);
  await jpegs(join(data, 'test', 'dog'), ['1.jpg']);
  const bad = await runCoordinator('folders', data, ['--label-from', 'folder', '--split', 'folder']);
  assert.equal(bad.code, 2, bad.stderr);
  assert.ok(bad.stderr.includes(`coordinator: ERR_BAD_DATA: --split folder needs train/ and valid/ under ${data}, but valid/ is missing (folders there: test, train); name them with --train-folder/--valid-folder`), bad.stderr);
  assert.equal(bad.argvs.filter(isWorker).length, 0, JSON.stringify(bad.argvs));

  const small = join(tmp, 'small');
  await jpegs(small, ['cat_1.jpg', 'cat_2.jpg', 'cat_3.jpg', 'dog_1.jpg', 'dog_2.jpg']);
  const r = await runCoordinator('small', small, ['--bs', '8']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /ERR_BAD_CONFIG: the training set \(4 items\) must hold at least one global batch of 8/);
  assert.doesNotMatch(r.stdout + r.stderr, /coordinator listening|waiting for \d+ worker/, 'a run that cannot start does not announce itself');
  assert.equal(r.argvs.filter(isWorker).length, 0, JSON.stringify(r.argvs));
});

test('any folder name is a run directory: spaces and accents reach the waiting state, /metrics labels the run with a safe name', { timeout: 180_000 }, async () => {
  // Before, a --run-dir whose last name was outside [A-Za-z0-9_.-] ("my run", "ünïcode", ".exp") stopped the run
  // after its data step with "ERR_BAD_FLAG: --run must be 1-64 characters…" (the metrics label rule, naming a flag
  // that does not exist).
  const data = join(tmp, 'data weird ☃');
  await jpegs(join(data, 'images'), ['cat_1.jpg', 'cat_2.jpg', 'cat_3.jpg', 'cat_4.jpg', 'dog_5.jpg', 'dog_6.jpg', 'dog_7.jpg', 'dog_8.jpg']);
  const runDir = join(tmp, 'rüns ☃', 'my run');
  const proc = new CoordinatorProcess(['--data', data, '--workers', '0', '--expect', '1', '--arch', 'resnet10', '--size', '32', '--bs', '2',
    '--pretrained', 'none', '--bind', 'tcp://127.0.0.1:0', '--metrics-port', '0', '--run-dir', runDir, '--plain']);
  try {
    const [, url] = await proc.waitForLine(/metrics: (http:\/\/\S+)/, 150_000);
    await proc.waitForLine(/waiting for 1 worker\(s\)/, 150_000);
    // One worker reduces nothing: the plan said "all-reduce: ring …, 25 MiB buckets" (found by a new user).
    await proc.waitForLine(/^plan: .*global batch 2; all-reduce: none \(1 worker\); stages: /m, 150_000);
    const text = await (await fetch(url!)).text();
    assert.match(text, /^pets_restarts_total\{reason="worker_lost",run="my_run"\} 0$/m);
    assert.ok(existsSync(join(runDir, 'config.json')));
  } finally {
    const r = await proc.close();
    assert.doesNotMatch(r.stderr, /ERR_BAD_FLAG/, r.stderr);
  }
});

test('a refused --resume leaves the run\'s data.json as it was (the account of the data the run trained on)', { timeout: 120_000 }, async () => {
  // Seen: an image of the run truncated between a kill and --resume; the resume was refused (its items differ from
  // the checkpoint's) but first overwrote the run's data.json with the refused data's account (1 skipped, 19 train).
  const data = join(tmp, 'resumed-data');
  await jpegs(data, ['cat_1.jpg', 'cat_2.jpg', 'cat_3.jpg', 'cat_4.jpg', 'dog_1.jpg', 'dog_2.jpg', 'dog_3.jpg', 'dog_4.jpg']);
  const runDir = join(tmp, 'run-refused-resume');
  const config = resolveRunConfig({ data, workers: 1, arch: 'resnet10', size: 32, bs: 2, pretrained: 'none', runDir });
  const scale = planScaleOut({ bs: 2, worldSize: 1, accum: 1, globalBs: null, lrScale: config.lrScale, baseBs: config.baseBs });
  const stages = planStages({ stages: config.stages, trainCount: 6, globalBs: scale.globalBs, lrFactor: scale.lrFactor });
  // A checkpoint of other items than the folder holds now (its fingerprint cannot match).
  const meta = checkpointMeta({ runId: 'r', config, classes: ['cat', 'dog'], history: newHistory(), stages, scale, worldSize: 1, generation: 1, dataFingerprint: 'f'.repeat(64) });
  new CheckpointStore(runDir, 2).write(meta, new Uint8Array([1, 2, 3]));
  const account = '{ "the run\'s own account": true }\n';
  writeFileSync(join(runDir, 'data.json'), account);
  const proc = new CoordinatorProcess(['--resume', runDir, '--bind', 'tcp://127.0.0.1:0', '--metrics-port', '-1', '--plain']);
  try {
    const r = await proc.exited;
    assert.match(r.stderr, /coordinator: ERR_BAD_DATA: --resume: the data at \S+ is not the run's/, r.stderr);
    assert.equal(r.code, 2, 'bad data, as a --data of other images is (breaker2): exit 2');
    assert.equal(readFileSync(join(runDir, 'data.json'), 'utf8'), account, 'data.json untouched');
  } finally {
    await proc.close();
  }
});
