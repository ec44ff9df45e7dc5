/**
 * Run configuration: the schema of a training run (data, model, stages, scale-out, runtime), its frozen defaults,
 * and validation that names the field and the rule. Flags and config files (YAML or JSON) both resolve through
 * {@link resolveRunConfig}, so a bad value stops the run before anything starts.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { TrainerError, type TrainerErrorCode } from './errors.js';
import { shownValue } from './shown-value.js';
import { DEFAULT_TRANSFORMS, transformProblem, type TransformSettings } from './transform-settings.js';
import type { ResNetArch, ResNetConfig } from './resnet-spec.js';
import { DEFAULT_LR_FIND } from './plan/schedule.js';

/**
 * Architectures the trainer builds (torchvision layer structure). `resnet10` is torchvision's
 * `ResNet(BasicBlock, [1, 1, 1, 1])` (the `resnet-tiny` fixture's structure): no ImageNet weights, for fast tests.
 */
export type Arch = 'resnet10' | 'resnet18' | 'resnet34' | 'resnet50';
/** Every {@link Arch}, for validation messages. */
export const ARCHS: readonly Arch[] = Object.freeze(['resnet10', 'resnet18', 'resnet34', 'resnet50']);

/** The model description of an {@link Arch}: a torchvision name, or the block config for `resnet10`. */
export function archModel(arch: Arch): ResNetArch | ResNetConfig {
  return arch === 'resnet10' ? { block: 'basic', layers: [1, 1, 1, 1] } : arch;
}
/** Learning-rate scaling rule when the global batch differs from `baseBs` (Goyal et al. 2017 for `linear`). */
export type LrScale = 'linear' | 'sqrt' | 'none';

/** One stage of the plan: `fit_one_cycle`, a constant-lr `fit`, or `lr_find`. */
export interface StageConfig {
  /** `one_cycle` (fastai `fit_one_cycle`), `fit` (constant lr) or `lr_find`. */
  readonly kind: 'one_cycle' | 'fit' | 'lr_find';
  /** Name used for the saved model (`models/<name>`) and in tables; e.g. `stage-1`. */
  readonly name: string;
  /** Epochs (ignored by `lr_find`). */
  readonly epochs: number;
  /** Max learning rate: a number, `slice(b)` or `slice(a,b)` (fastai semantics). Ignored by `lr_find`. */
  readonly maxLr: string;
  /** true: only the head (and every BatchNorm) trains, as fastai's `freeze()`. */
  readonly frozen: boolean;
}

/** The values of `backend` (`--backend`), in the order `--help` lists them; `auto` picks one (compute/backend.ts). */
export const RUN_BACKENDS = Object.freeze(['auto', 'tensorflow', 'webgpu', 'native', 'wasm', 'cpu'] as const);

/**
 * Fully resolved run configuration (every field set). Its fastai `get_transforms` parameters (`doFlip` … `pLighting`) are
 * {@link TransformSettings}'s fields, with their meaning and ranges there.
 */
