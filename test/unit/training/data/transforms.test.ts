/**
 * The fused geometry + lighting + normalization of transforms.ts on synthetic images, against hand-derived values
 * (fastai v1 formulas quoted in the source).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '../../../../src/contract/plan/rng.js';
import {
  CENTRE_CROP, IMAGENET_MEAN, IMAGENET_STD, type AugmentParams, type RgbImage, reflectCoord, renderItem, sampleAugment,
  samplingMatrix, symmetricWarpMatrix,
} from '../../../../src/training/data/transforms.js';

/** A W×H image whose red channel is x, green is y, blue is (x+y) % 256. */
function ramp(W: number, H: number): RgbImage {
  const data = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data.set([x % 256, y % 256, (x + y) % 256], (y * W + x) * 3);
  return { data, width: W, height: H };
}
/** Back to 0..255 from the normalized output, channel c of pixel (u, v). */
const px = (out: Float32Array, size: number, u: number, v: number, c: number) =>
  (out[(v * size + u) * 3 + c]! * IMAGENET_STD[c]! + IMAGENET_MEAN[c]!) * 255;
const none: AugmentParams = CENTRE_CROP;

describe('renderItem', () => {
  it('centre crop is an exact pixel copy at offset floor((W−size+1)/2), normalized with ImageNet stats (tol 1e-4)', () => {
    const src = ramp(40, 20);
    const out = new Float32Array(16 * 16 * 3);
    renderItem(src, none, 16, out);
    // x0 = floor((40 − 16 + 1)·0.5) = 12, y0 = floor(5·0.5) = 2
    for (const [u, v] of [[0, 0], [15, 15], [7, 3]] as const) {
      assert.ok(Math.abs(px(out, 16, u, v, 0) - (12 + u)) < 1e-3);
      assert.ok(Math.abs(px(out, 16, u, v, 1) - (2 + v)) < 1e-3);
    }
    const grey = new Float32Array(3);
    renderItem({ data: Uint8Array.from([128, 128, 128]), width: 1, height: 1 }, none, 1, grey);
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(grey[c]! - (128 / 255 - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]!) < 1e-6);
  });

  it('flip mirrors columns exactly', () => {
    const src = ramp(8, 8);
    const out = new Float32Array(8 * 8 * 3);
    renderItem(src, { ...none, flip: true }, 8, out);
    for (let u = 0; u < 8; u++) assert.ok(Math.abs(px(out, 8, u, 0, 0) - (7 - u)) < 1e-3);
  });

  it('rotation by 90° maps rows to columns (rotate matrix [[cos,−sin],[sin,cos]] on sampling coords)', () => {
    const src = ramp(8, 8);
    const out = new Float32Array(8 * 8 * 3);
    renderItem(src, { ...none, rotateDeg: 90 }, 8, out);
    // sampling point of output (x, y) is (−y, x): output column u reads source row u
    for (let u = 0; u < 8; u++) assert.ok(Math.abs(px(out, 8, u, 3, 1) - u) < 1e-3, `u=${u}`);
  });

  it('rotation past the border samples the reflected image (45° on 8x8: corner reads y = 0.44975, x = 3.5)', () => {
    const out = new Float32Array(8 * 8 * 3);
    renderItem(ramp(8, 8), { ...none, rotateDeg: 45 }, 8, out);
    // p = (−0.875, −0.875) → s = (0, −1.2374) → source (3.5, −1.44975) → reflected about −0.5 → y = 0.44975
    assert.ok(Math.abs(px(out, 8, 0, 0, 0) - 3.5) < 1e-3);
    assert.ok(Math.abs(px(out, 8, 0, 0, 1) - 0.44975) < 1e-3);
  });

  it('brightness in logit space: sigmoid((logit(x) + logit(c))·s) with c=0.6, s=1.2 (tol 1e-5)', () => {
    const g = { data: Uint8Array.from([127, 127, 127]), width: 1, height: 1 };
    const x = 127 / 255;
    const out = new Float32Array(3);
    renderItem(g, { ...none, brightness: 0.6, contrast: 1.2 }, 1, out);
    const logit = (p: number) => Math.log(p / (1 - p));
    const want = 1 / (1 + Math.exp(-(logit(x) + logit(0.6)) * 1.2));
    assert.ok(Math.abs(px(out, 1, 0, 0, 0) / 255 - want) < 1e-5);
  });

  it('lighting table matches the exact logit formula on every 8-bit level within 5e-4 (s = 0.8, c = 0.4: steepest ends)', () => {
    const logit = (q: number) => Math.log(Math.min(Math.max(q, 1e-7), 1 - 1e-7) / (1 - Math.min(Math.max(q, 1e-7), 1 - 1e-7)));
    let worst = 0;
    for (let level = 0; level < 256; level++) {
      const out = new Float32Array(3);
      renderItem({ data: Uint8Array.from([level, level, level]), width: 1, height: 1 }, { ...none, brightness: 0.4, contrast: 0.8 }, 1, out);
      const want = 1 / (1 + Math.exp(-(logit(level / 255) + logit(0.4)) * 0.8));
      worst = Math.max(worst, Math.abs(px(out, 1, 0, 0, 1) / 255 - want));
    }
    assert.ok(worst < 5e-4, `worst ${worst}`);
  });

  it('reflection padding mirrors about −0.5 and n−0.5 (PyTorch grid_sample, align_corners=False)', () => {
    assert.equal(reflectCoord(-1, 10), 0);
    assert.equal(reflectCoord(-2, 10), 1);
    assert.equal(reflectCoord(10, 10), 9);
    assert.equal(reflectCoord(11, 10), 8);
    assert.equal(reflectCoord(4.25, 10), 4.25);
  });
});

