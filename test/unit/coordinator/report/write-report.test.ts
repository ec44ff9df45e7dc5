import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileStem, resolveReportOptions, writeRunReport } from '../../../../src/coordinator/report/write-report.js';
import { formatEpochTime, mostConfusedHtml } from '../../../../src/coordinator/report/html.js';
import { ClassificationInterpretation } from '../../../../src/coordinator/interpret/interpretation.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import type { RunReportInput } from '../../../../src/coordinator/report/types.js';
import { assertPngNotBlank } from './png-checks.js';

const IMAGES = resolve(process.cwd(), '../shared/datasets/oxford-iiit-pet-sample/images');

test('formatEpochTime prints mm:ss like fastai, h:mm:ss from one hour', () => {
  assert.equal(formatEpochTime(95.4), '01:35');
  assert.equal(formatEpochTime(0), '00:00');
  assert.equal(formatEpochTime(3725), '1:02:05');
});

test('mostConfusedHtml escapes class names and says when nothing qualifies', () => {
  const html = mostConfusedHtml([{ actual: '<b>cat</b>', predicted: 'dog & co', count: 3 }], 2);
  assert.match(html, /&#60;b&#62;cat&#60;\/b&#62;/);
  assert.match(html, /dog &#38; co/);
  assert.ok(!html.includes('<b>'));
  assert.match(mostConfusedHtml([], 2), /No pair of classes confused 2 times or more/);
});

test('fileStem and option validation', () => {
  assert.equal(fileStem('Before Stage-1 (frozen)'), 'before-stage-1-frozen');
  assert.equal(fileStem('***'), 'unnamed');
  assert.throws(() => resolveReportOptions({ topLossesK: 0 }),
    (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && /topLossesK must be an integer ≥ 1, got 0/.test(e.message));
});

function smallInput(): RunReportInput {
  const files = readdirSync(IMAGES).filter((f) => /^(Bengal|beagle|pug)_/.test(f)).sort().slice(0, 6);
  const classes = ['Bengal', 'beagle', 'pug'];
  const targets = files.map((f) => classes.indexOf(f.replace(/_\d+\.jpg$/, '')));
  // Item i predicts class (i mod 3): some right, some wrong.
  const probs = Float32Array.from(targets.flatMap((_, i) => classes.map((_, j) => (j === i % 3 ? 0.8 : 0.1))));
  const steps = Array.from({ length: 6 }, (_, i) => ({ loss: 1 / (i + 1), lrs: [1e-4, 1e-3] }));
  return {
    title: 'Test <report>',
    config: { arch: 'resnet34', danger: '<script>alert(1)</script>' },
    lrFinds: [{ name: 'first', lrs: Array.from({ length: 30 }, (_, i) => 1e-6 * 1.5 ** i), smoothedLosses: Array.from({ length: 30 }, (_, i) => 3 - Math.sin(i / 10)) }],
    stages: [{ name: 'stage-1', epochs: [0, 1].map((e) => ({ epoch: e, trainLoss: 0.5, validLoss: 0.4, errorRate: 0.1, timeSeconds: 61 })), steps }],
    interpretation: new ClassificationInterpretation({ probs, targets: Int32Array.from(targets), classes, items: files.map((f) => join(IMAGES, f)) }),
  };
}

test('index.html links config.json, interpretation.json, models/ (and each model) when the run has them', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'report-files-'));
  try {
    await mkdir(join(dir, 'models'));
    await writeFile(join(dir, 'config.json'), '{}');
    await writeFile(join(dir, 'models', 'stage-1.safetensors'), 'x');
    await writeFile(join(dir, 'models', 'stage-1.json'), '{}');
    const manifest = await writeRunReport(dir, smallInput(), { chartScale: 1, topLossesK: 4 });
    const html = await readFile(manifest.indexHtml, 'utf8');
    const files = html.slice(html.indexOf('<h2>Files</h2>'));
    const hrefs = [...files.matchAll(/href="([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(hrefs, ['config.json', 'interpretation.json', 'models/', 'models/stage-1.json', 'models/stage-1.safetensors']);
    for (const h of hrefs) assert.ok(existsSync(join(dir, h!)), h);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('writeRunReport writes every PNG with its JSON, and index.html whose links all resolve', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'report-test-'));
  try {
    const manifest = await writeRunReport(dir, smallInput(), { chartScale: 1, topLossesK: 4 });
    assert.equal(manifest.textRenders, true);
    const stems = ['lr-find-first', 'training-curves', 'confusion-matrix', 'top-losses'];
    assert.deepEqual(manifest.pictures.map((p) => p.png), stems.map((s) => `${s}.png`));
    for (const stem of stems) {
      await assertPngNotBlank(join(dir, `${stem}.png`));
      JSON.parse(await readFile(join(dir, `${stem}.json`), 'utf8'));
    }
    const cmJson = JSON.parse(await readFile(join(dir, 'confusion-matrix.json'), 'utf8'));
    assert.deepEqual(cmJson.matrix, smallInput().interpretation!.confusionMatrix());
    const html = await readFile(manifest.indexHtml, 'utf8');
    const links = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    // Per picture: <a href> + <img src> + JSON link; then the run's files: interpretation.json (written here).
    assert.equal(links.length, 4 * 3 + 1);
    assert.equal(links.at(-1), 'interpretation.json');
    for (const link of links) {
      assert.ok(!/^[a-z]+:|^\//i.test(link), `link ${link} must be relative`);
      assert.ok(existsSync(join(dir, decodeURI(link))), `link ${link} resolves`);
    }
    assert.ok(!html.includes('<script>') && html.includes('&#60;script&#62;'), 'config text is escaped');
    assert.match(html, /<title>Test &#60;report&#62;<\/title>/);
    assert.match(html, /<th>epoch<\/th><th>train_loss<\/th><th>valid_loss<\/th><th>error_rate<\/th><th>time<\/th>/);
    assert.match(html, /<td>1<\/td><td>0\.500000<\/td><td>0\.400000<\/td><td>0\.100000<\/td><td>01:01<\/td>/);
    assert.ok(!/https?:\/\//.test(html), 'no external resources');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