export interface RunConfig extends TransformSettings {
  /** `oxford-iiit-pet` (download) or a folder of images / a folder holding `images/`. */
  readonly data: string;
  /** Label regex matched against the path; first group is the label. */
  readonly labelRe: string;
  /** `regex` (default), `folder` (parent folder name) or `csv` (with {@link RunConfig.labels}). */
  readonly labelFrom: 'regex' | 'folder' | 'csv';
  /** CSV of `file,label` when `labelFrom` is `csv`. */
  readonly labels: string | null;
  /**
   * `random` (seeded, `validPct`), `official` (Oxford annotations/trainval.txt + test.txt), `folder` (`trainFolder/`
   * and `validFolder/` subfolders, fastai `split_by_folder`) or `csv` (the `validCol` column of `labels`, fastai
   * `split_from_df`).
   */
  readonly split: 'random' | 'official' | 'folder' | 'csv';
  /** Folder names of the `folder` split (fastai `from_folder(train='train', valid='valid')`). */
  readonly trainFolder: string;
  readonly validFolder: string;
  /** Header of the CSV column that marks validation rows, for the `csv` split (fastai `valid_col`). */
  readonly validCol: string;
  /** Fraction of items in validation, 0 < validPct < 1. */
  readonly validPct: number;
  /** Seed of the split, the shuffles, augmentation and head init. */
  readonly seed: number;
  readonly arch: Arch;
  /** Image side in pixels after crop (square). */
  readonly size: number;
  /** Random training augmentation (fastai `get_transforms`); false: centre crop only, as validation (`ds_tfms=None`). */
  readonly augment: boolean;
  /** Per-worker batch size (images per step on one worker). */
  readonly bs: number;
  /** Gradient-accumulation steps per optimizer step. */
  readonly accum: number;
  /** Wanted global batch; when set, `accum` is derived from it. */
  readonly globalBs: number | null;
  readonly lrScale: LrScale;
  /** Batch size the stage learning rates were tuned for (fastai's 64). */
  readonly baseBs: number;
  /** Local worker processes to spawn (0 = only remote workers). */
  readonly workers: number;
  /** World size to wait for before training: local `workers` plus remote ones; 0 in input means "= workers". */
  readonly expect: number;
  readonly backend: (typeof RUN_BACKENDS)[number];
  /** `imagenet`, `none`, or a path to a torchvision-format safetensors file; `none` when {@link RunConfig.load} is set. */
  readonly pretrained: string;
  /**
   * A model to start from (`--load`): a saved model (`models/<name>.safetensors`), a checkpoint, or a run directory
   * (its newest checkpoint), as an absolute path; its weights and BatchNorm statistics, a fresh optimizer (fastai
   * `learn.load(name)`, `with_opt=False`). null: start from `pretrained`. See `coordinator/load-model.ts`.
   */
  readonly load: string | null;
  readonly stages: readonly StageConfig[];
  /** Run directory (checkpoints, models, report); default `runs/<name>`. */
  readonly runDir: string;
}

/**
 * The name of an lr_find stage that has none (a config file's, the default plan's, `npm run learn --lr-find`'s): its
 * picture is `lr-find-lr-find.png` in both CLIs (`report/write-report.ts` `lrFindStem`).
 */
export const LR_FIND_STAGE_NAME = 'lr-find';

/**
 * Image side in pixels (`--size`, `size`), for the coordinator and `npm run learn` alike: from 16 (the ResNet's five
 * stride-2 stages leave a 1×1 feature map; adaptive pooling takes any size from there) to 1024.
 */
export const SIZE_RANGE = Object.freeze({ min: 16, max: 1024 });

/**
 * Checks an image side (`--size`) against {@link SIZE_RANGE}. @param value - a number or a flag's string
 * @throws TrainerError ERR_BAD_CONFIG naming `size (--size)` and the range
 */
export function checkSize(value: unknown): number {
  return checkInt('size', value, SIZE_RANGE.min, SIZE_RANGE.max);
}

/** The tutorial's plan: frozen one-cycle(4), lr_find, unfreeze, one-cycle(2, slice(1e-6,1e-4)). */
export const DEFAULT_STAGES: readonly StageConfig[] = Object.freeze([
  Object.freeze({ kind: 'one_cycle', name: 'stage-1', epochs: 4, maxLr: 'slice(3e-3)', frozen: true }),
  Object.freeze({ kind: 'lr_find', name: LR_FIND_STAGE_NAME, epochs: 0, maxLr: '0', frozen: false }),
  Object.freeze({ kind: 'one_cycle', name: 'stage-2', epochs: 2, maxLr: 'slice(1e-6,1e-4)', frozen: false }),
] as StageConfig[]);

