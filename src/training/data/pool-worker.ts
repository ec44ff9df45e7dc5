/**
 * piscina worker: decodes and augments one item, or verifies one file. Runs in a worker thread; one job per task.
 * The result is a plain object (structured-cloned back; ~600 KB per 224² item).
 */
import sharp from 'sharp';
import { decodeRgb, skipReasonOf, type SkipReason } from './decode.js';
import { hashSeed, mulberry32 } from '../../contract/plan/rng.js';
import { CENTRE_CROP, renderItem, sampleAugment } from './transforms.js';
import type { TransformSettings } from '../../contract/transform-settings.js';

// One libvips thread per worker thread: the pool provides the parallelism.
sharp.concurrency(1);
sharp.cache(false);

/** Decode + augment one item. */
export interface RenderTask {
  readonly kind: 'render';
  readonly path: string;
  /** Output side in pixels. */
  readonly size: number;
  /** Random augmentation (train) or centre crop (valid). */
  readonly augment: boolean;
  /** fastai `get_transforms(...)` settings of the augmentation; omitted → the tutorial's defaults. */
  readonly transforms?: TransformSettings;
  readonly seed: number;
  readonly epoch: number;
  /** Index of the item in the dataset's item list: with (seed, epoch) it fixes the item's random draws. */
  readonly itemIndex: number;
  readonly maxInputPixels: number;
}

/** Decode one file fully, to check it. */
export interface VerifyTask {
  readonly kind: 'verify';
  readonly path: string;
  readonly maxInputPixels: number;
}

/** A task for {@link handle}. */
export type PoolTask = RenderTask | VerifyTask;

/** Outcome of a task: pixels (render: `[size, size, 3]` float32 HWC, normalized) or the skip reason. */
export type PoolResult =
  | { readonly ok: true; readonly pixels: Float32Array | null; readonly width: number; readonly height: number }
  | { readonly ok: false; readonly reason: SkipReason; readonly message: string };

/** The worker entry point (piscina calls the default export). */
export default async function handle(task: PoolTask): Promise<PoolResult> {
  try {
    if (task.kind === 'verify') {
      const img = await decodeRgb(task.path, { maxInputPixels: task.maxInputPixels });
      return { ok: true, pixels: null, width: img.width, height: img.height };
    }
    const img = await decodeRgb(task.path, { shorterSide: task.size, maxInputPixels: task.maxInputPixels });
    const params = task.augment ? sampleAugment(mulberry32(hashSeed(task.seed, task.epoch, task.itemIndex)), task.transforms) : CENTRE_CROP;
    const pixels = new Float32Array(task.size * task.size * 3);
    renderItem(img, params, task.size, pixels);
    return { ok: true, pixels, width: img.width, height: img.height };
  } catch (err) {
    return { ok: false, reason: skipReasonOf(err), message: err instanceof Error ? err.message : String(err) };
  }
}
