/**
 * `ImageDataBunch.from_name_re(path, fnames, pat, ds_tfms=get_transforms(), size=224, bs=64)` up to (not
 * including) the loaders: find the items, label them, split them, order the classes, optionally verify every file.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import type { RunConfig } from '../../contract/config.js';
import { TrainerError } from '../../contract/errors.js';
import { LEFT_OUT_REASONS, leftOutLines, skippedCount, type DataAccount, type LeftOutGroup } from './accounting.js';
import { checkClasses } from './class-check.js';
import { SKIP_REASONS, SkipLog, type SkipReason } from './decode.js';
import { DEFAULT_LABEL_PATTERN, csvSplit, folderSplit, listItems, officialSplit, resolveImageRoot, type ItemList, type LabelRule, type LayoutSplit } from './items.js';
import { cacheDirOrigin, defaultCacheDir, fetchPets, type FetchPetsOptions } from './pets.js';
import type { FolderOrigin } from '../../contract/make-dir.js';
import type { ImagePool } from './pool.js';
import { compareCodePoints, randomSplit } from './split.js';
import { verifyItems } from './verify.js';
import { logText } from '../../contract/log-text.js';

/** The `--data` value that means "download Oxford-IIIT Pet". */
export const PETS_SOURCE = 'oxford-iiit-pet';

/**
 * Checks `--data` (and `--labels`' CSV) before a command creates anything (a run folder, `npm run learn`'s `--dir`): a
 * folder must exist and be one this process can read; `oxford-iiit-pet` is checked by its download; the CSV must be a
 * readable file. A mistyped path was found only by the data step, after the run folder had been made (and then
 * removed again).
 * @param data - the `--data` value
 * @param labels - the `--labels` CSV when the labels come from it (`--label-from csv`), else null
 * @throws TrainerError ERR_BAD_DATA naming --data or --labels, the rule and what is wrong with the path
 */
