/**
 * The ring's element-wise float32 arithmetic: the reduce-scatter's `target += values` and the owner's `÷ N`,
 * through the native addon's `binary` op (`native/pets_dnnl.cc`, compiled with `-march=native`: SIMD, several
 * times the JavaScript loop) when the addon loads, else a JavaScript loop. Both round each result once to float32
 * (IEEE 754 round-to-nearest-even). JavaScript computes in float64 and stores to float32, which gives the same
 * float32 for a sum or quotient of two float32s: double rounding is innocuous when the wider format has ≥ 2p + 2
 * bits (p = 24 here, 53 ≥ 50; Figueroa, "When is double rounding innocuous?", SIGNUM 1995). So either path gives
 * bit-identical results, and ranks with and without the addon agree.
 */
import { checkAddon } from '../compute/native/addon.js';
import { ringAddJsSetting } from '../../contract/env-settings.js';

/**
 * Adds `values` into `target` element-wise: `target[i] = fround(target[i] + values[i])`.
 *
 * @param target - `[n] float32`, overwritten
 * @param values - `[n] float32`, read (may not overlap `target` unless identical)
 */
export type AddInto = (target: Float32Array, values: Float32Array) => void;
/**
 * Divides `target` in place: `target[i] = fround(target[i] / divisor)`.
 *
 * @param target - `[n] float32`, overwritten
 * @param divisor - a float32-representable number (the world size)
 */
export type DivideBy = (target: Float32Array, divisor: number) => void;

/** The JavaScript add ({@link AddInto}). */
export function addIntoJs(target: Float32Array, values: Float32Array): void {
  const n = target.length;
  for (let i = 0; i < n; i++) target[i] += values[i];
}

/** The JavaScript division ({@link DivideBy}). */
export function divideByJs(target: Float32Array, divisor: number): void {
  const n = target.length;
  for (let i = 0; i < n; i++) target[i] /= divisor;
}

/** Below this many elements the N-API call (≈ 1 µs) costs more than the loop it saves. */
const NATIVE_MIN_ELEMENTS = 4096;

/** The ring's arithmetic: which implementation, and its two operations. */
export interface RingMath {
  readonly kind: 'native' | 'js';
  readonly add: AddInto;
  readonly divide: DivideBy;
}

/** The JavaScript {@link RingMath}. */
export const JS_RING_MATH: RingMath = Object.freeze({ kind: 'js', add: addIntoJs, divide: divideByJs });

/**
 * The native {@link RingMath} when the addon loads (without initialising oneDNN: `binary` is a plain loop), else
 * null.
 */
export function nativeRingMath(): RingMath | null {
  const check = checkAddon();
  if (!('addon' in check)) return null;
  const { addon } = check;
  const scalar = new Float32Array(1);
  return Object.freeze({
    kind: 'native',
    add: (target: Float32Array, values: Float32Array) => {
      const n = target.length;
      if (n < NATIVE_MIN_ELEMENTS) return addIntoJs(target, values);
      addon.binary(0, target, values, target, n, n, n);
    },
    divide: (target: Float32Array, divisor: number) => {
      const n = target.length;
      if (n < NATIVE_MIN_ELEMENTS) return divideByJs(target, divisor);
      scalar[0] = divisor;
      if (scalar[0] !== divisor) return divideByJs(target, divisor); // not a float32: keep the float64 quotient's rounding
      addon.binary(3, target, scalar, target, n, n, 1);
    },
  } as const);
}

/**
 * The arithmetic the ring uses: native when available, else JavaScript; `PETS_RING_ADD=js` forces JavaScript.
 * @throws TrainerError ERR_BAD_CONFIG for another value of `PETS_RING_ADD` (`contract/env-settings.ts`)
 */
export function defaultRingMath(env: NodeJS.ProcessEnv = process.env): RingMath {
  return (ringAddJsSetting(env) ? null : nativeRingMath()) ?? JS_RING_MATH;
}
