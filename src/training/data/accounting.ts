/**
 * Where every file under the image folder went: train, valid, or left out with a reason. The reasons, the rule
 * behind each and how to change it, the grouped log lines, the data line and the `data.json` of a run all come
 * from here, so the counts printed, exported as `pets_skipped_files_total{reason}` and written agree.
 */
import { relative } from 'node:path';
import { TrainerError } from '../../contract/errors.js';
import { SKIP_REASONS, type SkipReason } from './decode.js';
import type { UnsearchedFolder, UnsearchedFolderReason } from './items.js';
import { logText } from '../../contract/log-text.js';

/**
 * Why a file is in neither split. The decode reasons ({@link SkipReason}) come from the verify pass; the others
 * from listing, labelling and splitting:
 * - `hidden file`: its name starts with `.` (fastai's `get_files` skips them too);
 * - `unsupported extension`: not one of {@link IMAGE_EXTENSION_LIST} (fastai's `image_extensions`);
 * - `duplicate`: the same file (device and inode) as an image listed under an earlier name: a hard link, or a
 *   symbolic link to a file; the first name in code-point order is the item;
 * - `unlabelled`: the label rule (regex, folder, CSV) gave no label;
 * - `not in split`: the split (official lists, train/valid folders) does not place it;
 * - `unknown label`: a validation item whose class has no training item (fastai v1 discards these with a warning).
 */
export type LeftOutReason = SkipReason | 'hidden file' | 'unsupported extension' | 'duplicate' | 'unlabelled' | 'not in split' | 'unknown label';

/** Every {@link LeftOutReason}: the label values of `pets_skipped_files_total{reason}`. */
export const LEFT_OUT_REASONS: readonly LeftOutReason[] = Object.freeze([
  ...SKIP_REASONS, 'hidden file', 'unsupported extension', 'duplicate', 'unlabelled', 'not in split', 'unknown label',
]);

/** Image extensions listed as candidates, lower case (anything else is `unsupported extension`). */
export const IMAGE_EXTENSION_LIST: readonly string[] = Object.freeze(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);

/** Files left out for one reason. */
export interface LeftOutGroup {
  readonly reason: LeftOutReason;
  /** Absolute paths, in code-point order. */
  readonly paths: readonly string[];
  /** The rule that left them out, e.g. `the label regex /([^/]+)_\d+.jpg$/ matched nothing in their path`. */
  readonly rule: string;
  /** How to change it, e.g. `change --label-re, or label by --label-from folder|csv`. */
  readonly fix: string;
}

/** Per class: items in each split and items left out (bad files, unknown label). */
export interface ClassCount {
  readonly name: string;
  readonly train: number;
  readonly valid: number;
  /** Items of this class that failed to decode. */
  readonly bad: number;
  /** Validation items dropped because the class has no training item. */
  readonly discarded: number;
}

/** The whole account of a data step. Invariant: `train + valid + Σ groups[i].paths.length = filesFound`. */
export interface DataAccount {
  /** The folder searched (absolute). */
  readonly root: string;
  /** Files under `root` (the folders of {@link foldersNotSearched} are not searched). */
  readonly filesFound: number;
  readonly train: number;
  readonly valid: number;
  /** Left-out files by reason, reasons in {@link LEFT_OUT_REASONS} order, empty groups omitted. */
  readonly groups: readonly LeftOutGroup[];
  /** Classes found by the label rule (before any was dropped), in code-point order. */
  readonly classes: readonly ClassCount[];
  /** Warnings about classes that train but cannot be learned well (single item, no validation item). */
  readonly warnings: readonly string[];
  /** Folders under `root` not searched (hidden, unreadable, a link to a folder already searched, a name not UTF-8). */
  readonly foldersNotSearched: readonly UnsearchedFolder[];
  /** CSV rows naming a file that is not under `root` (the CSV layout only): `file (line n)`. */
  readonly csvRowsWithoutFile: readonly string[];
}

/** Count per {@link LeftOutReason} (every reason present, 0 when none). */
export function countsByReason(account: Pick<DataAccount, 'groups'>): Record<LeftOutReason, number> {
  const counts = Object.fromEntries(LEFT_OUT_REASONS.map((r) => [r, 0])) as Record<LeftOutReason, number>;
  for (const g of account.groups) counts[g.reason] += g.paths.length;
  return counts;
}

