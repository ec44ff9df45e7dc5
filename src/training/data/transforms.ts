/**
 * fastai v1 `get_transforms()` + `size=224` crop + `normalize(imagenet_stats)`, as pure TypeScript over an RGB
 * uint8 buffer: the geometry (crop, flip, perspective warp, rotation, zoom) is composed into ONE 3x3 homography and
 * sampled once, bilinearly, with reflection padding (as fastai's single `grid_sample(..., padding_mode='reflection')`);
 * lighting is applied in logit space afterwards (fastai `brightness`/`contrast`, both per-pixel).
 *
 * Coordinates follow fastai/PyTorch: the output square spans [-1, 1] on both axes with pixel centres at
 * (2i+1)/size − 1 (align_corners=False).
 */
import { type Rng } from '../../contract/plan/rng.js';
import { DEFAULT_TRANSFORMS, type TransformSettings } from '../../contract/transform-settings.js';

/** ImageNet channel means on 0..1 RGB (fastai `imagenet_stats`, torchvision). */
export const IMAGENET_MEAN: readonly number[] = Object.freeze([0.485, 0.456, 0.406]);
/** ImageNet channel standard deviations on 0..1 RGB (fastai `imagenet_stats`, torchvision). */
export const IMAGENET_STD: readonly number[] = Object.freeze([0.229, 0.224, 0.225]);


/** Random draws of one augmented item (null = that transform not applied). */
export interface AugmentParams {
  /** Crop position in [0, 1] along x and y (fastai `crop_pad` col_pct/row_pct); 0.5 = centre. */
  readonly cropX: number;
  readonly cropY: number;
  /** Horizontal flip (fastai `flip_lr`, p = 0.5). */
  readonly flip: boolean;
  /** Dihedral transform k in 0..7 (fastai `dihedral_affine`, with `flipVert`); replaces `flip` when set. */
  readonly dihedral?: number | null;
  /** Symmetric perspective warp magnitudes, 4 values ~ U(−0.2, 0.2) (fastai `symmetric_warp`, p = 0.75). */
  readonly warp: readonly [number, number, number, number] | null;
  /** Rotation in degrees ~ U(−10, 10) (fastai `rotate`, p = 0.75). */
  readonly rotateDeg: number | null;
  /** Zoom scale ~ U(1, 1.1) and focal point in [0, 1]² (fastai `rand_zoom`, p = 0.75). */
  readonly zoom: { readonly scale: number; readonly colPct: number; readonly rowPct: number } | null;
  /** Brightness c ~ U(0.4, 0.6): logit(x) += logit(c) (fastai `brightness`, p = 0.75). */
  readonly brightness: number | null;
  /** Contrast s ~ log-uniform(0.8, 1.25): logit(x) *= s (fastai `contrast`, p = 0.75). */
  readonly contrast: number | null;
}

/** Validation: centre crop, nothing else. */
export const CENTRE_CROP: AugmentParams = Object.freeze({
  cropX: 0.5, cropY: 0.5, flip: false, warp: null, rotateDeg: null, zoom: null, brightness: null, contrast: null,
});

/**
 * Draws one item's augmentation from `rng` with fastai v1 `get_transforms(...)` settings (default: the tutorial's).
 * Every value is drawn whether or not its transform fires, so the stream of draws has a fixed layout (13 draws +
 * 4 for the warp) whatever the settings; the flip draw u also picks the dihedral k = ⌊8u⌋ with `flipVert`.
 * A transform with a zero range is never applied (fastai leaves it out of the list).
 */
