import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  float16ToFloat32,
  float32ToFloat16,
  fromFloat16Bits,
  toFloat16Bits,
} from '../../../../src/training/allreduce/float16.js';

// Expected bit patterns follow from the IEEE 754 binary16 definition (bias 15, 10 mantissa bits) and
// round-to-nearest-even; 0.1 → 0x2e66 and 1/3 → 0x3555 are the textbook values (e.g. Wikipedia "Half-precision").
const cases: Array<[string, number, number]> = [
  ['+0', 0, 0x0000],
  ['-0', -0, 0x8000],
  ['1', 1, 0x3c00],
  ['-2', -2, 0xc000],
  ['0.1', 0.1, 0x2e66],
  ['1/3', 1 / 3, 0x3555],
  ['max finite 65504', 65504, 0x7bff],
  ['just below the overflow tie', 65519.99, 0x7bff],
  ['65520: tie with odd 0x7bff rounds to even = Infinity', 65520, 0x7c00],
  ['1e9 overflows', 1e9, 0x7c00],
  ['+Infinity', Infinity, 0x7c00],
  ['-Infinity', -Infinity, 0xfc00],
  ['smallest normal 2^-14', 2 ** -14, 0x0400],
  ['largest subnormal', 2 ** -14 - 2 ** -24, 0x03ff],
  ['smallest subnormal 2^-24', 2 ** -24, 0x0001],
  ['2^-25: tie between 0 and 2^-24 rounds to even 0', 2 ** -25, 0x0000],
  ['-2^-25 keeps its sign', -(2 ** -25), 0x8000],
  ['3·2^-26 rounds up to 2^-24', 3 * 2 ** -26, 0x0001],
  ['1.5·2^-24: tie rounds to even 2·2^-24', 1.5 * 2 ** -24, 0x0002],
  ['2.5·2^-24: tie rounds to even 2·2^-24', 2.5 * 2 ** -24, 0x0002],
  ['subnormal rounding carries into the smallest normal', 2 ** -14 - 2 ** -26, 0x0400],
  ['1e-10 underflows to 0', 1e-10, 0x0000],
  ['1 + 2^-11: tie rounds down to even 1', 1 + 2 ** -11, 0x3c00],
  ['1 + 3·2^-11: tie rounds up to even', 1 + 3 * 2 ** -11, 0x3c02],
  ['1 + 2^-11 + 2^-20: above the tie', 1 + 2 ** -11 + 2 ** -20, 0x3c01],
  ['2047.5 → 2048 (mantissa carry into exponent)', 2047.5, 0x6800],
];

test('float32 → float16 rounds to nearest even on edge values', () => {
  for (const [name, value, bits] of cases) {
    assert.equal(toFloat16Bits(value).toString(16), bits.toString(16), name);
  }
});

test('NaN stays NaN (quiet) both ways', () => {
  const h = toFloat16Bits(NaN);
  assert.equal(h & 0x7c00, 0x7c00);
  assert.notEqual(h & 0x03ff, 0);
  assert.ok(Number.isNaN(fromFloat16Bits(h)));
});

test('every float16 pattern converts to float32 and back exactly (exhaustive, 65536 patterns)', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const f32 = float16ToFloat32(all);
  const back = float32ToFloat16(f32);
  for (let i = 0; i < 65536; i++) {
    const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
    if (isNaN) {
      assert.ok(Number.isNaN(f32[i]));
      continue;
    }
    assert.equal(back[i], i, `pattern 0x${i.toString(16)}`);
    assert.ok(Object.is(f32[i], Math.fround(fromFloat16Bits(i))), `value of 0x${i.toString(16)}`);
  }
  assert.equal(f32[0x3c00], 1);
  assert.equal(f32[0x7bff], 65504);
  assert.equal(f32[0x0001], 2 ** -24);
});

test('array conversion matches the scalar one and stays within half an ulp (2^-11 relative) for normals', () => {
  let seed = 7;
  const src = new Float32Array(10000).map(() => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return ((seed / 2 ** 32) * 2 - 1) * 60000;
  });
  const half = float32ToFloat16(src);
  const round = float16ToFloat32(half);
  for (let i = 0; i < src.length; i++) {
    assert.equal(half[i], toFloat16Bits(src[i]));
    if (Math.abs(src[i]) >= 2 ** -14) assert.ok(Math.abs(round[i] - src[i]) <= Math.abs(src[i]) * 2 ** -11);
  }
});

test('wrong output lengths are rejected', () => {
  assert.throws(() => float32ToFloat16(new Float32Array(3), new Uint16Array(2)), /length 3/);
  assert.throws(() => float16ToFloat32(new Uint16Array(3), new Float32Array(4)), /length 3/);
});
