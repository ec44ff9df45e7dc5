/**
 * `--pretrained imagenet|none|<path>`: where a ResNet's starting weights come from.
 *
 * `imagenet` downloads torchvision's ImageNet weights in safetensors form from the Hugging Face Hub — timm's
 * `timm/resnet{18,34,50}.tv_in1k` repositories hold torchvision's original weights (the `tv_` tag) under
 * torchvision's key names (timm's ResNet "started as a copy of torchvision resnet.py": conv1, bn1, layer1..4 with
 * conv1/bn1/conv2/bn2[/conv3/bn3]/downsample.0/.1, fc) — into a cache directory, pinned by SHA-256, with retries,
 * HTTP Range resume and a progress bar (all from `../download.ts`). Every resolved file (downloaded or local) is
 * checked for torchvision keys and shapes before use.
 *
 * Pinning procedure (how the table below was filled, and how to fill a missing pin): the Hub's file page
 * `https://huggingface.co/<repo>/blob/main/model.safetensors` shows "Git LFS Details · SHA256: …", which is the
 * SHA-256 of the file's bytes (the LFS oid). Copy it into {@link IMAGENET_WEIGHTS}. Without network access to the
 * Hub, download once with the pin set to null: the file is then verified by keys/shapes only and its SHA-256 is
 * logged ("pin it"), to be compared with the Hub page and committed.
 */
import { existsSync } from 'node:fs';
import { access, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { downloadFile, offlineMessage, offlineTried, userCacheDir } from '../download.js';
import { CACHE_DIR_ENV } from '../data/pets.js';
import { TrainerError, isTrainerError } from '../../contract/errors.js';
import { envOrigin, optionOrigin } from '../../contract/make-dir.js';
import { describeConfig, resnetLayout, resolveResNetConfig, RESNET_ARCHS, type ResNetArch, type ResNetConfig } from '../../contract/resnet-spec.js';
import type { ResNet } from './resnet.js';
import { readSafetensors } from './safetensors.js';
import { loadTorchStateDict, torchStateDictShapes, type LoadTorchWeightsResult } from './torch-weights.js';

/** A parsed `--pretrained` value. */
export type PretrainedSpec = { readonly kind: 'imagenet' } | { readonly kind: 'none' } | { readonly kind: 'path'; readonly path: string };

/** Where one architecture's ImageNet weights live. */
export interface PretrainedSource {
  /** Hugging Face repository, e.g. `timm/resnet34.tv_in1k`. */
  readonly repo: string;
  /** Download URL of the safetensors file. */
  readonly url: string;
  /** SHA-256 of the file (lowercase hex), or null when not pinned yet (then keys/shapes are the only check). */
  readonly sha256: string | null;
}

function hub(repo: string, sha256: string | null): PretrainedSource {
  return Object.freeze({ repo, url: `https://huggingface.co/${repo}/resolve/main/model.safetensors`, sha256 });
}

/**
 * torchvision ImageNet weights per architecture. SHA-256 pins from the Hub's "Git LFS Details" of each
 * `model.safetensors` (resnet18: 46.8 MB, resnet50: 102 MB). resnet34 (87.3 MB) is NOT pinned: its published
 * hash could not be looked up from this environment — see the module doc for the procedure.
 */
export const IMAGENET_WEIGHTS: Readonly<Record<ResNetArch, PretrainedSource>> = Object.freeze({
  resnet18: hub('timm/resnet18.tv_in1k', '694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81'),
  resnet34: hub('timm/resnet34.tv_in1k', null),
  resnet50: hub('timm/resnet50.tv_in1k', '5d061a3c593d795bfe682d9b152bafbcf550579873492def3515b46db1189888'),
});

/** Environment variable overriding the weights cache directory. */
export const WEIGHTS_CACHE_ENV = 'PETS_TRAINER_WEIGHTS_DIR';

/**
 * The weights cache directory: `$PETS_TRAINER_WEIGHTS_DIR`, else `$PETS_TRAINER_CACHE_DIR/weights`, else
 * `~/.cache/pets-trainer/weights`. The data cache's variable moves the weights with it, as `$TORCH_HOME` moves
 * PyTorch's hub and `$HF_HOME` the Hub's files (the README's promise; the images set only `PETS_TRAINER_CACHE_DIR`,
 * and the weights went to a home folder outside the cache volume).
 */
export function defaultWeightsCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const data = env[CACHE_DIR_ENV];
  if ((env[WEIGHTS_CACHE_ENV] ?? '').trim() === '' && data !== undefined && data.trim() !== '') return join(resolve(data), 'weights');
  return userCacheDir(env, WEIGHTS_CACHE_ENV, 'weights');
}

