// Test helpers for the report tests: PNG size and "not blank" checks with sharp.
import assert from 'node:assert/strict';
import sharp from 'sharp';

/** Asserts `png` decodes to `width × height` (when given) and its pixels vary (mean channel stdev > `minStdev`). */
export async function assertPngNotBlank(png: Buffer | string, expect: { width?: number; height?: number; minStdev?: number } = {}): Promise<{ width: number; height: number }> {
  const meta = await sharp(png).metadata();
  assert.equal(meta.format, 'png');
  if (expect.width !== undefined) assert.equal(meta.width, expect.width, 'PNG width');
  if (expect.height !== undefined) assert.equal(meta.height, expect.height, 'PNG height');
  const stats = await sharp(png).stats();
  const stdev = stats.channels.slice(0, 3).reduce((s, c) => s + c.stdev, 0) / 3;
  // A blank (single-colour) picture has stdev 0; charts on white with lines and text measure ≈ 20–60 here.
  assert.ok(stdev > (expect.minStdev ?? 5), `PNG looks blank: mean channel stdev ${stdev.toFixed(2)}`);
  return { width: meta.width!, height: meta.height! };
}

/** Fraction of dark pixels (all channels < 128) in a region of a PNG. */
export async function darkFraction(png: Buffer, region: { left: number; top: number; width: number; height: number }): Promise<number> {
  const { data, info } = await sharp(png).extract(region).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let dark = 0;
  for (let i = 0; i < data.length; i += info.channels) if (data[i] < 128 && data[i + 1] < 128 && data[i + 2] < 128) dark++;
  return dark / (info.width * info.height);
}
