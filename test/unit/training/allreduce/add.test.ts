/**
 * The ring's float32 add and ÷ N: the native addon's SIMD loops and the JavaScript loops give the same bits (one
 * IEEE round-to-nearest-even per element), including signed zeros, subnormals, infinities, overflow and NaN.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addIntoJs, defaultRingMath, divideByJs, JS_RING_MATH, nativeRingMath } from '../../../../src/training/allreduce/add.js';
import { checkAddon } from '../../../../src/training/compute/native/addon.js';

const MIN_SUB = 2 ** -149;
const MAX = 3.4028234663852886e38;
/** Pairs whose float32 sums exercise rounding ties, cancellation, subnormals, overflow and special values. */
function operands(length: number): [Float32Array, Float32Array] {
  const special = [0, -0, MIN_SUB, -MIN_SUB, 2 ** -126, MAX, -MAX, Infinity, -Infinity, NaN, 1, 2 ** -24, 1 + 2 ** -23, 3e-39];
  const a = new Float32Array(length);
  const b = new Float32Array(length);
  let s = 12345;
  const next = (): number => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  for (let i = 0; i < length; i++) {
    if (i < special.length ** 2) {
      a[i] = special[i % special.length];
      b[i] = special[Math.floor(i / special.length)];
    } else {
      a[i] = (next() * 2 - 1) * 2 ** Math.floor(next() * 60 - 30);
      b[i] = (next() * 2 - 1) * 2 ** Math.floor(next() * 60 - 30);
    }
  }
  return [a, b];
}

test('addIntoJs: one float32 rounding per element, as Math.fround(a + b)', () => {
  const [a, b] = operands(10_000);
  const out = a.slice();
  addIntoJs(out, b);
  for (let i = 0; i < a.length; i++) assert.ok(Object.is(out[i], Math.fround(a[i] + b[i])) || (Number.isNaN(out[i]) && Number.isNaN(a[i] + b[i])), `element ${i}`);
});

const native = checkAddon();
test('divideByJs: one float32 rounding per element, as Math.fround(a / n)', () => {
  const [a] = operands(10_000);
  for (const n of [2, 3, 7]) {
    const out = a.slice();
    divideByJs(out, n);
    for (let i = 0; i < a.length; i++) assert.ok(Object.is(out[i], Math.fround(a[i] / n)) || Number.isNaN(out[i]), `element ${i} / ${n}`);
  }
});

const skip = 'addon' in native ? false : `native addon unavailable: ${'reason' in native ? native.reason : ''}`;
test('the native ÷ N gives the JavaScript bits (N = 2, 3, 7, and a divisor that is not a float32)', { skip }, () => {
  const math = nativeRingMath();
  assert.ok(math !== null);
  const [a] = operands(70_001);
  for (const n of [2, 3, 7, 0.1]) {
    const js = a.slice(5);
    divideByJs(js, n);
    const viaNative = a.slice(5);
    math.divide(viaNative, n);
    assert.ok(Buffer.from(viaNative.buffer).equals(Buffer.from(js.buffer)), `÷ ${n}`);
  }
});

test('the native add gives the JavaScript add\'s bits (also on views at odd offsets and below the call threshold)', { skip }, () => {
  const math = nativeRingMath();
  assert.ok(math !== null);
  const add = math.add;
  const [a, b] = operands(70_001);
  for (const [from, to] of [[0, a.length], [3, 50_000], [1, 100], [0, 0]]) {
    const js = a.slice(from, to);
    addIntoJs(js, b.subarray(from, to));
    const viaNative = a.slice();
    add(viaNative.subarray(from, to), b.subarray(from, to));
    const got = viaNative.subarray(from, to);
    assert.ok(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(js.buffer)), `range ${from}..${to}`);
    assert.ok(viaNative.subarray(0, from).every((v, i) => Object.is(v, a[i])), 'nothing before the view is written');
  }
  assert.equal(defaultRingMath({}).kind, 'native');
});

test('PETS_RING_ADD=js forces the JavaScript loops', () => {
  assert.equal(defaultRingMath({ PETS_RING_ADD: 'js' }), JS_RING_MATH);
});
