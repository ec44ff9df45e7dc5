/**
 * fastai v1 `plot_top_losses(k)` as a PNG: a grid of ceil(√k) columns of the k worst validation images, each
 * titled `pred/actual / loss / probability of actual` (2 d.p.), figure title "Prediction/Actual/Loss/Probability"
 * (fastai 1.0.61 `ClassificationInterpretation.plot_top_losses`). Images are read and resized with sharp; titles
 * are SVG text composited onto the grid.
 */
import sharp from 'sharp';
import { TrainerError } from '../../contract/errors.js';
import type { ClassificationInterpretation } from '../interpret/interpretation.js';
import { escapeXml, REPORT_FONT, type RenderedPng } from './render.js';

/** One image of the grid. */
export interface TopLossTile {
  /** Image file path. */
  readonly path: string;
  /** Predicted class name. */
  readonly pred: string;
  /** Actual class name. */
  readonly actual: string;
  /** Cross-entropy of the item, nats. */
  readonly loss: number;
  /** Probability given to the actual class, [0, 1]. */
  readonly probActual: number;
}

/** Grid layout options; all optional. */
export interface TopLossesGridOptions {
  /** Edge of each (square) image, pixels, integer in [64, 1024]. */
  readonly tileSizePx?: number;
  /** Largest font size of the tile titles, pixels, in [6, 48]; shrunk when a class name would not fit. */
  readonly titleFontPx?: number;
}

/** Resolved {@link TopLossesGridOptions}. */
export type ResolvedTopLossesGridOptions = Required<TopLossesGridOptions>;

/** Defaults: 224-pixel tiles (fastai's input size), 14-pixel titles. */
export const DEFAULT_TOP_LOSSES_GRID: ResolvedTopLossesGridOptions = Object.freeze({ tileSizePx: 224, titleFontPx: 14 });

/** Figure title of fastai's `plot_top_losses`. */
export const TOP_LOSSES_FIGURE_TITLE = 'Prediction/Actual/Loss/Probability';

/** Upper estimate of DejaVu Sans's mean advance per character, em (for line breaking only). */
const EM_PER_CHAR = 0.6;
const GAP_PX = 16;
const FIGURE_TITLE_PX = 20;

/**
 * Validates and fills grid options.
 *
 * @throws TrainerError `ERR_BAD_CONFIG` naming the field and rule
 */
export function resolveTopLossesGridOptions(options: TopLossesGridOptions = {}): ResolvedTopLossesGridOptions {
  const r = { ...DEFAULT_TOP_LOSSES_GRID, ...options };
  if (!Number.isInteger(r.tileSizePx) || r.tileSizePx < 64 || r.tileSizePx > 1024) {
    throw new TrainerError('ERR_BAD_CONFIG', `tileSizePx must be an integer in [64, 1024], got ${r.tileSizePx}`);
  }
  if (!(r.titleFontPx >= 6 && r.titleFontPx <= 48)) {
    throw new TrainerError('ERR_BAD_CONFIG', `titleFontPx must be a number in [6, 48], got ${r.titleFontPx}`);
  }
  return r;
}

/** Tile title exactly as fastai formats it: `pred/actual / loss / prob`, numbers to 2 d.p. */
export function topLossTitle(tile: TopLossTile): string {
  return `${tile.pred}/${tile.actual} / ${tile.loss.toFixed(2)} / ${tile.probActual.toFixed(2)}`;
}

/** Splits a {@link topLossTitle} into `pred/`, `actual`, ` / loss / prob`: the places a line may break. */
function titlePieces(title: string): string[] {
  return title.split(/(?<=\/)(?=\S)|(?= \/ [^/]+ \/ [^/]+$)/);
}

/**
 * Breaks a {@link topLossTitle} into lines of at most `maxChars` characters, only after `pred/` or before
 * ` / loss / prob` (names and numbers stay whole); a piece longer than `maxChars` gets a line of its own.
 */
export function wrapTitle(title: string, maxChars: number): string[] {
  const pieces = titlePieces(title);
  const lines: string[] = [];
  let line = '';
  for (const piece of pieces) {
    if (line !== '' && (line + piece).trimEnd().length > maxChars) {
      lines.push(line.trim());
      line = piece;
    } else {
      line += piece;
    }
  }
  if (line.trim() !== '') lines.push(line.trim());
  return lines;
}

/**
 * Tiles for the `k` worst items of an interpretation.
 *
 * @param k - number of images, integer in [1, n]
 * @throws TrainerError `ERR_DATA` when the interpretation has no item paths or `k` is out of range
 */
export function topLossTiles(interp: ClassificationInterpretation, k: number): TopLossTile[] {
  if (interp.items === undefined) throw new TrainerError('ERR_DATA', 'top losses: the interpretation has no item paths to show');
  return interp.topLosses(k).map((t) => ({
    path: interp.items![t.index],
    pred: interp.classes[t.pred],
    actual: interp.classes[t.actual],
    loss: t.loss,
    probActual: t.probActual,
  }));
}

