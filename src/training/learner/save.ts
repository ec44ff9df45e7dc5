/**
 * fastai `learn.save(name)` / `learn.load(name)` for a {@link Replica}: `<dir>/models/<name>.safetensors` holds
 * every parameter and BatchNorm running statistic (tfjs layouts, float32) and the AdamW moments
 * (`opt.<param>.exp_avg`, `opt.<param>.exp_avg_sq`); `<dir>/models/<name>.json` holds the metadata (class
 * names, arch, image size, normalisation stats, frozen flag, optimizer step counts, BN step counts).
 * As fastai, loading restores the optimizer state too.
 */
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { tryHardLink, writeFileAtomic } from '../../contract/atomic-write.js';
import { join } from 'node:path';
import { TrainerError, isTrainerError } from '../../contract/errors.js';
import { decodeReplicaState, encodeReplicaState, firstNonFinite } from './state-codec.js';
import type { ResNetConfig } from '../../contract/resnet-spec.js';
import { SIZE_RANGE } from '../../contract/config.js';
import type { Replica, ReplicaState } from './replica.js';
import { shownJson } from '../../contract/shown-value.js';

/** What `<name>.json` records besides the tensors. */
export interface SavedModelMeta {
  readonly format: 1;
  /** Architecture config (block type and layers). */
  readonly arch: ResNetConfig;
  /** Class names; index i is class i. */
  readonly classes: readonly string[];
  /** Image side, pixels. */
  readonly size: number;
  /** Per-channel normalisation applied to 0..1 RGB (ImageNet stats in the tutorial). */
  readonly normalize: { readonly mean: readonly number[]; readonly std: readonly number[] };
  readonly frozen: boolean;
  /** Adam step count per parameter that has optimizer state. */
  readonly optimizerSteps: Readonly<Record<string, number>>;
  /** Training-mode BN updates applied (torch `num_batches_tracked`). */
  readonly bnSteps: { readonly body: number; readonly head: number };
}

/** The metadata a caller provides (the rest comes from the replica). */
export type SaveInfo = Pick<SavedModelMeta, 'arch' | 'classes' | 'size' | 'normalize'>;

const NAME_RE = /^[A-Za-z0-9._-]+$/;

/** Paths of a saved model. @throws TrainerError ERR_BAD_FLAG for a name that is not `[A-Za-z0-9._-]+`. */
export function modelPaths(dir: string, name: string): { weights: string; meta: string } {
  if (!NAME_RE.test(name) || name.startsWith('.')) {
    throw new TrainerError('ERR_BAD_FLAG', `model name must match [A-Za-z0-9._-]+ and not start with a dot, got ${JSON.stringify(name)}`);
  }
  const models = join(dir, 'models');
  return { weights: join(models, `${name}.safetensors`), meta: join(models, `${name}.json`) };
}

/**
 * Writes the replica's state under `<dir>/models/<name>.*` (crash-safe: temp file, fsync, rename).
 *
 * @returns the two paths written
 * @throws TrainerError ERR_BAD_FLAG (bad name), ERR_CHECKPOINT (I/O)
 */
export async function saveModel(replica: Replica, info: SaveInfo, dir: string, name: string): Promise<{ weights: string; meta: string }> {
  return writeSavedState(await replica.exportState(), info, dir, name);
}

/**
 * Writes a replica state (e.g. received from a worker) as a saved model, in the same format as {@link saveModel}.
 *
 * @returns the two paths written
 * @throws TrainerError ERR_BAD_FLAG (bad name), ERR_CHECKPOINT (I/O)
 */
export async function writeSavedState(state: ReplicaState, info: SaveInfo, dir: string, name: string): Promise<{ weights: string; meta: string }> {
  const paths = modelPaths(dir, name);
  const optimizerSteps = Object.fromEntries(state.optimizer.params.map((p) => [p.name, p.step]));
  const meta: SavedModelMeta = { format: 1, ...info, frozen: state.frozen, optimizerSteps, bnSteps: state.bnSteps };
  await mkdir(join(dir, 'models'), { recursive: true });
  await writeFileAtomic(paths.weights, encodeReplicaState(state, { format: 'pets-trainer', name }));
  await writeFileAtomic(paths.meta, new TextEncoder().encode(`${JSON.stringify(meta, null, 2)}\n`));
  return paths;
}

