import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  confusionMatrixChart, lrFindChart, lrFindSubtitle, renderChart, trainingCurvesChart, trainingCurvesData,
} from '../../../../src/coordinator/report/charts.js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { CHART_CONFIG, fontsRenderText } from '../../../../src/coordinator/report/render.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import type { StageRecord } from '../../../../src/coordinator/report/types.js';
import { assertPngNotBlank } from './png-checks.js';

test('a font is installed: librsvg draws real glyphs, not same-width boxes (else install fonts-dejavu-core)', async () => {
  assert.equal(await fontsRenderText(), true, 'fontconfig finds no font: apt-get install -y fonts-dejavu-core');
});

test('fontsRenderText is false when fontconfig has no fonts (child process with an empty font config)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'nofonts-'));
  try {
    const conf = join(dir, 'fonts.conf');
    await writeFile(conf, `<?xml version="1.0"?><fontconfig><dir>${dir}/none</dir><cachedir>${dir}/cache</cachedir></fontconfig>`);
    const code = `import { fontsRenderText } from ${JSON.stringify(pathToFileURL(join(process.cwd(), 'src/coordinator/report/render.ts')).href)};` +
      'console.log(await fontsRenderText());';
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      env: { ...process.env, FONTCONFIG_FILE: conf }, encoding: 'utf8',
    });
    assert.equal(out.trim(), 'false');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

function stage(name: string, epochs: number, stepsPerEpoch: number, groups: number): StageRecord {
  return {
    name,
    epochs: Array.from({ length: epochs }, (_, e) => ({ epoch: e, trainLoss: 1, validLoss: 0.5 / (e + 1), errorRate: 0.2 / (e + 1), timeSeconds: 60 })),
    steps: Array.from({ length: epochs * stepsPerEpoch }, (_, i) => ({ loss: 2 / (i + 1), lrs: Array.from({ length: groups }, (_, g) => 1e-4 * 10 ** g) })),
  };
}

test('trainingCurvesData lays stages end to end; valid points sit at each epoch\'s last iteration', () => {
  // Stage A: 2 epochs × 2 steps (iterations 1–4, epochs end at 2 and 4); stage B: 1 epoch × 3 steps (5–7, ends at 7).
  const data = trainingCurvesData([stage('A', 2, 2, 3), stage('B', 1, 3, 3)]);
  assert.deepEqual(data.steps.map((s) => [s.iteration, s.stage]), [[1, 'A'], [2, 'A'], [3, 'A'], [4, 'A'], [5, 'B'], [6, 'B'], [7, 'B']]);
  assert.deepEqual(data.epochs.map((e) => [e.iteration, e.stage, e.epoch]), [[2, 'A', 0], [4, 'A', 1], [7, 'B', 0]]);
  assert.deepEqual(data.stageStarts, [{ iteration: 5, stage: 'B' }]);
  const bad: StageRecord = { ...stage('C', 2, 2, 1), steps: stage('C', 1, 5, 1).steps };
  assert.throws(() => trainingCurvesData([bad]), (e: unknown) => isTrainerError(e, 'ERR_DATA') && /has 5 steps, expected a multiple of its 2 epochs/.test(e.message));
});

test('lrFindChart keeps the 85 middle points of 100 and labels the steepest-descent lr', () => {
  const lrs = Array.from({ length: 100 }, (_, i) => 1e-7 * 1e8 ** (i / 100));
  const losses = lrs.map((lr) => 3 - Math.tanh(Math.log10(lr) + 3)); // steepest at lr = 1e-3 (tanh' max at 0)
  const chart = lrFindChart({ name: 'demo', lrs, smoothedLosses: losses });
  assert.equal(chart.data.lrs.length, 85);
  assert.equal(chart.data.lrs[0], lrs[10]);
  assert.ok(Math.abs(Math.log10(chart.data.steepestLr) + 3) <= 0.08, `steepest ${chart.data.steepestLr}`); // grid step 0.08 decade
  assert.match(JSON.stringify(chart.spec), /steepest: 1\.\d\de-3|steepest: 9\.\d\de-4/);
});

