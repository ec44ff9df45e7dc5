/**
 * Using a trained stage: `coordinator predict` (breed and probability per image) and `coordinator interpret`
 * (validation predictions → top losses, confusion matrix, most confused, pictures and report), in this process.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { Command } from 'commander';
import { initBackend, parseBackendRequest } from '../training/compute/backend.js';
import { releaseBackend } from '../training/compute/release.js';
import { createDataBunch, dataBunchOptions, type DataBunchOptions } from '../training/data/databunch.js';
import { DEFAULT_RUN_CONFIG, checkInt, type RunConfig } from '../contract/config.js';
import { decodeRgb } from '../training/data/decode.js';
import { BatchLoader } from '../training/data/loader.js';
import { ImagePool } from '../training/data/pool.js';
import { shardPlan } from '../training/data/shard.js';
import { CENTRE_CROP, renderItem } from '../training/data/transforms.js';
import { folderProblem } from '../contract/folder.js';
import { TrainerError, isTrainerError } from '../contract/errors.js';
import { plainDefaults, withVersion } from '../contract/cli-help.js';
import { logText } from '../contract/log-text.js';
import { ClassificationInterpretation } from './interpret/interpretation.js';
import { Replica } from '../training/learner/replica.js';
import { loadModel, modelPaths, readModelMeta, type SavedModelMeta } from '../training/learner/save.js';
import { writeRunReport } from './report/write-report.js';
import { readRunConfigFile } from './run-config-file.js';
import { liveRunHolder, lockRunDir } from './run-lock.js';
import { listCheckpoints, loadLatestCheckpoint, type LoadedCheckpoint } from '../contract/checkpoint-format.js';
import type { CheckpointMeta } from './checkpoint-store.js';
import { checkCheckpointMeta } from './checkpoint-meta.js';
import { mostConfusedLines, reportInput, startedFromText } from './stage-report.js';
import type { RunReportInput } from './report/types.js';
import { RUN_CONFIG_FILE } from '../contract/run-files.js';

/** A saved stage: its directory (holding `models/`) and name. */
export interface ModelRef {
  readonly dir: string;
  readonly name: string;
}

/**
 * Finds the model to use: a `models/<name>.safetensors` path, or a run directory or its `models/` folder (its
 * newest saved stage).
 * @throws TrainerError ERR_BAD_FLAG naming the path when there is no saved model (a missing model file: naming the
 *   models saved beside it), or a model file lies outside a `models/` folder or without its `<name>.json`
 */
