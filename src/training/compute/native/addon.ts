/**
 * Loads the oneDNN addon (`native/pets_dnnl.cc`, built at `npm install` by `scripts/build-native.mjs` into
 * `native/build/pets_dnnl.node`) and describes its functions. Loading never throws: it returns the reason the
 * addon is unusable (not built, libdnnl missing, …) so that `--backend auto` can fall back with one log line.
 *
 * Why an N-API addon rather than an FFI such as koffi: oneDNN's API is C++ (or a C API of opaque handles plus
 * ~300-byte descriptor structs); an FFI would have to describe those structs and make ~10 foreign calls per
 * convolution, while a 500-line addon makes one N-API call per kernel and keeps a primitive cache in C++. The call
 * cost is the same order either way (≈ 1 µs) against kernels of 0.1–60 ms. The addon needs a C++ compiler and
 * libdnnl-dev at install; without them the build step prints one line and the backend is simply unavailable.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What {@link NativeAddon.init} reports. */
export interface NativeInfo {
  /** oneDNN version, e.g. `2.6.3`. */
  readonly version: string;
  /** The instruction set oneDNN dispatches to on this CPU (e.g. `avx512_core_amx`). */
  readonly isa: string;
  /** OpenMP threads oneDNN uses. */
  readonly threads: number;
  /** Whether glibc malloc was tuned to keep freed memory for reuse (see {@link NativeAddon.init}). */
  readonly retainHeap: boolean;
}

/**
 * Convolution geometry, in this order: n, ih, iw, ci, oh, ow, co, kh, kw, sh, sw, padTop, padLeft, padBottom,
 * padRight, dilationH, dilationW (dilation 1 = none, tfjs's convention). Activations NHWC, filters HWIO.
 */
export type ConvGeometry = readonly [number, number, number, number, number, number, number, number, number,
  number, number, number, number, number, number, number, number];

/** Max-pool geometry: n, ih, iw, c, oh, ow, kh, kw, sh, sw, padTop, padLeft, padBottom, padRight (NHWC). */
export type PoolGeometry = readonly [number, number, number, number, number, number, number, number, number, number,
  number, number, number, number];

/**
 * The addon's functions. Every array argument is a `Float32Array` that the function reads or writes in place
 * (no copy); sizes are checked against the geometry (a short array throws `ERR_NATIVE`).
 */
