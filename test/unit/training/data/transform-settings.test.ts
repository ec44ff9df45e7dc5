/**
 * fastai `get_transforms(do_flip, flip_vert, max_rotate, max_zoom, max_lighting, max_warp, p_affine, p_lighting)`
 * as settings of sampleAugment: the defaults draw exactly what the tutorial's fixed transforms drew, zero ranges and
 * probabilities turn transforms off, ranges follow fastai's formulas, flip_vert draws the 8 dihedral transforms, and
 * the settings reach the pool's render task.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { ImagePool } from '../../../../src/training/data/pool.js';
import { mulberry32, type Rng } from '../../../../src/contract/plan/rng.js';
import { CENTRE_CROP, dihedralMatrix, renderItem, sampleAugment, type AugmentParams, type RgbImage } from '../../../../src/training/data/transforms.js';
import { DEFAULT_TRANSFORMS, transformProblem, type TransformSettings } from '../../../../src/contract/transform-settings.js';

/** The tutorial's draws as sampleAugment made them before it took settings (fastai defaults hard-coded). */
function tutorialDraws(rng: Rng): AugmentParams {
  const u = (a: number, b: number): number => a + (b - a) * rng();
  const fires = (p: number): boolean => rng() < p;
  const cropX = rng(), cropY = rng(), flip = fires(0.5), warpOn = fires(0.75);
  const warp = [u(-0.2, 0.2), u(-0.2, 0.2), u(-0.2, 0.2), u(-0.2, 0.2)] as const;
  const rotOn = fires(0.75), rot = u(-10, 10), zoomOn = fires(0.75);
  const zoom = { scale: u(1, 1.1), colPct: rng(), rowPct: rng() };
  const brOn = fires(0.75), br = u(0.4, 0.6), ctOn = fires(0.75), ct = Math.exp(u(Math.log(0.8), Math.log(1.25)));
  return { cropX, cropY, flip, dihedral: null, warp: warpOn ? warp : null, rotateDeg: rotOn ? rot : null, zoom: zoomOn ? zoom : null, brightness: brOn ? br : null, contrast: ctOn ? ct : null };
}

const withT = (t: Partial<TransformSettings>): TransformSettings => ({ ...DEFAULT_TRANSFORMS, ...t });