export function findModel(target: string): ModelRef {
  const path = resolve(target);
  const savedIn = (models: string): string[] => existsSync(models) ? readdirSync(models).filter((f) => f.endsWith('.safetensors')) : [];
  refuseCheckpoint(target, path);
  if (path.endsWith('.safetensors')) {
    if (!existsSync(path)) {
      // A mistyped model name used to get "expected a run directory … found none", as if the run had no model.
      const others = savedIn(dirname(path)).map((f) => basename(f, '.safetensors')).sort();
      throw new TrainerError('ERR_BAD_FLAG', `${target}: no such model file${others.length > 0 ? ` (saved beside it: ${others.join(', ')})` : ''}`);
    }
    // A model is two files in a run's models/ folder: <name>.safetensors and <name>.json (classes, arch, size). A
    // copy of the .safetensors alone was looked up as <grandparent>/models/<name>.json and refused with 'cannot read
    // saved model metadata /tmp/models/m.json (ENOENT …)', a path the user never had.
    const name = basename(path, '.safetensors');
    const meta = join(dirname(path), `${name}.json`);
    if (basename(dirname(path)) !== 'models' || !existsSync(meta)) {
      throw new TrainerError('ERR_BAD_FLAG', `${target}: a saved model is read from a run's models/ folder, as <name>.safetensors with its ${name}.json beside it (classes, architecture, image size); ` +
        `${existsSync(meta) ? `this file is in ${dirname(path)}` : `${meta} is missing`}: pass the run directory or <run>/models/${name}.safetensors (copy both files into a folder named models/)`);
    }
    return { dir: dirname(dirname(path)), name };
  }
  // The models/ folder itself (what `learn.export()` users copy and pass, as fastai's load_learner(path) takes the
  // folder holding export.pkl) stands for the folder holding it: it was refused with "found none".
  if (!existsSync(path)) throw new TrainerError('ERR_BAD_FLAG', `${target}: no such run directory or model file`);
  // Any other file (a model's <name>.json, an image) was listed as a folder: ERR_INTERNAL 'ENOTDIR: not a
  // directory, scandir …', exit 1.
  if (!statSync(path).isDirectory()) {
    const weights = join(dirname(path), `${basename(path, '.json')}.safetensors`);
    throw new TrainerError('ERR_BAD_FLAG', path.endsWith('.json') && existsSync(weights)
      ? `${target}: the saved model's metadata, not the model: pass its weights file ${weights} (the .json beside it is read with it)`
      : `${target}: not a model: pass a run directory, its models/ folder, or models/<name>.safetensors`);
  }
  const inside = savedIn(join(path, 'models')), here = savedIn(path);
  const inModels = basename(path) === 'models' && inside.length === 0 && here.length > 0;
  const dir = inModels ? dirname(path) : path;
  const models = join(dir, 'models');
  const saved = [...(inModels ? here : inside)];
  if (saved.length === 0) {
    // A run still starting (its lock held by a live coordinator, nothing saved yet) was told only "found none", as
    // if it were not a run: `--load` or `predict` of a run just launched in another terminal.
    const holder = here.length > 0 ? null : liveRunHolder(dir);
    if (holder !== null) {
      throw new TrainerError('ERR_BAD_FLAG', `${target}: this run is in progress (held by ${holder}) and has saved no model or checkpoint yet: wait for it to save one, or pass a saved model`);
    }
    // Model files straight in the folder given (a copy of models/ under another name) are named, with the layout.
    const loose = [...here].sort();
    // A run directory whose first stage has not ended yet (a run still going, or stopped before it) said only
    // "found none", as if it were not a run; it names when a model is written and how to continue the run.
    const isRun = existsSync(join(path, RUN_CONFIG_FILE)) || existsSync(join(path, 'checkpoints'));
    const why = loose.length === 0
      ? (isRun ? `found none: this run has saved no model yet (models/<stage>.safetensors is written when a stage ends); wait for its first stage to end, or, if it was stopped before, continue it with npx coordinator --resume ${target}` : 'found none')
      : `found ${loose.join(', ')} directly in it: a saved model is read from a folder named models/ (<name>.safetensors with its <name>.json beside it); move them into ${join(path, 'models')}`;
    throw new TrainerError('ERR_BAD_FLAG', `${target}: expected a run directory with models/*.safetensors or a model file, ${why}`);
  }
  saved.sort((a, b) => statSync(join(models, a)).mtimeMs - statSync(join(models, b)).mtimeMs);
  return { dir, name: basename(saved[saved.length - 1]!, '.safetensors') };
}

/**
 * The line saying which model file `predict` and `interpret` use, `model: <dir>/models/<name>.safetensors` (absolute;
 * for a run directory, its newest saved stage), so that the user knows what the answers come from.
 */
export function modelLine(ref: ModelRef): string {
  return `model: ${logText(modelPaths(ref.dir, ref.name).weights)}`;
}

/**
 * Refuses a checkpoint (a `checkpoints/step-N` folder: `manifest.json` + `state.safetensors`, or that state file) given
 * as a model, naming the run and its saved models. It was told to move `state.safetensors` into a models/ folder of
 * the checkpoint ("found state.safetensors directly in it … move them into …/step-000000173/models"), or that
 * `state.json` was missing: neither makes a model, a checkpoint has no `<name>.json`.
 * @throws TrainerError ERR_BAD_FLAG when `path` is a checkpoint folder or its state file
 */
function refuseCheckpoint(target: string, path: string): void {
  const dir = basename(path) === 'state.safetensors' ? dirname(path) : path;
  if (!existsSync(join(dir, 'manifest.json')) || !existsSync(join(dir, 'state.safetensors'))) return;
  const run = basename(dirname(dir)) === 'checkpoints' ? dirname(dirname(dir)) : null;
  const models = run === null ? [] : (existsSync(join(run, 'models')) ? readdirSync(join(run, 'models')) : [])
    .filter((f) => f.endsWith('.safetensors')).map((f) => join(run, 'models', f)).sort();
  throw new TrainerError('ERR_BAD_FLAG', `${target}: a checkpoint (for --resume), not a saved model: pass ${run === null ? 'the run directory' : `the run directory ${run}`}` +
    `${models.length > 0 ? ` or one of its saved models (${models.join(', ')})` : ' (its models/ holds a stage once the stage ends)'}`);
}

