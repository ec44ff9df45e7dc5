/**
 * The run report's `index.html`: self-contained (inline CSS, no scripts, no external resources), links pictures
 * and their JSON by relative path so it works opened from disk. Every piece of text is escaped.
 */
import type { ConfusedPair } from '../interpret/interpretation.js';
import { type DataAccountJson, foldersNotSearchedOf, unsearchedFolderLines } from '../../training/data/accounting.js';
import { escapeXml } from './render.js';
import type { EpochRow, RunReportInput, StageRecord } from './types.js';

/** Report section a picture belongs to. */
export type ReportSection = 'data' | 'lr_find' | 'training' | 'interpretation';

/** A picture written in the run directory, with the JSON of its numbers beside it. */
export interface ReportPicture {
  readonly section: ReportSection;
  /** Caption shown above the picture. */
  readonly caption: string;
  /** PNG file name, relative to the run directory. */
  readonly png: string;
  /** JSON file name, relative to the run directory. */
  readonly json: string;
  /** Display size in CSS pixels, for the `<img>` attributes (the PNG may have more pixels, e.g. 2× for charts). */
  readonly width: number;
  readonly height: number;
}

const CSS = `body{font-family:"DejaVu Sans",Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{margin-bottom:4px}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
.notice{background:#fff4ce;border:1px solid #e0c060;padding:8px 12px;margin:12px 0}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #ccc;padding:3px 10px;text-align:right}
th{background:#f2f2f2}td.k,td.t{text-align:left}td.v{text-align:left;font-family:"DejaVu Sans Mono",monospace}
figure{margin:12px 0 24px}img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-weight:bold;margin-bottom:6px}`;

/** Formats seconds as fastai does in its epoch table: `mm:ss` (or `h:mm:ss` from one hour). */
export function formatEpochTime(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const two = (v: number): string => String(v).padStart(2, '0');
  const h = Math.floor(s / 3600);
  return h > 0 ? `${h}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}` : `${two(Math.floor(s / 60))}:${two(s % 60)}`;
}

function epochRowHtml(row: EpochRow): string {
  const cells = [String(row.epoch), row.trainLoss.toFixed(6), row.validLoss.toFixed(6), row.errorRate.toFixed(6), formatEpochTime(row.timeSeconds)];
  return `<tr>${cells.map((c) => `<td>${escapeXml(c)}</td>`).join('')}</tr>`;
}

/** The epoch table of one stage, columns as fastai prints them. */
export function stageTableHtml(stage: StageRecord): string {
  const head = ['epoch', 'train_loss', 'valid_loss', 'error_rate', 'time'].map((h) => `<th>${h}</th>`).join('');
  return `<h3>${escapeXml(stage.name)}</h3>\n<table><thead><tr>${head}</tr></thead><tbody>\n` +
    `${stage.epochs.map(epochRowHtml).join('\n')}\n</tbody></table>`;
}

function configHtml(config: Readonly<Record<string, unknown>>): string {
  const rows = Object.entries(config).map(([key, value]) => {
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    return `<tr><td class="k">${escapeXml(key)}</td><td class="v">${escapeXml(String(text))}</td></tr>`;
  });
  return `<table><thead><tr><th>setting</th><th>value</th></tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table>`;
}

/**
 * The data section: where every file under --data went (train, valid, each left-out reason with its rule, the fix
 * and the first paths), the classes with their counts, and the class warnings. Full lists are in `data.json`.
 */
export function dataAccountHtml(d: DataAccountJson, maxPaths = 5): string {
  const cell = (v: string | number, cls = ''): string => `<td${cls ? ` class="${cls}"` : ''}>${escapeXml(String(v))}</td>`;
  const rows = [
    `<tr>${cell('train', 'k')}${cell(d.train)}${cell('', 't')}</tr>`,
    `<tr>${cell('valid', 'k')}${cell(d.valid)}${cell('', 't')}</tr>`,
    ...d.groups.map((g) => `<tr>${cell(`skipped: ${g.reason}`, 'k')}${cell(g.count)}${cell(`${g.rule}; ${g.fix}. ` +
      `${g.paths.slice(0, maxPaths).join(', ')}${g.count > maxPaths ? ` (+${g.count - maxPaths} more)` : ''}`, 't')}</tr>`),
    `<tr>${cell('files found', 'k')}${cell(d.filesFound)}${cell(d.root, 't')}</tr>`,
  ];
  const parts = [`<table><thead><tr><th>where</th><th>files</th><th>why / which</th></tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table>`];
  const notes = [...d.warnings, ...unsearchedFolderLines(foldersNotSearchedOf(d), maxPaths),
    ...(d.csvRowsWithoutFile.length ? [`${d.csvRowsWithoutFile.length} CSV row(s) name no file: ${d.csvRowsWithoutFile.slice(0, maxPaths).join(', ')}`] : [])];
  if (notes.length) parts.push(`<ul>${notes.map((n) => `<li>${escapeXml(n)}</li>`).join('')}</ul>`);
  const classRows = d.classes.map((c) => `<tr>${cell(c.name, 't')}${cell(c.train)}${cell(c.valid)}${cell(c.bad)}${cell(c.discarded)}</tr>`);
  parts.push(`<details><summary>${d.classes.length} classes</summary><table><thead><tr><th>class</th><th>train</th><th>valid</th><th>bad files</th><th>discarded (no training image)</th></tr></thead><tbody>\n${classRows.join('\n')}\n</tbody></table></details>`);
  parts.push('<div><a href="data.json">every file left out (JSON)</a></div>');
  return parts.join('\n');
}