/** Defaults of every field: the tutorial's settings. */
export const DEFAULT_RUN_CONFIG: RunConfig = Object.freeze({
  data: 'oxford-iiit-pet',
  labelRe: '/([^/]+)_\\d+.jpg$',
  labelFrom: 'regex',
  labels: null,
  split: 'random',
  trainFolder: 'train',
  validFolder: 'valid',
  validCol: 'is_valid',
  validPct: 0.2,
  seed: 42,
  arch: 'resnet34',
  size: 224,
  augment: true,
  ...DEFAULT_TRANSFORMS,
  bs: 64,
  accum: 1,
  globalBs: null,
  lrScale: 'none',
  baseBs: 64,
  workers: 1,
  expect: 0,
  backend: 'auto',
  pretrained: 'imagenet',
  load: null,
  stages: DEFAULT_STAGES,
  runDir: '',
});

/** Everything optional: what a config file or the flags may set. */
export type RunConfigInput = { [K in keyof RunConfig]?: unknown };

/**
 * The command-line flag of each run setting, the one table from which the coordinator's flags are built
 * (`coordinator/options.ts`) and every message names a setting. A setting's message names both, `validPct
 * (--valid-pct) must be …`: the same check serves the config file (field) and the flags, and a user who typed
 * `--valid-pct 1` was told only about a `validPct` they never wrote. `stages` has no flag of its own (a config
 * file's list, or the stage shorthands `--epochs`, `--fine-tune-epochs`, `--no-lr-find`).
 */
export const RUN_CONFIG_FLAGS: Readonly<Record<Exclude<keyof RunConfig, 'stages'>, string>> = Object.freeze({
  data: '--data', labelRe: '--label-re', labelFrom: '--label-from', labels: '--labels', split: '--split',
  trainFolder: '--train-folder', validFolder: '--valid-folder', validCol: '--valid-col', validPct: '--valid-pct',
  seed: '--seed', arch: '--arch', size: '--size', augment: '--no-augment',
  doFlip: '--no-flip', flipVert: '--flip-vert', maxRotate: '--max-rotate', maxZoom: '--max-zoom', maxLighting: '--max-lighting',
  maxWarp: '--max-warp', pAffine: '--p-affine', pLighting: '--p-lighting',
  bs: '--bs', accum: '--accum', globalBs: '--global-bs', lrScale: '--lr-scale', baseBs: '--base-bs', workers: '--workers',
  expect: '--expect', backend: '--backend', pretrained: '--pretrained', load: '--load', runDir: '--run-dir',
});

/** The flag of a run setting (`validPct` → `--valid-pct`), or undefined for a name that has none (`stages`, `stages[0].epochs`). */
export function flagOf(field: string): string | undefined {
  return Object.hasOwn(RUN_CONFIG_FLAGS, field) ? (RUN_CONFIG_FLAGS as Record<string, string>)[field] : undefined;
}

/**
 * How messages name a run setting: `field (--flag)` for one with a flag (`validPct (--valid-pct)`), else `field` as
 * given (stage fields, flags, inner names).
 */
export function settingName(field: string): string {
  const flag = flagOf(field);
  return flag === undefined ? field : `${field} (${flag})`;
}

/** {@link shownValue} (contract/shown-value.ts), also here for the callers that show a setting with its name. */
export { shownValue };

function fail(field: string, rule: string, got: unknown, code: TrainerErrorCode = 'ERR_BAD_CONFIG'): never {
  throw new TrainerError(code, `${settingName(field)} must be ${rule}, got ${shownValue(got)}`);
}

/**
 * Longest duration a millisecond flag may give (`--heartbeat-interval-ms`, `--heartbeat-timeout-ms`,
 * `--allreduce-timeout-ms`): one day, as `--join-timeout-s`. Node's timers take at most 2^31 − 1 ms (24.8 days) and
 * fire after 1 ms beyond it (TimeoutOverflowWarning): `--allreduce-timeout-ms 3000000000` timed every step out at once.
 */
export const MAX_TIMER_MS = 86_400_000;

/** Most epochs of one stage (a bound that catches typos such as `--epochs 1e9`, far beyond any real run). */
export const MAX_STAGE_EPOCHS = 10_000;