test('the lr_find subtitle names no lr outside the plotted range (min loss / 10 left of it is said so)', () => {
  const lrs = Array.from({ length: 100 }, (_, i) => 1e-7 * 1e8 ** (i / 100));
  // Loss rising from the first plotted point: min loss at lrs[10] (first plotted), so min loss / 10 is left of it.
  const rising = lrFindChart({ name: 'r', lrs, smoothedLosses: lrs.map((lr, i) => 2 + (i >= 10 ? Math.log10(lr) + 7 : 5)) });
  const sub = lrFindSubtitle(rising.data);
  assert.match(sub, /min loss \/ 10: left of the plotted range$/);
  for (const m of sub.matchAll(/\d\.\d\de[-+]\d+/g)) {
    const v = Number(m[0]);
    assert.ok(v >= rising.data.lrs[0]! * 0.99 && v <= rising.data.lrs.at(-1)! * 1.01, `${m[0]} is on the plot`);
  }
  // A minimum well inside the range: both suggestions are named.
  const valley = lrFindChart({ name: 'v', lrs, smoothedLosses: lrs.map((lr) => 2 + (Math.log10(lr) + 2) ** 2) });
  assert.match(lrFindSubtitle(valley.data), /min numerical gradient: \d\.\d\de-\d+ {3}· {3}min loss \/ 10: (9\.\d\de-4|1\.\d\de-3)$/);
});

test('the three charts render to non-blank PNGs of plausible size', async () => {
  const classes = Array.from({ length: 37 }, (_, i) => `breed_name_${String(i).padStart(2, '0')}`);
  const matrix = classes.map((_, i) => classes.map((_, j) => (i === j ? 8 : (i + j) % 11 === 0 ? 1 : 0)));
  const cm = await renderChart(confusionMatrixChart(classes, matrix), 1);
  const size = await assertPngNotBlank(cm.png, { width: cm.width, height: cm.height });
  // 37 cells of 20 units plus labels, title and legend; margins are trimmed, so bounded both ways.
  assert.ok(size.width > 37 * 20 + 80 && size.width < 37 * 20 + 400, `confusion matrix width ${size.width}`);
  assert.ok(size.height > 37 * 20 + 80 && size.height < 37 * 20 + 400, `confusion matrix height ${size.height}`);

  const tc = await renderChart(trainingCurvesChart([stage('A', 2, 5, 3), stage('B', 1, 5, 3)]), 1);
  const tcSize = await assertPngNotBlank(tc.png, { width: tc.width, height: tc.height });
  assert.ok(tcSize.width > 640 && tcSize.height > 3 * 200, `training curves ${tcSize.width}×${tcSize.height}`);

  const lrs = Array.from({ length: 60 }, (_, i) => 1e-6 * 1.2 ** i);
  const lr = await renderChart(lrFindChart({ name: 'x', lrs, smoothedLosses: lrs.map((v) => 2 + Math.sin(Math.log(v))) }), 2);
  const lrSize = await assertPngNotBlank(lr.png, { width: lr.width, height: lr.height });
  assert.ok(lrSize.width > 2 * 560 && lrSize.width < 2 * 760, `lr_find width at scale 2: ${lrSize.width}`);
});

test('confusionMatrixChart rejects a matrix that is not classes × classes', () => {
  assert.throws(() => confusionMatrixChart(['a', 'b'], [[1, 0]]), (e: unknown) => isTrainerError(e, 'ERR_DATA') && /must be 2 × 2/.test(e.message));
});

test('the confusion matrix legend shows whole counts only (its ticks were 0.0, 0.5, … 2.0 for a largest count of 2)', async () => {
  // 37 classes (the Pets run that showed it): the legend is as tall as the matrix, so Vega puts more ticks on it.
  const classes = Array.from({ length: 37 }, (_, i) => `class${i}`);
  for (const max of [2, 3, 7]) {
    const matrix: number[][] = classes.map((_, i) => classes.map((__, j) => (i === j ? 1 : 0)));
    matrix[0]![1] = max; // the largest count sets the legend's range
    const vgSpec = compile({ ...confusionMatrixChart(classes, matrix).spec, config: CHART_CONFIG } as TopLevelSpec).spec;
    const view = new vega.View(vega.parse(vgSpec), { renderer: 'none' });
    const svg = await view.toSVG();
    view.finalize();
    const texts = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!);
    assert.ok(texts.includes('0'), texts.join(' | '));
    assert.deepEqual(texts.filter((t) => /^\d*\.\d+$/.test(t)), [], texts.join(' | '));
  }
});
