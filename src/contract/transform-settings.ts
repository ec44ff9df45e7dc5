/**
 * The augmentation settings coordinator and workers agree on: fastai v1 `get_transforms()`'s arguments, their
 * defaults and allowed ranges, as the configuration file, the `learn` flags and the setup frame carry them. The
 * sampling and rendering that use them are the training library's (`src/training/data/transforms.ts`).
 */

/**
 * fastai v1 `get_transforms(do_flip, flip_vert, max_rotate, max_zoom, max_lighting, max_warp, p_affine, p_lighting)`
 * (vision/transform.py): what the training augmentation may do. Defaults ({@link DEFAULT_TRANSFORMS}) are fastai's,
 * which the tutorial uses.
 */
export interface TransformSettings {
  /** Random flips: horizontal with p = 0.5, or with `flipVert` one of the 8 dihedral transforms (p = 1). */
  readonly doFlip: boolean;
  /** With `doFlip`: also vertical flips and 90° turns (fastai `dihedral_affine`), for images with no "up". */
  readonly flipVert: boolean;
  /** Rotation up to ± this many degrees, [0, 180]; 0 = none (fastai `rotate`, p = pAffine). */
  readonly maxRotate: number;
  /** Zoom scale up to this factor, [1, 10]; 1 = none (fastai `rand_zoom(scale=(1, max_zoom))`, p = pAffine). */
  readonly maxZoom: number;
  /** Lighting change, [0, 1): brightness U(0.5(1−m), 0.5(1+m)), contrast log-uniform(1−m, 1/(1−m)), p = pLighting; 0 = none. */
  readonly maxLighting: number;
  /** Perspective warp magnitude, [0, 1): 4 values ~ U(−m, m) (fastai `symmetric_warp`, p = pAffine); 0 = none. */
  readonly maxWarp: number;
  /** Probability of each affine transform (warp, rotate, zoom), [0, 1]. */
  readonly pAffine: number;
  /** Probability of each lighting transform (brightness, contrast), [0, 1]. */
  readonly pLighting: number;
}

/** fastai v1 `get_transforms()` defaults: the tutorial's augmentation. */
export const DEFAULT_TRANSFORMS: TransformSettings = Object.freeze({
  doFlip: true, flipVert: false, maxRotate: 10, maxZoom: 1.1, maxLighting: 0.2, maxWarp: 0.2, pAffine: 0.75, pLighting: 0.75,
});

/** Allowed range of each numeric {@link TransformSettings} field, closed unless `openHi`. */
export const TRANSFORM_RANGES = Object.freeze({
  maxRotate: { lo: 0, hi: 180, openHi: false }, maxZoom: { lo: 1, hi: 10, openHi: false },
  maxLighting: { lo: 0, hi: 1, openHi: true }, maxWarp: { lo: 0, hi: 1, openHi: true },
  pAffine: { lo: 0, hi: 1, openHi: false }, pLighting: { lo: 0, hi: 1, openHi: false },
});

/**
 * Validates a {@link TransformSettings} (e.g. arriving in a setup frame).
 * @returns the first problem as `field must be …, got …`, or null when valid
 */
export function transformProblem(t: Readonly<Record<string, unknown>>): string | null {
  for (const f of ['doFlip', 'flipVert'] as const) if (typeof t[f] !== 'boolean') return `${f} must be true or false, got ${JSON.stringify(t[f])}`;
  for (const [f, r] of Object.entries(TRANSFORM_RANGES)) {
    const v = t[f];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < r.lo || (r.openHi ? v >= r.hi : v > r.hi)) {
      return `${f} must be a number in [${r.lo}, ${r.hi}${r.openHi ? ')' : ']'}, got ${JSON.stringify(v)}`;
    }
  }
  return null;
}
