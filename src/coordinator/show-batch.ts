/**
 * fastai's `data.show_batch(rows=3)` for the coordinator: the first training batch of the run's data, augmented as
 * the workers see it (same seed, epoch 0, rank 0 of a one-rank plan), drawn as a captioned grid by
 * `src/coordinator/show-batch-grid.ts`. Written as `show-batch.png` at the start of every run and by
 * `coordinator show-batch`.
 */
import { basename, dirname, join, resolve } from 'node:path';
import { Command } from 'commander';
import { flagsOnly, plainDefaults, refuseStrayArguments, withVersion } from '../contract/cli-help.js';
import { dataLine } from '../training/data/accounting.js';
import { augmentOf, checkInt, readConfigFile, resolveRunConfig, type RunConfig } from '../contract/config.js';
import { assertTrainable, createDataBunch, dataBunchOptions, type DataBunch } from '../training/data/databunch.js';
import { BatchLoader } from '../training/data/loader.js';
import { ImagePool } from '../training/data/pool.js';
import { shardPlan } from '../training/data/shard.js';
import { showBatch } from './show-batch-grid.js';
import { DEFAULT_TRANSFORMS, type TransformSettings } from '../contract/transform-settings.js';
import { folderProblem } from '../contract/folder.js';
import { statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { TrainerError } from '../contract/errors.js';
import { addConfigFlags, configFlagValues } from './options.js';

/** Options of {@link writeShowBatch}; every field is optional. */
export interface ShowBatchRunOptions {
  /** Grid rows (and columns, as fastai's square grid), integer ≥ 1; default 3. */
  readonly rows?: number;
  /** Image side after the crop, px, integer ≥ 8; default 224 (the tutorial's). */
  readonly size?: number;
  /** Seed of the shuffle and augmentation (the run's `--seed`); default 42. */
  readonly seed?: number;
  /** The run's augmentation (fastai `get_transforms(...)`), or null for none (`--no-augment`); default the tutorial's. */
  readonly transforms?: TransformSettings | null;
}

/** Defaults of {@link ShowBatchRunOptions}: fastai's `show_batch(rows=3)` at the tutorial's 224 px and seed. */
export const DEFAULT_SHOW_BATCH_RUN: Readonly<Required<ShowBatchRunOptions>> = Object.freeze({ rows: 3, size: 224, seed: 42, transforms: DEFAULT_TRANSFORMS });

/**
 * Writes a rows × rows grid of augmented training images with their class names to `outPath` (PNG).
 * @param data - the run's items, labels and split
 * @param pool - a started image pool (owned by the caller)
 * @returns the picture size in px
 * @throws TrainerError ERR_BAD_FLAG on rows/size outside their ranges, ERR_DATA when there are no training images
 */
export async function writeShowBatch(data: DataBunch, pool: ImagePool, outPath: string, options: ShowBatchRunOptions = {}): Promise<{ width: number; height: number; json: string }> {
  const o = { ...DEFAULT_SHOW_BATCH_RUN, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  checkInt('--rows', o.rows, 1, 16);
  checkInt('--size', o.size, 8);
  if (data.train.length === 0) throw new TrainerError('ERR_DATA', `show_batch needs training images, found 0 in ${data.root}`);
  const batchSize = Math.min(o.rows * o.rows, data.train.length);
  const plan = shardPlan({ itemCount: data.train.length, seed: o.seed, epoch: 0, worldSize: 1, rank: 0, batchSize, shuffle: true, mode: 'drop' });
  const loader = new BatchLoader({ pool, paths: data.paths, labels: data.labels, split: data.train, plan, size: o.size, augment: o.transforms !== null, transforms: o.transforms ?? undefined, seed: o.seed, epoch: 0, prefetchBatches: 1, skipLog: data.skipLog });
  try {
    const first = await loader[Symbol.asyncIterator]().next();
    if (first.done) throw new TrainerError('ERR_DATA', `show_batch: the loader produced no batch from ${data.train.length} training images`);
    const size = await showBatch(first.value, data.classes, outPath, { rows: o.rows, cols: o.rows });
    // The numbers beside the picture, as for every report picture: which items and labels it shows.
    const items = Array.from(first.value.y, (label, k) => ({ label: data.classes[label], path: data.paths[data.train[plan.batches[0]!.indices[k]!]!] }));
    // Beside the PNG (never in the current directory unless the PNG is there): <out without .png>.json.
    const json = join(dirname(outPath), `${basename(outPath).replace(/\.png$/i, '')}.json`);
    await writeFile(json, `${JSON.stringify({ rows: o.rows, size: o.size, seed: o.seed, transforms: o.transforms, items }, null, 2)}\n`);
    return { ...size, json };
  } finally {
    await loader.close();
  }
}

/**
 * `--out`'s folder must exist, be a folder and be writable, as for matplotlib's `savefig` (which does not create it either); checked
 * before the data is read: a mistyped folder was found only after the data check and decode, by libvips' raw
 * multi-line `unable to open for write … wbuffer_write: write failed`.
 * @throws TrainerError ERR_BAD_FLAG naming `--out`, the folder and what is wrong with it
 */
function checkOutFolder(out: string, folder: string): void {
  const why = folderProblem(folder, 'write');
  if (why !== null) throw new TrainerError('ERR_BAD_FLAG', `--out ${out}: ${why}: ${folder}; create the folder or choose another --out`);
}

/**
 * `--out` itself: a PNG file name. Seen (tryout): `--out /tmp` (a folder) read and decoded the data, then ended with
 * libvips' raw multi-line `/tmp: unable to open for write … Is a directory … vips2png: unable to write to target`
 * (exit 1); `--out grid.jpg` wrote PNG bytes under a .jpg name, and its items into `grid.jpg.json`.
 * @throws TrainerError ERR_BAD_FLAG naming `--out` and the rule, before the data is read
 */
function checkOutFile(out: string, outPath: string): void {
  let folder = false;
  try {
    folder = statSync(outPath).isDirectory();
  } catch { /* a new file: the usual case */ }
  if (folder) throw new TrainerError('ERR_BAD_FLAG', `--out ${out}: a folder; give the PNG's file name, e.g. --out ${join(out, 'show-batch.png')}`);
  if (!/\.png$/i.test(outPath)) throw new TrainerError('ERR_BAD_FLAG', `--out ${out}: show-batch writes a PNG; give a name ending in .png (its items go beside it, <name>.json)`);
}

/** The run settings `show-batch` takes: where the data is, how it is labelled and split, and the augmentation. */
const SHOW_BATCH_FIELDS: ReadonlySet<keyof RunConfig> = new Set<keyof RunConfig>(['data', 'labelRe', 'labelFrom', 'labels', 'split', 'trainFolder', 'validFolder', 'validCol',
  'validPct', 'seed', 'size', 'maxRotate', 'maxZoom', 'maxLighting', 'maxWarp', 'pAffine', 'pLighting']);

/**
 * `coordinator show-batch [--data …] [--rows 3] [--size 224] [--seed 42] [--out show-batch.png]`, plus the run's
 * labelling, split and augmentation flags (`--label-from`, `--split`, `--max-rotate`, `--no-augment`, …) or
 * `--config`, so the picture shows what a run with the same settings trains on.
 * @param argv - arguments after `show-batch`
 * @returns exit code 0; prints the written path
 * @throws TrainerError ERR_BAD_FLAG / ERR_BAD_CONFIG (bad flag), ERR_DATA / ERR_OFFLINE from the data source
 */
export async function runShowBatchCommand(argv: readonly string[], out: (line: string) => void = console.log): Promise<number> {
  const cmd = new Command('coordinator show-batch')
    .description("fastai's data.show_batch(rows): a grid of augmented training images with their labels");
  addConfigFlags(cmd, SHOW_BATCH_FIELDS)
    .option('--config <file>', 'YAML or JSON run configuration to take the data and augmentation settings from (flags win)')
    .option('--rows <n>', 'grid rows and columns', '3')
    .option('--out <file>', 'PNG to write (a name ending in .png; its folder must exist)', 'show-batch.png')
    .exitOverride();
  withVersion(plainDefaults(flagsOnly(cmd))).parse([...argv], { from: 'user' });
  refuseStrayArguments(cmd);
  const f = cmd.opts<{ rows: string; out: string; config?: string }>();
  const file = f.config === undefined ? {} : readConfigFile(f.config);
  const config = resolveRunConfig(file, configFlagValues(cmd), { runDir: '.' });
  const options = { rows: checkInt('--rows', f.rows, 1, 16), size: checkInt('--size', config.size, 8), seed: config.seed, transforms: augmentOf(config) };
  const outPath = resolve(f.out);
  checkOutFolder(f.out, dirname(outPath));
  checkOutFile(f.out, outPath);
  const pool = new ImagePool({});
  pool.start();
  try {
    const data = await createDataBunch({ ...dataBunchOptions(config), verify: true }, pool);
    out(dataLine(data.account, data.classes.length));
    assertTrainable(data);
    const { width, height, json } = await writeShowBatch(data, pool, outPath, options);
    out(`show_batch: ${outPath} (${width}×${height} px, ${options.rows}×${options.rows} images from ${data.root}); items and labels in ${json}`);
    return 0;
  } finally {
    await pool.close();
  }
}
