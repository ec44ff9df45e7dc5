/**
 * IEEE 754 binary16 ("half") ⇄ binary32 conversion for fp16 gradient compression on the wire (Horovod's
 * `Compression.fp16`): pure functions on bit patterns and typed arrays, round-to-nearest, ties-to-even.
 *
 * binary16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits; max finite 65504, smallest normal 2^-14,
 * smallest subnormal 2^-24. Algorithm as numpy's `npy_floatbits_to_halfbits` (IEEE 754-2008 §4.3.1 rounding).
 */
import { TrainerError } from '../../contract/errors.js';

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** Rounds the 32-bit pattern of a float32 to the 16-bit pattern of the nearest float16 (ties to even). */
function bitsToHalf(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0); // Inf, or a quiet NaN
  const e = exp - 112; // rebias 127 → 15
  if (e >= 0x1f) return sign | 0x7c00; // overflow → ±Infinity
  if (e <= 0) {
    // Subnormal half (or zero): value = (1.mant × 2^23) × 2^-(14 − e) in units of 2^-24.
    const shift = 14 - e;
    if (shift > 24) return sign; // < 2^-25: rounds to ±0
    const m = mant | 0x800000;
    let q = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rest > half || (rest === half && (q & 1) === 1)) q += 1;
    return sign | q; // q may carry into 0x400, the smallest normal: correct
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1; // carry may reach 0x7c00 = Infinity: correct
  return h;
}

/**
 * Nearest float16 bit pattern of a number (first rounded to float32, as the wire path does).
 *
 * @param value - any number; NaN stays NaN, |value| ≥ 65520 becomes ±Infinity, |value| ≤ 2^-25 becomes ±0
 * @returns the 16-bit pattern, 0 … 0xffff
 */
export function toFloat16Bits(value: number): number {
  F32[0] = value;
  return bitsToHalf(U32[0]);
}

/**
 * Value of a float16 bit pattern (exact: every float16 is representable in float32).
 *
 * @param bits - 16-bit pattern, 0 … 0xffff (higher bits ignored)
 */
export function fromFloat16Bits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const e = (bits >>> 10) & 0x1f;
  const m = bits & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m === 0 ? sign * Infinity : NaN;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

let halfTable: Float32Array | undefined;
/** 65 536-entry lookup table float16 pattern → float32 value (256 KiB, built on first use). */
function table(): Float32Array {
  if (halfTable === undefined) {
    halfTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) halfTable[i] = fromFloat16Bits(i);
  }
  return halfTable;
}

function checkOut(what: string, expected: number, got: number): void {
  if (got !== expected) {
    throw new TrainerError('ERR_INTERNAL', `${what} must have length ${expected} (the source length), got ${got}`);
  }
}

/**
 * Converts float32 values to float16 bit patterns, round-to-nearest-even.
 *
 * @param src - `[n] float32`
 * @param out - optional `[n] uint16` destination
 * @returns `[n] uint16` float16 bit patterns (`out` when given)
 * @throws TrainerError `ERR_INTERNAL` when `out.length !== src.length`
 */
export function float32ToFloat16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  checkOut('float32ToFloat16 out', src.length, out.length);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) out[i] = bitsToHalf(bits[i]);
  return out;
}

/**
 * Converts float16 bit patterns to float32 values (exact).
 *
 * @param src - `[n] uint16` float16 bit patterns
 * @param out - optional `[n] float32` destination
 * @returns `[n] float32` (`out` when given)
 * @throws TrainerError `ERR_INTERNAL` when `out.length !== src.length`
 */
export function float16ToFloat32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  checkOut('float16ToFloat32 out', src.length, out.length);
  const t = table();
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]];
  return out;
}
