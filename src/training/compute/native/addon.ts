/**
 * Loads the oneDNN addon (`native/pets_dnnl.cc`, built at `npm install` by `scripts/build-native.mjs` into
 * `native/build/pets_dnnl.node`) and describes its functions. Loading returns the reason the addon is unusable (not
 * built, libdnnl missing, …) rather than throwing, so that `--backend auto` can fall back with one log line; only a
 * bad setting of its own (`PETS_NATIVE_THREADS`, `PETS_NATIVE_RETAIN_HEAP`) is refused (ERR_BAD_CONFIG).
 *
 * Why an N-API addon rather than an FFI such as koffi: oneDNN's API is C++ (or a C API of opaque handles plus
 * ~300-byte descriptor structs); an FFI would have to describe those structs and make ~10 foreign calls per
 * convolution, while a 500-line addon makes one N-API call per kernel and keeps a primitive cache in C++. The call
 * cost is the same order either way (≈ 1 µs) against kernels of 0.1–60 ms. The addon needs a C++ compiler and
 * libdnnl-dev at install; without them the build step prints one line and the backend is simply unavailable.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeRetainHeapSetting, nativeThreadsSetting } from '../../../contract/env-settings.js';

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
 * (no copy); sizes are checked against the geometry (a short array throws `ERR_NATIVE`). An argument of the wrong type
 * (a count or dimension that is not a safe integer, a flag that is not a boolean, another array type) throws a
 * `TypeError` with code `ERR_NATIVE` naming it (native/napi_args.h), never a truncated value.
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
  /**
   * y = max-pool(x), padding excluded from the maximum; with a `workspace` ({@link maxPoolWorkspaceSize} bytes)
   * each window's arg-max is also recorded there for {@link maxPoolBackward}.
   */
  maxPoolForward(x: Float32Array, y: Float32Array, workspace: Uint8Array | null, ...g: PoolGeometry): void;
  /** Bytes of the arg-max workspace of a max-pool of this geometry. */
  maxPoolWorkspaceSize(...g: PoolGeometry): number;
  /**
   * dx = gradient of max-pool: dy routed to the first maximum of each window (row-major scan), taken from the
   * forward's `workspace` when given (it must be the one recorded for this x), else found again from x.
   */
  maxPoolBackward(x: Float32Array, dy: Float32Array, dx: Float32Array, workspace: Uint8Array | null, ...g: PoolGeometry): void;
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
   * One in-place AdamW pass over n values (the formula of `learner/adamw.ts`): p, m, v overwritten, g read; each
   * scalar used as a float32 and the operations in the order of the tfjs ops, so results equal theirs.
   */
  adamW(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number, beta1: number, beta2: number,
    sqrtBc2: number, eps: number, decay: number, stepSize: number): void;
  /** Frees cached primitives and scratch buffers. */
  releaseCaches(): void;
  /**
   * {@link nativeSourceHash} of the sources it was built from, stamped by `scripts/build-native.mjs`
   * (`-DPETS_SOURCE_HASH`); absent from an addon built before the stamp existed.
   */
  readonly sourceHash?: string;
}

/** The functions an addon must export to be used (every function of {@link NativeAddon}, checked by the compiler). */
export const ADDON_FUNCTIONS = Object.freeze(['init', 'convForward', 'convBackwardData', 'convWeightsCacheSize',
  'convBackwardWeights', 'convImpl', 'maxPoolForward', 'maxPoolWorkspaceSize', 'maxPoolBackward', 'batchMatMul', 'batchNormForward',
  'batchNormBackward', 'binary', 'binaryStrided', 'compareStrided', 'reduce', 'unary', 'adamW', 'releaseCaches'] as const);
type AddonFunction = { [K in keyof NativeAddon]-?: NativeAddon[K] extends (...args: never[]) => unknown ? K : never }[keyof NativeAddon];
// A function added to NativeAddon but not to ADDON_FUNCTIONS (or a misspelt entry) fails to compile here.
const listsEveryFunction: [AddonFunction] extends [(typeof ADDON_FUNCTIONS)[number]] ? true : never = true;
void listsEveryFunction;