/**
 * Writes an encoded replica state (as a worker sends it) as a saved model, byte for byte, so that a model saved
 * right after a checkpoint holds exactly the checkpoint's bytes and can share its file: when `sameBytesAt` names a
 * file known to hold these exact bytes, the model is a hard link to it (no bytes written), else they are written.
 *
 * @returns the two paths written and whether the weights are a hard link
 * @throws TrainerError ERR_BAD_FLAG (bad name), ERR_WEIGHTS (malformed blob), ERR_CHECKPOINT (I/O)
 */
export async function writeSavedBlob(blob: Uint8Array, info: SaveInfo, dir: string, name: string, sameBytesAt: string | null = null): Promise<{ weights: string; meta: string; linked: boolean }> {
  const paths = modelPaths(dir, name);
  const state = decodeReplicaState(blob, `state for model ${name}`);
  const optimizerSteps = Object.fromEntries(state.optimizer.params.map((p) => [p.name, p.step]));
  const meta: SavedModelMeta = { format: 1, ...info, frozen: state.frozen, optimizerSteps, bnSteps: state.bnSteps };
  await mkdir(join(dir, 'models'), { recursive: true });
  const tmp = `${paths.weights}.link-${process.pid}`;
  await rm(tmp, { force: true });
  const linked = sameBytesAt !== null && tryHardLink(sameBytesAt, tmp);
  if (linked) await rename(tmp, paths.weights);
  else await writeFileAtomic(paths.weights, blob);
  await writeFileAtomic(paths.meta, new TextEncoder().encode(`${JSON.stringify(meta, null, 2)}\n`));
  return { ...paths, linked };
}

/** Reads `<name>.json`. @throws TrainerError ERR_CHECKPOINT when missing or not a format-1 file. */
export async function readModelMeta(dir: string, name: string): Promise<SavedModelMeta> {
  const { meta } = modelPaths(dir, name);
  let parsed: SavedModelMeta;
  try {
    parsed = JSON.parse(await readFile(meta, 'utf8')) as SavedModelMeta;
  } catch (err) {
    throw new TrainerError('ERR_CHECKPOINT', `cannot read saved model metadata ${meta} (${(err as Error).message})`, { cause: err });
  }
  if (parsed.format !== 1) throw new TrainerError('ERR_CHECKPOINT', `${meta}: format must be 1, got ${String(parsed.format)}`);
  const fault = savedModelMetaFault(parsed);
  if (fault !== null) throw new TrainerError('ERR_CHECKPOINT', `${meta}: ${fault}; it is not the metadata this trainer saved with the model (restore it from a copy of the run)`);
  return parsed;
}

/**
 * What is wrong with a `<name>.json` that parses, or null: the fields `predict`, `interpret` and `Learner.load` use
 * (architecture, class names, image side within the `--size` rule, normalisation, frozen flag, step counts). Before,
 * a file edited by hand or damaged in a number was taken as it was: `"size": -3` made `predict` blame every image
 * (`ERR_BAD_IMAGE: truncated/corrupt: …/Bengal_107.jpg (Expected positive integer … for width but received -3)`).
 */
