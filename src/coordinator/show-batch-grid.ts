/**
 * fastai `data.show_batch(rows, figsize)`: a PNG grid of (augmented) images with their class names, drawn with sharp
 * (raw pixels → grid, labels as an SVG text overlay in DejaVu Sans).
 */
import sharp from 'sharp';
import { TrainerError } from '../contract/errors.js';
import type { Batch } from '../training/data/loader.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../training/data/transforms.js';

/** Options of {@link showBatch}. */
export interface ShowBatchOptions {
  /** Grid rows (integer ≥ 1); default 3. */
  readonly rows?: number;
  /** Grid columns (integer ≥ 1); default 3. */
  readonly cols?: number;
  /** Height of the caption band under each image, px; default 28. */
  readonly captionPx?: number;
}

/** Defaults of {@link ShowBatchOptions}. */
export const DEFAULT_SHOW_BATCH = Object.freeze({ rows: 3, cols: 3, captionPx: 28 });

/** Undoes ImageNet normalization of one `[size, size, 3]` HWC item into uint8 RGB (clamped to 0..255). */
export function denormalize(x: Float32Array, offset: number, size: number): Uint8Array {
  const out = new Uint8Array(size * size * 3);
  for (let i = 0; i < out.length; i++) {
    const c = i % 3;
    const v = (x[offset + i]! * IMAGENET_STD[c]! + IMAGENET_MEAN[c]!) * 255;
    out[i] = v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
  }
  return out;
}

/** DejaVu Sans averages about 0.6 em per character: estimated text width = 0.6 · fontPx · characters. */
const EM_PER_CHAR = 0.6;
/** A `[size, size, 3]` uint8 RGB image with each pixel repeated as a `scale × scale` block: `[size·scale, size·scale, 3]`. */
function enlarge(px: Uint8Array, size: number, scale: number): Uint8Array {
  const side = size * scale;
  const out = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) {
    const src = Math.floor(y / scale) * size;
    for (let x = 0; x < side; x++) out.set(px.subarray((src + Math.floor(x / scale)) * 3, (src + Math.floor(x / scale)) * 3 + 3), (y * side + x) * 3);
  }
  return out;
}

/** Smallest caption font, px: below it a label is shortened with an ellipsis instead. */
const MIN_FONT_PX = 7;

/**
 * One font size for every caption of a grid (fastai's titles share one size), the largest at which every label
 * fits its cell (`size − 4` px, estimated at {@link EM_PER_CHAR}), at most 0.6 · captionPx and at least
 * {@link MIN_FONT_PX}; a label still too long at that size is cut and ends with "…".
 * @param labels - captions, one per cell
 * @param size - cell width, px
 * @param captionPx - caption band height, px
 */
export function captionLayout(labels: readonly string[], size: number, captionPx: number): { fontPx: number; texts: string[] } {
  const room = Math.max(1, size - 4);
  const longest = Math.max(1, ...labels.map((l) => l.length));
  const fontPx = Math.max(MIN_FONT_PX, Math.min(Math.round(captionPx * 0.6), Math.floor(room / (EM_PER_CHAR * longest))));
  const maxChars = Math.max(1, Math.floor(room / (EM_PER_CHAR * fontPx)));
  return { fontPx, texts: labels.map((l) => (l.length <= maxChars ? l : `${l.slice(0, Math.max(1, maxChars - 1))}…`)) };
}

/**
 * Smallest cell, px: smaller images are enlarged by a whole factor (each pixel a k×k block, as matplotlib's `imshow`
 * shows a small image in fastai's fixed `figsize`), so the picture and its captions stay readable. Drawn at their own
 * size, `--size 16` gave a 48×132 px grid captioned `B…`, `A…`, and `--size 64` cut `Abyssinian` short in a 3-column
 * grid 192 px wide.
 */
export const MIN_CELL_PX = 96;

/** Whole enlargement factor of a `size`-px image so that its cell is at least {@link MIN_CELL_PX} wide. */
export function cellScale(size: number): number {
  return Math.max(1, Math.ceil(MIN_CELL_PX / size));
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/**
 * Writes a rows × cols grid of the first items of `batch` to `outPath` (PNG), each captioned with its class name.
 * Image size: width = cols·c, height = rows·(c + captionPx), c = size · {@link cellScale}(size) (c = size from
 * {@link MIN_CELL_PX} px on). Padding items (valid = 0) are left black and captioned "(padding)".
 *
 * @param batch - `x` `[b, size, size, 3]` float32 NHWC normalized, `y` `[b]` int32.
 * @throws TrainerError ERR_BAD_FLAG when rows/cols are not integers ≥ 1 or the batch size does not match x.
 */
export async function showBatch(batch: Batch, classes: readonly string[], outPath: string, options: ShowBatchOptions = {}): Promise<{ width: number; height: number }> {
  const { rows, cols, captionPx } = { ...DEFAULT_SHOW_BATCH, ...options };
  for (const [k, v] of Object.entries({ rows, cols })) {
    if (!Number.isInteger(v) || v < 1) throw new TrainerError('ERR_BAD_FLAG', `show_batch ${k} must be an integer ≥ 1, got ${v}`);
  }
  const b = batch.y.length;
  const size = Math.round(Math.sqrt(batch.x.length / (3 * Math.max(b, 1))));
  if (size * size * 3 * b !== batch.x.length) throw new TrainerError('ERR_BAD_FLAG', `show_batch x must be [${b}, s, s, 3], got ${batch.x.length} values`);
  const scale = cellScale(size);
  const side = size * scale;
  const width = cols * side;
  const cell = side + captionPx;
  const height = rows * cell;
  const grid = Buffer.alloc(width * height * 3, 255);
  const shown = Math.min(b, rows * cols);
  const labels = Array.from({ length: shown }, (_, k) => (batch.valid[k] === 1 ? classes[batch.y[k]!] ?? `#${batch.y[k]}` : '(padding)'));
  const { fontPx, texts: captions } = captionLayout(labels, side, captionPx);
  const texts: string[] = [];
  for (let k = 0; k < shown; k++) {
    const gx = (k % cols) * side;
    const gy = Math.floor(k / cols) * cell;
    const real = batch.valid[k] === 1;
    if (real) {
      const px = scale === 1 ? denormalize(batch.x, k * size * size * 3, size) : enlarge(denormalize(batch.x, k * size * size * 3, size), size, scale);
      for (let r = 0; r < side; r++) grid.set(px.subarray(r * side * 3, (r + 1) * side * 3), ((gy + r) * width + gx) * 3);
    } else {
      for (let r = 0; r < side; r++) grid.fill(0, ((gy + r) * width + gx) * 3, ((gy + r) * width + gx + side) * 3);
    }
    texts.push(`<text x="${gx + side / 2}" y="${gy + side + captionPx * 0.72}" text-anchor="middle">${escapeXml(captions[k]!)}</text>`);
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><g font-family="DejaVu Sans" font-size="${fontPx}" fill="#111">${texts.join('')}</g></svg>`;
  const composed = await sharp(grid, { raw: { width, height, channels: 3 } })
    .composite([{ input: Buffer.from(svg), top: 0, left: 0 }])
    .png()
    .toBuffer();
  await sharp(composed).removeAlpha().png().toFile(outPath); // opaque RGB PNG

  return { width, height };
}
