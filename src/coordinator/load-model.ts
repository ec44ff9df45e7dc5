/**
 * `--load <model file or run dir>`: a new run that starts from the weights and BatchNorm running statistics of a model
 * saved earlier, with the stages of its own command line — fastai's `learn.load('stage-1')` followed by new fits
 * (`learn.unfreeze(); learn.fit_one_cycle(2, max_lr=slice(1e-6,1e-4))`).
 *
 * What it reads, checked in the coordinator before any worker starts:
 * - a saved model, `models/<name>.safetensors` with its `<name>.json` (classes, architecture), as `predict` takes it;
 *   a run directory without checkpoints, or its `models/` folder, stands for its newest saved model (`findModel`);
 * - a checkpoint folder (`checkpoints/step-…`, or its `state.safetensors`), verified against its manifest;
 * - a run directory with checkpoints: its newest intact checkpoint, i.e. the run's final state (a finished run's
 *   final checkpoint is its last stage's model).
 *
 * The optimizer state starts fresh, as fastai's `learn.load(name, with_opt=False)` (the default) leaves it: AdamW's
 * moments and step counts of the saved model are not loaded. The weights, BatchNorm running statistics and their
 * update counts (torch `num_batches_tracked`) are.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ARCHS, SIZE_RANGE, archModel, type Arch } from '../contract/config.js';
import { listCheckpoints, loadLatestCheckpoint, readCheckpoint, sha256, type LoadedCheckpoint } from '../contract/checkpoint-format.js';
import { TrainerError, isTrainerError } from '../contract/errors.js';
import { describeConfig, layoutModules, resnetLayout, resolveResNetConfig, type ResNetConfig } from '../contract/resnet-spec.js';
import { headTensorShapes } from '../training/learner/head.js';
import { decodeReplicaState, encodeReplicaState, firstNonFinite } from '../training/learner/state-codec.js';
import type { ReplicaState } from '../training/learner/replica.js';
import { savedModelMetaFault, type SavedModelMeta } from '../training/learner/save.js';
import { checkCheckpointMeta } from './checkpoint-meta.js';
import type { CheckpointMeta } from './checkpoint-store.js';
import { findModel } from './inference.js';
import { shownJson } from '../contract/shown-value.js';

/** Where a `--load` run started from, as its `config.json`, its checkpoints and its report record it. */
export interface StartRecord {
  /** Absolute path of the file read: a saved model's `.safetensors`, or a checkpoint's `state.safetensors`. */
  readonly path: string;
  /** What it is, e.g. `saved model stage-1 of run runs/a` or `checkpoint step-000000012 of run runs/a`. */
  readonly what: string;
  /** sha256 (hex) of the file's bytes, so the record still identifies it once the file is moved or changed. */
  readonly sha256: string;
}

/** A `--load` source read and decoded ({@link readLoadSource}). */
export interface LoadSource {
  readonly record: StartRecord;
  /** The model's architecture. */
  readonly arch: ResNetConfig;
  /** Its class names, index i = class i. */
  readonly classes: readonly string[];
  /** Image side it was trained at, pixels (another `--size` is allowed: progressive resizing). */
  readonly size: number;
  /** The decoded state (its optimizer part is dropped by {@link startStateBlob}). */
  readonly state: ReplicaState;
}

const FLAG = '--load';

/**
 * Reads what `--load` names (see the module comment) and decodes its state.
 * @param value - the flag's value: a model file, a checkpoint folder or file, a run directory or its `models/`
 * @throws TrainerError ERR_BAD_FLAG naming the path and what is wrong with it (missing, no model, a model file
 *   without its `.json`, a damaged checkpoint or model, a field of its metadata outside its rule, a file the system
 *   refuses to read)
 */
export function readLoadSource(value: string): LoadSource {
  try {
    return readSource(value);
  } catch (err) {
    // A file the system refuses (EACCES, EISDIR, one removed between two reads) ended the run as ERR_INTERNAL (exit
    // 1) with a bare `EACCES: permission denied, open …`, naming no flag.
    if (!isSystemError(err)) throw err;
    throw new TrainerError('ERR_BAD_FLAG', `${FLAG} ${value}: cannot be read (${err.message})`, { cause: err });
  }
}

