/**
 * `ImageDataBunch.from_name_re(path, fnames, pat, ds_tfms=get_transforms(), size=224, bs=64)` up to (not
 * including) the loaders: find the items, label them, split them, order the classes, optionally verify every file.
 */
import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { TrainerError } from '../errors.js';
import { SkipLog, type SkipReason } from './decode.js';
import { DEFAULT_LABEL_PATTERN, listItems, officialSplit, type LabelRule } from './items.js';
import { fetchPets, type FetchPetsOptions } from './pets.js';
import type { ImagePool } from './pool.js';
import { randomSplit, sortClasses } from './split.js';
import { verifyItems } from './verify.js';

/** The `--data` value that means "download Oxford-IIIT Pet". */
export const PETS_SOURCE = 'oxford-iiit-pet';

/** Options of {@link createDataBunch}; all optional, defaults in {@link DEFAULT_DATA_BUNCH}. */
export interface DataBunchOptions {
  /** `oxford-iiit-pet` (download, cached) or a folder of images / a folder holding `images/`. */
  readonly data?: string;
  /** Cache folder for downloads and the verify cache. */
  readonly cacheDir?: string;
  /** Label source: regex on the path, parent folder name, or a CSV (file,label). */
  readonly labelFrom?: 'regex' | 'folder' | 'csv';
  /** Regex for `labelFrom: 'regex'`, group 1 is the label. */
  readonly labelPattern?: string;
  /** CSV file for `labelFrom: 'csv'`. */
  readonly labelCsv?: string;
  /** `random` (seeded, validPct) or `official` (annotations/trainval.txt + test.txt). */
  readonly split?: 'random' | 'official';
  /** Validation fraction for the random split, [0, 1). */
  readonly validPct?: number;
  /** Seed of the split. */
  readonly seed?: number;
  /** Decode every file once and drop the bad ones (needs a pool). */
  readonly verify?: boolean;
  /** Called once per skipped file; default: one line on stderr ("data: skipped <path>: <reason>"). */
  readonly onSkip?: (path: string, reason: SkipReason) => void;
  /** Download options (test mirrors, quiet…). */
  readonly fetch?: Omit<FetchPetsOptions, 'cacheDir' | 'annotations'>;
}

/** Defaults of {@link DataBunchOptions}: the tutorial's. */
export const DEFAULT_DATA_BUNCH: Readonly<Required<Pick<DataBunchOptions, 'data' | 'cacheDir' | 'labelFrom' | 'labelPattern' | 'split' | 'validPct' | 'seed' | 'verify'>>> = Object.freeze({
  data: PETS_SOURCE, cacheDir: '.cache', labelFrom: 'regex', labelPattern: DEFAULT_LABEL_PATTERN,
  split: 'random', validPct: 0.2, seed: 42, verify: true,
});

/** Items, labels, classes and the split. */
export interface DataBunch {
  /** Image folder. */
  readonly root: string;
  /** Every candidate path (sorted, code-point order); indices below point here. */
  readonly paths: readonly string[];
  /** `[paths]` int32 class index of each path. */
  readonly labels: Int32Array;
  /** Class names in Python `sorted()` order; label i names classes[i]. */
  readonly classes: readonly string[];
  /** Training item indices (verified-bad ones removed). */
  readonly train: Int32Array;
  /** Validation item indices (verified-bad ones removed). */
  readonly valid: Int32Array;
  /** Files ignored before decoding (extension, no label). */
  readonly ignored: readonly { readonly path: string; readonly reason: string }[];
  /** Files skipped by the verify pass (and later by loaders sharing it), counted by reason. */
  readonly skipLog: SkipLog;
}

function labelRule(o: DataBunchOptions): LabelRule {
  const from = o.labelFrom ?? DEFAULT_DATA_BUNCH.labelFrom;
  if (from === 'folder') return { kind: 'folder' };
  if (from === 'csv') {
    if (!o.labelCsv) throw new TrainerError('ERR_BAD_FLAG', '--label-csv must name a file when --label-from csv, got none');
    return { kind: 'csv', file: resolve(o.labelCsv) };
  }
  if (from !== 'regex') throw new TrainerError('ERR_BAD_FLAG', `--label-from must be one of regex|folder|csv, got ${JSON.stringify(from)}`);
  return { kind: 'regex', pattern: o.labelPattern ?? DEFAULT_DATA_BUNCH.labelPattern };
}

/**
 * Builds the {@link DataBunch}: source → items → labels → split → (verify) → classes.
 *
 * @param pool - a started pool, required when `verify` is on.
 * @throws TrainerError ERR_BAD_FLAG (bad option), ERR_DATA (no items, official split without annotations),
 *   ERR_OFFLINE (Pets not cached and no network: pass --data <dir>), ERR_DOWNLOAD, ERR_CHECKSUM.
 */
export async function createDataBunch(options: DataBunchOptions = {}, pool?: ImagePool): Promise<DataBunch> {
  const o = { ...DEFAULT_DATA_BUNCH, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as DataBunchOptions & typeof DEFAULT_DATA_BUNCH;
  const cacheDir = resolve(o.cacheDir);
  const datasetDir = o.data === PETS_SOURCE
    ? await fetchPets({ ...o.fetch, cacheDir, annotations: o.split === 'official' })
    : resolve(o.data);
  const items = listItems(datasetDir, labelRule(o));
  const classes = sortClasses(items.labels);
  const index = new Map(classes.map((c, i) => [c, i]));
  const labels = Int32Array.from(items.labels, (l) => index.get(l)!);
  let split = o.split === 'official' ? officialSplit(items.root === datasetDir ? dirname(items.root) : datasetDir, items) : randomSplit(items.paths.length, o.validPct, o.seed);
  if (!split) throw new TrainerError('ERR_DATA', `--split official needs annotations/trainval.txt and annotations/test.txt next to ${items.root}, found none`);
  const skipLog = new SkipLog(o.onSkip ?? ((path, reason) => process.stderr.write(`data: skipped ${path}: ${reason}\n`)));
  if (o.verify) {
    if (!pool) throw new TrainerError('ERR_INTERNAL', 'createDataBunch with verify: true needs a started ImagePool');
    const cacheFile = join(cacheDir, `verify-${createHash('sha1').update(items.root).digest('hex').slice(0, 12)}.json`);
    const { ok } = await verifyItems(pool, items.paths, skipLog, cacheFile);
    split = { train: split.train.filter((i) => ok[i] === 1), valid: split.valid.filter((i) => ok[i] === 1) };
  }
  return { root: items.root, paths: items.paths, labels, classes, train: split.train, valid: split.valid, ignored: items.ignored, skipLog };
}

/**
 * Checks that a {@link DataBunch} can be trained and validated on: at least 2 classes, at least one training
 * and one validation image after the bad files were dropped. Without it a tiny or mostly broken folder started
 * the workers and failed later with an unrelated message (a one-class model, or a shard plan of 0 items at the
 * first validation).
 *
 * @param data - the bunch's root, classes and split (after the verify pass).
 * @throws TrainerError ERR_DATA naming the folder, what was found and what is needed.
 */
export function assertTrainable(data: Pick<DataBunch, 'root' | 'classes' | 'train' | 'valid'>): void {
  const found = `${data.classes.length} class(es), ${data.train.length} train / ${data.valid.length} valid image(s)`;
  if (data.classes.length < 2 || data.train.length === 0 || data.valid.length === 0) {
    throw new TrainerError('ERR_DATA', `${data.root} must give ≥ 2 classes and ≥ 1 train and ≥ 1 valid image (after skipped files), got ${found}; add images, raise --valid-pct or check --label-re/--labels`);
  }
}
