/**
 * RENDERING DEMO, NOT RESULTS: writes a complete run report from synthetic-but-plausible numbers (made-up losses,
 * made-up predictions over the real sample images) so the pictures and the HTML can be looked at.
 *
 * Usage: `node --import tsx scripts/demo-report.ts [outDir]` (default: a new temp dir).
 */
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ClassificationInterpretation } from '../src/coordinator/interpret/interpretation.js';
import type { LrFindRecord, StageRecord } from '../src/coordinator/report/types.js';
import { writeRunReport } from '../src/coordinator/report/write-report.js';
import { mulberry32 } from '../src/contract/plan/rng.js';

const IMAGES = resolve(process.cwd(), '../shared/datasets/oxford-iiit-pet-sample/images');

/** Deterministic PRNG so the demo draws the same pictures every time. */
const rand = mulberry32(42);

/** Synthetic lr_find: flat, a descent around 1e-3, then divergence until smooth > 4 × best (fastai's stop). */
function demoLrFind(name: string, shiftDecades: number): LrFindRecord {
  const lrs: number[] = [];
  const smoothedLosses: number[] = [];
  let mov = 0;
  let best = Infinity;
  for (let i = 0; i < 100; i++) {
    const lr = 1e-7 * (10 / 1e-7) ** (i / 100);
    const x = Math.log10(lr) - shiftDecades;
    const loss = 4.4 - 3.2 / (1 + Math.exp(-(x + 3) * 1.8)) + Math.max(0, x + 1.3) ** 2 * 4 + (rand() - 0.5) * 0.4;
    mov = 0.98 * mov + 0.02 * loss;
    const smooth = mov / (1 - 0.98 ** (i + 1));
    lrs.push(lr);
    smoothedLosses.push(smooth);
    best = Math.min(best, smooth);
    if (smooth > 4 * best) break;
  }
  return { name, lrs, smoothedLosses };
}

/** Synthetic one-cycle stage: cosine warm-up over 30 % then cosine annealing (shape of fastai's schedule). */
function demoStage(name: string, epochs: number, maxLrs: number[], startLoss: number, endError: number): StageRecord {
  const perEpoch = 92;
  const n = perEpoch * epochs;
  const a1 = Math.floor(0.3 * n);
  const cos = (start: number, end: number, p: number): number => end + ((start - end) / 2) * (Math.cos(Math.PI * p) + 1);
  const steps = Array.from({ length: n }, (_, i) => {
    const lrs = maxLrs.map((m) => (i < a1 ? cos(m / 25, m, i / a1) : cos(m, m / 25e4, (i - a1) / (n - a1))));
    return { loss: 0.25 + startLoss * Math.exp(-i / 40) + (rand() - 0.5) * 0.25, lrs };
  });
  const rows = Array.from({ length: epochs }, (_, e) => ({
    epoch: e,
    trainLoss: steps[(e + 1) * perEpoch - 1].loss,
    validLoss: 0.22 + 0.1 / (e + 1) + rand() * 0.02,
    errorRate: endError + 0.03 / (e + 1) + rand() * 0.005,
    timeSeconds: 95 + rand() * 10,
  }));
  return { name, epochs: rows, steps };
}

/** Confusable pairs in Pets, as the tutorial's most_confused shows them. */
const CONFUSIONS: [string, string][] = [
  ['american_pit_bull_terrier', 'staffordshire_bull_terrier'], ['Ragdoll', 'Birman'], ['Egyptian_Mau', 'Bengal'],
  ['British_Shorthair', 'Russian_Blue'], ['Maine_Coon', 'Persian'], ['beagle', 'basset_hound'], ['chihuahua', 'miniature_pinscher'],
];

async function demoInterpretation(): Promise<ClassificationInterpretation> {
  const files = (await readdir(IMAGES)).filter((f) => f.endsWith('.jpg')).sort();
  const labels = files.map((f) => f.replace(/_\d+\.jpg$/, ''));
  const classes = [...new Set(labels)].sort();
  const c = classes.length;
  const probs = new Float32Array(files.length * c);
  labels.forEach((label, i) => {
    const actual = classes.indexOf(label);
    const pair = CONFUSIONS.find((p) => p.includes(label));
    const wrong = pair !== undefined && rand() < 0.35 ? classes.indexOf(pair[0] === label ? pair[1] : pair[0])
      : rand() < 0.03 ? Math.floor(rand() * c) : actual;
    const logits = Array.from({ length: c }, () => rand() * 2);
    logits[wrong] += 4 + rand() * 2;
    if (wrong !== actual) logits[actual] += 1 + rand() * 3;
    const z = logits.reduce((s, v) => s + Math.exp(v), 0);
    logits.forEach((v, j) => { probs[i * c + j] = Math.exp(v) / z; });
  });
  return new ClassificationInterpretation({
    probs, targets: Int32Array.from(labels.map((l) => classes.indexOf(l))), classes, items: files.map((f) => join(IMAGES, f)),
  });
}

const outDir = process.argv[2] ?? (await mkdtemp(join(tmpdir(), 'demo-report-')));
const manifest = await writeRunReport(outDir, {
  title: 'Run report — RENDERING DEMO',
  notice: 'Rendering demo: every number below is synthetic (made up to look plausible). These are NOT training results.',
  config: { arch: 'resnet34', size: 224, bs: 64, workers: 2, backend: 'wasm', 'stage-2 max_lr': 'slice(1e-6, 1e-4)', note: '<escaped & "quoted">' },
  lrFinds: [demoLrFind('before stage-1', 0), demoLrFind('after unfreeze', -1.5)],
  stages: [demoStage('stage-1 (frozen)', 4, [3e-4, 3e-4, 3e-3], 1.8, 0.066), demoStage('stage-2 (unfrozen)', 2, [1e-6, 1e-5, 1e-4], 0.3, 0.062)],
  interpretation: await demoInterpretation(),
});
console.log(`rendering demo (synthetic numbers) written to ${manifest.indexHtml}`);
for (const f of manifest.files) console.log(`  ${f}`);
if (!manifest.textRenders) console.warn('warning: no font found, text in the pictures is boxes: apt-get install -y fonts-dejavu-core');
