/**
 * Finding images and their labels in a folder: fastai v1 `get_image_files` + `from_name_re` / `from_folder` /
 * `from_csv`, and the splits that come with a layout: the Oxford-IIIT Pet official lists
 * (`annotations/trainval.txt`, `test.txt`), `train/` + `valid/` folders (fastai `split_by_folder`) and a CSV column
 * (fastai `split_from_df(col='is_valid')`). Every file under the folder is either an item or left out with a
 * reason ({@link LeftOutGroup}); nothing disappears without a count.
 */
import { type Dirent, existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { TrainerError } from '../../contract/errors.js';
import { RUN_CONFIG_FILE, RUN_LOCK_FILE } from '../../contract/run-files.js';
import { IMAGE_EXTENSION_LIST, type LeftOutGroup, unsearchedFolderLines } from './accounting.js';
import { compareCodePoints } from './split.js';

/** File extensions treated as image candidates (lower case). Anything else (`.mat`, `.txt`) is left out. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(IMAGE_EXTENSION_LIST);

/** The tutorial's label pattern, matched against the full path; the label is group 1 (fastai lesson1-pets). */
export const DEFAULT_LABEL_PATTERN = '/([^/]+)_\\d+.jpg$';

/** How labels are found. */
export type LabelRule =
  | { readonly kind: 'regex'; readonly pattern: string }
  | { readonly kind: 'folder' }
  /** `validCol`: header name of fastai's `valid_col` (truthy = validation item), read when set. */
  | { readonly kind: 'csv'; readonly file: string; readonly validCol?: string | null };

/** Options of {@link listItems}. */
export interface ListOptions {
  /** `[train, valid]` folder names of a `split_by_folder` layout: a file directly in one has no class folder. */
  readonly splitFolders?: readonly [string, string] | null;
}

/** A labelled list of image candidates (before decoding). */
export interface ItemList {
  /** The image folder the items live in (absolute). */
  readonly root: string;
  /** Absolute paths, sorted in code-point order. */
  readonly paths: readonly string[];
  /** Label name of each path. */
  readonly labels: readonly string[];
  /** `[paths]` uint8 from the CSV's valid column (1 = validation), or null without one. */
  readonly validFlags: Uint8Array | null;
  /** Files under `root` (the folders of {@link foldersNotSearched} not searched). */
  readonly filesFound: number;
  /** Files left out before decoding, by reason (hidden, extension, no label). */
  readonly leftOut: readonly LeftOutGroup[];
  /** Folders under `root` not searched: hidden, unreadable, a link to a folder already searched, a name that is not UTF-8. */
  readonly foldersNotSearched: readonly UnsearchedFolder[];
  /** CSV rows naming no file under `root`: `name (line n)`. */
  readonly csvRowsWithoutFile: readonly string[];
}

/**
 * `dir/images` when that folder exists (the Pets layout), else `dir`.
 * @throws TrainerError ERR_BAD_DATA when `dir` is no folder, saying why: no such folder (a mistyped or relative path
 *   taken from another current directory: it was called "not a folder"), a file, or a part of the path a file.
 */
export function resolveImageRoot(dir: string): string {
  const abs = resolve(dir);
  let why: string | null = null;
  try {
    if (!statSync(abs).isDirectory()) why = 'a file, not a folder';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    why = code === 'ENOENT' ? 'no such folder' : code === 'ENOTDIR' ? 'a part of the path is a file, not a folder' : `cannot be read: ${code ?? (err as Error).message}`;
  }
  if (why !== null) {
    throw new TrainerError('ERR_BAD_DATA', `--data must be a folder of images or a folder holding images/, got ${JSON.stringify(dir)} (${why})`);
  }
  const images = join(abs, 'images');
  return existsSync(images) && statSync(images).isDirectory() ? images : abs;
}

function statKind(path: string): 'dir' | 'file' | 'other' {
  try {
    const st = statSync(path);
    return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
  } catch {
    return 'other';
  }
}

/** Why a folder under the image folder was not searched (its files are neither counted nor trained). */
export type UnsearchedFolderReason = 'hidden' | 'unreadable' | 'already searched' | 'name not UTF-8' | 'run folder';

/** A folder under the image folder that was not searched, and why. */
export interface UnsearchedFolder {
  /** Path relative to the image folder, '/'-separated; bytes that are not UTF-8 shown as `\xNN`. */
  readonly path: string;
  /**
   * Why it was not searched: `hidden` (its name starts with `.`, as fastai's `get_files` skips), `unreadable` (listing
   * it failed: permissions, an I/O error), `already searched` (a symbolic link to a folder searched already, which
   * could loop), `name not UTF-8` (no path string can open it), `run folder` (a run of this trainer: {@link isRunFolder}).
   * The log line of each, with its fix, is
   * `unsearchedFolderLines`' (training/data/accounting.ts).
   */
  readonly reason: UnsearchedFolderReason;
  /** For `unreadable`: the error (e.g. `EACCES: permission denied`); for `already searched`: the folder it is. */
  readonly detail?: string;
}

/**
 * A file or folder name as text: its UTF-8, with each byte that is not part of valid UTF-8 written `\xNN`
 * (`caf\xe9` for Latin-1 "café"), so a name Node.js cannot open by a string is still shown exactly.
 */
export function displayName(name: Buffer): string {
  const strict = new TextDecoder('utf-8', { fatal: true });
  let out = '';
  let i = 0;
  while (i < name.length) {
    const b = name[i]!;
    const len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    let text: string | null = null;
    if (len > 0 && i + len <= name.length) {
      try {
        text = strict.decode(name.subarray(i, i + len));
      } catch {
        text = null;
      }
    }
    if (text === null) {
      out += `\\x${b.toString(16).padStart(2, '0')}`;
      i += 1;
    } else {
      out += text;
      i += len;
    }
  }
  return out;
}

/** True when `name` is valid UTF-8, i.e. the string Node.js makes of it names the same file. */
function isUtf8Name(name: Buffer): boolean {
  return Buffer.from(name.toString('utf8'), 'utf8').equals(name);
}

/**
 * A file's or folder's identity (device and inode, after links), or null when it cannot be stat'ed: one folder is
 * searched once, one file listed once (for a file, the decode pass then says why it cannot be read).
 */
function inodeId(path: string): string | null {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}

/** The listing of the image folder: candidate files and everything set apart (see {@link walk}). */
interface Walk {
  readonly files: string[];
  readonly hidden: string[];
  readonly notFiles: string[];
  /** Files whose name is not valid UTF-8 (paths for display, see {@link displayName}; they cannot be opened by it). */
  readonly badNames: string[];
  readonly unsearched: UnsearchedFolder[];
}

/**
 * Every file under `root` (recursive), sorted in code-point order; hidden files apart, hidden folders not entered;
 * entries that are no readable file (broken or looping symbolic links, FIFOs, sockets, devices) apart too: they are
 * never opened (reading a FIFO waits forever) but counted and reported. Symbolic links to folders are followed
 * (datasets are often assembled from links), after every real folder and each folder once: a link to a folder
 * already searched (a folder above it, which looped until the path grew too long, or a sibling, which listed every
 * image twice so that copies of one photo could land in both train and valid) is not entered and is reported.
 * Folders that cannot be read and names that are not UTF-8 (which no string path can open) are reported, never
 * thrown: the rest of the folder still trains.
 *
 * @throws TrainerError ERR_BAD_DATA when `root` itself cannot be read.
 */
function walk(root: string): Walk {
  const w: Walk = { files: [], hidden: [], notFiles: [], badNames: [], unsearched: [] };
  const rel = (p: string): string => relative(root, p).split(sep).join('/');
  const seen = new Set<string>();
  const links: string[] = [];
  const visit = (dir: string): void => {
    let entries: Dirent<Buffer>[];
    try {
      entries = readdirSync(dir, { withFileTypes: true, encoding: 'buffer' });
    } catch (err) {
      const why = (err as Error).message.split(',')[0]!;
      if (dir === root) throw new TrainerError('ERR_BAD_DATA', `--data: cannot read the image folder ${root} (${why})`, { cause: err });
      w.unsearched.push({ path: rel(dir), reason: 'unreadable', detail: why });
      return;
    }
    entries.sort((a, b) => Buffer.compare(a.name, b.name));
    for (const e of entries) {
      const utf8 = isUtf8Name(e.name);
      const p = join(dir, utf8 ? e.name.toString('utf8') : displayName(e.name));
      const kind = e.isSymbolicLink() ? (utf8 ? statKind(p) : 'file') : e.isDirectory() ? 'dir' : e.isFile() ? 'file' : 'other';
      if (kind === 'dir') {
        if (!utf8) w.unsearched.push({ path: rel(p), reason: 'name not UTF-8' });
        else if (e.name[0] === 0x2e) w.unsearched.push({ path: rel(p), reason: 'hidden' });
        else if (e.isSymbolicLink()) links.push(p);
        else enter(p);
      } else if (!utf8) w.badNames.push(p);
      else (e.name[0] === 0x2e ? w.hidden : kind === 'file' ? w.files : w.notFiles).push(p);
    }
  };
  const enter = (dir: string): void => {
    if (dir !== root && isRunFolder(dir)) {
      w.unsearched.push({ path: rel(dir), reason: 'run folder' });
      return;
    }
    const id = inodeId(dir);
    if (id !== null && seen.has(id)) {
      let target = dir;
      try {
        target = realpathSync(dir);
      } catch { /* shown as itself */ }
      w.unsearched.push({ path: rel(dir), reason: 'already searched', detail: rel(target) || '.' });
      return;
    }
    if (id !== null) seen.add(id);
    visit(dir);
  };
  enter(root);
  for (let i = 0; i < links.length; i++) {
    links.splice(i, links.length - i, ...links.slice(i).sort(compareCodePoints));
    enter(links[i]!);
  }
  for (const xs of [w.files, w.hidden, w.notFiles, w.badNames]) xs.sort(compareCodePoints);
  w.unsearched.sort((a, b) => compareCodePoints(a.path, b.path));
  return w;
}

/**
 * Whether `dir` holds a run of this trainer: its lock (`.coordinator.lock`, a run going on, as when it scans its data)
 * or its `config.json` beside `checkpoints/` (a run that wrote a checkpoint; one that ended before is removed). Its
 * pictures, models and checkpoints are the run's output, not data: with `--data .` run from the photos' folder, the
 * default `--run-dir runs/<date-time>` lands inside it, and the next run trained on the first one's pictures as a
 * class named after the run.
 */
function isRunFolder(dir: string): boolean {
  return existsSync(join(dir, RUN_LOCK_FILE)) || (existsSync(join(dir, RUN_CONFIG_FILE)) && existsSync(join(dir, 'checkpoints')));
}

/** Python-style truth of a `valid_col` cell (pandas reads True/False; 1/0 and yes/no are common too). */
function parseValidCell(cell: string, where: string, col: string): 0 | 1 {
  const v = cell.trim().toLowerCase();
  if (['true', '1', 'yes', 't', 'y'].includes(v)) return 1;
  if (['false', '0', 'no', 'f', 'n', ''].includes(v)) return 0;
  throw new TrainerError('ERR_BAD_DATA', `${where}: column ${col} must be true|false (or 1|0, yes|no), got ${JSON.stringify(cell)}`);
}

/** What the CSV says about each file it lists. */
interface CsvRows {
  readonly byPath: Map<string, { readonly label: string; readonly valid: 0 | 1; readonly line: number }>;
  readonly rows: { readonly name: string; readonly line: number }[];
}

const FILE_HEADERS = ['file', 'name', 'fname', 'filename', 'image', 'path'];

/**
 * Reads a CSV of `file,label[,…]` rows, file paths relative to the image folder (fastai `from_csv`: `fn_col=0`,
 * `label_col=1`, header optional here). With `validCol`, the header must name that column (fastai `valid_col`).
 */
function readCsvLabels(file: string, root: string, validCol: string | null): CsvRows {
  let records: string[][];
  try {
    records = parseCsv(readFileSync(file, 'utf8'), { bom: true, skip_empty_lines: true, relax_column_count: true, trim: true }) as string[][];
  } catch (err) {
    throw new TrainerError('ERR_BAD_DATA', `--labels ${file}: cannot read the CSV of file,label rows (${(err as Error).message})`, { cause: err });
  }
  const first = records[0] ?? [];
  const header = first.length > 0 && (FILE_HEADERS.includes(first[0]!.toLowerCase()) || (validCol !== null && first.includes(validCol)));
  const validIndex = validCol === null ? -1 : header ? first.indexOf(validCol) : -1;
  if (validCol !== null && validIndex < 0) {
    throw new TrainerError('ERR_BAD_DATA', `--labels ${file}: --split csv needs a header row with a ${JSON.stringify(validCol)} column (fastai valid_col; change it with --valid-col), got ${header ? `columns ${first.join(', ')}` : 'no header row'}`);
  }
  const byPath: CsvRows['byPath'] = new Map();
  const rows: CsvRows['rows'] = [];
  for (const [i, rec] of records.entries()) {
    if (i === 0 && header) continue;
    const line = i + 1;
    if (rec.length < 2) throw new TrainerError('ERR_BAD_DATA', `${file}:${line}: expected "file,label", got ${JSON.stringify(rec.join(','))}`);
    const valid = validIndex < 0 ? 0 : parseValidCell(rec[validIndex] ?? '', `${file}:${line}`, validCol!);
    const path = resolve(root, rec[0]!);
    const prev = byPath.get(path);
    if (prev && (prev.label !== rec[1] || prev.valid !== valid)) {
      throw new TrainerError('ERR_BAD_DATA', `${file}: ${rec[0]} is listed twice with different values (lines ${prev.line} and ${line}); keep one row per file`);
    }
    byPath.set(path, { label: rec[1]!, valid, line });
    rows.push({ name: rec[0]!, line });
  }
  return { byPath, rows };
}

/** A labeller: the label of a path (undefined: unlabelled), with the rule and fix for the unlabelled group. */
interface Labeller {
  readonly labelOf: (path: string) => string | undefined;
  readonly rule: string;
  readonly fix: string;
  readonly csv: CsvRows | null;
}

function makeLabeller(rule: LabelRule, root: string, splitFolders: readonly [string, string] | null): Labeller {
  if (rule.kind === 'folder') {
    const noClass = new Set([root, ...(splitFolders ?? []).map((f) => join(root, f))]);
    return {
      labelOf: (p) => (noClass.has(dirname(p)) ? undefined : basename(dirname(p))),
      rule: `--label-from folder takes the name of the parent folder, and these lie directly in ${splitFolders ? `the image folder or ${splitFolders.join('/ or ')}/` : 'the image folder'}`,
      fix: 'move them into a folder named after their class, or label them with --label-re / --labels',
      csv: null,
    };
  }
  if (rule.kind === 'csv') {
    const csv = readCsvLabels(rule.file, root, rule.validCol ?? null);
    return {
      labelOf: (p) => { const l = csv.byPath.get(p)?.label; return l === undefined || l === '' ? undefined : l; },
      rule: `not listed in ${rule.file} (or listed with an empty label)`,
      fix: `add a "file,label" row for each to ${basename(rule.file)}, or label them with --label-re / --label-from folder`,
      csv,
    };
  }
  let re: RegExp;
  try {
    re = new RegExp(rule.pattern);
  } catch (cause) {
    throw new TrainerError('ERR_BAD_FLAG', `--label-re must be a valid regular expression, got ${JSON.stringify(rule.pattern)}`, { cause });
  }
  return {
    labelOf: (p) => {
      const m = re.exec(p.split('\\').join('/'));
      if (m && m[1] === undefined) throw new TrainerError('ERR_BAD_FLAG', `--label-re must have a capture group, got ${JSON.stringify(rule.pattern)}`);
      return m?.[1] === '' ? undefined : m?.[1];
    },
    rule: `the label regex ${rule.pattern} (label = first group, matched against the path; case-sensitive) matches nothing in their path`,
    fix: 'change --label-re (e.g. \'/([^/]+)_\\d+\\.\\w+$\' for any extension), or label by --label-from folder|csv',
    csv: null,
  };
}

/**
 * Lists image candidates under `dir` (or `dir/images`) and labels them; every other file is in a left-out group.
 *
 * @param dir - dataset folder.
 * @param rule - regex (group 1 of a match against the full path, fastai `from_name_re`), parent folder name
 *   (`from_folder`), or a CSV of `file,label` rows relative to the image folder (`from_csv`; header optional).
 * @throws TrainerError ERR_BAD_DATA when the folder is missing, the CSV is unreadable or inconsistent, or nothing is
 *   labelled (the message counts the files and says why each group was left out); ERR_BAD_FLAG for a bad regex.
 */
export function listItems(dir: string, rule: LabelRule, options: ListOptions = {}): ItemList {
  const root = resolveImageRoot(dir);
  const { files, hidden, notFiles, badNames, unsearched } = walk(root);
  const labeller = makeLabeller(rule, root, options.splitFolders ?? null);
  const badExt: string[] = [];
  const unlabelled: string[] = [];
  const paths: string[] = [];
  const labels: string[] = [];
  const firstName = new Map<string, string>();
  const duplicates: string[] = [];
  let example = '';
  for (const p of files) {
    if (!IMAGE_EXTENSIONS.has(extname(p).toLowerCase())) {
      badExt.push(p);
      continue;
    }
    // One image under two names (a hard link, or a symbolic link to a file) is one item, under its first name in
    // code-point order (`files` is sorted): listed twice it could train twice as often, or land in train and valid.
    const id = inodeId(p);
    const first = id === null ? undefined : firstName.get(id);
    if (first !== undefined) {
      duplicates.push(p);
      example ||= ` (e.g. ${relative(root, p).split(sep).join('/')} is ${relative(root, first).split(sep).join('/')})`;
      continue;
    }
    if (id !== null) firstName.set(id, p);
    const label = labeller.labelOf(p);
    if (label === undefined) unlabelled.push(p);
    else {
      paths.push(p);
      labels.push(label);
    }
  }
  const leftOut: LeftOutGroup[] = [];
  if (hidden.length) leftOut.push({ reason: 'hidden file', paths: hidden, rule: 'names starting with "." are not images (fastai\'s get_files skips them too)', fix: 'rename them without the leading "." to include them' });
  if (notFiles.length) leftOut.push({ reason: 'unreadable', paths: notFiles, rule: 'not a readable file: a broken or looping symbolic link, a FIFO, a socket or a device (never opened)', fix: 'delete them, or point the links at images' });
  if (badNames.length) leftOut.push({ reason: 'unreadable', paths: badNames, rule: 'the file name is not valid UTF-8 (bytes shown as \\xNN), so no path string can open it', fix: 'rename them to UTF-8 (e.g. convmv -f latin1 -t utf-8 --notest <files>)' });
  if (badExt.length) leftOut.push({ reason: 'unsupported extension', paths: badExt, rule: `not an image extension (${IMAGE_EXTENSION_LIST.join(' ')}, any case)`, fix: 'convert them to JPEG or PNG, or move them out of --data' });
  if (duplicates.length) leftOut.push({ reason: 'duplicate', paths: duplicates, rule: `the same file as an image listed under an earlier name${example}: a hard link or a symbolic link to it (same device and inode); each file is one item, under its first name in code-point order`, fix: 'remove the extra names, or copy the file if it must count twice' });
  if (unlabelled.length) leftOut.push({ reason: 'unlabelled', paths: unlabelled, rule: labeller.rule, fix: labeller.fix });
  const found = files.length + hidden.length + notFiles.length + badNames.length;
  if (paths.length === 0) {
    const why = [...leftOut.map((g) => `${g.paths.length} ${g.reason}: ${g.rule}`), ...unsearchedFolderLines(unsearched)].join('; ');
    throw new TrainerError('ERR_BAD_DATA', `no labelled images found under ${root}: ${found} file(s)${why ? ` (${why})` : ''}`);
  }
  const csv = labeller.csv;
  const known = new Set(files);
  const validFlags = rule.kind === 'csv' && (rule.validCol ?? null) !== null
    ? Uint8Array.from(paths, (p) => csv!.byPath.get(p)!.valid) : null;
  const csvRowsWithoutFile = csv ? csv.rows.filter((r) => !known.has(resolve(root, r.name))).map((r) => `${r.name} (line ${r.line})`) : [];
  return { root, paths, labels, validFlags, filesFound: found, leftOut, foldersNotSearched: unsearched, csvRowsWithoutFile };
}

/** A split of an {@link ItemList}: item indices, ascending, and the items it does not place. */
export interface LayoutSplit {
  readonly train: Int32Array;
  readonly valid: Int32Array;
  /** Items in neither split (`not in split`), with the rule and fix, or null when every item is placed. */
  readonly notInSplit: LeftOutGroup | null;
}

function splitByMembership(items: ItemList, place: (i: number) => 'train' | 'valid' | null, rule: string, fix: string): LayoutSplit {
  const train: number[] = [];
  const valid: number[] = [];
  const out: string[] = [];
  items.paths.forEach((p, i) => {
    const where = place(i);
    if (where === 'train') train.push(i);
    else if (where === 'valid') valid.push(i);
    else out.push(p);
  });
  return { train: Int32Array.from(train), valid: Int32Array.from(valid), notInSplit: out.length ? { reason: 'not in split', paths: out, rule, fix } : null };
}

/**
 * The Pets official split: items whose base name is listed in `annotations/trainval.txt` train, those in
 * `annotations/test.txt` validate, others are `not in split`. Lines look like `Abyssinian_100 1 1 1`.
 *
 * @param datasetDir - the folder holding `annotations/` (the parent of `images/`).
 * @returns indices into `items.paths`, or null when the annotation files are absent.
 */
export function officialSplit(datasetDir: string, items: ItemList): LayoutSplit | null {
  const ann = join(resolve(datasetDir), 'annotations');
  const trainFile = join(ann, 'trainval.txt');
  const testFile = join(ann, 'test.txt');
  if (!existsSync(trainFile) || !existsSync(testFile)) return null;
  const names = (f: string): Set<string> => new Set(readFileSync(f, 'utf8').split(/\r?\n/).map((l) => l.split(/\s+/)[0]!).filter(Boolean));
  const tr = names(trainFile);
  const te = names(testFile);
  return splitByMembership(items, (i) => {
    const stem = relative(items.root, items.paths[i]!).replace(/\.[^.]+$/, '');
    return tr.has(stem) ? 'train' : te.has(stem) ? 'valid' : null;
  }, 'not listed in annotations/trainval.txt or annotations/test.txt (--split official)', 'add them to one of the lists, or use --split random');
}

/**
 * fastai `split_by_folder(train='train', valid='valid')`: items under `<root>/<train>/` train, those under
 * `<root>/<valid>/` validate, others (e.g. `test/`) are `not in split`.
 * @throws TrainerError ERR_BAD_DATA when either folder is missing, naming both and what the root holds
 */
export function folderSplit(items: ItemList, trainFolder: string, validFolder: string): LayoutSplit {
  for (const f of [trainFolder, validFolder]) {
    if (statKind(join(items.root, f)) !== 'dir') {
      const dirs = readdirSync(items.root, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort(compareCodePoints);
      throw new TrainerError('ERR_BAD_DATA', `--split folder needs ${trainFolder}/ and ${validFolder}/ under ${items.root}, but ${f}/ is missing (folders there: ${dirs.join(', ') || 'none'}); name them with --train-folder/--valid-folder`);
    }
  }
  return splitByMembership(items, (i) => {
    const top = relative(items.root, items.paths[i]!).split(sep)[0];
    return top === trainFolder ? 'train' : top === validFolder ? 'valid' : null;
  }, `not under ${trainFolder}/ or ${validFolder}/ (--split folder)`, `move them into ${trainFolder}/ or ${validFolder}/, or name the folders with --train-folder/--valid-folder`);
}

/** fastai `split_from_df(col)`: rows whose valid column is true validate, the others train. */
export function csvSplit(items: ItemList): LayoutSplit {
  if (items.validFlags === null) throw new TrainerError('ERR_INTERNAL', 'csvSplit needs items listed with a CSV valid column');
  const flags = items.validFlags;
  return splitByMembership(items, (i) => (flags[i] === 1 ? 'valid' : 'train'), '', '');
}
