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
    let img = sharp(path, { failOn: 'truncated', limitInputPixels: options.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS })
      .rotate()
      .flatten({ background: '#ffffff' });
    if (options.shorterSide !== undefined) img = img.resize(options.shorterSide, options.shorterSide, { fit: 'outside' });
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