export interface NativeAddon {
  /**
   * Sets oneDNN's thread count and reports version and ISA. With `retainHeap`, tunes glibc malloc for this process
   * (arrays ≤ 32 MiB from the heap, up to 1 GiB of freed memory kept): tfjs's cpu storage allocates a fresh
   * zero-filled array per kernel output, and fresh mmaps cost a page fault per 4 KiB (~30 % of AdamW's time here).
   */
  init(threads: number, retainHeap: boolean): NativeInfo;
  /**
   * y `[n,oh,ow,co]` = conv(x `[n,ih,iw,ci]`, w `[kh,kw,ci,co]`). `cache` (or null): an array of
   * {@link NativeAddon.convWeightsCacheSize} floats for w in oneDNN's layout; `cacheValid` says it already holds it.
   */
  convForward(x: Float32Array, w: Float32Array, y: Float32Array, ...rest: [...ConvGeometry, Float32Array | null, boolean]): void;
  /** dx `[n,ih,iw,ci]` = input gradient of dy `[n,oh,ow,co]` through w; `cache` as for the forward. */
  convBackwardData(dy: Float32Array, w: Float32Array, dx: Float32Array, ...rest: [...ConvGeometry, Float32Array | null, boolean]): void;
  /** Floats of w in the layout of the forward (kind 0) or input-gradient (kind 1) primitive; 0: no reorder needed. */
  convWeightsCacheSize(kind: 0 | 1, ...g: ConvGeometry): number;
  /** dw `[kh,kw,ci,co]` = filter gradient from x and dy. */
  convBackwardWeights(x: Float32Array, dy: Float32Array, dw: Float32Array, ...g: ConvGeometry): void;
  /** oneDNN's implementation name for a convolution (kind 0 forward, 1 input gradient, 2 filter gradient). */
  convImpl(kind: 0 | 1 | 2, ...g: ConvGeometry): string;
  /** y = max-pool(x), padding excluded from the maximum. */
  maxPoolForward(x: Float32Array, y: Float32Array, ...g: PoolGeometry): void;
  /** dx = gradient of max-pool: dy routed to the first maximum of each window (row-major scan). */
  maxPoolBackward(x: Float32Array, dy: Float32Array, dx: Float32Array, ...g: PoolGeometry): void;
  /** c[i] = op(a[i])·op(b[i]) for i < batch; `batchA`/`batchB` 0 broadcasts that operand. Row-major. */
  batchMatMul(a: Float32Array, b: Float32Array, c: Float32Array, batch: number, m: number, n: number, k: number,
    transposeA: boolean, transposeB: boolean, batchA: 0 | 1, batchB: 0 | 1): void;
  /** Fused training-mode BatchNorm forward over `[p, c]` (see `kernels/batch-norm.ts` for the formulas). */
  batchNormForward(x: Float32Array, gamma: Float32Array, beta: Float32Array, residual: Float32Array | null,
    y: Float32Array, mean: Float32Array, variance: Float32Array, p: number, c: number, eps: number, relu: boolean): void;
  /** Its backward; `dresidual` (the masked dy) is written when not null. */
  batchNormBackward(x: Float32Array, y: Float32Array, dy: Float32Array, gamma: Float32Array, mean: Float32Array,
    variance: Float32Array, dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array, dresidual: Float32Array | null,
    p: number, c: number, eps: number, relu: boolean): void;
  /**
   * out[i] = a[i mod na] op b[i mod nb] for i < n; `na`/`nb` is n (full), 1 (scalar) or the size of the output's
   * trailing dimensions (row broadcast), at least one of them n or 1. op: 0 add, 1 sub, 2 mul, 3 div, 4 max, 5 min
   * (max/min propagate NaN).
   */
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, n: number, na: number, nb: number): void;
  /**
   * Any broadcast: out (row-major over dims `d0..d3`) = a[Σ ik·ask] op b[Σ ik·bsk], the caller having merged the
   * output's dimensions to four (leading 1s); a stride of 0 repeats an operand along that dimension. op as for binary.
   */
  binaryStrided(op: number, a: Float32Array, b: Float32Array, out: Float32Array, d0: number, d1: number, d2: number,
    d3: number, as0: number, as1: number, as2: number, as3: number, bs0: number, bs1: number, bs2: number, bs3: number): void;
  /**
   * out (a Uint8Array, tfjs's bool) = (a op b) ? 1 : 0 with the dims and strides of {@link binaryStrided}; op: 0 equal,
   * 1 not equal, 2 greater, 3 greater or equal, 4 less, 5 less or equal (NaN compares as in JavaScript).
   */
  compareStrided(op: number, a: Float32Array, b: Float32Array, out: Uint8Array, d0: number, d1: number, d2: number,
    d3: number, as0: number, as1: number, as2: number, as3: number, bs0: number, bs1: number, bs2: number, bs3: number): void;
  /**
   * out `[outer, inner]` = reduction of x `[outer, r, inner]` over its middle axis; op 0 sum, 1 mean (float64 sums,
   * as tfjs's cpu kernels), 2 max (NaN propagates).
   */
  reduce(op: 0 | 1 | 2, x: Float32Array, out: Float32Array, outer: number, r: number, inner: number): void;
  /** out[i] = f(x[i]) for i < n; op: 0 sqrt, 1 square, 2 neg, 3 rsqrt, 4 abs. */
  unary(op: number, x: Float32Array, out: Float32Array, n: number): void;
  /**
   * One fused AdamW pass over n values (see `compute/fused-adamw.ts`); scalars are used as float32, the operation
   * order is that of the tfjs ops, so results are bit-identical to them.
   */
  adamW(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, pOut: Float32Array, mOut: Float32Array,
    vOut: Float32Array, n: number, beta1: number, oneMinusBeta1: number, beta2: number, oneMinusBeta2: number,
    sqrtBc2: number, eps: number, decay: number, stepSize: number): void;
  /** Frees cached primitives and scratch buffers. */
  releaseCaches(): void;
}

/** File name of the built addon, under `native/build/` of the project. */
export const ADDON_FILE = 'pets_dnnl.node';

/**
 * Finds `native/build/pets_dnnl.node` above this module (works from `src/` under tsx and from `dist/`), or the file
 * named by `PETS_NATIVE_ADDON` when that is set (null if it does not exist: the fallback path can be tested so).
 */
export function addonPath(env: NodeJS.ProcessEnv = process.env): string | null {
  const forced = env.PETS_NATIVE_ADDON;
  if (forced !== undefined && forced !== '') return existsSync(forced) ? forced : null;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'native', 'build', ADDON_FILE);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return null;
}

/** The loaded addon, or why it could not be loaded. */
export type AddonLoad = { readonly addon: NativeAddon; readonly info: NativeInfo } | { readonly reason: string };

let cached: AddonLoad | undefined;

/**
 * Threads oneDNN uses: `PETS_NATIVE_THREADS` when set (an integer ≥ 1), else 1 — one worker per core is this
 * project's unit of parallelism (README, "Workers"), so each worker's kernels run on one thread.
 */
export function nativeThreads(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env.PETS_NATIVE_THREADS ?? '1');
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/**
 * Loads the addon once per process (later calls return the same result). Never throws. `PETS_NATIVE_RETAIN_HEAP=0`
 * keeps glibc's default malloc settings (see {@link NativeAddon.init}).
 */
export function loadAddon(): AddonLoad {
  if (cached !== undefined) return cached;
  const path = addonPath();
  if (path === null) {
    cached = { reason: process.env.PETS_NATIVE_ADDON
      ? `native addon ${JSON.stringify(process.env.PETS_NATIVE_ADDON)} (PETS_NATIVE_ADDON) does not exist`
      : 'native addon not built (needs libdnnl-dev and g++ at npm install; see README, "Native CPU backend")' };
    return cached;
  }
  try {
    const addon = createRequire(import.meta.url)(path) as NativeAddon;
    cached = { addon, info: addon.init(nativeThreads(), process.env.PETS_NATIVE_RETAIN_HEAP !== '0') };
  } catch (err) {
    const msg = String(err instanceof Error ? err.message : err).split('\n')[0]!.slice(0, 160);
    cached = { reason: `native addon failed to load (${msg})` };
  }
  return cached;
}