/**
 * The run configuration a run directory recorded: its `config.json`, or, when that cannot be read (cut short by a
 * kill or a full disk while it was written, edited by hand), the copy every checkpoint manifest holds (newest
 * first). Before, a truncated `config.json` ended `interpret` with the bare `Unterminated string in JSON at
 * position 97`, naming no file. `{}` when the run has no config.json (the caller then needs `--data`).
 * @throws TrainerError ERR_BAD_FLAG naming the file and its fault when neither can be read
 */
export function savedRunConfig(runDir: string, log: (line: string) => void = (line) => console.error(line)): Record<string, unknown> {
  const file = readRunConfigFile(runDir);
  if (file.state === 'missing') return {};
  if (file.state === 'read' && file.config) return file.config;
  const { path } = file;
  const fault = file.state === 'unreadable' ? file.fault : 'no "config" object in it';
  for (const dir of listCheckpoints(runDir).reverse()) {
    try {
      const config = (JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { meta?: { config?: unknown } }).meta?.config;
      if (typeof config === 'object' && config !== null) {
        log(`${path} cannot be read (${fault}); using the run configuration saved in ${dir}`);
        return config as Record<string, unknown>;
      }
    } catch { /* an unreadable manifest: try the previous checkpoint */ }
  }
  throw new TrainerError('ERR_BAD_FLAG', `${path} cannot be read (${fault}) and no checkpoint of the run holds its configuration; restore config.json from a copy of the run`);
}

/**
 * The run's newest intact checkpoint, whose history gives the report its training curves and lr_find; null when the
 * run has none, or none intact: the saved model is interpreted all the same (each damaged checkpoint is logged, and
 * a report without the run's history is said so). Before, a run whose only checkpoint was damaged could not be
 * interpreted at all, and one whose manifest lacked its history ended with `Cannot read properties of undefined`.
 */
function latestForReport(dir: string): LoadedCheckpoint<CheckpointMeta> | null {
  try {
    const latest = loadLatestCheckpoint(dir, checkCheckpointMeta);
    for (const line of latest?.skipped ?? []) console.error(logText(line));
    return latest;
  } catch (err) {
    if (!isTrainerError(err, 'ERR_CHECKPOINT')) throw err;
    console.error(`${logText(err.message)}; the report goes without the run's training curves`);
    return null;
  }
}

/**
 * What `interpret` writes into a run's report besides the interpretation: the run's training curves, lr_find and
 * configuration from its newest checkpoint, as the training run's report has them, `startedFrom` row included for a
 * `--load` run (it showed the `load` row alone); without a checkpoint, the run's `config.json` settings (and its
 * `startedFrom`).
 * @param saved - the run's recorded settings ({@link savedRunConfig})
 * @param latest - the run's newest intact checkpoint, or null
 */
export function interpretReportBase(ref: ModelRef, saved: Record<string, unknown>, latest: LoadedCheckpoint<CheckpointMeta> | null,
  interp: ClassificationInterpretation): RunReportInput {
  if (latest !== null) return reportInput(ref.dir, latest.manifest.meta.config, latest.manifest.meta.history, interp, latest.manifest.meta.startedFrom ?? null);
  const file = readRunConfigFile(ref.dir);
  const from = file.state === 'read' ? file.startedFrom ?? null : null;
  return { title: `interpretation of ${ref.name}`, interpretation: interp, config: from === null ? saved : { ...saved, startedFrom: startedFromText(from) } };
}

/** Builds a replica and loads a saved stage into it. */
export async function loadReplica(ref: ModelRef): Promise<{ replica: Replica; meta: SavedModelMeta }> {
  const meta = await readModelMeta(ref.dir, ref.name);
  const replica = await Replica.create({ arch: meta.arch, numClasses: meta.classes.length, seed: 0, pretrained: null, frozen: meta.frozen });
  try {
    await loadModel(replica, ref.dir, ref.name);
  } catch (err) {
    replica.dispose(); // a model refused leaves no tensors behind
    throw err;
  }
  return { replica, meta };
}

