/**
 * The tutorial's stage 1 in ONE process (no coordinator, no workers): build the DataBunch, a ResNet + fastai head
 * (frozen), `fit_one_cycle(epochs, max_lr)` printing fastai's epoch table, save `stage-1`; optionally lr_find
 * afterwards (unfrozen, as the tutorial) with its plot written as PNG + JSON.
 *
 * Usage:
 * ```
 * npm run learn -- --data ../shared/datasets/oxford-iiit-pet-sample --arch resnet34 --size 128 --pretrained none \
 *   [--epochs 4] [--bs 16] [--lr 'slice(3e-3)'] [--seed 42] [--valid-pct 0.2] [--backend auto] [--dir runs/learn] [--lr-find] [--max-micro-batch N] \
 *   [--max-rotate 10] [--max-zoom 1.1] [--max-lighting 0.2] [--max-warp 0.2] [--p-affine 0.75] [--p-lighting 0.75] \
 *   [--no-flip] [--flip-vert] [--no-augment]
 * ```
 * The augmentation flags are the coordinator's (`addAugmentFlags`), with the same meaning, defaults and checks.
 * Errors end it with one line, `learn: CODE: message` (the codes of src/contract/errors.ts, as the coordinator's).
 * Exit code: 0 done, 1 runtime error, 2 bad flag or data that cannot be trained (ERR_BAD_DATA), as the coordinator.
 */
import { pathToFileURL } from 'node:url';
import { Command } from 'commander';
import { initBackend, parseBackendRequest, type BackendRequest } from '../src/training/compute/backend.js';
import { registerTfjsGradients } from '../src/training/compute/kernels/gradients.js';
import { checkDataSource, createDataBunch } from '../src/training/data/databunch.js';
import { ImagePool } from '../src/training/data/pool.js';
import { TrainerError } from '../src/contract/errors.js';
import { errorExit } from '../src/contract/cli-error.js';
import { checkEnvSettings } from '../src/contract/env-settings.js';
import { makeDir } from '../src/contract/make-dir.js';
import { Learner } from '../src/training/learner/learner.js';
import type { LrFindResult } from '../src/training/learner/lr-find.js';
import { Replica } from '../src/training/learner/replica.js';
import { parseLrSpec, type LrSpec } from '../src/contract/plan/schedule.js';
import { checkPretrainedSource, resolvePretrainedWeights } from '../src/training/model/pretrained.js';
import { resolveResNetConfig } from '../src/contract/resnet-spec.js';
import { lrFindStem, writeLrFindPicture } from '../src/coordinator/report/write-report.js';
import { addAugmentFlags, augmentFromFlags } from '../src/coordinator/options.js';
import type { TransformSettings } from '../src/contract/transform-settings.js';
import { ARCHS, BS_RANGE, LR_FIND_STAGE_NAME, SIZE_RANGE, archModel, checkArchWeights, checkBatchSize, checkInt, checkSize, shownValue, type Arch } from '../src/contract/config.js';
import { flagsOnly, plainDefaults, refuseStrayArguments, withVersion } from '../src/contract/cli-help.js';

/** The flags as commander gives them (strings), before {@link parseLearnArgs} checks and converts them. */
interface LearnFlags {
  data: string;
  arch: Arch;
  size: string;
  bs: string;
  epochs: string;
  lr: string;
  pretrained: string;
  seed: string;
  validPct: string;
  backend: string;
  dir: string;
  lrFind?: boolean;
  maxMicroBatch?: string;
  dataThreads?: string;
}

/** `npm run learn`'s settings, checked and converted once by {@link parseLearnArgs}, before anything loads. */
export interface LearnOptions {
  /** `oxford-iiit-pet` (download) or a folder of images. */
  readonly data: string;
  readonly arch: Arch;
  /** Image side, pixels, in {@link SIZE_RANGE} (the coordinator's rule). */
  readonly size: number;
  /** Batch size, images, in {@link BS_RANGE} (the coordinator's rule). */
  readonly bs: number;
  /** Epochs of `fit_one_cycle`, ≥ 1. */
  readonly epochs: number;
  /** Max learning rate of the one cycle (`--lr`: a number or fastai's `slice(…)`). */
  readonly maxLr: LrSpec;
  /** `imagenet`, `none` or a torchvision safetensors file. */
  readonly pretrained: string;
  /** Seed of the split, shuffles, augmentation and initial weights, in [0, 2^32 − 1]. */
  readonly seed: number;
  /** Fraction of the items held out for validation (fastai valid_pct), in (0, 1). */
  readonly validPct: number;
  readonly backend: BackendRequest;
  /** Folder for models/ and the lr_find plot. */
  readonly dir: string;
  readonly lrFind: boolean;
  /** Largest chunk of images per forward, ≥ 2 (undefined: from arch, size and backend). */
  readonly maxMicroBatch: number | undefined;
  /** Decode threads, ≥ 1 (undefined: cores − 1). */
  readonly dataThreads: number | undefined;
  /** Training augmentation from the augmentation flags; null with `--no-augment`. */
  readonly transforms: TransformSettings | null;
}