/** What {@link recordSkippedFiles} needs of a metrics recorder (`TrainingMetrics.recordSkipped`). */
export interface SkippedFilesSink {
  recordSkipped(reason: LeftOutReason, n: number): void;
}

/** Adds the account's left-out counts to `pets_skipped_files_total{reason}` (reasons with 0 are left alone). */
export function recordSkippedFiles(sink: SkippedFilesSink, account: Pick<DataAccount, 'groups'>): void {
  for (const [reason, n] of Object.entries(countsByReason(account))) if (n > 0) sink.recordSkipped(reason as LeftOutReason, n);
}

/** Files left out in all. */
export function skippedCount(account: Pick<DataAccount, 'groups'>): number {
  return account.groups.reduce((s, g) => s + g.paths.length, 0);
}

/**
 * One log line per reason: `skipped <n> file(s): <reason> — <first paths> (+k more); <rule>; <fix>`.
 * @param maxPaths - paths named per line (integer ≥ 0), default 3; the rest are counted.
 */
export function leftOutLines(account: Pick<DataAccount, 'root' | 'groups' | 'foldersNotSearched' | 'csvRowsWithoutFile'>, maxPaths = 3): string[] {
  const rel = (p: string): string => logText(relative(account.root, p) || p);
  const lines = account.groups.map((g) => {
    const shown = g.paths.slice(0, maxPaths).map(rel).join(', ');
    const more = g.paths.length > maxPaths ? ` (+${g.paths.length - maxPaths} more)` : '';
    return `skipped ${g.paths.length} file(s), ${g.reason}: ${shown}${more} — ${g.rule}; ${g.fix}`;
  });
  lines.push(...unsearchedFolderLines(account.foldersNotSearched, maxPaths));
  if (account.csvRowsWithoutFile.length > 0) {
    const rows = account.csvRowsWithoutFile;
    lines.push(`${rows.length} CSV row(s) name no file under ${logText(account.root)}: ${rows.slice(0, maxPaths).map(logText).join(', ')}${rows.length > maxPaths ? ` (+${rows.length - maxPaths} more)` : ''} — ` +
      'paths in the CSV are relative to the image folder; fix the rows or add the files');
  }
  return lines;
}

/** Per reason a folder was not searched, in the order of the log lines: what such folders are, the rule and its fix. */
const FOLDER_RULES: Readonly<Record<UnsearchedFolderReason, { what: string; rule: string }>> = {
  'hidden': {
    what: 'hidden folder(s)',
    rule: 'names starting with "." are not searched; rename them to include their files',
  },
  'unreadable': {
    what: 'folder(s) that cannot be read',
    rule: 'their files are not listed, counted or trained; make them readable (chmod a+rx) or move them out of --data',
  },
  'already searched': {
    what: 'symbolic link(s) to a folder already searched',
    rule: 'each folder is searched once, so no image is listed twice (a link to a folder above it would loop); remove the link, or link the images rather than their folder',
  },
  'run folder': {
    what: 'run folder(s) of this trainer',
    rule: 'a run\'s pictures, models and checkpoints are its output, not data (with --data ., the default --run-dir runs/<date-time> is inside it); move the runs out of --data, or give --run-dir a folder outside it',
  },
  'name not UTF-8': {
    what: 'folder(s) whose name is not valid UTF-8 (bytes shown as \\xNN)',
    rule: 'no path string can open them; rename them to UTF-8 (e.g. convmv -f latin1 -t utf-8 -r --notest <folder>)',
  },
};

/**
 * One log line per reason a folder was not searched: `not searched: <n> <what>: <first paths> (+k more) — <rule and
 * fix>`, e.g. `not searched: 1 hidden folder(s): .git — names starting with "." are not searched; rename them to
 * include their files`. The run's log, the report and the error of a folder with no labelled image print these.
 * @param maxPaths - folders named per line (integer ≥ 0), default 3; the rest are counted.
 */
export function unsearchedFolderLines(folders: readonly UnsearchedFolder[], maxPaths = 3): string[] {
  const lines: string[] = [];
  for (const reason of Object.keys(FOLDER_RULES) as (keyof typeof FOLDER_RULES)[]) {
    const these = folders.filter((f) => f.reason === reason);
    if (these.length === 0) continue;
    const shown = these.slice(0, maxPaths).map((f) => logText(f.detail ? `${f.path} (${reason === 'already searched' ? `→ ${f.detail}` : f.detail})` : f.path)).join(', ');
    const more = these.length > maxPaths ? ` (+${these.length - maxPaths} more)` : '';
    lines.push(`not searched: ${these.length} ${FOLDER_RULES[reason].what}: ${shown}${more} — ${FOLDER_RULES[reason].rule}`);
  }
  return lines;
}