/**
 * fastai `predict`: validation transform (shorter side → size, centre crop, ImageNet normalisation), eval forward,
 * softmax. @returns `[classes]` probabilities
 * @throws TrainerError ERR_BAD_IMAGE when the file cannot be decoded
 */
export async function predictImage(replica: Replica, size: number, path: string): Promise<Float32Array> {
  checkImageArg(path);
  const img = await decodeRgb(path, { shorterSide: size });
  const pixels = new Float32Array(size * size * 3);
  renderItem(img, CENTRE_CROP, size, pixels);
  return (await replica.evaluate(pixels, new Int32Array(1), null)).probs;
}

/**
 * Refuses a folder given where an image file belongs, saying so: decoding it reported "not an image: <dir> (Input
 * file contains unsupported image format)", as if the folder were a broken picture. A path that does not exist is
 * "no such file" (a typo was reported as `unreadable: <path> (ENOENT: no such file or directory, stat '<path>')`).
 * @param path - an argument of `predict`
 * @throws TrainerError ERR_BAD_IMAGE when `path` is a folder or does not exist
 */
export function checkImageArg(path: string): void {
  const kind = ((): 'folder' | 'missing' | null => {
    try {
      return statSync(path).isDirectory() ? 'folder' : null;
    } catch (err) {
      // Unreadable for another reason (permissions, a loop): the decoder names the system's reason.
      return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : null;
    }
  })();
  if (kind === 'folder') throw new TrainerError('ERR_BAD_IMAGE', `${path}: a folder, not an image file: pass the images in it (e.g. ${join(path, '*.jpg')})`);
  if (kind === 'missing') throw new TrainerError('ERR_BAD_IMAGE', `no such file: ${path}`);
}

/**
 * The stderr line of an image `predict` could not use, in the form of the coordinator's other errors
 * (`coordinator: ERR_BAD_IMAGE: truncated/corrupt: cat.jpg (VipsJpeg: premature end of JPEG image)`): the path once
 * (the decoder's messages already name it; it used to be printed twice, `cat.jpg: truncated/corrupt: cat.jpg (…)`),
 * prefixed only when the message does not name it.
 * @param image - the argument as the user gave it
 * @param err - what reading or predicting it threw
 */
export function predictFailureLine(image: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = isTrainerError(err) ? `${err.code}: ` : '';
  return `coordinator: ${code}${logText(message.includes(image) ? message : `${image}: ${message}`)}`;
}

/**
 * A file name as one field of a tab-separated line: a backslash written `\\\\`, then control characters escaped by
 * {@link logText} (`\\t`, `\\n`, `\\r`, `\\xNN`); other names unchanged. A name holding a newline or a tab (legal on
 * Linux) split `predict`'s one line per image, or its columns, for whatever reads them (as GNU coreutils' checksum
 * tools escape such names, backslash included, so an escape and a literal backslash differ).
 */
export function tsvField(text: string): string {
  return logText(text.replace(/\\/g, '\\\\'));
}

/**
 * One `predict` line: `<image>\t<class> <probability>`, `top` pairs, most probable first; the image as the user gave it
 * ({@link tsvField}), probabilities to 4 decimals.
 * @param probs - `[classes.length]` float32 softmax probabilities
 */
export function predictLine(image: string, classes: readonly string[], probs: Float32Array, top: number): string {
  const order = Array.from(probs.keys()).sort((a, b) => probs[b]! - probs[a]!).slice(0, top);
  return `${tsvField(image)}\t${order.map((i) => `${tsvField(classes[i]!)} ${probs[i]!.toFixed(4)}`).join('\t')}`;
}

/**
 * `coordinator predict <run-dir | model> <image…> [--backend] [--top k]`: one line per image on stdout,
 * `<image>\t<class> <probability>` (k pairs with `--top k`, most probable first); an image that cannot be read gets a
 * line on stderr ({@link predictFailureLine}) and the others are still predicted. The model file used is named first,
 * on stderr ({@link modelLine}).
 * @returns exit code: 0 when every image was predicted, 1 when one or more could not be
 */