function intFlag(name: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new TrainerError('ERR_BAD_FLAG', `--${name} must be an integer ≥ ${min}, got ${shownValue(value)}`);
  return n;
}

/** The lr_find picture and its numbers, named and drawn as the coordinator's report does (`lr-find-lr-find.png`, `.json`). */
function writeLrFindPlot(dir: string, result: LrFindResult): Promise<string> {
  return writeLrFindPicture(dir, { name: LR_FIND_STAGE_NAME, lrs: result.lrs, smoothedLosses: result.losses });
}

async function run(f: LearnOptions): Promise<void> {
  const t0 = performance.now();
  const arch = resolveResNetConfig(archModel(f.arch));
  const { size, bs, seed } = f;
  // Before --dir is made: a mistyped --data left an empty runs/learn behind.
  checkDataSource(f.data);
  makeDir(f.dir, '--dir');
  const choice = await initBackend(f.backend);
  await registerTfjsGradients();
  console.log(choice.summary);
  const pretrained = await resolvePretrainedWeights(f.pretrained, arch);
  const pool = new ImagePool(f.dataThreads === undefined ? {} : { threads: f.dataThreads });
  pool.start();
  try {
    const data = await createDataBunch({ data: f.data, seed, validPct: f.validPct, verify: true, size }, pool);
    console.log(`data: ${data.train.length} train / ${data.valid.length} valid items, ${data.classes.length} classes`);
    const replica = await Replica.create({ arch, numClasses: data.classes.length, seed, pretrained, frozen: true,
      maxMicroBatch: f.maxMicroBatch });
    try {
      console.log(`model: ${f.arch}, pretrained ${pretrained ?? 'none'}, ${size}px, bs ${bs}, chunks of ≤ ${Math.min(bs, replica.maxMicroBatch(size))} images per forward`);
      console.log(`augmentation: ${f.transforms === null ? 'none (--no-augment: centre crops, as validation)' : Object.entries(f.transforms).map(([k, v]) => `${k} ${v}`).join(', ')}`);
      const learner = new Learner(data, pool, replica, { bs, size, seed, dir: f.dir, transforms: f.transforms });
      await learner.fitOneCycle(f.epochs, f.maxLr);
      const saved = await learner.save('stage-1');
      console.log(`saved ${saved.weights}`);
      if (f.lrFind) {
        learner.unfreeze();
        const result = await learner.lrFind();
        const s = result.suggestion;
        console.log(`lr_find: ${result.lrs.length} iterations (${result.stop})` + (s ? `, min numerical gradient ${s.steepest.toExponential(2)}, min loss/10 ${s.minLossDiv10.toExponential(2)}` : ''));
        console.log(`lr_find plot: ${await writeLrFindPlot(f.dir, result)}`);
      }
    } finally {
      replica.dispose();
    }
  } finally {
    await pool.close();
  }
  console.log(`wall time ${((performance.now() - t0) / 1000).toFixed(1)} s, peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
}

/**
 * Parses and checks the command line of `npm run learn`, converting each value once: every flag is refused here,
 * before anything loads, with the coordinator's rule where the coordinator has the flag.
 * @param argv - arguments after the script name
 * @returns the settings, with the augmentation resolved and validated
 * @throws CommanderError for unknown flags, missing values and `--help`; TrainerError ERR_BAD_FLAG for --valid-pct
 *   outside (0, 1), a bad --lr, --backend, --epochs, --max-micro-batch or --data-threads; ERR_BAD_CONFIG for --size
 *   or --bs outside the coordinator's ranges, an --arch outside the coordinator's (or resnet10 with imagenet weights), a
 *   --seed outside [0, 2^32 − 1] or a bad augmentation value (naming the field, its flag and the rule)
 */
export function parseLearnArgs(argv: readonly string[]): LearnOptions {
  const program = new Command('learn')
    .description("fastai pets tutorial stage 1 in one process: frozen fit_one_cycle, epoch table, save stage-1")
    .option('--data <dir>', 'oxford-iiit-pet (download) or a folder of images', 'oxford-iiit-pet')
    .option('--arch <arch>', `${ARCHS.join('|')} (the coordinator's; resnet10 for fast tests, no ImageNet weights)`, 'resnet34')
    .option('--size <pixels>', `image side [${SIZE_RANGE.min}, ${SIZE_RANGE.max}] (the coordinator's)`, '224')
    .option('--bs <n>', `batch size [${BS_RANGE.min}, ${BS_RANGE.max}] (the coordinator's)`, '64')
    .option('--epochs <n>', 'epochs of fit_one_cycle (≥ 1)', '4')
    .option('--lr <lr>', 'max lr: number, slice(end) or slice(start,end)', 'slice(3e-3)')
    .option('--pretrained <src>', 'imagenet|none|<path to torchvision .safetensors>', 'imagenet')
    .option('--seed <n>', 'seed of split, shuffles, augmentation, init, [0, 2^32 − 1]', '42')
    .option('--valid-pct <fraction>', 'fraction of items for validation, (0, 1) (the coordinator\'s --valid-pct)', '0.2')
    .option('--backend <name>', 'auto|tensorflow|webgpu|native|wasm|cpu', 'auto')
    .option('--dir <dir>', 'folder for models/ and the lr_find plot', 'runs/learn')
    .option('--lr-find', `after stage 1: unfreeze and run lr_find, write ${lrFindStem(LR_FIND_STAGE_NAME)}.png and .json (the coordinator's names)`)
    .option('--max-micro-batch <n>', 'largest chunk per forward (default: from arch/size/backend)')
    .option('--data-threads <n>', 'decode threads (default cores − 1)')
    .exitOverride();
  withVersion(plainDefaults(addAugmentFlags(flagsOnly(program)))).parse([...argv], { from: 'user' });
  refuseStrayArguments(program);
  const f = program.opts<LearnFlags>();
  // The coordinator's rule, (0, 1): learn validates after every epoch, so 0 used to train a whole epoch and then
  // stop with "validation needs at least one validation item" (exit 1).
  const validPct = Number(f.validPct);
  if (f.validPct.trim() === '' || !(validPct > 0 && validPct < 1)) {
    throw new TrainerError('ERR_BAD_FLAG', `--valid-pct must be a number in (0, 1): validation runs after every epoch, got ${shownValue(f.validPct)}`);
  }
  // The coordinator's architectures and rule (contract/config.ts), checked before anything loads: resnet10 was
  // refused ("arch must be one of resnet18|resnet34|resnet50", no flag named) though the coordinator trains it.
  checkArchWeights(f.arch, f.pretrained);
  // A weights file that is not there was found only after the backend started (its log line printed first).
  checkPretrainedSource(f.pretrained);
  return {
    data: f.data, arch: f.arch, pretrained: f.pretrained, dir: f.dir, lrFind: f.lrFind === true, validPct,
    // The coordinator's rules for --size and --bs (contract/config.ts: one table for both CLIs) and its --seed range:
    // a seed past 2^32 was refused by the model only after the data had been read and verified.
    size: checkSize(f.size),
    bs: checkBatchSize(f.bs),
    seed: checkInt('--seed', f.seed, 0, 2 ** 32 - 1),
    epochs: intFlag('epochs', f.epochs, 1),
    maxLr: parseLrSpec(f.lr, '--lr'),
    backend: parseBackendRequest(f.backend),
    maxMicroBatch: f.maxMicroBatch === undefined ? undefined : intFlag('max-micro-batch', f.maxMicroBatch, 2),
    dataThreads: f.dataThreads === undefined ? undefined : intFlag('data-threads', f.dataThreads, 1),
    transforms: augmentFromFlags(program),
  };
}

/**
 * Entry point.
 * @param argv - arguments after the script name
 * @returns exit code (CLI_EXIT, contract/cli-error.ts): 0 done, 1 runtime error, 2 bad flag or data
 */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    // As the coordinator and worker: PETS_NATIVE_THREADS=abc was 'ERR_BACKEND: --backend native requested but
    // unavailable' (exit 1), and with another backend (or auto, which fell back from native) it passed unsaid.
    checkEnvSettings(process.env);
    await run(parseLearnArgs(argv));
    return 0;
  } catch (err) {
    // As the coordinator: `learn: CODE: message`, and exit 2 for an input to change (a bad flag or data).
    return errorExit('learn', err);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