/** Options of {@link resolvePretrainedWeights} and {@link loadPretrained}. */
export interface PretrainedOptions {
  /** Cache directory for downloads. Default {@link defaultWeightsCacheDir}. */
  cacheDir?: string;
  /** Replaces the table entry for this call (another mirror, a local test server, a config without a table entry). */
  source?: PretrainedSource;
  /** Download retries per URL (integer ≥ 0). Default: the downloader's (3). */
  retries?: number;
  /** First retry backoff in ms. Default: the downloader's (500). */
  backoffMs?: number;
  /** Connect / idle-socket timeout in ms. Default: the downloader's (30 000). */
  timeoutMs?: number;
  /** No progress output. Default false. */
  quiet?: boolean;
  /** Where informational lines go (download progress without a TTY, "pin it" notes). Default: stderr. */
  log?: (line: string) => void;
}

/**
 * Parses a `--pretrained` value: `imagenet`, `none`, or a path to a safetensors state dict.
 *
 * @throws TrainerError ERR_BAD_FLAG for an empty value
 */
export function parsePretrained(value: string): PretrainedSpec {
  if (value === 'imagenet' || value === 'none') return { kind: value };
  if (value.trim() === '') throw new TrainerError('ERR_BAD_FLAG', '--pretrained must be imagenet|none|<path to .safetensors>, got ""');
  return { kind: 'path', path: value };
}

/** The cached file name of a source: `<cacheDir>/<owner>--<repo>.safetensors`. */
export function cachedWeightsPath(source: PretrainedSource, cacheDir: string): string {
  return join(cacheDir, `${source.repo.replaceAll('/', '--')}.safetensors`);
}

function imagenetSource(arch: ResNetArch | ResNetConfig, options: PretrainedOptions): PretrainedSource {
  if (options.source) return options.source;
  const name = describeConfig(resolveResNetConfig(arch));
  if (!(RESNET_ARCHS as readonly string[]).includes(name)) {
    throw new TrainerError('ERR_BAD_CONFIG', `--pretrained imagenet: no ImageNet weights for ${name} (only ${RESNET_ARCHS.join('|')}); use --pretrained none or a path`);
  }
  return onEndpoint(IMAGENET_WEIGHTS[name as ResNetArch], process.env);
}

/** Environment variable naming a Hugging Face Hub mirror (as `huggingface_hub` reads it), e.g. `https://hf-mirror.com`. */
export const HF_ENDPOINT_ENV = 'HF_ENDPOINT';

/**
 * The source with its URL on `$HF_ENDPOINT` (a Hub mirror or a local server; `huggingface_hub`'s variable) when set,
 * else unchanged.
 */
export function onEndpoint(source: PretrainedSource, env: NodeJS.ProcessEnv): PretrainedSource {
  const endpoint = env[HF_ENDPOINT_ENV]?.trim();
  if (!endpoint) return source;
  return { ...source, url: `${endpoint.replace(/\/+$/, '')}/${source.repo}/resolve/main/model.safetensors` };
}

/**
 * Whether a safetensors file is this trainer's own saved state (`learner/save.ts`: a saved stage or a checkpoint's
 * `state.safetensors`): fastai's head (`head.*`), AdamW moments (`opt.*`) or the optimizer step counts in its
 * metadata, none of which a torchvision state dict has.
 */
function isTrainerStateFile(keys: Iterable<string>, metadata: Readonly<Record<string, string>>): boolean {
  if (metadata.optimizerSteps !== undefined) return true;
  for (const k of keys) if (k.startsWith('head.') || k.startsWith('opt.')) return true;
  return false;
}

/**
 * Checks that a safetensors file holds a torchvision state dict of `arch`: every body key with its shape
 * (`num_batches_tracked` optional, `fc.*` of any size).
 *
 * @throws TrainerError ERR_WEIGHTS naming the file and the first mismatches, or saying it is this trainer's own saved
 *   model or checkpoint state (with what to use instead)
 */
export async function verifyTorchWeightsFile(path: string, arch: ResNetArch | ResNetConfig): Promise<void> {
  const file = await readSafetensors(path);
  if (isTrainerStateFile(file.tensors.keys(), file.metadata)) {
    // A user who passed models/stage-1.safetensors (fastai's learn.load) got a page of transposed-shape mismatches
    // (tfjs keeps convolutions as HWIO, torchvision as OIHW), which did not say what the file was.
    throw new TrainerError('ERR_WEIGHTS', `${path}: a model saved by this trainer (a run's models/<name>.safetensors or a checkpoint's state: tfjs layout, fastai's head, optimizer state), not a torchvision state dict. ` +
      'To continue that run use --resume <run dir>; to predict with it, coordinator predict <run dir> <image…>; --pretrained takes imagenet, none or torchvision ResNet weights');
  }
  const expected = torchStateDictShapes(arch, null);
  const problems: string[] = [];
  for (const [k, shape] of expected) {
    const t = file.tensors.get(k);
    if (!t) {
      if (!k.endsWith('num_batches_tracked')) problems.push(`missing key "${k}" (expected shape [${shape}])`);
    } else if (t.shape.join() !== shape.join()) {
      problems.push(`key "${k}": expected shape [${shape}], got [${t.shape}]`);
    }
  }
  for (const [k, t] of file.tensors) if (!expected.has(k) && !k.startsWith('fc.')) problems.push(`unexpected key "${k}" [${t.shape}]`);
  if (problems.length > 0) {
    const name = describeConfig(resnetLayout(arch, null).config);
    throw new TrainerError('ERR_WEIGHTS', `${path}: not a torchvision ${name} state dict: ${problems.slice(0, 8).join('; ')}${problems.length > 8 ? `; and ${problems.length - 8} more` : ''}`);
  }
}

