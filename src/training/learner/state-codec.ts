/**
 * A replica's state (weights with BatchNorm statistics, AdamW moments and step counts, freeze flag) as one
 * safetensors blob: the payload of `state`/`load-state` messages (a replacement worker receives it from a
 * survivor), of checkpoints, and of saved models (`models/<name>.safetensors`, see `save.ts`).
 *
 * Tensors: `<param>` (weights and buffers, F32 in the model's tfjs layout), `opt.<param>.exp_avg` and
 * `opt.<param>.exp_avg_sq` (Adam moments, same shape); header metadata: `frozen` ("true"/"false"),
 * `optimizerSteps` (JSON param → Adam step count), `bnSteps` (JSON `{body, head}`).
 */
import { createHash } from 'node:crypto';
import { TrainerError } from '../../contract/errors.js';
import type { AdamWParamState } from './adamw.js';
import type { NamedArray, ReplicaState } from './replica.js';
import { encodeSafetensors, parseSafetensors, type SafetensorsTensorInput } from '../model/safetensors.js';

/** Encodes a replica state. @param extraMetadata - more header entries (e.g. a model name) */
export function encodeReplicaState(state: ReplicaState, extraMetadata: Readonly<Record<string, string>> = {}): Uint8Array {
  const tensors = new Map<string, SafetensorsTensorInput>();
  const shapes = new Map<string, readonly number[]>();
  for (const t of state.tensors) {
    tensors.set(t.name, { dtype: 'F32', shape: t.shape, data: t.data });
    shapes.set(t.name, t.shape);
  }
  const steps: Record<string, number> = {};
  for (const p of state.optimizer.params) {
    const shape = shapes.get(p.name) ?? [p.expAvg.length];
    tensors.set(`opt.${p.name}.exp_avg`, { dtype: 'F32', shape, data: p.expAvg });
    tensors.set(`opt.${p.name}.exp_avg_sq`, { dtype: 'F32', shape, data: p.expAvgSq });
    steps[p.name] = p.step;
  }
  return encodeSafetensors(tensors, {
    ...extraMetadata, frozen: String(state.frozen), optimizerSteps: JSON.stringify(steps), bnSteps: JSON.stringify(state.bnSteps),
  });
}

function metaJson<T>(metadata: Readonly<Record<string, string>>, key: string, source: string): T {
  try {
    return JSON.parse(metadata[key] ?? '') as T;
  } catch (err) {
    throw new TrainerError('ERR_WEIGHTS', `${source}: metadata ${key} must be JSON (${(err as Error).message})`, { cause: err });
  }
}

/**
 * Decodes a replica state.
 * @param source - named in error messages (file path or "state from rank 0")
 * @throws TrainerError ERR_WEIGHTS on a malformed blob (bad safetensors, non-F32 tensors, missing moments, bad metadata)
 */
export function decodeReplicaState(bytes: Uint8Array, source = 'replica state'): ReplicaState {
  const file = parseSafetensors(bytes, source);
  const tensors: NamedArray[] = [];
  for (const [key, t] of file.tensors) {
    if (!(t.data instanceof Float32Array)) throw new TrainerError('ERR_WEIGHTS', `${source}: tensor ${key} must be F32, got ${t.dtype}`);
    if (!key.startsWith('opt.')) tensors.push({ name: key, shape: t.shape, data: t.data });
  }
  const steps = metaJson<Record<string, number>>(file.metadata, 'optimizerSteps', source);
  const bnSteps = metaJson<{ body: number; head: number }>(file.metadata, 'bnSteps', source);
  if (!Number.isInteger(bnSteps.body) || !Number.isInteger(bnSteps.head)) throw new TrainerError('ERR_WEIGHTS', `${source}: metadata bnSteps must hold integer body and head counts`);
  const params: AdamWParamState[] = Object.entries(steps).map(([name, step]) => {
    const m = file.tensors.get(`opt.${name}.exp_avg`)?.data;
    const v = file.tensors.get(`opt.${name}.exp_avg_sq`)?.data;
    if (!(m instanceof Float32Array) || !(v instanceof Float32Array) || !Number.isInteger(step)) {
      throw new TrainerError('ERR_WEIGHTS', `${source}: optimizer state of ${name} must have F32 exp_avg, exp_avg_sq and an integer step`);
    }
    return { name, step, expAvg: m, expAvgSq: v };
  });
  const frozen = file.metadata.frozen;
  if (frozen !== 'true' && frozen !== 'false') throw new TrainerError('ERR_WEIGHTS', `${source}: metadata frozen must be "true" or "false", got ${JSON.stringify(frozen)}`);
  tensors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { version: 1, tensors, optimizer: { version: 1, params }, frozen: frozen === 'true', bnSteps };
}

/**
 * The first value of a state's tensors that is not a finite number (NaN, ±Infinity), or null when all are. A model's
 * weights and statistics holding one are damage that no step mends, and a max-pool can hide it from the loss (a NaN
 * in `conv1.weight` trained and predicted on with finite numbers).
 */
export function firstNonFinite(state: Pick<ReplicaState, 'tensors'>): { readonly name: string; readonly index: number; readonly count: number; readonly value: number } | null {
  for (const t of state.tensors) {
    const index = t.data.findIndex((v) => !Number.isFinite(v));
    if (index >= 0) return { name: t.name, index, count: t.data.length, value: t.data[index]! };
  }
  return null;
}

/**
 * The weights checksum of a replica ({@link Replica.weightsChecksum}, which replicas report after every load and at
 * every checkpoint), computed incrementally: SHA-256 (hex) over every parameter and BatchNorm buffer, its name's UTF-8
 * bytes then its float32 bytes (little-endian, as stored), added in name order (JavaScript `<` on the names).
 */
export class WeightsHash {
  private readonly h = createHash('sha256');

  /** Adds one tensor; call in name order. @param data - its `float32` values, row-major */
  add(name: string, data: Float32Array): void {
    this.h.update(name);
    this.h.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  /** The checksum, hex. */
  digest(): string {
    return this.h.digest('hex');
  }
}

/**
 * {@link WeightsHash} of named arrays in any order: the checksum a replica holding exactly these weights reports. The
 * coordinator computes it of a state it sends, to check that each replica holds that state's weights.
 * @param tensors - parameters and BatchNorm buffers, `float32` (no optimizer moments)
 */
export function weightsChecksumOf(tensors: Iterable<Pick<NamedArray, 'name' | 'data'>>): string {
  const h = new WeightsHash();
  for (const t of [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) h.add(t.name, t.data);
  return h.digest();
}
