/**
 * Finding images and their labels in a folder: fastai v1 `get_image_files` + `from_name_re` / `from_folder` /
 * `from_csv`, and the Oxford-IIIT Pet official split (`annotations/trainval.txt`, `test.txt`).
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { TrainerError } from '../errors.js';
import { compareCodePoints } from './split.js';

/** File extensions treated as image candidates (lower case). Anything else (`.mat`, `.txt`) is ignored. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);

/** The tutorial's label pattern, matched against the full path; the label is group 1 (fastai lesson1-pets). */
export const DEFAULT_LABEL_PATTERN = '/([^/]+)_\\d+.jpg$';

/** How labels are found. */
export type LabelRule =
  | { readonly kind: 'regex'; readonly pattern: string }
  | { readonly kind: 'folder' }
  | { readonly kind: 'csv'; readonly file: string };

/** A labelled list of image candidates (before decoding). */
export interface ItemList {
  /** The image folder the items live in (absolute). */
  readonly root: string;
  /** Absolute paths, sorted in code-point order. */
  readonly paths: readonly string[];
  /** Label name of each path. */
  readonly labels: readonly string[];
  /** Files left out before decoding, with the reason (non-image extension, no label). */
  readonly ignored: readonly { readonly path: string; readonly reason: string }[];
}

/** `dir/images` when that folder exists (the Pets layout), else `dir`. @throws TrainerError ERR_DATA if missing. */
export function resolveImageRoot(dir: string): string {
  const abs = resolve(dir);
  if (!existsSync(abs) || !statSync(abs).isDirectory()) {
    throw new TrainerError('ERR_DATA', `--data must be a folder of images or a folder holding images/, got ${JSON.stringify(dir)} (not a folder)`);
  }
  const images = join(abs, 'images');
  return existsSync(images) && statSync(images).isDirectory() ? images : abs;
}

/** Every file under `root` (recursive, hidden entries skipped), sorted in code-point order. */
function statKind(path: string): 'dir' | 'file' | 'other' {
  try {
    const st = statSync(path);
    return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
  } catch {
    return 'other';
  }
}

function walk(root: string): string[] {
  const out: string[] = [];
  const visit = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      // Symbolic links are followed (a dataset assembled from links is common); broken links are left out.
      const kind = e.isSymbolicLink() ? statKind(p) : e.isDirectory() ? 'dir' : e.isFile() ? 'file' : 'other';
      if (kind === 'dir') visit(p);
      else if (kind === 'file') out.push(p);
    }
  };
  visit(root);
  return out.sort(compareCodePoints);
}

function readCsvLabels(file: string, root: string): Map<string, string> {
  const map = new Map<string, string>();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TrainerError('ERR_DATA', `--labels ${file}: cannot read the CSV of file,label rows (${(err as Error).message})`, { cause: err });
  }
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  for (const [i, line] of lines.entries()) {
    const comma = line.lastIndexOf(',');
    if (comma < 0) throw new TrainerError('ERR_DATA', `${file}:${i + 1}: expected "file,label", got ${JSON.stringify(line)}`);
    const name = line.slice(0, comma).trim();
    const label = line.slice(comma + 1).trim();
    if (i === 0 && name.toLowerCase() === 'file' || i === 0 && name.toLowerCase() === 'name') continue;
    map.set(resolve(root, name), label);
  }
  return map;
}

/**
 * Lists image candidates under `dir` (or `dir/images`) and labels them.
 *
 * @param dir - dataset folder.
 * @param rule - regex (group 1 of a match against the full path, fastai `from_name_re`), parent folder name
 *   (`from_folder`), or a CSV of `file,label` rows relative to the image folder (`from_csv`; header optional).
 * @throws TrainerError ERR_DATA when the folder is missing, the pattern has no group, or nothing is labelled.
 */
export function listItems(dir: string, rule: LabelRule): ItemList {
  const root = resolveImageRoot(dir);
  const files = walk(root);
  const ignored: { path: string; reason: string }[] = [];
  const paths: string[] = [];
  const labels: string[] = [];
  const labelOf = makeLabeller(rule, root);
  for (const p of files) {
    if (!IMAGE_EXTENSIONS.has(extname(p).toLowerCase())) {
      ignored.push({ path: p, reason: `not an image extension (${extname(p) || 'none'})` });
      continue;
    }
    const label = labelOf(p);
    if (label === undefined) {
      ignored.push({ path: p, reason: 'no label' });
      continue;
    }
    paths.push(p);
    labels.push(label);
  }
  if (paths.length === 0) throw new TrainerError('ERR_DATA', `no labelled images found under ${root} (${files.length} files, ${ignored.length} ignored)`);
  return { root, paths, labels, ignored };
}

function makeLabeller(rule: LabelRule, root: string): (p: string) => string | undefined {
  if (rule.kind === 'folder') return (p) => (dirname(p) === root ? undefined : basename(dirname(p)));
  if (rule.kind === 'csv') {
    const map = readCsvLabels(rule.file, root);
    return (p) => map.get(p);
  }
  let re: RegExp;
  try {
    re = new RegExp(rule.pattern);
  } catch (cause) {
    throw new TrainerError('ERR_BAD_FLAG', `--label-pattern must be a valid regular expression, got ${JSON.stringify(rule.pattern)}`, { cause });
  }
  return (p) => {
    const m = re.exec(p.split('\\').join('/'));
    if (m && m[1] === undefined) throw new TrainerError('ERR_BAD_FLAG', `--label-pattern must have a capture group, got ${JSON.stringify(rule.pattern)}`);
    return m?.[1];
  };
}

/**
 * The Pets official split: items whose base name is listed in `annotations/trainval.txt` train, those in
 * `annotations/test.txt` validate, others are left out. Lines look like `Abyssinian_100 1 1 1`.
 *
 * @param datasetDir - the folder holding `annotations/` (the parent of `images/`).
 * @returns indices into `items.paths`, or null when the annotation files are absent.
 */
export function officialSplit(datasetDir: string, items: ItemList): { train: Int32Array; valid: Int32Array } | null {
  const ann = join(resolve(datasetDir), 'annotations');
  const trainFile = join(ann, 'trainval.txt');
  const testFile = join(ann, 'test.txt');
  if (!existsSync(trainFile) || !existsSync(testFile)) return null;
  const names = (f: string): Set<string> => new Set(readFileSync(f, 'utf8').split(/\r?\n/).map((l) => l.split(/\s+/)[0]!).filter(Boolean));
  const tr = names(trainFile);
  const te = names(testFile);
  const train: number[] = [];
  const valid: number[] = [];
  items.paths.forEach((p, i) => {
    const stem = relative(items.root, p).replace(/\.[^.]+$/, '');
    if (tr.has(stem)) train.push(i);
    else if (te.has(stem)) valid.push(i);
  });
  return { train: Int32Array.from(train), valid: Int32Array.from(valid) };
}