/** The command that rebuilds the addon, named by every message about a stale or missing one. */
export const REBUILD_COMMAND = 'npm run build:native';

/** File name of the built addon, under `native/build/` of the project. */
export const ADDON_FILE = 'pets_dnnl.node';

/**
 * Finds `native/build/pets_dnnl.node` above this module (works from `src/` under tsx and from `dist/`), or the file
 * named by `PETS_NATIVE_ADDON` when that is set (null if it does not exist: the fallback path can be tested so).
 */
export function addonPath(env: NodeJS.ProcessEnv = process.env): string | null {
  return nativeBuildFile(ADDON_FILE, env.PETS_NATIVE_ADDON);
}

/**
 * Where a module built by `scripts/build-native.mjs` is: `forced` when that is set (null if it does not exist, so a
 * test can point it at a missing file), else `native/build/<file>` above this module (from `src/` under tsx and from
 * `dist/`), else null.
 * @param file - the module's file name, e.g. `pets_shm.node`
 * @param forced - the path an environment variable names (e.g. `PETS_SHM_ADDON`), or undefined
 */
export function nativeBuildFile(file: string, forced: string | undefined): string | null {
  if (forced !== undefined && forced !== '') return existsSync(forced) ? forced : null;
  return findUp((dir) => join(dir, 'native', 'build', file));
}

/** The first `candidate(dir)` that exists, for this module's directory and up to five above it. */
function findUp(candidate: (dir: string) => string): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const path = candidate(dir);
    if (existsSync(path)) return path;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return null;
}

/** The project's `native/` directory (the one holding `pets_dnnl.cc`) above this module, or null. */
function projectNativeDir(): string | null {
  const source = findUp((dir) => join(dir, 'native', 'pets_dnnl.cc'));
  return source === null ? null : dirname(source);
}

/** Whether a file of `native/` is a source of the addon (part of {@link nativeSourceHash}). */
const isSource = (name: string): boolean => /\.(cc|h)$/.test(name);

/**
 * The addon's source stamp: the first 16 hex digits of SHA-256 over `name NUL content NUL` of every `*.cc` and `*.h`
 * file of `nativeDir`, in name order. `scripts/build-native.mjs` computes the same (it cannot import this module: it
 * runs at `npm install`, before TypeScript is built); `native-addon-check.test.ts` checks that a fresh build matches.
 * @param nativeDir - the project's `native/` directory (default: found above this module)
 * @returns null when there is no such directory or it holds no sources (the project was copied without them)
 */
export function nativeSourceHash(nativeDir: string | null = projectNativeDir()): string | null {
  if (nativeDir === null || !existsSync(nativeDir)) return null;
  const names = readdirSync(nativeDir).filter(isSource).sort();
  if (names.length === 0) return null;
  const hash = createHash('sha256');
  for (const name of names) hash.update(name).update('\0').update(readFileSync(join(nativeDir, name))).update('\0');
  return hash.digest('hex').slice(0, 16);
}

/**
 * Why a loaded addon cannot be used with this code, or null: it lacks a function this code calls, or it was built
 * from other sources than `native/` holds now (a `git pull` changed them and nobody ran {@link REBUILD_COMMAND}; its
 * functions may then take other arguments than this code passes). Checked before the addon's first call.
 * @param sources - {@link nativeSourceHash} of the sources (null: unknown, only the functions are checked)
 * @param functions - the functions it must have (default: the oneDNN addon's, {@link ADDON_FUNCTIONS})
 * @param label - its name in the message (default `native addon`; the shared-memory all-reduce passes its own)
 */
export function addonProblem(addon: Partial<Record<string, unknown>>, path: string, sources: string | null,
  functions: readonly string[] = ADDON_FUNCTIONS, label = 'native addon'): string | null {
  const missing = functions.filter((name) => typeof addon[name] !== 'function');
  const stamp = typeof addon.sourceHash === 'string' ? addon.sourceHash : null;
  let why: string | null = null;
  if (missing.length > 0) why = `it lacks ${missing.join(', ')}`;
  else if (sources !== null && stamp !== sources) why = `it was built from other sources (stamp ${stamp ?? 'none'}, native/ now ${sources})`;
  return why === null ? null : `${label} ${path} is stale: ${why}; rebuild it with \`${REBUILD_COMMAND}\``;
}

