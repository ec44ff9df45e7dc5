/**
 * Writes a run report into a run directory: every picture as PNG with its numbers beside it as JSON
 * (`confusion-matrix.png` + `confusion-matrix.json`, …), `interpretation.json`, and `index.html` linking them all.
 */
import { mkdir } from 'node:fs/promises';
import { writeFileAtomic } from '../../contract/atomic-write.js';
import { join } from 'node:path';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import type { DataAccountJson } from '../../training/data/accounting.js';
import sharp from 'sharp';
import { TrainerError } from '../../contract/errors.js';
import { confusionMatrixChart, lrFindChart, renderChart, trainingCurvesChart, type Chart } from './charts.js';
import { renderReportHtml, type ReportPicture, type ReportSection, type RunFileLink } from './html.js';
import { fontsRenderText, type RenderedPng } from './render.js';
import { renderTopLossesGrid, topLossTiles, topLossTitle, TOP_LOSSES_FIGURE_TITLE } from './top-losses.js';
import type { LrFindRecord, RunReportInput } from './types.js';

/** Report options; all optional. */
export interface ReportOptions {
  /** Pixels per chart layout unit, in [1, 4]; 2 gives crisp text. */
  readonly chartScale?: number;
  /** Number of images in the top-losses grid, integer ≥ 1 (capped at the number of validation items). */
  readonly topLossesK?: number;
  /** `min_val` of the most_confused table, > 0 (the tutorial calls `most_confused(min_val=2)`). */
  readonly mostConfusedMinVal?: number;
}

/** Resolved {@link ReportOptions}. */
export type ResolvedReportOptions = Required<ReportOptions>;

/** Defaults: scale 2, 9 top losses (the tutorial's `plot_top_losses(9)`), most_confused min_val 2. */
export const DEFAULT_REPORT: ResolvedReportOptions = Object.freeze({ chartScale: 2, topLossesK: 9, mostConfusedMinVal: 2 });

/** What {@link writeRunReport} wrote. */
export interface ReportManifest {
  /** Absolute-or-as-given path of `index.html`. */
  readonly indexHtml: string;
  /** Pictures written, in report order. */
  readonly pictures: readonly ReportPicture[];
  /** Every file written, relative to the run directory. */
  readonly files: readonly string[];
  /** False when no font is installed, so the pictures' text came out as boxes (install `fonts-dejavu-core`). */
  readonly textRenders: boolean;
}

/**
 * Validates and fills report options.
 *
 * @throws TrainerError `ERR_BAD_CONFIG` naming the field and rule
 */
export function resolveReportOptions(options: ReportOptions = {}): ResolvedReportOptions {
  const r = { ...DEFAULT_REPORT, ...options };
  if (!(r.chartScale >= 1 && r.chartScale <= 4)) throw new TrainerError('ERR_BAD_CONFIG', `chartScale must be a number in [1, 4], got ${r.chartScale}`);
  if (!Number.isInteger(r.topLossesK) || r.topLossesK < 1) throw new TrainerError('ERR_BAD_CONFIG', `topLossesK must be an integer ≥ 1, got ${r.topLossesK}`);
  if (!(Number.isFinite(r.mostConfusedMinVal) && r.mostConfusedMinVal > 0)) {
    throw new TrainerError('ERR_BAD_CONFIG', `mostConfusedMinVal must be a finite number > 0, got ${r.mostConfusedMinVal}`);
  }
  return r;
}

/** File-name stem from a display name: lower case, runs of other characters → `-`. */
export function fileStem(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '') || 'unnamed';
}

/**
 * The file stem of an lr_find picture, one rule for the coordinator's report and `npm run learn --lr-find`:
 * `lr-find-<stage name>` (`lr-find-lr-find` for the default stage name), `-2`, `-3`, … when a stem is taken.
 * @param used - stems already written in the same folder
 */
export function lrFindStem(name: string, used: ReadonlySet<string> = new Set()): string {
  let stem = `lr-find-${fileStem(name)}`;
  for (let i = 2; used.has(stem); i++) stem = `lr-find-${fileStem(name)}-${i}`;
  return stem;
}