export async function runPredictCommand(argv: readonly string[]): Promise<number> {
  // Named as the user types it: `Usage: coordinator predict …` (a bare `predict` is no command on the PATH).
  const cmd = new Command('coordinator predict')
    .description("fastai's learn.predict: each image's most probable classes with their probabilities (resized and centre-cropped as the validation set)")
    .argument('<model>', 'run directory (its newest saved model), a models/ folder, or models/<name>.safetensors').argument('<images...>', 'image files')
    .option('--backend <name>', 'auto|tensorflow|webgpu|native|wasm|cpu', 'auto').option('--top <k>', 'classes to show per image', '1').exitOverride();
  withVersion(plainDefaults(cmd)).parse([...argv], { from: 'user' });
  const [target, images] = cmd.processedArgs as [string, string[]];
  // Checked, not coerced: `--top abc` or `--top 0` used to mean 1 without a word.
  const top = checkInt('--top', cmd.opts<{ top: string }>().top, 1);
  // The model is found before the backend starts (seconds: the native addon, a GPU probe), so a mistyped path is
  // refused at once, and not after a backend's own failure.
  const ref = findModel(target);
  // On stderr: stdout stays one tab-separated line per image for whatever reads it.
  console.error(modelLine(ref));
  await initBackend(parseBackendRequest(cmd.opts<{ backend: string }>().backend));
  const { replica, meta } = await loadReplica(ref);
  let failures = 0;
  try {
    for (const image of images) {
      try {
        const probs = await predictImage(replica, meta.size, image);
        console.log(predictLine(image, meta.classes, probs, top));
      } catch (err) {
        failures++;
        console.error(predictFailureLine(image, err));
      }
    }
  } finally {
    replica.dispose();
    releaseBackend();
  }
  return failures > 0 ? 1 : 0;
}

/**
 * The data settings `interpret` reads a run's validation set with: the run's own (a config.json from before a
 * setting existed gets that setting's default), `data` replacing its folder, every file verified. The split is the
 * run's and interpret has no flag to change it, so the class check's hint says to retrain rather than name a flag.
 * @param saved - the run's config.json `config` object ({} when there is none)
 * @param data - the data folder (`--data`, else the run's)
 */
export function interpretDataOptions(saved: Record<string, unknown>, data: string): DataBunchOptions {
  return {
    ...dataBunchOptions({ ...DEFAULT_RUN_CONFIG, ...saved, data } as RunConfig), verify: true,
    splitHint: 'train again with a higher --valid-pct (interpret measures the run\'s own split)',
  };
}

/**
 * Checks, before anything loads, that interpret can write its report into `outDir` (or create it in its existing
 * parent). Seen on a run folder on a read-only mount (a finished run on a read-only share, a container's ro volume):
 * `interpret <run>` ended with the bare `coordinator: EROFS: read-only file system, open '…/.coordinator.lock'`, and
 * `interpret <run>/models/stage-2.safetensors` evaluated the whole validation set and then ended with `ENOENT: no such
 * file or directory, mkdir '…/interpret-stage-2'` (Node's recursive mkdir reports EROFS as ENOENT).
 * @throws TrainerError ERR_BAD_FLAG naming the folder, the system's reason and what to do instead
 */
export function checkReportFolder(target: string, outDir: string): void {
  const folder = existsSync(outDir) ? outDir : dirname(outDir);
  const why = folderProblem(folder, 'write');
  if (why !== null) {
    throw new TrainerError('ERR_BAD_FLAG', `interpret ${target}: cannot write its report into ${outDir} (${folder}: ${why}); `
      + 'copy the run folder to a writable place and interpret the copy');
  }
}

/**
 * `coordinator interpret <run-dir | model> [--data …]`: interpretation pictures and report into the run dir; stdout
 * names the model file used first ({@link modelLine}), then its error rate, most_confused and the report.
 */