/** An error of a Node system call (`fs`): it carries a string `code` such as `EACCES` and the `syscall`. */
function isSystemError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}

function readSource(value: string): LoadSource {
  const path = resolve(value);
  if (!existsSync(path)) throw new TrainerError('ERR_BAD_FLAG', `${FLAG} ${value}: no such model file or run directory`);
  const checkpointDir = statSync(path).isDirectory() ? path : dirname(path);
  if (existsSync(join(checkpointDir, 'manifest.json')) && (path === checkpointDir || basename(path) === 'state.safetensors')) {
    return fromCheckpoint(value, () => readCheckpoint(checkpointDir, checkCheckpointMeta));
  }
  if (statSync(path).isDirectory() && listCheckpoints(path).length > 0) {
    return fromCheckpoint(value, () => loadLatestCheckpoint(path, checkCheckpointMeta)!);
  }
  return fromModel(value);
}

/**
 * What is wrong with the model fields of a checkpoint manifest's configuration, or null. {@link checkCheckpointMeta}
 * checks the configuration with the run's defaults filled in, so a manifest without `arch` or `size` passes it; the
 * loaded model needs the ones it was trained with (a manifest without `size` logged "trained at undefined px").
 */
function checkpointModelFault(config: Record<string, unknown>): string | null {
  if (!ARCHS.includes(config.arch as Arch)) return `meta.config.arch must be one of ${ARCHS.join(', ')}, got ${shownJson(config.arch)}`;
  const size = config.size;
  if (!Number.isSafeInteger(size) || (size as number) < SIZE_RANGE.min || (size as number) > SIZE_RANGE.max) {
    return `meta.config.size must be an integer in [${SIZE_RANGE.min}, ${SIZE_RANGE.max}] (the --size rule), got ${shownJson(size)}`;
  }
  return null;
}

/** A checkpoint as a load source (`read` verifies it and its manifest's shape; an error names the checkpoint). */
function fromCheckpoint(value: string, read: () => LoadedCheckpoint<CheckpointMeta>): LoadSource {
  let loaded: LoadedCheckpoint<CheckpointMeta>;
  try {
    loaded = read();
  } catch (err) {
    if (!isTrainerError(err)) throw err;
    throw new TrainerError('ERR_BAD_FLAG', `${FLAG} ${value}: ${err.message}`, { cause: err });
  }
  const file = join(loaded.dir, 'state.safetensors');
  const bytes = loaded.files.get('state.safetensors');
  const meta = loaded.manifest.meta;
  if (bytes === undefined) {
    throw new TrainerError('ERR_BAD_FLAG', `${FLAG} ${value}: ${loaded.dir} is not a checkpoint of this trainer (its manifest lists no state.safetensors)`);
  }
  const fault = checkpointModelFault(meta.config as unknown as Record<string, unknown>);
  if (fault !== null) throw new TrainerError('ERR_BAD_FLAG', `${FLAG} ${value}: ${join(loaded.dir, 'manifest.json')}: ${fault}`);
  const runDir = dirname(dirname(loaded.dir));
  const skipped = loaded.skipped.length > 0 ? `, the newest intact one (${loaded.skipped.length} newer skipped as damaged)` : '';
  return {
    record: { path: file, what: `checkpoint ${basename(loaded.dir)} of run ${runDir}${skipped}, global step ${meta.history.position.globalStep}`, sha256: sha256(bytes) },
    arch: resolveResNetConfig(archModel(meta.config.arch)), classes: meta.classes, size: meta.config.size,
    state: fitting(value, file, resolveResNetConfig(archModel(meta.config.arch)), meta.classes.length, decode(value, file, bytes)),
  };
}