describe('sampling geometry', () => {
  it('symmetric warp homography maps fastai target corners onto the unit corners (tol 1e-9)', () => {
    const m = [0.1, -0.15, 0.05, 0.2] as const;
    const H = symmetricWarpMatrix(m);
    const targ = [[-1 - m[3], -1 - m[1]], [-1 - m[2], 1 + m[1]], [1 + m[3], -1 - m[0]], [1 + m[2], 1 + m[0]]];
    const orig = [[-1, -1], [-1, 1], [1, -1], [1, 1]];
    targ.forEach(([x, y], i) => {
      const w = H[6] * x! + H[7] * y! + H[8];
      assert.ok(Math.abs((H[0] * x! + H[1] * y! + H[2]) / w - orig[i]![0]!) < 1e-9);
      assert.ok(Math.abs((H[3] * x! + H[4] * y! + H[5]) / w - orig[i]![1]!) < 1e-9);
    });
    assert.deepEqual(symmetricWarpMatrix([0, 0, 0, 0]).map((v) => Math.round(v * 1e9) / 1e9 + 0), [1, 0, 0, 0, 1, 0, 0, 0, 1]);
  });

  it('zoom about a corner focal point keeps that corner fixed (fastai zoom matrix)', () => {
    const m = samplingMatrix({ ...none, zoom: { scale: 1.1, colPct: 1, rowPct: 0 } });
    // point (1, −1) maps to itself: (1/s)·1 + (1 − 1/s)·1 = 1, (1/s)·(−1) + (1 − 1/s)·(−1) = −1
    assert.ok(Math.abs(m[0] * 1 + m[1] * -1 + m[2] - 1) < 1e-12);
    assert.ok(Math.abs(m[3] * 1 + m[4] * -1 + m[5] + 1) < 1e-12);
  });

  it('sampleAugment: fastai ranges and firing rates over 4000 draws (rates ±0.03, ~4σ)', () => {
    const rng = mulberry32(3);
    let flips = 0, rots = 0;
    for (let i = 0; i < 4000; i++) {
      const p = sampleAugment(rng);
      if (p.flip) flips++;
      if (p.rotateDeg !== null) { rots++; assert.ok(Math.abs(p.rotateDeg) <= 10); }
      if (p.zoom) assert.ok(p.zoom.scale >= 1 && p.zoom.scale <= 1.1);
      if (p.warp) assert.ok(p.warp.every((w) => Math.abs(w) <= 0.2));
      if (p.brightness !== null) assert.ok(p.brightness >= 0.4 && p.brightness <= 0.6);
      if (p.contrast !== null) assert.ok(p.contrast >= 0.8 - 1e-12 && p.contrast <= 1.25 + 1e-12);
    }
    assert.ok(Math.abs(flips / 4000 - 0.5) < 0.03);
    assert.ok(Math.abs(rots / 4000 - 0.75) < 0.03);
  });
});