export async function runInterpretCommand(argv: readonly string[]): Promise<number> {
  const cmd = new Command('coordinator interpret')
    .description("fastai's ClassificationInterpretation.from_learner: top losses, confusion matrix and most_confused on the run's validation set, into the run's report (a models/<name>.safetensors into interpret-<name>/)")
    .argument('<model>', 'run directory (its newest saved model), a models/ folder, or models/<name>.safetensors')
    .option('--data <source>', 'dataset (default: the run\'s, from config.json)').option('--backend <name>', 'auto|tensorflow|webgpu|native|wasm|cpu', 'auto')
    .option('--bs <n>', 'evaluation batch', '32').exitOverride();
  withVersion(plainDefaults(cmd)).parse([...argv], { from: 'user' });
  const [target] = cmd.processedArgs as [string];
  const o = cmd.opts<{ data?: string; backend: string; bs: string }>();
  // Checked before anything loads: `--bs abc` used to mean 32, `--bs -5` failed late naming "shardPlan batchSize".
  const bs = checkInt('--bs', o.bs, 1, 4096);
  // The model and the run's data setting are found before the backend starts (seconds), as predict's.
  const ref = findModel(target);
  console.log(modelLine(ref));
  const saved = savedRunConfig(ref.dir);
  const data = o.data ?? (saved.data as string | undefined);
  if (!data) throw new TrainerError('ERR_BAD_FLAG', `interpret: pass --data (no config.json in ${ref.dir})`);
  // A run directory is re-interpreted in place (its newest model, as the run's own report); a chosen model file
  // gets its own folder so it never replaces the run's report. Writing the run's report takes the run's lock first,
  // so a live coordinator's run is never written into (its end-of-run report would race this one).
  const outDir = target.endsWith('.safetensors') ? join(ref.dir, `interpret-${ref.name}`) : ref.dir;
  checkReportFolder(target, outDir);
  await initBackend(parseBackendRequest(o.backend));
  const lock = outDir === ref.dir ? lockRunDir(ref.dir, 'interpret', (line) => console.error(line),
    `interpret writes the run's report there. Wait for it to end, or interpret one of its saved models into a folder of its own: coordinator interpret ${join(ref.dir, 'models', `${ref.name}.safetensors`)}`) : null;
  let replica: Replica | null = null;
  const pool = new ImagePool({});
  pool.start();
  try {
    const loaded = await loadReplica(ref);
    replica = loaded.replica;
    const meta = loaded.meta;
    const bunch = await createDataBunch(interpretDataOptions(saved, data), pool);
    if (JSON.stringify(bunch.classes) !== JSON.stringify(meta.classes)) throw new TrainerError('ERR_DATA', `interpret: the data's ${bunch.classes.length} classes differ from the model's ${meta.classes.length}`);
    const k = meta.classes.length;
    const probs = new Float32Array(bunch.valid.length * k);
    const plan = shardPlan({ itemCount: bunch.valid.length, seed: 0, epoch: 0, worldSize: 1, rank: 0, batchSize: bs, shuffle: false, mode: 'pad' });
    const loader = new BatchLoader({ pool, paths: bunch.paths, labels: bunch.labels, split: bunch.valid, plan, size: meta.size, augment: false, seed: 0, epoch: 0 });
    for await (const batch of loader) {
      const r = await replica.evaluate(batch.x, batch.y, batch.valid);
      plan.batches[batch.batchIndex]!.indices.forEach((pos, i) => probs.set(r.probs.subarray(i * k, (i + 1) * k), pos * k));
    }
    const interp = new ClassificationInterpretation({ probs, targets: Int32Array.from(bunch.valid, (i) => bunch.labels[i]!), classes: meta.classes, items: Array.from(bunch.valid, (i) => bunch.paths[i]!) });
    // Keep the run's training curves and lr_find in the report when the run directory has its history.
    const base = interpretReportBase(ref, saved, latestForReport(ref.dir), interp);
    const report = await writeRunReport(outDir, { ...base, notice: `Interpretation of models/${ref.name}.safetensors on ${bunch.valid.length} validation images.` });
    console.log(`model ${logText(ref.name)}: error_rate ${interp.errorRate().toFixed(4)} on ${bunch.valid.length} validation images`);
    for (const line of mostConfusedLines(interp)) console.log(line);
    console.log(`report: ${report.indexHtml}`);
    return 0;
  } finally {
    await pool.close();
    replica?.dispose();
    releaseBackend();
    lock?.release();
  }
}
