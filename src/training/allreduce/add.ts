/**
 * The element-wise `target += values` of the ring's reduce-scatter, in float32: through the native addon's `binary`
 * add (`native/pets_dnnl.cc`, compiled with `-march=native`: SIMD, ≈ 5× the JavaScript loop) when the addon loads,
 * else a JavaScript loop. Both round each sum once to float32 (IEEE 754 round-to-nearest-even; JavaScript adds in
 * float64 and stores to float32, which gives the same float32 for a sum of two float32s: double rounding is
 * innocuous when the wider format has ≥ 2p + 2 bits, Figueroa 1995), so either gives bit-identical results.
 */
import { checkAddon } from '../compute/native/addon.js';

/**
 * Adds `values` into `target` element-wise: `target[i] = fround(target[i] + values[i])`.
 *
 * @param target - `[n] float32`, overwritten
 * @param values - `[n] float32`, read (may not overlap `target` unless identical)
 */
export type AddInto = (target: Float32Array, values: Float32Array) => void;

/** The JavaScript loop ({@link AddInto}). */
export function addIntoJs(target: Float32Array, values: Float32Array): void {
  const n = target.length;
  for (let i = 0; i < n; i++) target[i] += values[i];
}

/** Below this many elements the N-API call (≈ 1 µs) costs more than the loop it saves. */
const NATIVE_MIN_ELEMENTS = 4096;

/**
 * The native add ({@link AddInto}) when the addon loads (without initialising oneDNN: `binary` is a plain loop),
 * else null.
 */
export function nativeAddInto(): AddInto | null {
  const check = checkAddon();
  if (!('addon' in check)) return null;
  const { addon } = check;
  return (target, values) => {
    const n = target.length;
    if (n < NATIVE_MIN_ELEMENTS) return addIntoJs(target, values);
    addon.binary(0, target, values, target, n, n, n);
  };
}

/** The add the ring uses: native when available, else JavaScript; `PETS_RING_ADD=js` forces the loop. */
export function defaultAddInto(env: NodeJS.ProcessEnv = process.env): { readonly add: AddInto; readonly kind: 'native' | 'js' } {
  const native = env.PETS_RING_ADD === 'js' ? null : nativeAddInto();
  return native === null ? { add: addIntoJs, kind: 'js' } : { add: native, kind: 'native' };
}