export function savedModelMetaFault(m: Record<string, unknown> | SavedModelMeta): string | null {
  const r = m as Record<string, unknown>;
  const count = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;
  const arch = r.arch as { block?: unknown; layers?: unknown } | null | undefined;
  if (typeof arch !== 'object' || arch === null || (arch.block !== 'basic' && arch.block !== 'bottleneck')
    || !Array.isArray(arch.layers) || arch.layers.length !== 4 || !arch.layers.every((n) => Number.isSafeInteger(n) && (n as number) >= 1 && (n as number) <= 64)) {
    return `arch must be {block: basic|bottleneck, layers: 4 integers ≥ 1}, got ${shownJson(r.arch)}`;
  }
  if (!Array.isArray(r.classes) || r.classes.length === 0 || !r.classes.every((c) => typeof c === 'string')) return `classes must be a non-empty list of class names, got ${shownJson(r.classes)}`;
  if (!Number.isSafeInteger(r.size) || (r.size as number) < SIZE_RANGE.min || (r.size as number) > SIZE_RANGE.max) {
    return `size must be an integer in [${SIZE_RANGE.min}, ${SIZE_RANGE.max}] (the --size rule), got ${shownJson(r.size)}`;
  }
  const norm = r.normalize as { mean?: unknown; std?: unknown } | null | undefined;
  const channels = (v: unknown, positive: boolean): boolean => Array.isArray(v) && v.length === 3
    && v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0));
  if (typeof norm !== 'object' || norm === null || !channels(norm.mean, false) || !channels(norm.std, true)) {
    return `normalize must be {mean: 3 numbers, std: 3 numbers > 0}, got ${shownJson(r.normalize)}`;
  }
  if (typeof r.frozen !== 'boolean') return `frozen must be true or false, got ${shownJson(r.frozen)}`;
  const steps = r.optimizerSteps;
  if (typeof steps !== 'object' || steps === null || Array.isArray(steps) || !Object.values(steps).every(count)) {
    return `optimizerSteps must map parameter names to integers ≥ 0, got ${shownJson(steps)}`;
  }
  const bn = r.bnSteps as { body?: unknown; head?: unknown } | null | undefined;
  if (typeof bn !== 'object' || bn === null || !count(bn.body) || !count(bn.head)) return `bnSteps must be {body, head} integers ≥ 0, got ${shownJson(r.bnSteps)}`;
  return null;
}

/**
 * Loads `<dir>/models/<name>.*` into the replica (weights, BN statistics, optimizer state, frozen flag).
 *
 * @param expectClasses - the current data's classes; loading refuses a model trained on other classes
 * @returns the metadata
 * @throws TrainerError ERR_CHECKPOINT (missing/malformed files, other classes, tensors that do not fit)
 */
export async function loadModel(replica: Replica, dir: string, name: string, expectClasses?: readonly string[]): Promise<SavedModelMeta> {
  const meta = await readModelMeta(dir, name);
  if (expectClasses && meta.classes.join('\n') !== expectClasses.join('\n')) {
    throw new TrainerError('ERR_CHECKPOINT', `model ${name} was trained on ${meta.classes.length} classes that differ from the data's ${expectClasses.length}`);
  }
  const path = modelPaths(dir, name).weights;
  const bytes = await readFile(path).catch((err: unknown) => {
    throw new TrainerError('ERR_CHECKPOINT', `cannot read saved model ${name}: ${(err as Error).message}`, { cause: err });
  });
  let state: ReplicaState;
  try {
    state = decodeReplicaState(bytes, path);
  } catch (err) {
    throw new TrainerError('ERR_CHECKPOINT', `saved model ${name} is malformed: ${(err as Error).message}`, { cause: err });
  }
  // Tensors that do not fit the model its .json describes (one missing, another shape) or a NaN: predict said
  // 'replica state lacks bn1.running_var', naming no file, and predicted with the NaN (a max-pool hid it).
  const bad = firstNonFinite(state);
  if (bad !== null) throw new TrainerError('ERR_CHECKPOINT', `saved model ${name} (${path}) is damaged: its tensor ${bad.name} holds ${bad.value} (value ${bad.index} of ${bad.count}); weights and statistics must be finite numbers`);
  try {
    replica.importState(state);
  } catch (err) {
    if (!isTrainerError(err, 'ERR_CHECKPOINT')) throw err;
    throw new TrainerError('ERR_CHECKPOINT', `saved model ${name} (${path}) does not fit the model its ${name}.json describes: ${err.message}`, { cause: err });
  }
  return meta;
}