/**
 * Validates an integer field. Accepts numbers and decimal strings (flags arrive as strings).
 * @throws TrainerError ERR_BAD_CONFIG naming the field, the rule and the value.
 */
export function checkInt(field: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    fail(field, max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer in [${min}, ${max}]`, value);
  }
  return n;
}

/** Validates a real number in the open interval (lo, hi). @throws TrainerError ERR_BAD_CONFIG */
export function checkOpenUnit(field: string, value: unknown, lo: number, hi: number): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isFinite(n) || n <= lo || n >= hi) fail(field, `a number in (${lo}, ${hi})`, value);
  return n;
}

function checkEnum<T extends string>(field: string, value: unknown, allowed: readonly T[], code: TrainerErrorCode = 'ERR_BAD_CONFIG'): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) fail(field, `one of ${allowed.join('|')}`, value, code);
  return value as T;
}

/**
 * Validates an architecture and its starting weights (`--arch`, `--pretrained`), for the coordinator and `npm run
 * learn` alike. A worker would find a bad pair out only after it started (resolvePretrainedWeights).
 * @param arch - the architecture name
 * @param pretrained - `imagenet`, `none` or a safetensors path
 * @returns the architecture
 * @throws TrainerError ERR_BAD_CONFIG for an arch outside {@link ARCHS}, or resnet10 with `imagenet` (torchvision
 *   publishes no ImageNet weights for it)
 */
export function checkArchWeights(arch: unknown, pretrained: string): Arch {
  const checked = checkEnum('arch', arch, ARCHS);
  if (checked === 'resnet10' && pretrained === 'imagenet') fail('pretrained', 'none or a safetensors file with arch resnet10 (torchvision publishes no ImageNet weights for it)', pretrained);
  return checked;
}

/**
 * Validates a command-line flag that takes one word of a fixed set (`--backend`, `--allreduce`, …): the run
 * configuration's enum rule, reported as a bad flag.
 * @throws TrainerError ERR_BAD_FLAG naming the flag, the allowed words and the value, e.g.
 *   `--allreduce must be one of ring|star, got "tree"`
 */
export function checkChoice<T extends string>(flag: string, value: unknown, allowed: readonly T[]): T {
  return checkEnum(flag, value, allowed, 'ERR_BAD_FLAG');
}

function checkString(field: string, value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '') fail(field, 'a non-empty string', value);
  return value;
}

/**
 * What every lr_find stage runs, as a run's `config.json` records it (fastai 1.0.61 `lr_find` defaults: start_lr
 * 1e-7, end_lr 10, num_it 100, stop_div True); the only values those fields may have in a config file.
 */
export const LR_FIND_RECORDED = Object.freeze({ startLr: DEFAULT_LR_FIND.startLr, endLr: DEFAULT_LR_FIND.endLr, numIt: DEFAULT_LR_FIND.numIt, stopDiv: true as const });

const LR_RE = /^\s*(?:[0-9.]+(?:e-?\d+)?|slice\(\s*[0-9.]+(?:e-?\d+)?\s*(?:,\s*[0-9.]+(?:e-?\d+)?\s*)?\))\s*$/i;

function checkStage(index: number, raw: unknown): StageConfig {
  const at = `stages[${index}]`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(at, 'an object', raw);
  const s = raw as Record<string, unknown>;
  const kind = checkEnum(`${at}.kind`, s.kind ?? 'one_cycle', ['one_cycle', 'fit', 'lr_find'] as const);
  for (const key of Object.keys(s)) {
    if (kind === 'lr_find' && key in LR_FIND_RECORDED) {
      // The fields config.json records for an lr_find stage (what it runs): accepted back, but they are not settings.
      const want = LR_FIND_RECORDED[key as keyof typeof LR_FIND_RECORDED];
      if (s[key] !== want) fail(`${at}.${key}`, `${want} (lr_find runs fastai's lr_find(start_lr=${LR_FIND_RECORDED.startLr}, end_lr=${LR_FIND_RECORDED.endLr}, num_it=${LR_FIND_RECORDED.numIt}, stop_div=True); config.json records it, it is not a setting)`, s[key]);
    } else if (!['kind', 'name', 'epochs', 'maxLr', 'frozen'].includes(key)) {
      fail(`${at}.${key}`, `a known stage field (kind, name, epochs, maxLr, frozen${kind === 'lr_find' ? ', and for lr_find as config.json records it: startLr, endLr, numIt, stopDiv' : ''})`, key);
    }
  }
  const name = checkString(`${at}.name`, s.name ?? (kind === 'lr_find' ? LR_FIND_STAGE_NAME : `stage-${index + 1}`));
  if (!/^[A-Za-z0-9._-]+$/.test(name)) fail(`${at}.name`, 'letters, digits, ".", "_" or "-"', name);
  const epochs = kind === 'lr_find' ? 0 : checkInt(`${at}.epochs`, s.epochs ?? 1, 1, MAX_STAGE_EPOCHS);
  const maxLrRaw = s.maxLr ?? (kind === 'lr_find' ? '0' : 'slice(3e-3)');
  const maxLr = typeof maxLrRaw === 'number' ? String(maxLrRaw) : maxLrRaw;
  if (kind !== 'lr_find' && (typeof maxLr !== 'string' || !LR_RE.test(maxLr))) {
    fail(`${at}.maxLr`, 'a number, "slice(b)" or "slice(a,b)"', maxLrRaw);
  }
  const frozen = s.frozen ?? false;
  if (typeof frozen !== 'boolean') fail(`${at}.frozen`, 'true or false', frozen);
  return Object.freeze({ kind, name, epochs, maxLr: maxLr as string, frozen });
}