export function sampleAugment(rng: Rng, t: TransformSettings = DEFAULT_TRANSFORMS): AugmentParams {
  const u = (a: number, b: number): number => a + (b - a) * rng();
  const fires = (p: number): boolean => rng() < p;
  const cropX = rng();
  const cropY = rng();
  const flipDraw = rng();
  const warpOn = fires(t.pAffine) && t.maxWarp > 0;
  const w = t.maxWarp;
  const warp = [u(-w, w), u(-w, w), u(-w, w), u(-w, w)] as const;
  const rotOn = fires(t.pAffine) && t.maxRotate > 0;
  const rot = u(-t.maxRotate, t.maxRotate);
  const zoomOn = fires(t.pAffine) && t.maxZoom > 1;
  const zoom = { scale: u(1, t.maxZoom), colPct: rng(), rowPct: rng() };
  const L = t.maxLighting;
  const brOn = fires(t.pLighting) && L > 0;
  const br = u(0.5 * (1 - L), 0.5 * (1 + L));
  const ctOn = fires(t.pLighting) && L > 0;
  const ct = Math.exp(u(Math.log(1 - L), Math.log(1 / (1 - L))));
  return {
    cropX, cropY, flip: t.doFlip && !t.flipVert && flipDraw < 0.5, dihedral: t.doFlip && t.flipVert ? Math.min(7, Math.floor(flipDraw * 8)) : null,
    warp: warpOn ? warp : null, rotateDeg: rotOn ? rot : null, zoom: zoomOn ? zoom : null,
    brightness: brOn ? br : null, contrast: ctOn ? ct : null,
  };
}

/**
 * fastai v1 `_dihedral_affine(k)`: x ↦ ±x, y ↦ ±y (bits 0 and 1 of k), swapped when bit 2 is set.
 * @param k - integer in 0..7
 */
export function dihedralMatrix(k: number): Mat3 {
  const x = k & 1 ? -1 : 1;
  const y = k & 2 ? -1 : 1;
  return k & 4 ? [0, x, 0, y, 0, 0, 0, 0, 1] : [x, 0, 0, 0, y, 0, 0, 0, 1];
}

/** 3x3 row-major matrix. */
export type Mat3 = [number, number, number, number, number, number, number, number, number];

/** a·b for 3x3 row-major matrices. */
export function mul3(a: Mat3, b: Mat3): Mat3 {
  const r = new Array<number>(9).fill(0) as Mat3;
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) r[i * 3 + j] = a[i * 3]! * b[j]! + a[i * 3 + 1]! * b[3 + j]! + a[i * 3 + 2]! * b[6 + j]!;
  return r;
}

/** Solves A·x = b (n×n, row-major) by Gaussian elimination with partial pivoting. */
function solve(a: number[][], b: number[]): number[] {
  const n = b.length;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r]![c]!) > Math.abs(a[p]![c]!)) p = r;
    [a[c], a[p]] = [a[p]!, a[c]!];
    [b[c], b[p]] = [b[p]!, b[c]!];
    for (let r = c + 1; r < n; r++) {
      const f = a[r]![c]! / a[c]![c]!;
      for (let k = c; k < n; k++) a[r]![k]! -= f * a[c]![k]!;
      b[r]! -= f * b[c]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = b[r]!;
    for (let k = r + 1; k < n; k++) s -= a[r]![k]! * x[k]!;
    x[r] = s / a[r]![r]!;
  }
  return x;
}

/**
 * The homography of fastai v1 `symmetric_warp(magnitude=m)`: it maps the target corners
 * [[-1-m3,-1-m1], [-1-m2,1+m1], [1+m3,-1-m0], [1+m2,1+m0]] onto [[-1,-1], [-1,1], [1,-1], [1,1]]
 * (`_find_coeffs`, after cwren's perspective interpolator); applied to sampling coordinates.
 */
