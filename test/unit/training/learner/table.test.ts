import { test } from 'node:test';
import assert from 'node:assert/strict';
import cliProgress from 'cli-progress';
import { EpochProgress, fixed6, formatDuration, formatEpochHeader, formatEpochRow, progressBarOptions, writeProgressLine } from '../../../../src/training/learner/table.js';
import { DEFAULT_LEARNER } from '../../../../src/training/learner/learner.js';

test('epoch table: fastai columns, 6 decimals, mm:ss time, aligned', () => {
  // Expected layout from fastai 1.0.61's Recorder: names epoch/train_loss/valid_loss/error_rate/time, values %.6f.
  const header = formatEpochHeader();
  assert.equal(header, 'epoch       train_loss  valid_loss  error_rate  time');
  const row = formatEpochRow({ epoch: 0, trainLoss: 1.0432109, validLoss: 0.3214567, errorRate: 0.1021650, seconds: 83.4 });
  assert.equal(row, '0           1.043211    0.321457    0.102165    01:23');
  assert.equal(row.indexOf('0.321457'), header.indexOf('valid_loss'));
  assert.match(formatEpochRow({ epoch: 3, trainLoss: Number.NaN, validLoss: 1, errorRate: 0, seconds: 0 }), /^3 +nan +1\.000000 +0\.000000 +00:00$/);
});

test('epoch table: a value as wide as its column or wider keeps a gap; infinities print as Python prints them', () => {
  // Seen with max_lr 1e3 (the loss diverging): '0           43982.1220809.221071317545774e+360.666667    00:02', three
  // cells run together. fastai prints such values whole, each still its own column.
  const row = formatEpochRow({ epoch: 0, trainLoss: 43982.122080, validLoss: 9.221071317545774e+36, errorRate: 0.6666667, seconds: 2 });
  assert.deepEqual(row.split(/ +/), ['0', '43982.122080', '9221071317545773620745506218032758784.000000', '0.666667', '00:02']);
  assert.match(row, /43982\.122080 9221/);
  assert.deepEqual(formatEpochRow({ epoch: 1, trainLoss: Infinity, validLoss: -Infinity, errorRate: 1, seconds: 0 }).split(/ +/), ['1', 'inf', '-inf', '1.000000', '00:00']);
  // Values that fit stay aligned with the header, as before.
  assert.equal(formatEpochRow({ epoch: 0, trainLoss: 1234.5, validLoss: 1, errorRate: 0, seconds: 0 }).indexOf('1.000000'), formatEpochHeader().indexOf('valid_loss'));
});

test('values of 1e21 and more print every digit, as Python\'s f"{v:.6f}" (not JavaScript\'s exponent form)', () => {
  // Seen (tryout2, --lr 1e3): '143600926834261770240.000000 2.1766010311841714e+28' in one row. Right values: Python 3.
  assert.equal(fixed6(2.1766010311841714e+28), '21766010311841713526627368960.000000');
  assert.equal(fixed6(-1e21), '-1000000000000000000000.000000');
  assert.equal(fixed6(1.4360092683426177e20), '143600926834261770240.000000');
  assert.equal(fixed6(0.5), '0.500000');
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

test('progress goes to stderr by default (tqdm\'s and Lightning\'s stream), never stdout, so stdout holds only results', () => {
  // tqdm writes to sys.stderr by default and Lightning's progress bars use it too: `python train.py > out.txt` keeps
  // the results and loses no progress into them. Captured here by replacing both streams' write for the duration.
  const written: Record<'stdout' | 'stderr', string> = { stdout: '', stderr: '' };
  const saved = { stdout: process.stdout.write, stderr: process.stderr.write };
  for (const k of ['stdout', 'stderr'] as const) {
    process[k].write = ((chunk: string | Uint8Array) => { written[k] += String(chunk); return true; }) as typeof process.stdout.write;
  }
  try {
    const p = new EpochProgress(3, 'epoch 0', 'lines');
    for (let i = 0; i < 3; i++) p.tick(1.5);
    p.stop();
    writeProgressLine('lr_find: 1/100 batches, smoothed loss 4.0000');
  } finally {
    process.stdout.write = saved.stdout;
    process.stderr.write = saved.stderr;
  }
  assert.equal(written.stdout, '');
  assert.equal(written.stderr, 'epoch 0: 1/3 batches, smoothed loss 1.5000\nepoch 0: 2/3 batches, smoothed loss 1.5000\nepoch 0: 3/3 batches, smoothed loss 1.5000\nlr_find: 1/100 batches, smoothed loss 4.0000\n');
  assert.equal(DEFAULT_LEARNER.progressLog, writeProgressLine, 'the one-process Learner\'s progress too');
});

test('the terminal bar shows fastprogress\'s elapsed<remaining after the count, mm:ss, and --:-- before a rate is known', () => {
  // Seen (tryout): the bar showed `3/14 batches, loss 3.6120` and no time; fastai's (fastprogress) shows
  // `[3/14 00:10<00:37]`, what a user of a many-minute CPU epoch looks for. Rendered by cli-progress's own formatter
  // with the options the bar is built with, at a given elapsed time and eta (seconds).
  const bar = new cliProgress.SingleBar(progressBarOptions('epoch 0'), cliProgress.Presets.shades_classic);
  const options = (bar as unknown as { options: cliProgress.Options }).options;
  const render = (cliProgress as unknown as { Format: { Formatter: (o: unknown, p: unknown, payload: unknown) => string } }).Format.Formatter;
  const line = (value: number, elapsedMs: number, eta: number | string, loss: string): string =>
    render(options, { progress: value / 14, startTime: 1, stopTime: 1 + elapsedMs, total: 14, value, eta, maxWidth: 200 }, { loss });
  assert.match(line(3, 10_000, 37, '3.6120'), /^epoch 0 \[[█░]+\] 3\/14 batches 00:10<00:37, loss 3\.6120$/);
  assert.match(line(0, 0, 'NULL', '-'), /^epoch 0 \[░+\] 0\/14 batches 00:00<--:--, loss -$/);
  assert.match(line(1, 65_000, 'INF', '4.0000'), / 1\/14 batches 01:05<--:--, loss 4\.0000$/);
  assert.match(line(13, 3_725_000, 290, '2.0000'), / 13\/14 batches 1:02:05<04:50, loss 2\.0000$/);
});