/**
 * Writes one lr_find picture and its numbers as the run report does (`<dir>/<lrFindStem>.png` and `.json`): for a
 * caller outside a run (`npm run learn --lr-find`).
 * @returns the PNG's path
 * @throws TrainerError ERR_REPORT when a file cannot be written
 */
export async function writeLrFindPicture(dir: string, record: LrFindRecord, scale = DEFAULT_REPORT.chartScale): Promise<string> {
  await mkdir(dir, { recursive: true });
  const stem = lrFindStem(record.name);
  await new ReportWriter(dir).chart('lr_find', `lr_find — ${record.name}`, stem, lrFindChart(record), scale);
  return join(dir, `${stem}.png`);
}

class ReportWriter {
  readonly pictures: ReportPicture[] = [];
  readonly files: string[] = [];
  constructor(readonly dir: string) {}

  /**
   * Writes one file of the report whole or not at all (temporary file + rename: a full disk leaves no cut-short PNG
   * that the previous report linked).
   * @throws TrainerError ERR_REPORT naming the file and the system's reason (ENOSPC, EIO, …)
   */
  async writeFile(name: string, content: string | Buffer): Promise<void> {
    await writeFileAtomic(join(this.dir, name), typeof content === 'string' ? Buffer.from(content) : content, 'ERR_REPORT');
    this.files.push(name);
  }

  /** Writes `<stem>.png` and `<stem>.json`; the page shows the PNG at 1/`pixelRatio` of its pixel size. */
  async picture(section: ReportSection, caption: string, stem: string, rendered: RenderedPng, data: unknown, pixelRatio = 1): Promise<void> {
    await this.writeFile(`${stem}.png`, rendered.png);
    await this.writeFile(`${stem}.json`, `${JSON.stringify(data, null, 2)}\n`);
    this.pictures.push({
      section, caption, png: `${stem}.png`, json: `${stem}.json`,
      width: Math.round(rendered.width / pixelRatio), height: Math.round(rendered.height / pixelRatio),
    });
  }

  async chart<D>(section: ReportSection, caption: string, stem: string, chart: Chart<D>, scale: number): Promise<void> {
    await this.picture(section, caption, stem, await renderChart(chart, scale), chart.data, scale);
  }
}

async function writeInterpretation(w: ReportWriter, input: RunReportInput, o: ResolvedReportOptions): Promise<void> {
  const interp = input.interpretation;
  if (interp === undefined) return;
  await w.writeFile('interpretation.json', `${JSON.stringify(interp.toJsonReport(Math.min(interp.n, 100)), null, 2)}\n`);
  await w.chart('interpretation', 'Confusion matrix (rows actual, columns predicted)', 'confusion-matrix',
    confusionMatrixChart(interp.classes, interp.confusionMatrix()), o.chartScale);
  const k = Math.min(o.topLossesK, interp.n);
  if (k >= 1 && interp.items !== undefined) {
    const tiles = topLossTiles(interp, k);
    const data = { title: TOP_LOSSES_FIGURE_TITLE, tiles: tiles.map((t) => ({ ...t, title: topLossTitle(t) })) };
    await w.picture('interpretation', `Top ${k} losses`, 'top-losses', await renderTopLossesGrid(tiles), data);
  }
}

/** Links the run's `show-batch.png` (written at the start of a run, with its `.json`) when it is there. */
async function addShowBatch(w: ReportWriter, dir: string): Promise<void> {
  const png = join(dir, 'show-batch.png');
  if (!existsSync(png) || !existsSync(join(dir, 'show-batch.json'))) return;
  const { width = 0, height = 0 } = await sharp(png).metadata();
  w.pictures.push({ section: 'data', caption: 'show_batch: augmented training images with their labels', png: 'show-batch.png', json: 'show-batch.json', width, height });
}

/**
 * The run's `data.json` (written by the data step), or undefined when absent, unreadable or not of the data step's
 * shape (the report then goes without its data section). Before, a `data.json` that parsed but lacked a list (edited
 * by hand, `{"x":1}`) ended `interpret` with `Cannot read properties of undefined (reading 'map')`.
 */