/**
 * One tile: the image scaled and centre-cropped, or, for an image that cannot be read any more (deleted, moved or
 * changed since the data step: it then had no prediction and counts as an error, so it is often among the worst),
 * a grey tile saying so. Before, such a file ended a finished run at its report with ERR_BAD_IMAGE.
 */
async function loadTile(path: string, size: number): Promise<Buffer> {
  try {
    // Scale the shorter side to `size` and crop the centre: what fastai's validation transform shows.
    return await sharp(path).rotate().resize(size, size, { fit: 'cover', position: 'centre' }).removeAlpha().png().toBuffer();
  } catch {
    const font = Math.max(8, Math.round(size / 9));
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}"><rect width="${size}" height="${size}" fill="#d9d9d9"/>`
      + `<text x="${size / 2}" y="${size / 2}" font-size="${font}" font-family="${REPORT_FONT}, sans-serif" text-anchor="middle" fill="#555">image unreadable</text></svg>`;
    return sharp(Buffer.from(svg)).removeAlpha().png().toBuffer();
  }
}

interface GridLayout {
  cols: number;
  rows: number;
  fontPx: number;
  titleLines: string[][];
  titleBlockPx: number;
  cellW: number;
  cellH: number;
  top: number;
}

function layoutGrid(tiles: readonly TopLossTile[], o: ResolvedTopLossesGridOptions): GridLayout {
  const cols = Math.ceil(Math.sqrt(tiles.length));
  const rows = Math.ceil(tiles.length / cols);
  const titles = tiles.map(topLossTitle);
  const longestPiece = Math.max(...titles.flatMap((t) => titlePieces(t).map((p) => p.trim().length)));
  const fontPx = Math.min(o.titleFontPx, o.tileSizePx / (longestPiece * EM_PER_CHAR));
  const maxChars = Math.floor(o.tileSizePx / (fontPx * EM_PER_CHAR));
  const titleLines = titles.map((t) => wrapTitle(t, maxChars));
  const lineCount = Math.max(...titleLines.map((l) => l.length));
  const titleBlockPx = Math.ceil(lineCount * fontPx * 1.25 + 6);
  return {
    cols, rows, fontPx, titleLines, titleBlockPx,
    cellW: o.tileSizePx + GAP_PX,
    cellH: o.tileSizePx + titleBlockPx + GAP_PX,
    top: GAP_PX + Math.ceil(FIGURE_TITLE_PX * 1.6),
  };
}

function titlesSvg(g: GridLayout, width: number, height: number, tileSizePx: number): string {
  const texts = [`<text x="${width / 2}" y="${GAP_PX + FIGURE_TITLE_PX}" font-size="${FIGURE_TITLE_PX}" font-weight="bold" ` +
    `text-anchor="middle">${escapeXml(TOP_LOSSES_FIGURE_TITLE)}</text>`];
  g.titleLines.forEach((lines, i) => {
    const x = GAP_PX + (i % g.cols) * g.cellW + tileSizePx / 2;
    const y0 = g.top + Math.floor(i / g.cols) * g.cellH;
    lines.forEach((line, l) => texts.push(
      `<text x="${x}" y="${(y0 + (l + 1) * g.fontPx * 1.25).toFixed(1)}" font-size="${g.fontPx.toFixed(2)}" text-anchor="middle">${escapeXml(line)}</text>`));
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
    `<g font-family="${REPORT_FONT}, sans-serif" fill="#000">${texts.join('')}</g></svg>`;
}

/**
 * Renders the top-losses grid. Size: width = cols·(tile + 16) + 16, height = top + rows·(tile + title block + 16),
 * cols = ceil(√k), rows = ceil(k / cols).
 *
 * @param tiles - the k worst items, worst first, k ≥ 1
 * @throws TrainerError `ERR_DATA` when `tiles` is empty; `ERR_BAD_CONFIG` for bad options (an image that cannot be
 *   read gets a grey "image unreadable" tile)
 */
export async function renderTopLossesGrid(tiles: readonly TopLossTile[], options: TopLossesGridOptions = {}): Promise<RenderedPng> {
  if (tiles.length === 0) throw new TrainerError('ERR_DATA', 'top losses: need at least 1 image, got 0');
  const o = resolveTopLossesGridOptions(options);
  const g = layoutGrid(tiles, o);
  const width = GAP_PX + g.cols * g.cellW;
  const height = g.top + g.rows * g.cellH;
  const images = await Promise.all(tiles.map((t) => loadTile(t.path, o.tileSizePx)));
  const composites = images.map((input, i) => ({
    input,
    left: GAP_PX + (i % g.cols) * g.cellW,
    top: g.top + Math.floor(i / g.cols) * g.cellH + g.titleBlockPx,
  }));
  composites.push({ input: Buffer.from(titlesSvg(g, width, height, o.tileSizePx)), left: 0, top: 0 });
  const { data, info } = await sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
    .composite(composites).png().toBuffer({ resolveWithObject: true });
  return { png: data, width: info.width, height: info.height };
}
