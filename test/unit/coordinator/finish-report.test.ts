// The end of a run whose report cannot be written (seen: a disk that filled up after the last checkpoint). The
// training is done and its model saved; before, the run ended on "ERR_INTERNAL: report: cannot write
// …/training-curves.png: Error: ENOSPC" — an internal error for a full disk, with no word of the saved model or of
// how to write the report later — and a cut-short PNG stayed where the previous report linked it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finishRun } from '../../../src/coordinator/finish.js';
import { newHistory } from '../../../src/coordinator/history.js';
import { DEFAULT_RUN_CONFIG, type RunConfig } from '../../../src/contract/config.js';
import { TrainerError, isRetryable, isTrainerError } from '../../../src/contract/errors.js';
import { writeRunReport } from '../../../src/coordinator/report/write-report.js';
import type { Cluster } from '../../../src/coordinator/cluster.js';
import type { DataBunch } from '../../../src/training/data/databunch.js';
import { SHARED_PETS_IMAGES } from '../../integration/support/coordinator.js';

test('a report that cannot be written at the end: ERR_REPORT naming the file, the saved model and the interpret command; no partial file', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'finish report ☃ '));
  try {
    // index.html cannot be replaced: a non-empty folder holds its name (as deterministic as a full disk).
    mkdirSync(join(dir, 'index.html', 'x'), { recursive: true });
    const paths = [join(SHARED_PETS_IMAGES, 'Bengal_107.jpg'), join(SHARED_PETS_IMAGES, 'Abyssinian_12.jpg')];
    const data = { classes: ['Abyssinian', 'Bengal'], valid: [0, 1], labels: [1, 0], paths } as unknown as DataBunch;
    // One rank's validation reply: item positions then their class probabilities (float32).
    const frame = Buffer.alloc(2 * 4 + 2 * 2 * 4);
    frame.writeInt32LE(0, 0); frame.writeInt32LE(1, 4);
    [0.3, 0.7, 0.6, 0.4].forEach((p, i) => frame.writeFloatLE(p, 8 + 4 * i));
    const cluster = {
      syncBatchNorm: async () => undefined,
      request: async () => [{ rank: 0, message: { type: 'valid-done', rank: 0, count: 2, correct: 2, lossSum: 1 }, frames: [frame] }],
    } as unknown as Cluster;
    const config: RunConfig = { ...DEFAULT_RUN_CONFIG, data: '/data/pets', runDir: dir };
    const out: string[] = [];
    await assert.rejects(finishRun({ cluster, data, config, runDir: dir, history: newHistory(), stages: config.stages.map((c, index) => ({ config: c, index })) as never, metricsUrl: null, out: (l) => out.push(l), timeoutMs: 1000 }), (e) => {
      assert.ok(isTrainerError(e, 'ERR_REPORT'), String(e));
      assert.match(e.message, new RegExp(`^cannot write ${join(dir, 'index.html').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(E[A-Z]+\\); the training finished and its model is saved \\(.*stage-2\\.safetensors\\); make room and write the report with: npx coordinator interpret '`));
      return true;
    });
    assert.match(out.join('\n'), /final error_rate 0\.0000 \(2 validation images\)\nmodel: {3}.*stage-2\.safetensors\nreport: {2}not written/);
    assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.tmp-')), [], 'no temporary file left');
    // Any file of the report: a picture whose name is taken fails the same way, with the same code.
    rmSync(join(dir, 'index.html'), { recursive: true });
    writeFileSync(join(dir, 'x'), '');
    mkdirSync(join(dir, 'training-curves.png', 'x'), { recursive: true });
    await assert.rejects(writeRunReport(dir, { title: 't', stages: [{ name: 's', epochs: [], steps: [] }] }), (e) => isTrainerError(e, 'ERR_REPORT') && /training-curves\.png/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a final validation that read none of its images: ERR_DATA saying the model is saved and how to write the report (a resume would find nothing to train)', async () => {
  const dir = '/tmp/finished run';
  const data = { classes: ['Abyssinian', 'Bengal'], valid: [0, 1], labels: [1, 0], paths: ['a.jpg', 'b.jpg'] } as unknown as DataBunch;
  const cluster = {
    syncBatchNorm: async () => undefined,
    request: async () => [0, 1].map((rank) => ({ rank, message: { type: 'valid-done', rank, count: 0, correct: 0, lossSum: 0 }, frames: [new Uint8Array(0)] })),
  } as unknown as Cluster;
  const config: RunConfig = { ...DEFAULT_RUN_CONFIG, runDir: dir };
  await assert.rejects(finishRun({ cluster, data, config, runDir: dir, history: newHistory(), stages: config.stages.map((c, index) => ({ config: c, index })) as never, metricsUrl: null, out: () => undefined, timeoutMs: 1000 }),
    { code: 'ERR_DATA', message: 'validation read none of its images: every one failed to decode (each was readable when the run started: was the data folder moved, deleted or unmounted? '
      + "the log lines above name the files); the training finished and its model is saved (/tmp/finished run/models/stage-2.safetensors); restore the data and write the report with: npx coordinator interpret '/tmp/finished run'" });
});

test('a worker lost during the final validation (the interpretation\'s predictions) is recovered and the validation run again, as any validation', async () => {
  // Before, the ending ran it unguarded: a worker killed there ended a finished run with ERR_WORKER_LOST.
  const dir = '/tmp/finished run';
  const data = { classes: ['Abyssinian', 'Bengal'], valid: [0, 1], labels: [1, 0], paths: ['a.jpg', 'b.jpg'] } as unknown as DataBunch;
  let requests = 0;
  const cluster = {
    syncBatchNorm: async () => undefined,
    request: async () => {
      if (requests++ === 0) throw new TrainerError('ERR_WORKER_LOST', 'validation from rank 1: aborted (rank 1 lost: process 7\'s control pipe closed)');
      return [0, 1].map((rank) => ({ rank, message: { type: 'valid-done', rank, count: 0, correct: 0, lossSum: 0 }, frames: [new Uint8Array(0)] }));
    },
  } as unknown as Cluster;
  const recovered: string[] = [];
  const guard = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (!isRetryable(err)) throw err;
        recovered.push(`${what}: ${err.message}`);
      }
    }
  };
  const config: RunConfig = { ...DEFAULT_RUN_CONFIG, runDir: dir };
  // The redo reads none of its images here (no files): its own ERR_DATA shows that it ran.
  await assert.rejects(finishRun({ cluster, data, config, runDir: dir, history: newHistory(), stages: config.stages.map((c, index) => ({ config: c, index })) as never, metricsUrl: null, out: () => undefined, timeoutMs: 1000, guard }),
    (e) => isTrainerError(e, 'ERR_DATA'));
  assert.deepEqual(recovered, ['final validation: validation from rank 1: aborted (rank 1 lost: process 7\'s control pipe closed)']);
  assert.equal(requests, 2);
});
