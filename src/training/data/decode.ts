/**
 * Image decoding with sharp: by content (not extension), EXIF orientation honoured, alpha flattened onto white,
 * greyscale/CMYK converted to 3-channel 8-bit sRGB, truncated files rejected, a pixel-count ceiling enforced.
 */
import { stat } from 'node:fs/promises';
import sharp from 'sharp';
import { TrainerError } from '../../contract/errors.js';
import type { RgbImage } from './transforms.js';

/** Why an image candidate was left out. */
export type SkipReason = 'empty' | 'not an image' | 'truncated/corrupt' | 'too large' | 'unreadable';

/** Every {@link SkipReason}, for zero-filled counters. */
export const SKIP_REASONS: readonly SkipReason[] = Object.freeze(['empty', 'not an image', 'truncated/corrupt', 'too large', 'unreadable']);

/**
 * Largest accepted image, in pixels (width × height) before resizing: 50 megapixels (a 8660×5773 photo). The
 * largest Pets image is far below; anything bigger is skipped as "too large" rather than exhausting memory
 * (passed to sharp's `limitInputPixels`).
 */
export const DEFAULT_MAX_INPUT_PIXELS = 50_000_000;

/** Options of {@link decodeRgb}. */
export interface DecodeOptions {
  /** Resize so the SHORTER side equals this many pixels (aspect kept, small images upscaled); omitted → native. */
  readonly shorterSide?: number;
  /** Pixel ceiling, see {@link DEFAULT_MAX_INPUT_PIXELS}. */
  readonly maxInputPixels?: number;
}

/**
 * Size of a `width × height` image resized (aspect kept) so that its SHORTER side is `shorterSide` px, as sharp's
 * `fit: 'outside'` resize does (each side rounded to whole pixels; EXIF rotation swaps the sides, not the product).
 */
export function resizedSize(width: number, height: number, shorterSide: number): { width: number; height: number } {
  const scale = shorterSide / Math.min(width, height);
  return { width: Math.max(shorterSide, Math.round(width * scale)), height: Math.max(shorterSide, Math.round(height * scale)) };
}

/**
 * Why a `width × height` image is too large once resized to a shorter side of `shorterSide` px (more than
 * `maxPixels` pixels, the same ceiling as the decoded image's: {@link DEFAULT_MAX_INPUT_PIXELS}), or null when it is
 * not. Only a very elongated image gets there (a 2×30000 strip at 224 px: 752 megapixels), which a decoded-pixel
 * ceiling alone lets through. The text matches 'pixel limit', so {@link classifyDecodeError} calls it 'too large'.
 */
export function resizedTooLarge(width: number, height: number, shorterSide: number, maxPixels: number = DEFAULT_MAX_INPUT_PIXELS): string | null {
  const out = resizedSize(width, height, shorterSide);
  if (out.width * out.height <= maxPixels) return null;
  return `resized to a shorter side of ${shorterSide} px the ${width}×${height} image would be ${out.width}×${out.height} `
    + `= ${(out.width * out.height / 1e6).toFixed(0)} megapixels, over the pixel limit of ${maxPixels / 1e6} megapixels`;
}

/** Maps a sharp error message (and file size) to a {@link SkipReason}. */
export function classifyDecodeError(message: string, bytes: number): SkipReason {
  if (bytes === 0) return 'empty';
  if (/unsupported image format/i.test(message)) return 'not an image';
  if (/pixel limit/i.test(message)) return 'too large';
  if (/ENOENT|EACCES|EISDIR/.test(message)) return 'unreadable';
  return 'truncated/corrupt';
}

/**
 * Decodes a file to RGB uint8 `[height, width, 3]` HWC.
 *
 * @throws TrainerError ERR_BAD_IMAGE whose message starts with the {@link SkipReason} (e.g. "empty: …").
 */
export async function decodeRgb(path: string, options: DecodeOptions = {}): Promise<RgbImage> {
  let bytes = -1;
  try {
    bytes = (await stat(path)).size;
    if (bytes === 0) throw new Error('file is empty');
    const maxPixels = options.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
    let img = sharp(path, { failOn: 'truncated', limitInputPixels: maxPixels })
      .rotate()
      .flatten({ background: '#ffffff' });
    if (options.shorterSide !== undefined) {
      // The ceiling holds for the resized image too: a thin strip (a 1.3 KB 2×30000 PNG) is far below it as
      // decoded, yet resized to a shorter side of 224 px it would be 224×3360000 (2.3 GB of RGB).
      // From the header, on the same instance (sharp reads metadata without decoding pixels or ending the pipeline).
      const { width, height } = await img.metadata();
      if (width !== undefined && height !== undefined) {
        const problem = resizedTooLarge(width, height, options.shorterSide, maxPixels);
        if (problem !== null) throw new Error(problem);
      }
      img = img.resize(options.shorterSide, options.shorterSide, { fit: 'outside' });
    }
    const { data, info } = await img.toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`expected 3 channels after conversion, got ${info.channels}`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
  } catch (cause) {
    const message = cause instanceof Error ? cause.message : String(cause);
    const reason = classifyDecodeError(message, bytes);
    throw new TrainerError('ERR_BAD_IMAGE', `${reason}: ${path} (${message})`, { cause });
  }
}

/** The {@link SkipReason} carried by a {@link decodeRgb} error. */
export function skipReasonOf(err: unknown): SkipReason {
  const m = /^(empty|not an image|truncated\/corrupt|too large|unreadable):/.exec(err instanceof Error ? err.message : '');
  return (m?.[1] as SkipReason | undefined) ?? 'unreadable';
}

/** Skipped files, each reported once, with counts per reason (exported to metrics by the caller). */
export class SkipLog {
  private readonly seen = new Map<string, SkipReason>();
  private readonly counts = new Map<SkipReason, number>(SKIP_REASONS.map((r) => [r, 0]));

  /** @param onReport - called once per newly skipped path (e.g. a log line). */
  constructor(private readonly onReport: (path: string, reason: SkipReason) => void = () => {}) {}

  /** Records a skip; returns false (and does nothing) when the path was already reported. */
  report(path: string, reason: SkipReason): boolean {
    if (this.seen.has(path)) return false;
    this.seen.set(path, reason);
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
    this.onReport(path, reason);
    return true;
  }

  /** Skipped files so far, in report order. */
  entries(): { path: string; reason: SkipReason }[] {
    return [...this.seen].map(([path, reason]) => ({ path, reason }));
  }

  /** Count per reason (every reason present, zero when none). */
  countsByReason(): Record<SkipReason, number> {
    return Object.fromEntries(this.counts) as Record<SkipReason, number>;
  }

  /** True when `path` was skipped. */
  has(path: string): boolean {
    return this.seen.has(path);
  }
}