export function checkDataSource(data: string, labels: string | null = null): void {
  if (data !== PETS_SOURCE) resolveImageRoot(data);
  if (labels === null) return;
  let why: string | null = null;
  try {
    if (!statSync(labels).isFile()) why = 'not a file';
    else accessSync(labels, constants.R_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    why = code === 'ENOENT' ? 'no such file' : code === 'ENOTDIR' ? 'a part of the path is a file, not a folder' : `it cannot be read (${code ?? (err as Error).message})`;
  }
  if (why !== null) throw new TrainerError('ERR_BAD_DATA', `--labels ${labels}: must be a readable CSV of file,label rows: ${why}`);
}

/** Options of {@link createDataBunch}; all optional, defaults in {@link DEFAULT_DATA_BUNCH}. */
export interface DataBunchOptions {
  /** `oxford-iiit-pet` (download, cached) or a folder of images / a folder holding `images/`. */
  readonly data?: string;
  /** Cache folder for downloads and the verify cache. Default {@link defaultCacheDir} (never the current directory). */
  readonly cacheDir?: string;
  /** How this command's user changes the validation split, in the class check's warning (see ClassCheckInput). */
  readonly splitHint?: string;
  /** Label source: regex on the path, parent folder name, or a CSV (file,label). */
  readonly labelFrom?: 'regex' | 'folder' | 'csv';
  /** Regex for `labelFrom: 'regex'`, group 1 is the label. */
  readonly labelPattern?: string;
  /** CSV file for `labelFrom: 'csv'`. */
  readonly labelCsv?: string;
  /**
   * `random` (seeded, validPct), `official` (annotations/trainval.txt + test.txt), `folder` (`train/` + `valid/`
   * subfolders, fastai `split_by_folder`) or `csv` (the CSV's `validCol`, fastai `split_from_df`).
   */
  readonly split?: SplitKind;
  /** Validation fraction for the random split, [0, 1). */
  readonly validPct?: number;
  /** Seed of the split. */
  readonly seed?: number;
  /** Folder names of the `folder` split (fastai `train='train', valid='valid'`). */
  readonly trainFolder?: string;
  readonly validFolder?: string;
  /** Header of the CSV column marking validation rows for the `csv` split (fastai `valid_col`, default `is_valid`). */
  readonly validCol?: string;
  /** Decode every file once and drop the bad ones (needs a pool). */
  readonly verify?: boolean;
  /**
   * The size images are resized to (shorter side, px: --size): with `verify`, a file that would exceed the pixel
   * ceiling once resized is skipped as 'too large' before training. Omitted → only the decoded size is checked.
   */
  readonly size?: number;
  /** Called once per file that fails to decode; default: nothing (the grouped lines say it). */
  readonly onSkip?: (path: string, reason: SkipReason) => void;
  /**
   * Where the grouped left-out lines and class warnings go (one line per reason, see `leftOutLines`);
   * default: stderr with a `data: ` prefix. Pass `() => {}` for silence.
   */
  readonly log?: (line: string) => void;
  /** Download options (test mirrors, quiet…). */
  readonly fetch?: Omit<FetchPetsOptions, 'cacheDir' | 'annotations'>;
}

/** The split layouts. */
export type SplitKind = 'random' | 'official' | 'folder' | 'csv';

/** Defaults of {@link DataBunchOptions}: the tutorial's. */
export const DEFAULT_DATA_BUNCH: Readonly<Required<Pick<DataBunchOptions, 'data' | 'labelFrom' | 'labelPattern' | 'split' | 'validPct' | 'seed' | 'verify' | 'trainFolder' | 'validFolder' | 'validCol'>>> = Object.freeze({
  data: PETS_SOURCE, labelFrom: 'regex', labelPattern: DEFAULT_LABEL_PATTERN,
  split: 'random', validPct: 0.2, seed: 42, verify: true, trainFolder: 'train', validFolder: 'valid', validCol: 'is_valid',
});

/** Items, labels, classes and the split. */
export interface DataBunch {
  /** Image folder. */
  readonly root: string;
  /** Paths of the items in either split (sorted, code-point order); indices below point here. */
  readonly paths: readonly string[];
  /** `[paths]` int32 class index of each path. */
  readonly labels: Int32Array;
  /** Class names in Python `sorted()` order; label i names classes[i]. Only classes with training items. */
  readonly classes: readonly string[];
  /** Training item indices. */
  readonly train: Int32Array;
  /** Validation item indices. */
  readonly valid: Int32Array;
  /** Where every file under `root` went (train, valid, left out by reason), with class counts and warnings. */
  readonly account: DataAccount;
  /** Files skipped by the verify pass (and later by loaders sharing it), counted by reason. */
  readonly skipLog: SkipLog;
}

function labelRule(o: DataBunchOptions): LabelRule {
  const from = o.labelFrom ?? DEFAULT_DATA_BUNCH.labelFrom;
  if (from === 'folder') return { kind: 'folder' };
  if (from === 'csv') {
    if (!o.labelCsv) throw new TrainerError('ERR_BAD_FLAG', '--labels must name a CSV file when --label-from csv, got none');
    return { kind: 'csv', file: resolve(o.labelCsv), validCol: o.split === 'csv' ? o.validCol ?? DEFAULT_DATA_BUNCH.validCol : null };
  }
  if (from !== 'regex') throw new TrainerError('ERR_BAD_FLAG', `--label-from must be one of regex|folder|csv, got ${JSON.stringify(from)}`);
  return { kind: 'regex', pattern: o.labelPattern ?? DEFAULT_DATA_BUNCH.labelPattern };
}

function layoutSplit(o: DataBunchOptions & typeof DEFAULT_DATA_BUNCH, items: ItemList, datasetDir: string): LayoutSplit {
  switch (o.split) {
    case 'random': return { ...randomSplit(items.paths.length, o.validPct, o.seed), notInSplit: null };
    case 'folder': return folderSplit(items, o.trainFolder, o.validFolder);
    case 'csv': return csvSplit(items);
    case 'official': {
      const s = officialSplit(items.root === datasetDir ? dirname(items.root) : datasetDir, items);
      if (!s) throw new TrainerError('ERR_BAD_DATA', `--split official needs annotations/trainval.txt and annotations/test.txt next to ${items.root}, found none`);
      return s;
    }
    default: throw new TrainerError('ERR_BAD_FLAG', `--split must be one of random|official|folder|csv, got ${JSON.stringify(o.split)}`);
  }
}

/** What each decode failure means, for the grouped log line. */
const DECODE_RULES: Readonly<Record<SkipReason, string>> = Object.freeze({
  empty: 'the file is empty (0 bytes)',
  'not an image': 'the content is no image format the decoder knows (e.g. an HTML error page saved as .jpg)',
  'truncated/corrupt': 'the image data is cut short or damaged',
  'too large': 'the image has more than 50 megapixels (DEFAULT_MAX_INPUT_PIXELS), as decoded or once resized to --size (a very elongated image)',
  unreadable: 'the file cannot be read (permissions, or it vanished)',
});

/** The decode-failure groups of the verify pass, one per reason, in {@link SKIP_REASONS} order. */
function decodeGroups(bad: readonly { path: string; reason: SkipReason }[]): LeftOutGroup[] {
  return SKIP_REASONS.map((reason) => ({ reason, paths: bad.filter((b) => b.reason === reason).map((b) => b.path).sort(compareCodePoints) }))
    .filter((g) => g.paths.length > 0)
    .map((g) => ({ ...g, rule: `decoding failed: ${DECODE_RULES[g.reason]}`, fix: 'repair, replace or delete them' }));
}

/** Orders groups as {@link LEFT_OUT_REASONS}. */
function ordered(groups: readonly LeftOutGroup[]): LeftOutGroup[] {
  return [...groups].sort((a, b) => LEFT_OUT_REASONS.indexOf(a.reason) - LEFT_OUT_REASONS.indexOf(b.reason));
}

/**
 * The verify pass over the items of either split (items in neither are not decoded): which decode, and the bad ones
 * with their reasons (reported to `skipLog`).
 */
/** Files to decode from which the verify pass says so first: about 10 s and more of silence at ≈ 100 files/s. */
export const VERIFY_ANNOUNCE_MIN = 1000;

async function verifySplit(items: ItemList, split: LayoutSplit, skipLog: SkipLog, pool: ImagePool | undefined, cache: { dir: string; origin: FolderOrigin }, log: (line: string) => void, size?: number):
  Promise<{ good: (idx: Int32Array) => Int32Array; bad: { index: number; path: string; reason: SkipReason }[] }> {
  if (!pool) throw new TrainerError('ERR_INTERNAL', 'createDataBunch with verify: true needs a started ImagePool');
  const cacheFile = join(cache.dir, `verify-${createHash('sha1').update(items.root).digest('hex').slice(0, 12)}.json`);
  const inSplit = [...split.train, ...split.valid].sort((a, b) => a - b);
  // The first pass over a large folder (the full Pets set: 7390 files) decodes for a minute or more before the
  // first line of training; it says so, and that later runs skip it.
  const announce = (n: number): void => {
    if (n >= VERIFY_ANNOUNCE_MIN) log(`checking ${n} image files: each is decoded once before training (verdicts cached in ${cacheFile}, so later runs skip this)`);
  };
  const verified = await verifyItems(pool, inSplit.map((i) => items.paths[i]!), skipLog, cacheFile, announce, size, cache.origin);
  if (verified.cacheError !== undefined) {
    // cacheError names the folder as the user set it and the one thing to do (as the dataset download's error does).
    log(`could not write the data check's cache ${cacheFile}, this run goes on (later runs decode every file again): ${verified.cacheError}`);
  }
  const ok = new Uint8Array(items.paths.length);
  inSplit.forEach((i, k) => { ok[i] = verified.ok[k]!; });
  const reasons = new Map(skipLog.entries().map((e) => [e.path, e.reason]));
  const bad = inSplit.filter((i) => ok[i] === 0).map((index) => ({ index, path: items.paths[index]!, reason: reasons.get(items.paths[index]!) ?? ('unreadable' as SkipReason) }));
  return { good: (idx) => idx.filter((i) => ok[i] === 1), bad };
}

/**
 * Builds the {@link DataBunch}: source → items → labels → split → (verify) → classes, accounting for every file.
 * Logs one line per left-out reason and per class warning (see {@link DataBunchOptions.log}).
 *
 * @param pool - a started pool, required when `verify` is on.
 * @throws TrainerError ERR_BAD_FLAG (bad option), ERR_BAD_DATA (no items, a layout's folder/annotations/column
 *   missing, a CSV that cannot be read or is inconsistent), ERR_OFFLINE (Pets not cached and no network: pass
 *   --data <dir>), ERR_DOWNLOAD, ERR_CHECKSUM.
 */
export async function createDataBunch(options: DataBunchOptions = {}, pool?: ImagePool): Promise<DataBunch> {
  const o = { ...DEFAULT_DATA_BUNCH, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as DataBunchOptions & typeof DEFAULT_DATA_BUNCH;
  const log = o.log ?? ((line: string) => process.stderr.write(`data: ${line}\n`));
  const cacheDir = resolve(o.cacheDir ?? defaultCacheDir());
  const cacheOrigin = cacheDirOrigin(o.cacheDir);
  const datasetDir = o.data === PETS_SOURCE
    ? await fetchPets({ ...o.fetch, cacheDir, cacheOrigin, annotations: o.split === 'official' })
    : resolve(o.data);
  if (o.split === 'csv' && o.labelFrom !== 'csv') {
    throw new TrainerError('ERR_BAD_FLAG', `--split csv reads the CSV's ${o.validCol} column, so it needs --label-from csv (and --labels), got --label-from ${o.labelFrom}`);
  }
  const items = listItems(datasetDir, labelRule(o), { splitFolders: o.split === 'folder' ? [o.trainFolder, o.validFolder] : null });
  const split = layoutSplit(o, items, datasetDir);
  const skipLog = new SkipLog(o.onSkip ?? (() => {}));
  const { good, bad } = o.verify ? await verifySplit(items, split, skipLog, pool, { dir: cacheDir, origin: cacheOrigin }, log, o.size) : { good: (idx: Int32Array) => idx, bad: [] };
  const checked = checkClasses({ labels: items.labels, train: good(split.train), valid: good(split.valid), bad, splitHint: o.splitHint });
  const groups: LeftOutGroup[] = [...items.leftOut, ...(split.notInSplit ? [split.notInSplit] : []), ...decodeGroups(bad)];
  if (checked.discarded.length > 0) {
    groups.push({
      reason: 'unknown label', paths: Array.from(checked.discarded, (i) => items.paths[i]!),
      rule: `validation images of ${checked.unknownClasses.length} class(es) with no training image (${checked.unknownClasses.slice(0, 5).map(logText).join(', ')}${checked.unknownClasses.length > 5 ? ', …' : ''}); fastai v1 discards them too`,
      fix: o.split === 'random' ? 'add images of these classes so the random split puts some in train (--seed changes which)' : 'put some images of these classes in the training split',
    });
  }
  // The model's items: every item of either split that is kept, in path order (indices renumbered).
  const trainKept = good(split.train);
  const keepSet = new Set<number>([...trainKept, ...checked.valid]);
  const keep = [...keepSet].sort((a, b) => a - b);
  const newIndex = new Map(keep.map((old, i) => [old, i]));
  const classIndex = new Map(checked.classes.map((c, i) => [c, i]));
  const account: DataAccount = {
    root: items.root, filesFound: items.filesFound, train: trainKept.length, valid: checked.valid.length, groups: ordered(groups),
    classes: checked.counts, warnings: checked.warnings, foldersNotSearched: items.foldersNotSearched, csvRowsWithoutFile: items.csvRowsWithoutFile,
  };
  const accounted = account.train + account.valid + skippedCount(account);
  if (accounted !== account.filesFound) {
    throw new TrainerError('ERR_INTERNAL', `data accounting: ${account.filesFound} files found but ${accounted} accounted for (train ${account.train}, valid ${account.valid}, skipped ${skippedCount(account)})`);
  }
  for (const line of [...leftOutLines(account), ...account.warnings]) log(line);
  return {
    root: items.root,
    paths: keep.map((i) => items.paths[i]!),
    labels: Int32Array.from(keep, (i) => classIndex.get(items.labels[i]!)!),
    classes: checked.classes,
    train: Int32Array.from(trainKept, (i) => newIndex.get(i)!),
    valid: Int32Array.from(checked.valid, (i) => newIndex.get(i)!),
    account,
    skipLog,
  };
}

/**
 * The data options of a run configuration (flags, config file or a run's `config.json`): one place, so training,
 * `interpret` and `show-batch` build the same items, labels and split.
 */
export function dataBunchOptions(c: Pick<RunConfig, 'data' | 'labelFrom' | 'labelRe' | 'labels' | 'split' | 'validPct' | 'seed' | 'trainFolder' | 'validFolder' | 'validCol' | 'size'>): DataBunchOptions {
  return {
    size: c.size, data: c.data, labelFrom: c.labelFrom, labelPattern: c.labelRe, labelCsv: c.labels ?? undefined, split: c.split,
    validPct: c.validPct, seed: c.seed, trainFolder: c.trainFolder, validFolder: c.validFolder, validCol: c.validCol,
  };
}

/**
 * Checks that a {@link DataBunch} can be trained and validated on: at least 2 classes, at least one training
 * and one validation image after the bad files were dropped. Without it a tiny or mostly broken folder started
 * the workers and failed later with an unrelated message (a one-class model, or a shard plan of 0 items at the
 * first validation).
 *
 * @param data - the bunch's root, classes and split (after the verify pass).
 * @throws TrainerError ERR_BAD_DATA naming the folder, what was found and what is needed.
 */
export function assertTrainable(data: Pick<DataBunch, 'root' | 'classes' | 'train' | 'valid'>): void {
  const found = `${data.classes.length} class(es), ${data.train.length} train / ${data.valid.length} valid image(s)`;
  if (data.classes.length < 2 || data.train.length === 0 || data.valid.length === 0) {
    throw new TrainerError('ERR_BAD_DATA', `${data.root} must give ≥ 2 classes and ≥ 1 train and ≥ 1 valid image (after skipped files), got ${found}; add images, raise --valid-pct or check --label-re/--labels`);
  }
}
