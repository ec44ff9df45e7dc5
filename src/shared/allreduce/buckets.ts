/**
 * Gradient bucketing ("tensor fusion"): pack many small gradients into few large buffers before communicating.
 *
 * Policy from PyTorch DDP (`torch/nn/parallel/distributed.py`, `_DEFAULT_FIRST_BUCKET_BYTES` = 1 MiB and
 * `bucket_cap_mb` = 25): buckets are filled in REVERSE parameter order (the last layers' gradients are ready first
 * during backward, so their bucket can be communicated while backward continues), the first bucket is capped at
 * 1 MB and the others at `bucketBytes`. A parameter larger than the cap gets a bucket of its own.
 */
import { TrainerError } from '../errors.js';

/** Bytes per float32 gradient element. */
export const GRADIENT_ELEMENT_BYTES = 4;

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
  firstBucketBytes: 1024 * 1024,
  bucketBytes: 25 * 1024 * 1024,
});

/** A parameter as seen by the planner: its name and element count. */
export interface ParamSpec {
  readonly name: string;
  /** Number of float32 elements, integer ≥ 0. */
  readonly size: number;
}
/** Where one parameter's gradient lives inside its bucket buffer. */
export interface BucketEntry {
  readonly name: string;
  /** Offset in elements from the start of the bucket buffer. */
  readonly offset: number;
  /** Number of elements. */
  readonly size: number;
}
/** One bucket: an ordered list of entries laid out back to back. */
export interface Bucket {
  /** 0-based id, in communication order. */
  readonly id: number;
  readonly entries: readonly BucketEntry[];
  /** Total elements (`[length] float32` buffer). */
  readonly length: number;
}

/**
 * Resolves and validates bucket options.
 *
 * @throws TrainerError `ERR_BAD_CONFIG` naming the field when a cap is not an integer ≥ 4 bytes
 */
export function resolveBucketOptions(options: BucketOptions = {}): ResolvedBucketOptions {
  const resolved = { ...DEFAULT_BUCKETS, ...options };
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
 * Plans gradient buckets: reverse parameter order, first bucket ≤ `firstBucketBytes`, others ≤ `bucketBytes`.
 *
 * @param params - parameters in model (forward) order
 * @param options - caps in bytes; see {@link DEFAULT_BUCKETS}
 * @returns buckets in communication order; every parameter appears in exactly one bucket
 * @throws TrainerError `ERR_BAD_CONFIG` on invalid options, negative/non-integer sizes or duplicate names
 */
export function planBuckets(params: readonly ParamSpec[], options: BucketOptions = {}): Bucket[] {
  const { firstBucketBytes, bucketBytes } = resolveBucketOptions(options);
  checkParams(params);
  const buckets: Bucket[] = [];
  let entries: BucketEntry[] = [];
  let length = 0;
  const flush = (): void => {
    if (entries.length > 0) buckets.push({ id: buckets.length, entries, length });
    entries = [];
    length = 0;
  };
  for (let i = params.length - 1; i >= 0; i--) {
    const p = params[i];
    const capBytes = buckets.length === 0 ? firstBucketBytes : bucketBytes;
    if (entries.length > 0 && (length + p.size) * GRADIENT_ELEMENT_BYTES > capBytes) flush();
    entries.push({ name: p.name, offset: length, size: p.size });
    length += p.size;
  }
  flush();
  return buckets;
}

function gradientOf(grads: ReadonlyMap<string, Float32Array>, entry: BucketEntry): Float32Array {
  const g = grads.get(entry.name);
  if (g === undefined) throw new TrainerError('ERR_DATA', `missing gradient for parameter ${entry.name}`);
  if (g.length !== entry.size) {
    throw new TrainerError('ERR_DATA', `gradient ${entry.name} must have ${entry.size} elements, got ${g.length}`);
  }
  return g;
}

/**
 * Copies named gradients into one bucket buffer.
 *
 * @param bucket - from {@link planBuckets}
 * @param grads - gradient of each parameter, `[size] float32`
 * @param out - optional `[bucket.length] float32` destination (reuse it across steps)
 * @returns `[bucket.length] float32`
 * @throws TrainerError `ERR_DATA` when a gradient is missing or has the wrong length, or `out` has the wrong length
 */
export function flattenBucket(
  bucket: Bucket,
  grads: ReadonlyMap<string, Float32Array>,
  out: Float32Array = new Float32Array(bucket.length),
): Float32Array {
  if (out.length !== bucket.length) {
    throw new TrainerError('ERR_DATA', `bucket ${bucket.id} buffer must have ${bucket.length} elements, got ${out.length}`);
  }
  for (const e of bucket.entries) out.set(gradientOf(grads, e), e.offset);
  return out;
}

/**
 * Copies a (reduced) bucket buffer back into the named gradients, in place.
 *
 * @param bucket - from {@link planBuckets}
 * @param buffer - `[bucket.length] float32`
 * @param grads - destination arrays, `[size] float32` each, overwritten
 * @throws TrainerError `ERR_DATA` when a gradient is missing or a length differs
 */
export function unflattenBucket(bucket: Bucket, buffer: Float32Array, grads: ReadonlyMap<string, Float32Array>): void {
  if (buffer.length !== bucket.length) {
    throw new TrainerError('ERR_DATA', `bucket ${bucket.id} buffer must have ${bucket.length} elements, got ${buffer.length}`);
  }
  for (const e of bucket.entries) gradientOf(grads, e).set(buffer.subarray(e.offset, e.offset + e.size));
}
