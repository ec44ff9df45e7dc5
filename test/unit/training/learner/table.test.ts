import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EpochProgress, formatDuration, formatEpochHeader, formatEpochRow } from '../../../../src/training/learner/table.js';

test('epoch table: fastai columns, 6 decimals, mm:ss time, aligned', () => {
  // Expected layout from fastai 1.0.61's Recorder: names epoch/train_loss/valid_loss/error_rate/time, values %.6f.
  const header = formatEpochHeader();
  assert.equal(header, 'epoch       train_loss  valid_loss  error_rate  time');
  const row = formatEpochRow({ epoch: 0, trainLoss: 1.0432109, validLoss: 0.3214567, errorRate: 0.1021650, seconds: 83.4 });
  assert.equal(row, '0           1.043211    0.321457    0.102165    01:23');
  assert.equal(row.indexOf('0.321457'), header.indexOf('valid_loss'));
  assert.match(formatEpochRow({ epoch: 3, trainLoss: Number.NaN, validLoss: 1, errorRate: 0, seconds: 0 }), /^3 +nan +1\.000000 +0\.000000 +00:00$/);
});

test('durations as fastprogress format_time', () => {
  assert.equal(formatDuration(0), '00:00');
  assert.equal(formatDuration(59.6), '01:00');
  assert.equal(formatDuration(3599), '59:59');
  assert.equal(formatDuration(3725), '1:02:05');
});

test('plain-line progress: about ten lines per epoch and always the last batch', () => {
  const lines: string[] = [];
  const p = new EpochProgress(25, 'epoch 0', 'lines', (l) => lines.push(l));
  for (let i = 0; i < 25; i++) p.tick(2.5 - i / 100);
  p.stop();
  assert.equal(lines.length, 9); // every ceil(25/10) = 3 batches → 8 lines, plus the 25th
  assert.equal(lines.at(-1), 'epoch 0: 25/25 batches, smoothed loss 2.2600');
  const quiet: string[] = [];
  const q = new EpochProgress(5, 'x', 'none', (l) => quiet.push(l));
  q.tick(1);
  assert.equal(quiet.length, 0);
});
