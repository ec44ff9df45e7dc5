/**
 * `npm run docs:pictures -- [--breeds 12] [--size 64] [--bs 4] [--epochs 2] [--fine-tune-epochs 1] [--arch resnet18]`:
 * runs the main job (the real `coordinator`, 2 local workers) on an evenly spread subset of the shared Pets photos,
 * then copies the run's real pictures (lr_find, training curves, confusion matrix, top losses) into `docs/img/`
 * (resized to ≤ 1200 px wide, palette PNG), renders `coordinator show-batch` of the same data at 160 px (the run's
 * own show-batch.png is at the training size, too small to read in a README), and writes `docs/run-figures.md`
 * with the command, the wall time and what the run printed (epoch tables, most_confused, summary; per-batch
 * progress lines and temporary paths left out). Exit code: 0, or 1 when the coordinator fails.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import sharp from 'sharp';
import { checkInt } from '../src/contract/config.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SHARED_IMAGES = path.resolve(ROOT, '../shared/datasets/oxford-iiit-pet-sample/images');
/** Widest picture committed to docs/img, px. */
const MAX_WIDTH_PX = 1200;
/** Run picture → docs/img name. */
const PICTURES: ReadonlyArray<[from: string, to: string]> = [
  ['lr-find-lr-find.png', 'lr-find.png'], ['training-curves.png', 'training-curves.png'],
  ['confusion-matrix.png', 'confusion-matrix.png'], ['top-losses.png', 'top-losses.png'],
];

/** Links the photos of `breeds` breeds spread evenly over the sorted 37 (cats and dogs mixed) into `<dir>/images`. */
function linkSubset(dir: string, breeds: number): string[] {
  const files = readdirSync(SHARED_IMAGES).filter((f) => f.endsWith('.jpg')).sort();
  const all = [...new Set(files.map((f) => f.replace(/_\d+\.jpg$/, '')))].sort();
  const chosen = Array.from({ length: Math.min(breeds, all.length) }, (_, i) => all[Math.floor((i * all.length) / Math.min(breeds, all.length))]!);
  mkdirSync(path.join(dir, 'images'), { recursive: true });
  for (const f of files) if (chosen.includes(f.replace(/_\d+\.jpg$/, ''))) symlinkSync(path.join(SHARED_IMAGES, f), path.join(dir, 'images', f));
  return chosen;
}

/** Runs `coordinator <args>` from the sources, echoing and capturing stdout. */
function runCoordinator(args: readonly string[]): Promise<{ code: number; stdout: string }> {
  const script = "const m = await import('./src/coordinator/cli.ts'); process.exitCode = await m.main(process.argv.slice(1));";
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, '--', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); process.stdout.write(c); });
  return new Promise((resolve) => child.once('close', (code) => resolve({ code: code ?? 1, stdout })));
}

/** Copies one PNG, scaled down to {@link MAX_WIDTH_PX} when wider. @returns its final size */
async function copyPicture(from: string, to: string): Promise<{ width: number; height: number }> {
  const img = sharp(from);
  const { width = 0 } = await img.metadata();
  const out = await (width > MAX_WIDTH_PX ? img.resize({ width: MAX_WIDTH_PX }) : img).png({ palette: true, compressionLevel: 9 }).toFile(to);
  return { width: out.width, height: out.height };
}

const cmd = new Command('docs:pictures')
  .option('--breeds <n>', 'breeds of the shared sample to use (1..37)', '12')
  .option('--arch <name>', 'resnet10 | resnet18 | resnet34 | resnet50', 'resnet18')
  .option('--size <px>', 'image side, px', '64')
  .option('--bs <n>', 'batch per worker', '4')
  .option('--epochs <n>', 'stage-1 epochs', '2')
  .option('--fine-tune-epochs <n>', 'stage-2 epochs', '1')
  .option('--out <dir>', 'docs folder', path.join(ROOT, 'docs'))
  .parse();
const o = cmd.opts<{ breeds: string; arch: string; size: string; bs: string; epochs: string; fineTuneEpochs: string; out: string }>();
const breeds = checkInt('--breeds', o.breeds, 1, 37);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pets-docs-'));
try {
  const chosen = linkSubset(tmp, breeds);
  const runDir = path.join(tmp, 'run');
  const args = ['--workers', '2', '--data', tmp, '--pretrained', 'none', '--arch', o.arch, '--size', o.size, '--bs', o.bs,
    '--epochs', o.epochs, '--fine-tune-epochs', o.fineTuneEpochs, '--metrics-port', '-1', '--bind', 'tcp://127.0.0.1:0', '--run-dir', runDir, '--plain'];
  const t0 = performance.now();
  const { code, stdout } = await runCoordinator(args);
  const seconds = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`coordinator exited with code ${code}`);
  const img = path.join(o.out, 'img');
  mkdirSync(img, { recursive: true });
  const sizes: string[] = [];
  for (const [from, to] of PICTURES) {
    const { width, height } = await copyPicture(path.join(runDir, from), path.join(img, to));
    sizes.push(`- \`img/${to}\` (${width}×${height} px) from the run's \`${from}\``);
  }
  const showBatch = ['show-batch', '--data', tmp, '--size', '160', '--rows', '3', '--out', path.join(img, 'show-batch.png')];
  if ((await runCoordinator(showBatch)).code !== 0) throw new Error('coordinator show-batch failed');
  sizes.unshift(`- \`img/show-batch.png\` from \`coordinator show-batch --data <subset> --size 160\` (same data and seed as the run)`);
  const hide = (text: string): string => text.split(runDir).join('<run-dir>').split(tmp).join('<subset>');
  const shown = hide(args.join(' '));
  const printed = hide(stdout).split('\n').filter((l) => !/^(epoch \d+|lr_find): \d+\/\d+ batches/.test(l)).join('\n');
  writeFileSync(path.join(o.out, 'run-figures.md'), [
    '# Figures of the pictured run', '',
    `Generated by \`npm run docs:pictures\` (scripts/docs-pictures.ts) on ${new Date().toISOString().slice(0, 10)}: ${breeds} breeds of`,
    `\`../shared/datasets/oxford-iiit-pet-sample\` (8 photos each; ${chosen.join(', ')}), symlinked into a temporary \`<subset>/images\`.`,
    'No ImageNet weights (offline machine): `--pretrained none`, so error rates are those of a network trained from scratch',
    'on a few dozen photos for a few steps, not the tutorial\'s. Measured on 2 shared, busy CPU cores (WASM backend).', '',
    '```', `npx coordinator ${shown}`, '```', '',
    `Wall time: ${seconds.toFixed(0)} s (data check, worker start, both stages, lr_find, checkpoints, interpretation, report).`, '',
    'Pictures:', ...sizes, '', 'What it printed (stdout, per-batch progress lines left out):', '', '```', printed.trimEnd(), '```', '',
  ].join('\n'));
  console.log(`\ndocs:pictures: ${PICTURES.length} pictures in ${img}, figures in ${path.join(o.out, 'run-figures.md')} (${seconds.toFixed(0)} s)`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