/**
 * Merges defaults ← config file ← flags and validates every field.
 * @param layers - later layers win; `undefined` values are ignored
 * @returns a frozen {@link RunConfig}
 * @throws TrainerError ERR_BAD_CONFIG naming the first bad field, its rule and its value
 */
export function resolveRunConfig(...layers: readonly RunConfigInput[]): RunConfig {
  const merged: Record<string, unknown> = { ...DEFAULT_RUN_CONFIG };
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) {
      // Own keys only: `in` also found Object.prototype's, so a file's `toString:` or `constructor:` passed unnoticed.
      if (!Object.hasOwn(DEFAULT_RUN_CONFIG, key)) fail(key, `a known setting (${Object.keys(DEFAULT_RUN_CONFIG).join(', ')})`, key);
      if (value !== undefined) merged[key] = value;
    }
  }
  const workers = checkInt('workers', merged.workers, 0, 1024);
  const stagesRaw = merged.stages;
  if (!Array.isArray(stagesRaw) || stagesRaw.length === 0) fail('stages', 'a non-empty list', stagesRaw);
  const cfg: RunConfig = {
    data: checkString('data', merged.data),
    labelRe: checkRegex(merged.labelRe),
    labelFrom: checkEnum('labelFrom', merged.labelFrom, ['regex', 'folder', 'csv'] as const),
    labels: merged.labels === null ? null : checkString('labels', merged.labels),
    split: checkEnum('split', merged.split, ['random', 'official', 'folder', 'csv'] as const),
    trainFolder: checkFolderName('trainFolder', merged.trainFolder),
    validFolder: checkFolderName('validFolder', merged.validFolder),
    validCol: checkString('validCol', merged.validCol),
    validPct: checkOpenUnit('validPct', merged.validPct, 0, 1),
    seed: checkInt('seed', merged.seed, 0, 2 ** 32 - 1),
    arch: checkEnum('arch', merged.arch, ARCHS),
    size: checkSize(merged.size),
    augment: checkBool('augment', merged.augment),
    ...checkTransformFields(merged),
    bs: checkBatchSize(merged.bs),
    accum: checkInt('accum', merged.accum, 1, 4096),
    globalBs: merged.globalBs === null ? null : checkInt('globalBs', merged.globalBs, 1),
    lrScale: checkEnum('lrScale', merged.lrScale, ['linear', 'sqrt', 'none'] as const),
    baseBs: checkInt('baseBs', merged.baseBs, 1),
    workers,
    expect: resolveExpect(merged.expect, workers),
    backend: checkEnum('backend', merged.backend, RUN_BACKENDS),
    pretrained: checkStartWeights(layers, merged),
    load: merged.load === null ? null : resolve(checkString('load', merged.load)),
    stages: Object.freeze(stagesRaw.map((s, i) => checkStage(i, s))),
    runDir: typeof merged.runDir === 'string' ? merged.runDir : fail('runDir', 'a path', merged.runDir),
  };
  if (cfg.labelFrom === 'csv' && cfg.labels === null) fail('labels', `a CSV path when ${settingName('labelFrom')} is csv`, null);
  checkArchWeights(cfg.arch, cfg.pretrained);
  if (cfg.split === 'csv' && cfg.labelFrom !== 'csv') fail('split', `random|official|folder unless ${settingName('labelFrom')} is csv (split csv reads the CSV's ${cfg.validCol} column)`, cfg.split);
  if (cfg.split === 'folder' && cfg.trainFolder === cfg.validFolder) fail('validFolder', `a folder other than trainFolder (${flagOf('trainFolder')}: ${cfg.trainFolder})`, cfg.validFolder);
  const names = cfg.stages.map((s) => s.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) fail('stages', 'a list with unique stage names (each is saved as models/<name>)', names);
  if (cfg.stages.every((s) => s.kind === 'lr_find')) fail('stages', 'a list with at least one training stage', cfg.stages.map((s) => s.kind));
  return Object.freeze(cfg);
}