export function symmetricWarpMatrix(m: readonly [number, number, number, number]): Mat3 {
  const orig = [[-1, -1], [-1, 1], [1, -1], [1, 1]];
  const targ = [[-1 - m[3], -1 - m[1]], [-1 - m[2], 1 + m[1]], [1 + m[3], -1 - m[0]], [1 + m[2], 1 + m[0]]];
  const A: number[][] = [];
  const B: number[] = [];
  for (let i = 0; i < 4; i++) {
    const [x, y] = targ[i]!;
    const [X, Y] = orig[i]!;
    A.push([x!, y!, 1, 0, 0, 0, -X! * x!, -X! * y!]);
    A.push([0, 0, 0, x!, y!, 1, -Y! * x!, -Y! * y!]);
    B.push(X!, Y!);
  }
  const c = solve(A, B);
  return [c[0]!, c[1]!, c[2]!, c[3]!, c[4]!, c[5]!, c[6]!, c[7]!, 1];
}

/**
 * The composed sampling homography: output coords p → source coords in the crop's [-1, 1] frame,
 * s = Warp(Flip·Rotate·Zoom·p) (Flip: x → −x, or the dihedral matrix). Rotation: fastai `rotate` [[cos, −sin], [sin, cos]]; zoom: fastai `zoom`
 * [[1/s, 0, (1−1/s)(2·col−1)], [0, 1/s, (1−1/s)(2·row−1)]]; flip: x → −x.
 */
export function samplingMatrix(p: AugmentParams): Mat3 {
  let m: Mat3 = p.dihedral !== undefined && p.dihedral !== null ? dihedralMatrix(p.dihedral)
    : p.flip ? [-1, 0, 0, 0, 1, 0, 0, 0, 1] : [1, 0, 0, 0, 1, 0, 0, 0, 1];
  if (p.rotateDeg !== null) {
    const t = (p.rotateDeg * Math.PI) / 180;
    m = mul3(m, [Math.cos(t), -Math.sin(t), 0, Math.sin(t), Math.cos(t), 0, 0, 0, 1]);
  }
  if (p.zoom !== null) {
    const inv = 1 / p.zoom.scale;
    const s = 1 - inv;
    m = mul3(m, [inv, 0, s * (2 * p.zoom.colPct - 1), 0, inv, s * (2 * p.zoom.rowPct - 1), 0, 0, 1]);
  }
  if (p.warp !== null) m = mul3(symmetricWarpMatrix(p.warp), m);
  return m;
}

/** Reflects a pixel-centre coordinate into [0, n−1] about the borders −0.5 and n−0.5 (PyTorch reflection padding). */
export function reflectCoord(x: number, n: number): number {
  const span = n;
  let t = Math.abs(x + 0.5) % (2 * span);
  if (t > span) t = 2 * span - t;
  t -= 0.5;
  return t < 0 ? 0 : t > n - 1 ? n - 1 : t;
}