/**
 * The data line: `data: C classes, T train / V valid images from <root>; F files found: T train, V valid, S skipped
 * (n reason, …)`. The counts add up to F.
 */
export function dataLine(account: DataAccount, classCount: number): string {
  const skipped = skippedCount(account);
  const parts = account.groups.map((g) => `${g.paths.length} ${g.reason}`);
  return `data: ${classCount} classes, ${account.train} train / ${account.valid} valid images from ${logText(account.root)}; ` +
    `${account.filesFound} files found: ${account.train} train, ${account.valid} valid, ${skipped} skipped` +
    (parts.length > 0 ? ` (${parts.join(', ')}; see above)` : '');
}

/** `data.json`: the account with paths relative to `root` ('/'-separated). */
export interface DataAccountJson {
  readonly root: string;
  readonly filesFound: number;
  readonly train: number;
  readonly valid: number;
  readonly skipped: number;
  readonly skippedByReason: Readonly<Record<LeftOutReason, number>>;
  readonly groups: readonly { readonly reason: LeftOutReason; readonly count: number; readonly rule: string; readonly fix: string; readonly paths: readonly string[] }[];
  readonly classes: readonly ClassCount[];
  readonly warnings: readonly string[];
  /** Hidden folders not searched (relative to `root`): the account's folders of reason `hidden`. */
  readonly hiddenFolders: readonly string[];
  /**
   * The other folders not searched (never the hidden ones, listed above, as data.json has always had them). Absent
   * in the data.json of runs from before it was written.
   */
  readonly foldersNotSearched?: readonly UnsearchedFolder[];
  readonly csvRowsWithoutFile: readonly string[];
}

/** The JSON written as `data.json` in the run directory (every left-out path listed). */
export function accountJson(account: DataAccount): DataAccountJson {
  const rel = (p: string): string => relative(account.root, p).split('\\').join('/');
  return {
    root: account.root,
    filesFound: account.filesFound,
    train: account.train,
    valid: account.valid,
    skipped: skippedCount(account),
    skippedByReason: countsByReason(account),
    groups: account.groups.map((g) => ({ reason: g.reason, count: g.paths.length, rule: g.rule, fix: g.fix, paths: g.paths.map(rel) })),
    classes: account.classes,
    warnings: account.warnings,
    hiddenFolders: account.foldersNotSearched.filter((f) => f.reason === 'hidden').map((f) => f.path),
    foldersNotSearched: account.foldersNotSearched.filter((f) => f.reason !== 'hidden'),
    csvRowsWithoutFile: account.csvRowsWithoutFile,
  };
}

/** Every folder a `data.json` says was not searched, hidden ones included (for {@link unsearchedFolderLines}). */
export function foldersNotSearchedOf(json: Pick<DataAccountJson, 'hiddenFolders' | 'foldersNotSearched'>): UnsearchedFolder[] {
  return [...json.hiddenFolders.map((path): UnsearchedFolder => ({ path, reason: 'hidden' })), ...(json.foldersNotSearched ?? [])];
}

/**
 * The error of a training step or a validation pass that read none of its images although each one passed the run's
 * data check: the data went away during the run (folder moved, deleted, unmounted). Committing such a step would
 * apply an AdamW update without a gradient (momentum and weight decay alone); printing such a validation would show
 * `valid_loss 0`, `error_rate 1` as if measured. The distributed run (coordinator) and the single-process Learner
 * both stop with it.
 * @param what - what read nothing, e.g. `training step 12` or `validation`
 * @param remedy - what was kept and what to do next, e.g. the coordinator's `the step was not applied; the newest
 *   checkpoint on disk stands (runs/x/checkpoints/step-000000004; later steps are redone); resume with: npx coordinator
 *   --resume runs/x after restoring the data` (`Recovery.resumeAdvice`), the Learner's `the step was not applied:
 *   restore the data and run again`
 * @returns a TrainerError ERR_DATA (the caller throws it)
 */
export function dataWentAwayError(what: string, remedy: string): TrainerError {
  return new TrainerError('ERR_DATA', `${what} read none of its images: every one failed to decode (each was readable when the run started: `
    + `was the data folder moved, deleted or unmounted? the log lines above name the files); ${remedy}`);
}