/** A saved model (`models/<name>.safetensors` + `.json`) as a load source. */
function fromModel(value: string): LoadSource {
  let ref;
  try {
    ref = findModel(value);
  } catch (err) {
    if (!isTrainerError(err)) throw err;
    throw new TrainerError('ERR_BAD_FLAG', err.message.startsWith(value) ? `${FLAG} ${err.message}` : `${FLAG} ${value}: ${err.message}`, { cause: err });
  }
  const file = join(ref.dir, 'models', `${ref.name}.safetensors`);
  const metaFile = join(ref.dir, 'models', `${ref.name}.json`);
  let meta: SavedModelMeta;
  try {
    meta = JSON.parse(readFileSync(metaFile, 'utf8')) as SavedModelMeta;
  } catch (err) {
    throw new TrainerError('ERR_BAD_FLAG', `${FLAG} ${value}: cannot read ${metaFile} (${(err as Error).message})`, { cause: err });
  }
  // Every field a run uses (arch, classes, size) is checked as predict checks it: a .json without `size` logged
  // "trained at undefined px".
  const fault = typeof meta !== 'object' || meta === null || Array.isArray(meta) ? 'not an object'
    : meta.format !== 1 ? `format must be 1, got ${JSON.stringify(meta.format) ?? 'nothing'}` : savedModelMetaFault(meta);
  if (fault !== null) {
    throw new TrainerError('ERR_BAD_FLAG', `${FLAG} ${value}: ${metaFile}: ${fault}; it is not the metadata this trainer saved with the model (restore it from a copy of the run)`);
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new TrainerError('ERR_BAD_FLAG', `${FLAG} ${value}: cannot read ${file} (${(err as Error).message})`, { cause: err });
  }
  return {
    record: { path: file, what: `saved model ${ref.name} of ${ref.dir}`, sha256: sha256(bytes) },
    arch: resolveResNetConfig(meta.arch), classes: meta.classes, size: meta.size,
    state: fitting(value, file, resolveResNetConfig(meta.arch), meta.classes.length, decode(value, file, bytes)),
  };
}

function decode(value: string, file: string, bytes: Uint8Array): ReplicaState {
  try {
    return decodeReplicaState(bytes, file);
  } catch (err) {
    if (!isTrainerError(err)) throw err;
    throw new TrainerError('ERR_BAD_FLAG', `${FLAG} ${value}: ${err.message}`, { cause: err });
  }
}

/**
 * The name and tfjs-layout shape of every tensor a replica of `arch` with `numClasses` outputs holds (what
 * `Replica.exportState` writes, without the optimizer's): the body's convolutions `[k, k, in, out]` and BatchNorm
 * weight, bias and running statistics `[channels]` (`resnet-spec.ts`), then fastai's head (`headTensorShapes`).
 */
export function replicaTensorShapes(arch: ResNetConfig, numClasses: number): Map<string, number[]> {
  const layout = resnetLayout(arch, null);
  const out = new Map<string, number[]>();
  for (const m of layoutModules(layout)) {
    if (m.kind === 'conv') {
      out.set(`${m.name}.weight`, [m.kernel, m.kernel, m.inChannels, m.outChannels]);
      continue;
    }
    for (const p of ['weight', 'bias', 'running_mean', 'running_var']) out.set(`${m.name}.${p}`, [m.channels]);
  }
  for (const [name, shape] of headTensorShapes(layout.featureChannels, numClasses)) out.set(name, shape);
  return out;
}

/**
 * The decoded state, once every tensor the model of its metadata (architecture, classes) holds is there with its
 * shape and no other is. A file whose tensors do not fit (a `.json` beside another model's weights, a tensor
 * missing or of another shape) was found only by the workers' load-state, after they had started: ERR_CHECKPOINT,
 * exit 1, naming no flag; a tensor of another shape but as many values was taken silently. Every value must be
 * finite too.
 * @throws TrainerError ERR_BAD_FLAG naming --load, the file, the first tensor that does not fit and the shapes, or
 *   the first non-finite value
 */