function readDataAccount(dir: string): DataAccountJson | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(join(dir, 'data.json'), 'utf8'));
  } catch {
    return undefined;
  }
  return isDataAccountJson(parsed) ? parsed : undefined;
}

/** Whether `v` has every field the report's data section reads ({@link DataAccountJson}). */
function isDataAccountJson(v: unknown): v is DataAccountJson {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const d = v as Record<string, unknown>;
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  const lists = ['groups', 'classes', 'warnings', 'hiddenFolders', 'csvRowsWithoutFile'] as const;
  return typeof d.root === 'string' && ['filesFound', 'train', 'valid', 'skipped'].every((k) => typeof d[k] === 'number')
    && lists.every((k) => Array.isArray(d[k])) && (d.foldersNotSearched === undefined || Array.isArray(d.foldersNotSearched))
    && (d.groups as unknown[]).every((g) => isObject(g) && Array.isArray(g.paths) && typeof g.rule === 'string' && typeof g.fix === 'string')
    && (d.classes as unknown[]).every((c) => isObject(c) && typeof c.name === 'string')
    && (d.warnings as unknown[]).every((w) => typeof w === 'string');
}

/** What the run directory holds besides the pictures, as the report links it (only what exists). */
const RUN_FILES: readonly RunFileLink[] = [
  { href: 'config.json', what: 'the resolved run configuration' },
  { href: 'data.json', what: 'where every file under --data went: train, valid, or left out with its reason' },
  { href: 'interpretation.json', what: 'interpretation numbers: top losses, confusion matrix, most_confused' },
  { href: 'models/', what: 'saved stages (weights + optimizer state + metadata), loadable by predict and interpret' },
  { href: 'checkpoints/', what: 'checkpoints for --resume' },
];

/** The run files of {@link RUN_FILES} that exist in `dir`, followed by each saved model. */
export function runFileLinks(dir: string): RunFileLink[] {
  const links = RUN_FILES.filter((f) => existsSync(join(dir, f.href)));
  const models = existsSync(join(dir, 'models')) ? readdirSync(join(dir, 'models')).filter((n) => /\.(safetensors|json)$/.test(n)).sort() : [];
  return [...links, ...models.map((n) => ({ href: `models/${n}`, what: n.endsWith('.json') ? 'model metadata' : 'model weights' }))];
}

/**
 * Renders and writes the whole report into `dir` (created if missing). Parts of the input that are absent are
 * skipped. Pictures: `lr-find-<name>.png`, `training-curves.png`, `confusion-matrix.png`, `top-losses.png`, each
 * with a `.json` of its numbers; plus `interpretation.json` and `index.html`.
 *
 * @param dir - run directory
 * @throws TrainerError `ERR_BAD_CONFIG` for bad options; `ERR_DATA` for inconsistent input; `ERR_BAD_IMAGE` when a
 *   top-loss image cannot be read; `ERR_INTERNAL` when rendering or writing fails
 */
export async function writeRunReport(dir: string, input: RunReportInput, options: ReportOptions = {}): Promise<ReportManifest> {
  const o = resolveReportOptions(options);
  await mkdir(dir, { recursive: true });
  const w = new ReportWriter(dir);
  const usedStems = new Set<string>();
  await addShowBatch(w, dir);
  for (const record of input.lrFinds ?? []) {
    const stem = lrFindStem(record.name, usedStems);
    usedStems.add(stem);
    await w.chart('lr_find', `lr_find — ${record.name}`, stem, lrFindChart(record), o.chartScale);
  }
  if (input.stages !== undefined && input.stages.length > 0) {
    await w.chart('training', 'Training curves', 'training-curves', trainingCurvesChart(input.stages), o.chartScale);
  }
  await writeInterpretation(w, input, o);
  await w.writeFile('index.html', renderReportHtml({ ...input, data: input.data ?? readDataAccount(dir) }, w.pictures, o.mostConfusedMinVal, runFileLinks(dir)));
  return { indexHtml: join(dir, 'index.html'), pictures: w.pictures, files: w.files, textRenders: await fontsRenderText() };
}