/** The most_confused table: actual | predicted | count. */
export function mostConfusedHtml(pairs: readonly ConfusedPair[], minVal: number): string {
  if (pairs.length === 0) return `<p>No pair of classes confused ${escapeXml(String(minVal))} times or more.</p>`;
  const rows = pairs.map((p) => `<tr><td class="t">${escapeXml(p.actual)}</td><td class="t">${escapeXml(p.predicted)}</td><td>${p.count}</td></tr>`);
  return `<table><thead><tr><th>actual</th><th>predicted</th><th>count</th></tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table>`;
}

function figureHtml(p: ReportPicture): string {
  const png = encodeURI(p.png);
  return `<figure><figcaption>${escapeXml(p.caption)}</figcaption>` +
    `<a href="${escapeXml(png)}"><img src="${escapeXml(png)}" width="${p.width}" height="${p.height}" alt="${escapeXml(p.caption)}"></a>` +
    `<div><a href="${escapeXml(encodeURI(p.json))}">numbers (JSON)</a></div></figure>`;
}

function section(title: string, body: string[]): string {
  return body.length === 0 ? '' : `<h2>${escapeXml(title)}</h2>\n${body.join('\n')}`;
}

/** A file or folder of the run directory that the report links (relative path, and what it holds). */
export interface RunFileLink {
  readonly href: string;
  readonly what: string;
}

/**
 * Builds `index.html`.
 *
 * @param input - the report input (title, notice, config, stages, interpretation)
 * @param pictures - pictures already written in the run directory
 * @param mostConfusedMinVal - `min_val` of the most_confused table (fastai tutorial: 2)
 * @param files - other files of the run to link in a last "Files" section (configuration, numbers, models)
 */
export function renderReportHtml(input: RunReportInput, pictures: readonly ReportPicture[], mostConfusedMinVal: number, files: readonly RunFileLink[] = []): string {
  const figures = (s: ReportSection): string[] => pictures.filter((p) => p.section === s).map(figureHtml);
  const interp = input.interpretation;
  const interpretation = figures('interpretation');
  if (interp !== undefined) {
    interpretation.unshift(`<p>${interp.n} validation items, error_rate ${escapeXml(interp.errorRate().toFixed(6))}.</p>`);
    interpretation.push(`<h3>most_confused(min_val=${escapeXml(String(mostConfusedMinVal))})</h3>`,
      mostConfusedHtml(interp.mostConfused(mostConfusedMinVal), mostConfusedMinVal));
  }
  const parts = [
    `<h1>${escapeXml(input.title)}</h1>`,
    input.notice === undefined ? '' : `<div class="notice">${escapeXml(input.notice)}</div>`,
    section('Configuration', input.config === undefined ? [] : [configHtml(input.config)]),
    section('Data', [...(input.data ? [dataAccountHtml(input.data)] : []), ...figures('data')]),
    section('lr_find', figures('lr_find')),
    section('Training', [...(input.stages ?? []).map(stageTableHtml), ...figures('training')]),
    section('Interpretation', interpretation),
    section('Files', files.length === 0 ? [] : [`<ul>${files.map((f) => `<li><a href="${escapeXml(encodeURI(f.href))}">${escapeXml(f.href)}</a> — ${escapeXml(f.what)}</li>`).join('')}</ul>`]),
  ];
  return `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(input.title)}</title>` +
    `<style>${CSS}</style></head><body>\n${parts.filter((p) => p !== '').join('\n')}\n</body></html>\n`;
}