describe('get_transforms settings', () => {
  it('defaults are fastai get_transforms() and draw exactly the tutorial augmentation (1000 items)', () => {
    assert.deepEqual({ ...DEFAULT_TRANSFORMS }, { doFlip: true, flipVert: false, maxRotate: 10, maxZoom: 1.1, maxLighting: 0.2, maxWarp: 0.2, pAffine: 0.75, pLighting: 0.75 });
    const a = mulberry32(11), b = mulberry32(11), c = mulberry32(11);
    for (let i = 0; i < 1000; i++) {
      const want = tutorialDraws(a);
      assert.deepEqual(sampleAugment(b), want);
      assert.deepEqual(sampleAugment(c, DEFAULT_TRANSFORMS), want);
    }
  });

  it('every setting keeps the stream layout (17 draws per item), so the next item draws the same numbers', () => {
    for (const t of [withT({ doFlip: false }), withT({ flipVert: true }), withT({ maxRotate: 0, maxZoom: 1, maxWarp: 0, maxLighting: 0 }), withT({ pAffine: 0, pLighting: 1 })]) {
      const a = mulberry32(5), b = mulberry32(5);
      sampleAugment(a, t);
      sampleAugment(b);
      assert.equal(a(), b());
    }
  });

  it('zero ranges and probabilities turn transforms off; probability 1 always fires (fastai leaves zero-range transforms out)', () => {
    const rng = mulberry32(2);
    for (let i = 0; i < 300; i++) {
      const off = sampleAugment(rng, withT({ doFlip: false, maxRotate: 0, maxZoom: 1, maxWarp: 0, maxLighting: 0 }));
      assert.deepEqual([off.flip, off.dihedral, off.warp, off.rotateDeg, off.zoom, off.brightness, off.contrast], [false, null, null, null, null, null, null]);
      const none = sampleAugment(rng, withT({ pAffine: 0, pLighting: 0 }));
      assert.deepEqual([none.warp, none.rotateDeg, none.zoom, none.brightness, none.contrast], [null, null, null, null, null]);
      const all = sampleAugment(rng, withT({ pAffine: 1, pLighting: 1 }));
      assert.ok(all.warp !== null && all.rotateDeg !== null && all.zoom !== null && all.brightness !== null && all.contrast !== null);
    }
  });

  it('ranges follow fastai: rotate ±max_rotate, zoom U(1, max_zoom), warp U(±max_warp), brightness U(0.5(1∓m)), contrast log-U(1−m, 1/(1−m))', () => {
    const rng = mulberry32(9);
    const t = withT({ maxRotate: 30, maxZoom: 1.5, maxWarp: 0.4, maxLighting: 0.5, pAffine: 1, pLighting: 1 });
    let maxRot = 0, maxZoom = 1, minBr = 1, maxBr = 0, minCt = 9, maxCt = 0;
    for (let i = 0; i < 2000; i++) {
      const p = sampleAugment(rng, t);
      maxRot = Math.max(maxRot, Math.abs(p.rotateDeg!));
      maxZoom = Math.max(maxZoom, p.zoom!.scale);
      assert.ok(p.warp!.every((w) => Math.abs(w) <= 0.4));
      minBr = Math.min(minBr, p.brightness!); maxBr = Math.max(maxBr, p.brightness!);
      minCt = Math.min(minCt, p.contrast!); maxCt = Math.max(maxCt, p.contrast!);
    }
    // 2000 uniform draws come within 1 % of each end of their range (probability of missing < 1e-8).
    assert.ok(maxRot <= 30 && maxRot > 29.4, `rotation reaches ±30 (max ${maxRot})`);
    assert.ok(maxZoom <= 1.5 && maxZoom > 1.495);
    assert.ok(minBr >= 0.25 && minBr < 0.26 && maxBr <= 0.75 && maxBr > 0.74, `${minBr}..${maxBr}`);
    assert.ok(minCt >= 0.5 - 1e-12 && minCt < 0.51 && maxCt <= 2 + 1e-12 && maxCt > 1.97, `${minCt}..${maxCt}`);
  });

  it('flip_vert: the 8 dihedral transforms, each ~1/8 of the time; matrices as fastai _dihedral_affine', () => {
    const rng = mulberry32(4);
    const seen = new Array<number>(8).fill(0);
    for (let i = 0; i < 4000; i++) {
      const p = sampleAugment(rng, withT({ flipVert: true }));
      assert.equal(p.flip, false);
      seen[p.dihedral!]!++;
    }
    for (const n of seen) assert.ok(Math.abs(n / 4000 - 1 / 8) < 0.025, `dihedral counts ${seen.join(',')}`);
    assert.deepEqual(dihedralMatrix(0), [1, 0, 0, 0, 1, 0, 0, 0, 1]);
    assert.deepEqual(dihedralMatrix(1), [-1, 0, 0, 0, 1, 0, 0, 0, 1]);
    assert.deepEqual(dihedralMatrix(2), [1, 0, 0, 0, -1, 0, 0, 0, 1]);
    assert.deepEqual(dihedralMatrix(4), [0, 1, 0, 1, 0, 0, 0, 0, 1]);
    assert.deepEqual(dihedralMatrix(7), [0, -1, 0, -1, 0, 0, 0, 0, 1]);
    // Dihedral k = 2 mirrors rows exactly on a 4×4 image (sampling at pixel centres, no interpolation).
    const data = Uint8Array.from({ length: 48 }, (_, i) => (i * 7) % 256);
    const img: RgbImage = { data, width: 4, height: 4 };
    const out = new Float32Array(48), ref = new Float32Array(48);
    renderItem(img, { ...CENTRE_CROP, dihedral: 2 }, 4, out);
    renderItem(img, CENTRE_CROP, 4, ref);
    for (let v = 0; v < 4; v++) for (let k = 0; k < 12; k++) assert.ok(Math.abs(out[v * 12 + k]! - ref[(3 - v) * 12 + k]!) < 1e-5);
  });

  it('transformProblem names the field and its range', () => {
    assert.equal(transformProblem({ ...DEFAULT_TRANSFORMS }), null);
    assert.equal(transformProblem({ ...DEFAULT_TRANSFORMS, maxLighting: 1 }), 'maxLighting must be a number in [0, 1), got 1');
    assert.equal(transformProblem({ ...DEFAULT_TRANSFORMS, maxZoom: 0.9 }), 'maxZoom must be a number in [1, 10], got 0.9');
    assert.equal(transformProblem({ ...DEFAULT_TRANSFORMS, doFlip: 'yes' }), 'doFlip must be true or false, got "yes"');
  });

  it("the settings reach the pool's render task: with every transform off, a size×size image renders as the centre crop", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tfm-'));
    const pool = new ImagePool({ threads: 1 });
    pool.start();
    try {
      const raw = Buffer.from(Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 13) % 251));
      const path = join(dir, 'x.png');
      await sharp(raw, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(path);
      const task = { kind: 'render' as const, path, size: 32, seed: 1, epoch: 0, itemIndex: 0 };
      const centre = await pool.run({ ...task, augment: false });
      const off = await pool.run({ ...task, augment: true, transforms: withT({ doFlip: false, maxRotate: 0, maxZoom: 1, maxWarp: 0, maxLighting: 0 }) });
      const tutorial = await pool.run({ ...task, augment: true });
      assert.ok(centre.ok && off.ok && tutorial.ok);
      assert.deepEqual(off.pixels, centre.pixels);
      assert.notDeepEqual(tutorial.pixels, centre.pixels, 'the default transforms change this item (seed 1)');
    } finally {
      await pool.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
