import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkPretrainedSource } from '../../../src/coordinator/setup.js';
import { Coordinator } from '../../../src/coordinator/driver.js';
import { parseTrainArgs } from '../../../src/coordinator/options.js';
import { isTrainerError } from '../../../src/contract/errors.js';

test('--pretrained: imagenet and none pass, a missing file is refused before anything starts', () => {
  checkPretrainedSource('imagenet');
  checkPretrainedSource('none');
  checkPretrainedSource(new URL(import.meta.url).pathname);
  assert.throws(() => checkPretrainedSource('/nonexistent/resnet34.safetensors'), (e: unknown) =>
    isTrainerError(e, 'ERR_BAD_FLAG') && /--pretrained must be imagenet, none or an existing safetensors file, got "\/nonexistent\/resnet34.safetensors"/.test(e.message));
});

test('a --data folder that is not there stops the run before anything is created: no run folder, not even for a moment', async () => {
  // Seen: `coordinator --data /nonexistent` made runs/<date-time> (and runs/), failed at the data step and removed them
  // again. The check now comes first, so the folders are never made (checked before close(), which would remove them).
  const root = mkdtempSync(join(tmpdir(), 'setup-data-'));
  const runDir = join(root, 'runs', 'r1');
  const c = new Coordinator(parseTrainArgs(['--data', join(root, 'nope'), '--run-dir', runDir, '--pretrained', 'none', '--workers', '1', '--metrics-port', '-1']),
    { out: () => undefined, log: () => undefined });
  try {
    await assert.rejects(c.run(), (e) => isTrainerError(e, 'ERR_BAD_DATA')
      && e.message === `--data must be a folder of images or a folder holding images/, got ${JSON.stringify(join(root, 'nope'))}: no such folder`);
    assert.deepEqual(readdirSync(root), [], 'no runs/ and no run folder');
  } finally {
    await c.close();
    rmSync(root, { recursive: true, force: true });
  }
});

test('a --labels CSV that is not there stops the run before anything is created, naming --labels', async () => {
  // mends' note: `--label-from csv --labels <missing.csv>` was found only at the data step, after the run folder was made.
  const root = mkdtempSync(join(tmpdir(), 'setup-labels-'));
  const runDir = join(root, 'runs', 'r1');
  const data = mkdtempSync(join(tmpdir(), 'setup-labels-data-'));
  const csv = join(root, 'labels.csv');
  const c = new Coordinator(parseTrainArgs(['--data', data, '--label-from', 'csv', '--labels', csv, '--run-dir', runDir, '--pretrained', 'none', '--workers', '1', '--metrics-port', '-1']),
    { out: () => undefined, log: () => undefined });
  try {
    await assert.rejects(c.run(), (e) => isTrainerError(e, 'ERR_BAD_DATA')
      && e.message === `--labels ${csv}: must be a readable CSV of file,label rows: no such file`);
    assert.deepEqual(readdirSync(root), [], 'no runs/ and no run folder');
  } finally {
    await c.close();
    rmSync(root, { recursive: true, force: true });
    rmSync(data, { recursive: true, force: true });
  }
});
