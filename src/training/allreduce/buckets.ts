/**
 * Gradient bucketing ("tensor fusion"): the all-reduce communicates a step's gradient in a few large pieces.
 *
 * Policy from PyTorch DDP (`torch/nn/parallel/distributed.py`: `_DEFAULT_FIRST_BUCKET_BYTES` = 1 MiB,
 * `bucket_cap_mb` = 25 MiB): buckets are filled in REVERSE parameter order (the last layers' gradients are ready
 * first during backward, so their bucket can be communicated while backward continues), the first bucket is capped
 * at 1 MiB and the others at `bucketBytes`. A parameter larger than its cap gets a bucket of its own. Here the
 * gradient is one flat float32 array in parameter order (`Replica.gradientLayout`), so a bucket is a contiguous
 * range of it: all-reduced in place, no copy.
 */
import { TrainerError } from '../../contract/errors.js';

/** Bytes per float32 gradient element. */
export const GRADIENT_ELEMENT_BYTES = 4;

/** One MiB, the unit of `--bucket-mb` (DDP's `bucket_cap_mb` is MiB: `bucket_cap_mb * 1024 * 1024`). */
export const MIB = 1024 * 1024;

/** Options of {@link planBuckets}; all optional. */
export interface BucketOptions {
  /** Cap of the first bucket, in bytes (integer ≥ 4). DDP: 1 MiB. */
  readonly firstBucketBytes?: number;
  /** Cap of every other bucket, in bytes (integer ≥ 4). DDP: 25 MiB. */
  readonly bucketBytes?: number;
}
/** {@link BucketOptions} with every field set. */
export type ResolvedBucketOptions = Required<BucketOptions>;
/** Defaults of {@link planBuckets} (PyTorch DDP's). */
export const DEFAULT_BUCKETS: ResolvedBucketOptions = Object.freeze({
  firstBucketBytes: MIB,
  bucketBytes: 25 * MIB,
});

/** A parameter as seen by the planner: its name and element count. */
export interface ParamSpec {
  readonly name: string;
  /** Number of float32 elements, integer ≥ 0. */
  readonly size: number;
}

/** One bucket: the contiguous range [start, end) of the flat gradient holding the gradients of `names`. */
export interface Bucket {
  /** 0-based id, in communication order (the all-reduce tag). */
  readonly id: number;
  /** First element, in the flat gradient (parameter order). */
  readonly start: number;
  /** One past the last element. */
  readonly end: number;
  /** Its parameters, in the order they were added (last parameter first). */
  readonly names: readonly string[];
}

/**
 * Resolves and validates bucket options.
 *
 * @throws TrainerError `ERR_BAD_CONFIG` naming the field when a cap is not an integer ≥ 4 bytes
 */
export function resolveBucketOptions(options: BucketOptions = {}): ResolvedBucketOptions {
  const resolved = { ...DEFAULT_BUCKETS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  for (const field of ['firstBucketBytes', 'bucketBytes'] as const) {
    const v = resolved[field];
    if (!Number.isInteger(v) || v < GRADIENT_ELEMENT_BYTES) {
      throw new TrainerError('ERR_BAD_CONFIG', `${field} must be an integer ≥ ${GRADIENT_ELEMENT_BYTES}, got ${v}`);
    }
  }
  return resolved;
}

function checkParams(params: readonly ParamSpec[]): void {
  const seen = new Set<string>();
  for (const p of params) {
    if (!Number.isInteger(p.size) || p.size < 0) {
      throw new TrainerError('ERR_BAD_CONFIG', `parameter ${p.name} size must be an integer ≥ 0, got ${p.size}`);
    }
    if (seen.has(p.name)) throw new TrainerError('ERR_BAD_CONFIG', `parameter names must be unique, got ${p.name} twice`);
    seen.add(p.name);
  }
}

/**
 * Plans gradient buckets: reverse parameter order, first bucket ≤ `firstBucketBytes`, others ≤ `bucketBytes`
 * (a parameter alone may exceed its cap). Every element of the flat gradient is in exactly one bucket.
 *
 * @param params - parameters in model (forward) order, as laid out in the flat gradient
 * @param options - caps in bytes; see {@link DEFAULT_BUCKETS}
 * @returns buckets in communication order (the last parameters' first); none for an empty layout
 * @throws TrainerError `ERR_BAD_CONFIG` on invalid options, negative/non-integer sizes or duplicate names
 */
export function planBuckets(params: readonly ParamSpec[], options: BucketOptions = {}): Bucket[] {
  const { firstBucketBytes, bucketBytes } = resolveBucketOptions(options);
  checkParams(params);
  const buckets: Bucket[] = [];
  let end = params.reduce((s, p) => s + p.size, 0);
  let start = end;
  let names: string[] = [];
  for (let i = params.length - 1; i >= 0; i--) {
    const p = params[i]!;
    const capBytes = buckets.length === 0 ? firstBucketBytes : bucketBytes;
    if (start < end && (end - start + p.size) * GRADIENT_ELEMENT_BYTES > capBytes) {
      buckets.push({ id: buckets.length, start, end, names });
      end = start;
      names = [];
    }
    start -= p.size;
    names.push(p.name);
  }
  if (names.length > 0) buckets.push({ id: buckets.length, start, end, names });
  return buckets;
}