/**
 * `pretrained` of a run: as merged, or `none` when `load` is set (the loaded model holds every weight). A layer that
 * sets `pretrained` to anything but `none` beside `load` is refused: one of them would be ignored.
 * @throws TrainerError ERR_BAD_CONFIG naming both settings
 */
function checkStartWeights(layers: readonly RunConfigInput[], merged: Record<string, unknown>): string {
  if (merged.load === null || merged.load === undefined) return checkString('pretrained', merged.pretrained);
  const given = layers.map((l) => l.pretrained).filter((p) => p !== undefined && p !== 'none');
  if (given.length > 0) {
    fail('pretrained', `none (or not given) with ${settingName('load')}: the loaded model holds every weight of the network, so give one of --load and --pretrained`, given.at(-1));
  }
  return 'none';
}

function checkBool(field: string, value: unknown): boolean {
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  return fail(field, 'true or false', value);
}

function checkTransformFields(merged: Record<string, unknown>): TransformSettings {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(DEFAULT_TRANSFORMS) as (keyof TransformSettings)[]) {
    const v = merged[key];
    out[key] = typeof v === 'string' && v.trim() !== '' && key !== 'doFlip' && key !== 'flipVert' ? Number(v) : v;
    if (key === 'doFlip' || key === 'flipVert') out[key] = checkBool(key, v);
  }
  const problem = transformProblem(out);
  if (problem !== null) {
    const field = problem.split(' ')[0] as keyof TransformSettings;
    throw new TrainerError('ERR_BAD_CONFIG', problem.replace(field, settingName(field)).replace(/got .*$/, `got ${shownValue(merged[field])}`));
  }
  return out as unknown as TransformSettings;
}

/**
 * Per-worker batch sizes (`--bs`) accepted by the coordinator and `npm run learn`. Every model here has BatchNorm
 * layers (the body's and the head's BatchNorm1d), which in training need more than one value per channel — PyTorch
 * raises "Expected more than 1 value per channel when training" for a batch of 1 — so bs 1 is refused before any
 * worker starts.
 */