/**
 * Requires a module built by `scripts/build-native.mjs` and checks that it is current ({@link addonProblem}), without
 * calling it. Never throws.
 * @param path - the module's file ({@link nativeBuildFile})
 * @param functions - the functions this code calls on it
 * @param label - its name in messages, e.g. `shared-memory module`
 * @returns the module, or why it cannot be used (stale, lacking a function, or failing to load: the error's first line)
 */
export function requireNative<T>(path: string, functions: readonly string[], label: string): { readonly module: T } | { readonly reason: string } {
  try {
    const module = createRequire(import.meta.url)(path) as Record<string, unknown>;
    const problem = addonProblem(module, path, nativeSourceHash(), functions, label);
    return problem === null ? { module: module as T } : { reason: problem };
  } catch (err) {
    return { reason: `${label} failed to load (${firstLine(err)})` };
  }
}

/** The loaded addon, or why it could not be loaded. */
export type AddonLoad = { readonly addon: NativeAddon; readonly info: NativeInfo } | { readonly reason: string };

let cached: AddonLoad | undefined;

/**
 * Threads oneDNN uses: `PETS_NATIVE_THREADS` when set (an integer ≥ 1), else 1 — one worker per core is this
 * project's unit of parallelism (README, "Workers"), so each worker's kernels run on one thread.
 * @throws TrainerError ERR_BAD_CONFIG for another value (`contract/env-settings.ts`)
 */
export function nativeThreads(env: NodeJS.ProcessEnv = process.env): number {
  return nativeThreadsSetting(env);
}

let checked: { readonly addon: NativeAddon } | { readonly reason: string } | undefined;

/**
 * Finds and requires the addon and checks that it is current ({@link addonProblem}), without calling it: what
 * {@link loadAddon} does before `init`, and what the coordinator checks before it starts local workers with
 * `--backend native`. Once per process. Never throws.
 */
export function checkAddon(): { readonly addon: NativeAddon } | { readonly reason: string } {
  if (checked !== undefined) return checked;
  const path = addonPath();
  if (path === null) {
    checked = { reason: process.env.PETS_NATIVE_ADDON
      ? `native addon ${JSON.stringify(process.env.PETS_NATIVE_ADDON)} (PETS_NATIVE_ADDON) does not exist`
      : `native addon not built: install g++ and libdnnl-dev, then run \`${REBUILD_COMMAND}\` (README, "Native CPU backend")` };
    return checked;
  }
  const load = requireNative<NativeAddon>(path, ADDON_FUNCTIONS, 'native addon');
  checked = 'reason' in load ? load : { addon: load.module };
  return checked;
}

function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split('\n')[0]!.slice(0, 160);
}

/**
 * Loads the addon once per process (later calls return the same result): {@link checkAddon}, then `init`. A load
 * that fails is an answer (`reason`), not an error. `PETS_NATIVE_RETAIN_HEAP=0` keeps glibc's default malloc settings
 * (see {@link NativeAddon.init}).
 * @throws TrainerError ERR_BAD_CONFIG only for a bad `PETS_NATIVE_THREADS` or `PETS_NATIVE_RETAIN_HEAP` (both commands
 *   refuse those before they start: `contract/env-settings.ts`)
 */
export function loadAddon(): AddonLoad {
  if (cached !== undefined) return cached;
  const check = checkAddon();
  if ('reason' in check) {
    cached = check;
    return cached;
  }
  // Read before the try: a bad value is the user's to change (ERR_BAD_CONFIG), not an addon that failed to start.
  const threads = nativeThreads();
  const retainHeap = nativeRetainHeapSetting();
  try {
    cached = { addon: check.addon, info: check.addon.init(threads, retainHeap) };
  } catch (err) {
    cached = { reason: `native addon failed to initialise (${firstLine(err)})` };
  }
  return cached;
}