async function downloadImagenet(arch: ResNetArch | ResNetConfig, options: PretrainedOptions): Promise<string> {
  const source = imagenetSource(arch, options);
  const dest = cachedWeightsPath(source, options.cacheDir ?? defaultWeightsCacheDir());
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let result;
  try {
    result = await downloadFile({
      urls: [source.url], dest, folderOrigin: options.cacheDir === undefined ? envOrigin(WEIGHTS_CACHE_ENV) : optionOrigin('cacheDir'), sha256: source.sha256 ?? undefined, retries: options.retries,
      backoffMs: options.backoffMs, timeoutMs: options.timeoutMs, quiet: options.quiet, log,
    });
  } catch (err) {
    if (!isTrainerError(err, 'ERR_OFFLINE')) throw err;
    throw new TrainerError('ERR_OFFLINE', offlineMessage('--pretrained imagenet: the ImageNet weights cannot be downloaded: the network looks offline',
      `fetch the file below on a connected machine and pass --pretrained /path/to/${source.repo.split('/').pop()}.safetensors, or save it as ${dest} (the weights cache, where --pretrained imagenet looks first); or --pretrained none for random weights`,
      offlineTried(err.message)), { cause: err });
  }
  try {
    await verifyTorchWeightsFile(dest, arch);
  } catch (err) {
    await rm(dest, { force: true }); // never reuse a file that failed the check
    throw err;
  }
  if (source.sha256 === null && !result.reused) {
    log(`pretrained: ${source.repo} has no SHA-256 pin; downloaded file has sha256 ${result.sha256} — compare with the Hub's LFS details and pin it in IMAGENET_WEIGHTS`);
  }
  return dest;
}

/** The refusal of a `--pretrained` file that is not there, in one wording for the coordinator, learn and the workers. */
function missingWeightsFile(path: string): string {
  return `--pretrained must be imagenet, none or an existing safetensors file, got ${JSON.stringify(path)} (no such file)`;
}

/**
 * Checks `--pretrained` before anything starts (the coordinator before its workers, `npm run learn` before its
 * backend): `imagenet`, `none` or a file that exists (whether it holds the architecture's weights is checked later).
 * @throws TrainerError ERR_BAD_FLAG for an empty value or a file that is not there
 */
export function checkPretrainedSource(value: string): void {
  const spec = parsePretrained(value);
  if (spec.kind === 'path' && !existsSync(spec.path)) throw new TrainerError('ERR_BAD_FLAG', missingWeightsFile(spec.path));
}

/**
 * Resolves `--pretrained` to a local safetensors file: downloads (or reuses the cached) ImageNet weights for
 * `imagenet`, checks a given path exists, returns null for `none`. The returned file has been checked for
 * torchvision keys/shapes of `arch` (see {@link verifyTorchWeightsFile}).
 *
 * @param value - the flag value
 * @param arch - the architecture the weights are for
 * @throws TrainerError ERR_BAD_FLAG (empty value, missing file), ERR_BAD_CONFIG (no ImageNet weights for `arch`),
 *   ERR_OFFLINE (Hub unreachable; the message says how to pass a local file), ERR_DOWNLOAD, ERR_CHECKSUM,
 *   ERR_WEIGHTS (file is not a state dict of `arch`)
 */
export async function resolvePretrainedWeights(value: string, arch: ResNetArch | ResNetConfig, options: PretrainedOptions = {}): Promise<string | null> {
  const spec = parsePretrained(value);
  if (spec.kind === 'none') return null;
  if (spec.kind === 'imagenet') return downloadImagenet(arch, options);
  try {
    await access(spec.path);
  } catch (err) {
    throw new TrainerError('ERR_BAD_FLAG', missingWeightsFile(spec.path), { cause: err });
  }
  await verifyTorchWeightsFile(spec.path, arch);
  return spec.path;
}

/**
 * Resolves `--pretrained` ({@link resolvePretrainedWeights}) and loads the weights into `model`; `fc.*` is never
 * loaded (an ImageNet classifier has 1000 classes; the learner puts its own head).
 *
 * @returns the file and what was loaded, or null for `none` (model keeps its initialisation)
 * @throws TrainerError as {@link resolvePretrainedWeights}
 */
export async function loadPretrained(
  model: ResNet, value: string, options: PretrainedOptions = {},
): Promise<(LoadTorchWeightsResult & { readonly path: string }) | null> {
  const path = await resolvePretrainedWeights(value, model.layout.config, options);
  if (path === null) return null;
  const file = await readSafetensors(path);
  return { path, ...loadTorchStateDict(model, file.tensors, { fc: 'ignore', source: path }) };
}