export const BS_RANGE = Object.freeze({ min: 2, max: 4096 });

/**
 * Checks a per-worker batch size (`--bs`) in [2, 4096] (BatchNorm needs two images per batch), for the coordinator
 * and `npm run learn` alike. @throws TrainerError ERR_BAD_CONFIG naming `bs (--bs)` and the rule
 */
export function checkBatchSize(value: unknown): number {
  const n = typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
  // Every integer below 2 (0 and negatives too) gets the BatchNorm reason, so no message names a lower bound of 1.
  if (typeof n === 'number' && Number.isInteger(n) && n < 2) {
    fail('bs', `an integer in [${BS_RANGE.min}, ${BS_RANGE.max}]: the BatchNorm layers need more than one image per batch in training (PyTorch: "Expected more than 1 value per channel when training")`, value);
  }
  return checkInt('bs', value, BS_RANGE.min, BS_RANGE.max);
}

function checkFolderName(field: string, value: unknown): string {
  const s = checkString(field, value);
  if (/[\\/]/.test(s) || s === '.' || s === '..') fail(field, 'a folder name directly under the image folder (no "/")', value);
  return s;
}

/** The augmentation a run's training loader applies: its transform settings, or null with `augment: false`. */
export function augmentOf(c: Pick<RunConfig, 'augment' | keyof TransformSettings>): TransformSettings | null {
  if (!c.augment) return null;
  return Object.freeze({ doFlip: c.doFlip, flipVert: c.flipVert, maxRotate: c.maxRotate, maxZoom: c.maxZoom, maxLighting: c.maxLighting, maxWarp: c.maxWarp, pAffine: c.pAffine, pLighting: c.pLighting });
}

function resolveExpect(value: unknown, workers: number): number {
  const n = checkInt('expect', value, 0, 1024);
  // `--workers 0` alone said "… got 0" of an --expect never given; the rule now says what to give.
  if (n === 0 && workers === 0) fail('expect', `an integer ≥ 1 when ${settingName('workers')} is 0 (remote workers only): give ${flagOf('expect')} N, the number of remote workers to wait for`, value);
  if (n !== 0 && n < workers) fail('expect', `an integer ≥ workers (${flagOf('workers')}: ${workers})`, value);
  return n === 0 ? workers : n;
}

function checkRegex(value: unknown): string {
  const s = checkString('labelRe', value);
  try {
    new RegExp(s);
  } catch (err) {
    fail('labelRe', `a valid regular expression (${(err as Error).message})`, s);
  }
  if (!/\((?!\?)/.test(s)) fail('labelRe', 'a regular expression with a capture group for the label', s);
  return s;
}

/**
 * Reads a YAML or JSON config file (`.json` parsed as JSON, anything else as YAML, which is a superset).
 * Keys use the same camelCase names as {@link RunConfig}.
 * @throws TrainerError ERR_BAD_CONFIG when the file is unreadable, unparsable, or not a mapping
 */
export function readConfigFile(path: string): RunConfigInput {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new TrainerError('ERR_BAD_CONFIG', `--config ${path}: cannot read the file (${(err as Error).message})`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new TrainerError('ERR_BAD_CONFIG', `--config ${path}: not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'} (${(err as Error).message})`, { cause: err });
  }
  // An empty YAML file (or one of comments only, or `~`) parses to null, which was reported as 'got object'.
  if (parsed === null || parsed === undefined) {
    throw new TrainerError('ERR_BAD_CONFIG', `--config ${path}: must hold a mapping of settings (e.g. "bs: 32"), got an empty file (or only comments, or null); write settings in it, or drop --config`);
  }
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new TrainerError('ERR_BAD_CONFIG', `--config ${path}: must hold a mapping of settings (e.g. "bs: 32"), got ${Array.isArray(parsed) ? 'a list' : `a ${typeof parsed} (${JSON.stringify(parsed).slice(0, 60)})`}`);
  }
  return parsed as RunConfigInput;
}