function fitting(value: string, file: string, arch: ResNetConfig, numClasses: number, state: ReplicaState): ReplicaState {
  const want = replicaTensorShapes(arch, numClasses);
  const model = `the ${archName(arch)} with ${numClasses} classes its metadata describes`;
  const shape = (s: readonly number[]): string => `[${s.join(', ')}]`;
  const refuse = (what: string): never => {
    throw new TrainerError('ERR_BAD_FLAG', `${FLAG} ${value}: ${file}: ${what}, so it is not the state of ${model}; load the model file saved with its metadata (restore it from a copy of the run)`);
  };
  const have = new Map(state.tensors.map((t) => [t.name, t.shape]));
  for (const [name, s] of want) {
    const got = have.get(name);
    if (got === undefined) refuse(`it lacks the tensor ${name}`);
    else if (got.length !== s.length || got.some((d, i) => d !== s[i])) refuse(`its tensor ${name} is ${shape(got)}, the model's is ${shape(s)}`);
  }
  const extra = state.tensors.find((t) => !want.has(t.name));
  if (extra !== undefined) refuse(`it holds a tensor ${extra.name}, which the model does not have`);
  // A NaN or an infinity in the weights is damage no training step mends: a max-pool can hide it from the loss
  // (ERR_DIVERGED never fired), and the run trained and saved it on (seen: a NaN in conv1.weight, finite losses).
  const bad = firstNonFinite(state);
  if (bad !== null) {
    throw new TrainerError('ERR_BAD_FLAG', `${FLAG} ${value}: ${file}: its tensor ${bad.name} holds ${bad.value} (value ${bad.index} of ${bad.count}); a model's weights and statistics must be finite numbers: load a model saved before it diverged (an earlier checkpoint of its run)`);
  }
  return state;
}

/** `resnet34`, `resnet10`, or `ResNet(basic, [1,2,1,1])` for an architecture no `--arch` names. */
function archName(config: ResNetConfig): string {
  const named = ARCHS.find((a) => JSON.stringify(resolveResNetConfig(archModel(a))) === JSON.stringify(config));
  return named ?? describeConfig(config);
}

/**
 * The loaded model must be of the run's architecture (`--arch`): fastai's `learn.load` needs a learner built with
 * the same one.
 * @throws TrainerError ERR_BAD_FLAG naming the file, its architecture and the run's
 */
export function checkLoadArch(source: LoadSource, arch: Arch): void {
  const want = resolveResNetConfig(archModel(arch));
  if (JSON.stringify(want) === JSON.stringify(source.arch)) return;
  throw new TrainerError('ERR_BAD_FLAG', `${FLAG} ${source.record.path}: the model is a ${archName(source.arch)}, this run's --arch is ${arch}; pass --arch ${archName(source.arch)} (the architecture of the model loaded)`);
}

/**
 * The loaded model's head must predict the data's classes, in the same order (class i is output i).
 * @param classes - the run's classes, from its data
 * @throws TrainerError ERR_BAD_FLAG naming the file and what differs: classes only one side has, or the order
 */
export function checkLoadClasses(source: LoadSource, classes: readonly string[]): void {
  const model = source.classes;
  if (JSON.stringify(model) === JSON.stringify(classes)) return;
  const list = (xs: readonly string[]): string => `${xs.slice(0, 5).join(', ')}${xs.length > 5 ? ` (+${xs.length - 5} more)` : ''}`;
  const onlyModel = model.filter((c) => !classes.includes(c)), onlyData = classes.filter((c) => !model.includes(c));
  const differs = onlyModel.length + onlyData.length === 0
    ? `the same ${classes.length} classes in another order (the model's class 0 is ${model[0]}, the data's ${classes[0]})`
    : [onlyModel.length > 0 ? `not in the data: ${list(onlyModel)}` : '', onlyData.length > 0 ? `not in the model: ${list(onlyData)}` : ''].filter(Boolean).join('; ');
  throw new TrainerError('ERR_BAD_FLAG', `${FLAG} ${source.record.path}: the model was trained on ${model.length} classes, the data has ${classes.length}: ${differs}; ` +
    'load a model trained on these classes, or point --data at its data');
}

/**
 * The state every replica loads at the start of the first stage: the loaded weights, BatchNorm statistics and their
 * update counts, no optimizer state (fastai `learn.load(with_opt=False)`: AdamW starts with zero moments and step 0)
 * and the first stage's frozen flag (a load-state sets it).
 * @param frozen - the first stage's `frozen`
 * @returns a replica state blob (`state-codec.ts`), the payload of a `load-state` request
 */
export function startStateBlob(source: LoadSource, frozen: boolean): Uint8Array {
  const s = source.state;
  return encodeReplicaState({ version: 1, frozen, tensors: s.tensors, optimizer: { version: 1, params: [] }, bnSteps: s.bnSteps });
}

/** The log line of a run that starts from a loaded model. */
export function describeLoadStart(record: StartRecord): string {
  return `the weights of ${record.path} (--load: ${record.what}; sha256 ${record.sha256.slice(0, 12)}…)`;
}