/** An RGB image, 8 bits per channel, interleaved HWC. */
export interface RgbImage {
  /** `[height, width, 3]` uint8, HWC. */
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

/**
 * Crops/augments `src` (shorter side ≥ size) into `out` as normalized float32 `[size, size, 3]` HWC at `offset`:
 * one bilinear resample through {@link samplingMatrix} with reflection padding, then logit-space lighting, then
 * (x − mean) / std with ImageNet stats. Crop offset: floor((W − size + 1)·cropX) clamped (fastai `crop`).
 * Lighting comes after the resample as in fastai v1 (`Image.logit_px` triggers the pending `grid_sample`).
 */
export function renderItem(src: RgbImage, p: AugmentParams, size: number, out: Float32Array, offset = 0): void {
  const { data, width: W, height: H } = src;
  const x0 = Math.min(W - size, Math.floor((W - size + 1) * p.cropX));
  const y0 = Math.min(H - size, Math.floor((H - size + 1) * p.cropY));
  const [m0, m1, m2, m3, m4, m5, m6, m7, m8] = samplingMatrix(p);
  const half = size / 2;
  const bx = x0 + half - 0.5;
  const by = y0 + half - 0.5;
  for (let v = 0; v < size; v++) {
    const py = (2 * v + 1) / size - 1;
    for (let u = 0; u < size; u++) {
      const px = (2 * u + 1) / size - 1;
      const w = m6 * px + m7 * py + m8;
      let fx = bx + ((m0 * px + m1 * py + m2) / w) * half;
      let fy = by + ((m3 * px + m4 * py + m5) / w) * half;
      if (!(fx >= 0 && fx <= W - 1)) fx = reflectCoord(fx, W);
      if (!(fy >= 0 && fy <= H - 1)) fy = reflectCoord(fy, H);
      const ix = Math.floor(fx);
      const iy = Math.floor(fy);
      const ax = fx - ix;
      const ay = fy - iy;
      const i00 = (iy * W + ix) * 3;
      const dx = ix + 1 < W ? 3 : 0;
      const dy = iy + 1 < H ? W * 3 : 0;
      const w00 = (1 - ax) * (1 - ay);
      const w01 = ax * (1 - ay);
      const w10 = (1 - ax) * ay;
      const w11 = ax * ay;
      const o = offset + (v * size + u) * 3;
      out[o] = data[i00]! * w00 + data[i00 + dx]! * w01 + data[i00 + dy]! * w10 + data[i00 + dy + dx]! * w11;
      out[o + 1] = data[i00 + 1]! * w00 + data[i00 + dx + 1]! * w01 + data[i00 + dy + 1]! * w10 + data[i00 + dy + dx + 1]! * w11;
      out[o + 2] = data[i00 + 2]! * w00 + data[i00 + dx + 2]! * w01 + data[i00 + dy + 2]! * w10 + data[i00 + dy + dx + 2]! * w11;
    }
  }
  lightAndNormalize(out, offset, size * size, p);
}

/** fastai `logit_`: clamp to [1e-7, 1 − 1e-7], then log(x / (1 − x)). */
function logit(x: number): number {
  const c = x < 1e-7 ? 1e-7 : x > 1 - 1e-7 ? 1 - 1e-7 : x;
  return Math.log(c / (1 - c));
}

/** Resolution of the lighting lookup table over 0..255 (linear interpolation between entries). */
const LIGHT_LUT_STEPS = 4096;

/**
 * Table of x ↦ sigmoid((logit(x/255) + logit(c))·s) at LIGHT_LUT_STEPS + 1 points of 0..255, read with linear
 * interpolation: max deviation from the exact formula ~1e-4 of full scale (largest next to 0 and 255 when s < 1).
 */
function lightingLut(add: number, mul: number): Float32Array {
  const lut = new Float32Array(LIGHT_LUT_STEPS + 2);
  for (let i = 0; i <= LIGHT_LUT_STEPS; i++) lut[i] = 1 / (1 + Math.exp(-(logit(i / LIGHT_LUT_STEPS) + add) * mul));
  lut[LIGHT_LUT_STEPS + 1] = lut[LIGHT_LUT_STEPS]!;
  return lut;
}

/** In place on `count` HWC pixels (values 0..255) at `offset`: lighting in logit space (if any), then ImageNet normalization. */
function lightAndNormalize(out: Float32Array, offset: number, count: number, p: AugmentParams): void {
  const lut = p.brightness !== null || p.contrast !== null
    ? lightingLut(p.brightness !== null ? logit(p.brightness) : 0, p.contrast ?? 1)
    : null;
  const toStep = LIGHT_LUT_STEPS / 255;
  for (let c = 0; c < 3; c++) {
    const scale = 1 / IMAGENET_STD[c]!;
    const bias = -IMAGENET_MEAN[c]! * scale;
    const end = offset + count * 3;
    for (let k = offset + c; k < end; k += 3) {
      let x: number;
      if (lut) {
        const t = out[k]! * toStep;
        const i = Math.floor(t);
        x = lut[i]! + (lut[i + 1]! - lut[i]!) * (t - i);
      } else {
        x = out[k]! / 255;
      }
      out[k] = x * scale + bias;
    }
  }
}
