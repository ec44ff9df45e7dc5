/**
 * The coordinator's flags: the run configuration (what is trained, shared with config files) and the runtime
 * options (how it runs: sockets, heartbeats, checkpoints, metrics), parsed with commander and validated before
 * anything starts.
 */
import { flagsOnly, refuseStrayArguments, refuseUnknownCommand, withVersion } from '../contract/cli-help.js';
import { Command } from 'commander';
import { join } from 'node:path';
import { augmentOf, readConfigFile, resolveRunConfig, checkInt, checkChoice, MAX_STAGE_EPOCHS, MAX_TIMER_MS, RUN_BACKENDS, RUN_CONFIG_FLAGS, DEFAULT_STAGES, type RunConfig, type RunConfigInput } from '../contract/config.js';
import type { TransformSettings } from '../contract/transform-settings.js';
import { TrainerError } from '../contract/errors.js';
import { parseLrSpec } from '../contract/plan/schedule.js';
import { RUN_CONFIG_FILE } from '../contract/run-files.js';

/** How the coordinator runs (may differ between a run and its resume). */
export interface RuntimeOptions {
  /** ZeroMQ ROUTER endpoint the coordinator binds, e.g. `tcp://127.0.0.1:5555`; port 0 = ephemeral. */
  readonly bind: string;
  /**
   * Whether `--bind` / `--metrics-port` were given. A default port that is taken (a second run on the host) is
   * replaced by a free one, printed; a port the user asked for is never replaced (ERR_PORT_IN_USE).
   */
  readonly bindGiven: boolean;
  readonly metricsPortGiven: boolean;
  /** Heartbeat period both ways, milliseconds. */
  readonly heartbeatIntervalMs: number;
  /** A peer silent for this long is dead, milliseconds. */
  readonly heartbeatTimeoutMs: number;
  /** Longest a single all-reduce may take before it is aborted, milliseconds. */
  readonly allreduceTimeoutMs: number;
  /**
   * `auto` (default: shared memory when every worker is on one host and the native module loads, else the ring),
   * `shm` (shared memory, or the run fails saying why not), `ring` (ZeroMQ), or `star` through the coordinator
   * (baseline for benchmarks).
   */
  readonly allreduce: 'auto' | 'ring' | 'shm' | 'star';
  /** Wire dtype of gradient chunks. */
  readonly allreduceDtype: 'float32' | 'float16';
  /** Gradient bucket size, MiB (2^20 bytes, as DDP's `bucket_cap_mb`). */
  readonly bucketMb: number;
  /** Optimizer steps between periodic checkpoints (0 = only at epoch ends). */
  readonly checkpointEvery: number;
  /**
   * Newest checkpoints kept. Each holds weights and AdamW moments, 3 × 4 bytes per parameter (ResNet18 ≈ 140 MB,
   * ResNet34 ≈ 262 MB, ResNet50 ≈ 300 MB): the default 2 keeps the newest and one fallback in case it is corrupt.
   */
  readonly keep: number;
  /** Run directory to resume, or null. */
  readonly resume: string | null;
  /**
   * `--auto-resume`: continue the run in `--run-dir` when it holds a checkpoint, else start it there (a restarted
   * container runs the same command line; see `autoResumeCommand` in checkpoint-store.ts).
   */
  readonly autoResume: boolean;
  /** Keep going with survivors (and raise accumulation) instead of respawning lost local workers. */
  readonly elastic: boolean;
  /** Most respawns before the run checkpoints and stops. */
  readonly maxRestarts: number;
  /** Prometheus endpoint host and port (0 = ephemeral, -1 = disabled). */
  readonly metricsHost: string;
  readonly metricsPort: number;
  /** Seconds `/metrics` stays up after the run ends, so Prometheus scrapes the final values (0 = close at once). */
  readonly metricsLingerS: number;
  /** How long to wait for workers to join at start (and for replacements, unless `rejoinTimeoutS`), seconds. */
  readonly joinTimeoutS: number;
  /**
   * How long recovery waits for replacements of lost workers before the run checkpoints and stops, seconds; null =
   * `joinTimeoutS`. (Horovod separates them too: `--start-timeout` and `--elastic-timeout`.)
   */
  readonly rejoinTimeoutS: number | null;
  /** Decode/augment threads per worker (0 = automatic). */
  readonly threads: number;
  /** Directory with CURVE keys for remote workers, or null. */
  readonly curveKeys: string | null;
  /** Print plain lines instead of progress bars. */
  readonly plain: boolean;
}

/** Defaults of {@link RuntimeOptions}. */
export const DEFAULT_RUNTIME: RuntimeOptions = Object.freeze({
  bind: 'tcp://127.0.0.1:5555',
  bindGiven: false,
  metricsPortGiven: false,
  heartbeatIntervalMs: 1000,
  heartbeatTimeoutMs: 10_000,
  allreduceTimeoutMs: 120_000,
  allreduce: 'auto',
  allreduceDtype: 'float32',
  bucketMb: 25,
  checkpointEvery: 0,
  keep: 2,
  resume: null,
  autoResume: false,
  elastic: false,
  maxRestarts: 3,
  metricsHost: '127.0.0.1',
  metricsPort: 9464,
  metricsLingerS: 0,
  joinTimeoutS: 300,
  rejoinTimeoutS: null,
  threads: 0,
  curveKeys: null,
  plain: false,
});

/** The parsed command line of a training run. */
export interface TrainCommand {
  readonly config: RunConfig;
  readonly runtime: RuntimeOptions;
  /** Fields the user set explicitly (flags or file), for the resume agreement check. */
  readonly explicit: RunConfigInput;
  /** Runtime fields whose flag is on this command line (the others a `--resume` takes from the run). */
  readonly runtimeGiven?: ReadonlySet<keyof RuntimeOptions>;
  /**
   * The stage shorthands given (`--epochs`, `--lr`, `--fine-tune-epochs`, `--fine-tune-lr`, `--no-lr-find`) when no config file gave the
   * stages: `explicit.stages` applies them to the default plan, a `--resume` to the run's own stages instead.
   */
  readonly stageShorthands?: StageShorthands;
  /**
   * Where the run's stages came from: the default plan (`default`, shaped by the shorthands) or a config file's
   * `stages` (`config`). Recorded in `config.json` and every checkpoint, so a `--resume` addresses the stage shorthands
   * as the run was made ({@link applyResumeStageShorthands}). Absent: `default`.
   */
  readonly stagesFrom?: StagesFrom;
}

/** Where a run's stages came from: the default plan, or a config file's `stages` (see {@link TrainCommand}). */
export type StagesFrom = 'default' | 'config';

/**
 * The stage shorthand flags, validated: `--epochs` (0 drops stage 1), `--lr`, `--fine-tune-epochs` (0 drops stage 2),
 * `--fine-tune-lr`, `--no-lr-find`.
 */
export interface StageShorthands {
  /** Epochs of the first fit stage, [0, MAX_STAGE_EPOCHS]; 0 removes it (a `--load`ed model fine-tuned at once). */
  readonly epochs?: number;
  /** max_lr of the first fit stage as a stage's `maxLr` writes it: `3e-3`, `slice(3e-3)` or `slice(1e-6,1e-4)`. */
  readonly lr?: string;
  /** Epochs of the second fit stage, [0, MAX_STAGE_EPOCHS]; 0 removes it. */
  readonly fineTuneEpochs?: number;
  /** max_lr of the second fit stage, as {@link StageShorthands.lr}. */
  readonly fineTuneLr?: string;
  /** false: remove the lr_find stages. */
  readonly lrFind?: false;
}

/** How messages name the stages: the shorthand flags that change them, or a config file's list. */
export const STAGES_SETTING = 'stages (--epochs, --lr, --fine-tune-epochs, --fine-tune-lr, --no-lr-find or the config file\'s stages)';

/**
 * The flags that set the run configuration, in the order `--help` lists them: field, the name of its value (null: a
 * switch, such as `--no-augment`) and help. The flags themselves are the contract's ({@link RUN_CONFIG_FLAGS}).
 */
const CONFIG_FLAG_HELP: ReadonlyArray<[field: keyof typeof RUN_CONFIG_FLAGS, value: string | null, help: string]> = [
  ['data', 'source', 'oxford-iiit-pet (download) or a folder of images (or one holding images/) (default oxford-iiit-pet)'],
  ['labelRe', 'regex', 'label regex over the path, first group (default: the tutorial\'s /([^/]+)_\\d+.jpg$)'],
  ['labelFrom', 'how', 'regex | folder | csv (default regex)'],
  ['labels', 'csv', 'CSV of file,label (with --label-from csv)'],
  ['split', 'how', 'random (seeded --valid-pct) | official (Oxford annotations) | folder (train/ + valid/ subfolders) | csv (the --labels CSV\'s --valid-col column) (default random)'],
  ['trainFolder', 'name', 'training subfolder of --split folder (default train)'],
  ['validFolder', 'name', 'validation subfolder of --split folder (default valid)'],
  ['validCol', 'name', 'CSV column marking validation rows for --split csv, true/false (default is_valid)'],
  ['validPct', 'fraction', 'fraction of items for validation (default 0.2)'],
  ['seed', 'n', 'seed of split, shuffles, augmentation and head init (default 42)'],
  ['arch', 'name', 'resnet10 (tests) | resnet18 | resnet34 | resnet50 (default resnet34)'],
  ['size', 'px', 'image side after crop, pixels (default 224)'],
  ['maxRotate', 'deg', 'augmentation: rotate up to ± this many degrees, [0, 180] (default 10)'],
  ['maxZoom', 'x', 'augmentation: zoom up to this factor, [1, 10] (default 1.1)'],
  ['maxLighting', 'x', 'augmentation: brightness/contrast change, [0, 1) (default 0.2)'],
  ['maxWarp', 'x', 'augmentation: perspective warp magnitude, [0, 1) (default 0.2)'],
  ['pAffine', 'p', 'augmentation: probability of each of warp, rotate, zoom, [0, 1] (default 0.75)'],
  ['pLighting', 'p', 'augmentation: probability of brightness and of contrast, [0, 1] (default 0.75)'],
  ['bs', 'n', 'batch per worker (default 64)'],
  ['accum', 'n', 'gradient-accumulation steps (default 1)'],
  ['globalBs', 'n', 'wanted global batch; picks --accum'],
  ['lrScale', 'rule', 'linear | sqrt | none: scale max lrs by global batch / --base-bs (default none)'],
  ['baseBs', 'n', 'batch the stage lrs were tuned for (default 64)'],
  ['workers', 'n', 'local worker processes to spawn (default 1; 0 = remote workers only)'],
  ['expect', 'n', 'world size to wait for (local + remote workers; default = --workers)'],
  ['backend', 'name', `${RUN_BACKENDS.join(' | ')} (default auto)`],
  ['pretrained', 'source', 'imagenet | none | path to a torchvision safetensors file (default imagenet)'],
  ['load', 'model', 'start a new run from a saved model\'s weights and BatchNorm statistics (fastai learn.load; optimizer state fresh): runs/<run>/models/<stage>.safetensors, a checkpoint folder, or a run directory (its newest checkpoint); same --arch and classes; the stages are this command\'s'],
  ['runDir', 'dir', 'run directory (default runs/<date-time>)'],
  ['augment', null, 'train without augmentation: centre crop only, as validation (fastai ds_tfms=None)'],
  ['doFlip', null, 'augmentation: no random flips (fastai do_flip=False)'],
  ['flipVert', null, 'augmentation: flips and 90° turns of all 8 kinds, for images with no "up" (fastai flip_vert=True)'],
];

/** The coordinator's commands (cli.ts dispatches on the first word; train is the default). */
export const COORDINATOR_COMMANDS: readonly string[] = Object.freeze(['train', 'predict', 'interpret', 'show-batch']);

/** Builds the commander program of `coordinator [train]`. */
export function trainProgram(): Command {
  const cmd = new Command('coordinator').usage('[train] [options]   (also: coordinator predict|interpret|show-batch --help)')
    .description('runs the tutorial plan with worker processes (train is the default command)');
  addConfigFlags(cmd);
  cmd
    .option('--config <file>', 'YAML or JSON file with any run settings and the stages (flags win)')
    .option('--epochs <n>', `shorthand: epochs of stage 1 (frozen one-cycle; 0: no stage 1, e.g. --load <model> --epochs 0 --no-lr-find fine-tunes it unfrozen) (default ${DEFAULT_STAGES[0]!.epochs})`)
    .option('--lr <max-lr>', `shorthand: max_lr of stage 1, a number, slice(b) or slice(a,b) (fastai's fit_one_cycle max_lr) (default ${DEFAULT_STAGES[0]!.maxLr})`)
    .option('--fine-tune-epochs <n>', `shorthand: epochs of stage 2 (unfrozen one-cycle; 0: no stage 2, the run ends after stage 1 and lr_find) (default ${DEFAULT_STAGES[2]!.epochs})`)
    .option('--fine-tune-lr <max-lr>', `shorthand: max_lr of stage 2, as --lr; slice(a,b) spreads it over the layer groups (default ${DEFAULT_STAGES[2]!.maxLr})`)
    .option('--no-lr-find', 'shorthand: drop the lr_find stage')
    .option('--bind <endpoint>', `ZeroMQ endpoint to listen on (default ${DEFAULT_RUNTIME.bind}, or a free port printed at start when another run holds it; port 0 = any)`)
    .option('--heartbeat-interval-ms <ms>', `heartbeat period (default ${DEFAULT_RUNTIME.heartbeatIntervalMs})`)
    .option('--heartbeat-timeout-ms <ms>', `silence before a peer is declared dead (default ${DEFAULT_RUNTIME.heartbeatTimeoutMs})`)
    .option('--allreduce-timeout-ms <ms>', `limit of one all-reduce (default ${DEFAULT_RUNTIME.allreduceTimeoutMs})`)
    // Choices are checked in runtimeFrom (ERR_BAD_FLAG naming the flag and the rule), not by commander's .choices(),
    // whose own message ("argument 'x' is invalid. Allowed choices are …") no other flag uses.
    .option('--allreduce <algo>', `${ALLREDUCE_CHOICES.join(' | ')} (auto: shared memory when all workers share this host, else ring; star: the baseline) (default ${DEFAULT_RUNTIME.allreduce})`)
    .option('--allreduce-dtype <dtype>', `wire dtype of gradients: ${ALLREDUCE_DTYPE_CHOICES.join(' | ')} (default ${DEFAULT_RUNTIME.allreduceDtype})`)
    .option('--bucket-mb <mb>', `gradient bucket size in MiB (default ${DEFAULT_RUNTIME.bucketMb})`)
    .option('--checkpoint-every <steps>', `also checkpoint every N optimizer steps; 0: epoch ends only, which turns off a resumed run's own (default ${DEFAULT_RUNTIME.checkpointEvery})`)
    .option('--keep <k>', `newest checkpoints kept, each ≈ 12 bytes per parameter: ResNet34 ≈ 262 MB (default ${DEFAULT_RUNTIME.keep}: newest + one fallback)`)
    .option('--resume <run-dir>', 'continue a run from its newest intact checkpoint')
    .option('--auto-resume', 'with --run-dir: continue the run there if it holds a checkpoint, else start it (for containers that restart with the same command)')
    .option('--elastic', 'continue with the surviving workers instead of respawning')
    .option('--max-restarts <n>', `respawns before the run checkpoints and stops (default ${DEFAULT_RUNTIME.maxRestarts})`)
    .option('--metrics-host <host>', `Prometheus endpoint host (default ${DEFAULT_RUNTIME.metricsHost})`)
    .option('--metrics-port <port>', `Prometheus endpoint port (default ${DEFAULT_RUNTIME.metricsPort}, or a free port printed at start when taken; 0 = any, -1 = off)`)
    .option('--metrics-linger-s <s>', 'keep /metrics up this many seconds after the run so Prometheus scrapes the end (default 0)')
    .option('--join-timeout-s <s>', `how long to wait for workers to join, seconds (default ${DEFAULT_RUNTIME.joinTimeoutS})`)
    .option('--rejoin-timeout-s <s>', 'how long to wait for replacements of lost workers before the run checkpoints and stops with ERR_WORKER_LOST, seconds (default: --join-timeout-s)')
    .option('--threads <n>', 'decode/augment threads per worker (default: automatic)')
    .option('--curve-keys <dir>', 'encrypt the control plane with CURVE: keypair loaded from (or created in, mode 0600) this directory; the public key is printed for worker --curve-server-key (docs/distributed.md)')
    .option('--plain', 'plain log lines instead of progress bars')
    .exitOverride();
  return withVersion(flagsOnly(cmd));
}

type Flags = Record<string, string | boolean | undefined>;

/**
 * Adds the flags of the run configuration (data, labels, split, model, batch, augmentation) to `cmd`: the value
 * flags of the fields in `only` (all when omitted) and the augmentation switches `--no-augment`, `--no-flip`,
 * `--flip-vert` always.
 */
export function addConfigFlags(cmd: Command, only?: ReadonlySet<keyof RunConfig>): Command {
  for (const [field, value, help] of CONFIG_FLAG_HELP) {
    if (value === null) cmd.option(RUN_CONFIG_FLAGS[field], help);
    else if (!only || only.has(field)) cmd.option(`${RUN_CONFIG_FLAGS[field]} <${value}>`, help);
  }
  return cmd;
}

/** The run-configuration fields the user set on `cmd`'s command line (after `cmd.parse`). */
export function configFlagValues(cmd: Command): Record<string, unknown> {
  const flags = cmd.opts<Flags>();
  const out: Record<string, unknown> = {};
  for (const [field] of CONFIG_FLAG_HELP) {
    // Negatable switches have a default (true) in commander: only a flag given on the command line counts.
    const key = cmd.options.find((o) => o.long === RUN_CONFIG_FLAGS[field])?.attributeName();
    if (key !== undefined && cmd.getOptionValueSource(key) === 'cli') out[field] = flags[key];
  }
  return out;
}

/** The numeric fastai `get_transforms` fields (their flags `--max-rotate` … `--p-lighting`). */
const AUGMENT_FIELDS: ReadonlySet<keyof RunConfig> = new Set<keyof RunConfig>(['maxRotate', 'maxZoom', 'maxLighting', 'maxWarp', 'pAffine', 'pLighting']);
/** The augmentation switches (`--no-augment`, `--no-flip`, `--flip-vert`), which every command with run flags takes. */
const SWITCH_FIELDS: ReadonlySet<string> = new Set(CONFIG_FLAG_HELP.filter(([, value]) => value === null).map(([field]) => field));

/**
 * Adds only the augmentation flags of a run to `cmd` (for commands that take no other run setting, e.g.
 * `npm run learn`): the eight fastai `get_transforms` flags (`--max-rotate`, `--max-zoom`, `--max-lighting`,
 * `--max-warp`, `--p-affine`, `--p-lighting`, `--no-flip`, `--flip-vert`) and `--no-augment`, with the same help.
 */
export function addAugmentFlags(cmd: Command): Command {
  return addConfigFlags(cmd, AUGMENT_FIELDS);
}

/**
 * The training augmentation that the flags of {@link addAugmentFlags} ask for (after `cmd.parse`), validated by the
 * same rules as a run's configuration.
 * @returns the transform settings (fastai's defaults for flags not given), or null with `--no-augment`
 * @throws TrainerError ERR_BAD_CONFIG naming the field, its flag, the rule and the value
 */
export function augmentFromFlags(cmd: Command): TransformSettings | null {
  const picked = Object.entries(configFlagValues(cmd))
    .filter(([k]) => AUGMENT_FIELDS.has(k as keyof RunConfig) || SWITCH_FIELDS.has(k));
  return augmentOf(resolveRunConfig(Object.fromEntries(picked) as RunConfigInput, { runDir: '.' }));
}

/** A `--lr` / `--fine-tune-lr` value written as a stage's `maxLr` (`3e-3`, `slice(3e-3)`, `slice(1e-6,1e-4)`). */
function maxLrOf(flag: string, text: string): string {
  const spec = parseLrSpec(text, flag);
  // The shorter of 0.0003 and 3e-4 (String() writes 1e-6 as 0.000001); both forms are the config file's.
  const num = (n: number): string => [String(n), n.toExponential().replace('e+', 'e')].reduce((a, b) => (b.length < a.length ? b : a));
  if (typeof spec === 'number') return num(spec);
  return spec.start === undefined ? `slice(${num(spec.end)})` : `slice(${num(spec.start)},${num(spec.end)})`;
}

function stageShorthandsOf(flags: Flags): StageShorthands | undefined {
  if (flags.epochs === undefined && flags.lr === undefined && flags.fineTuneEpochs === undefined && flags.fineTuneLr === undefined && flags.lrFind !== false) return undefined;
  const out: StageShorthands = {
    // 0 drops the frozen stage: `--load <model> --epochs 0` is fastai's learn.load(); learn.unfreeze(); fit_one_cycle(…).
    ...(flags.epochs !== undefined ? { epochs: checkInt('--epochs', flags.epochs, 0, MAX_STAGE_EPOCHS) } : {}),
    // The learning rate lr_find suggests, set as `npm run learn -- --lr` sets it; it took a config file of all the stages.
    ...(typeof flags.lr === 'string' ? { lr: maxLrOf('--lr', flags.lr) } : {}),
    // 0 drops the fine-tuning stage (fastai: stop after the frozen fit); it was refused, and only a config file could.
    ...(flags.fineTuneEpochs !== undefined ? { fineTuneEpochs: checkInt('--fine-tune-epochs', flags.fineTuneEpochs, 0, MAX_STAGE_EPOCHS) } : {}),
    ...(typeof flags.fineTuneLr === 'string' ? { fineTuneLr: maxLrOf('--fine-tune-lr', flags.fineTuneLr) } : {}),
    ...(flags.lrFind === false ? { lrFind: false as const } : {}),
  };
  if (out.epochs === 0 && out.lr !== undefined) {
    throw new TrainerError('ERR_BAD_FLAG', `--lr ${flags.lr as string} sets the max_lr of stage 1, which --epochs 0 drops; give one or the other`);
  }
  if (out.fineTuneEpochs === 0 && out.fineTuneLr !== undefined) {
    throw new TrainerError('ERR_BAD_FLAG', `--fine-tune-lr ${flags.fineTuneLr as string} sets the max_lr of stage 2, which --fine-tune-epochs 0 drops; give one or the other`);
  }
  return out;
}

/**
 * The stages with the shorthands applied: `--epochs` / `--lr` set the first fit stage's epochs / maxLr (epochs 0
 * removes it), `--fine-tune-epochs` / `--fine-tune-lr` the second's (epochs 0 removes it), `--no-lr-find` removes the
 * lr_find stages.
 * @param stages - the stages they change: the default plan, a config file's, or (on `--resume`) the run's own
 * @throws TrainerError ERR_BAD_FLAG when a shorthand names a fit stage the stages do not have (it was ignored), or
 *   when they leave no fit stage
 */
export function applyStageShorthands(s: StageShorthands, stages: RunConfig['stages']): RunConfig['stages'] {
  const out = stages.map((x) => ({ ...x }));
  const fits = out.filter((x) => x.kind !== 'lr_find');
  const missing = (flag: string, n: number, what = 'the epochs'): TrainerError => new TrainerError('ERR_BAD_FLAG',
    `${flag} sets ${what} of fit stage ${n}, but the stages have ${fits.length} fit stage(s) (${out.map((x) => x.name).join(', ')}); change the config file's stages instead`);
  if (s.epochs !== undefined && s.epochs > 0) {
    if (!fits[0]) throw missing('--epochs', 1);
    fits[0].epochs = s.epochs;
  }
  if (s.lr !== undefined) {
    if (!fits[0]) throw missing('--lr', 1, 'the max_lr');
    fits[0].maxLr = s.lr;
  }
  if (s.fineTuneEpochs !== undefined && s.fineTuneEpochs > 0) {
    if (!fits[1]) throw missing('--fine-tune-epochs', 2);
    fits[1].epochs = s.fineTuneEpochs;
  }
  if (s.fineTuneLr !== undefined) {
    if (!fits[1]) throw missing('--fine-tune-lr', 2, 'the max_lr');
    fits[1].maxLr = s.fineTuneLr;
  }
  const kept = out.filter((x) => !(x.kind === 'lr_find' && s.lrFind === false) && !(s.fineTuneEpochs === 0 && x === fits[1]) && !(s.epochs === 0 && x === fits[0]));
  if (!kept.some((x) => x.kind !== 'lr_find')) {
    throw new TrainerError('ERR_BAD_FLAG', `--epochs ${s.epochs ?? '(default)'} and --fine-tune-epochs ${s.fineTuneEpochs ?? '(default)'} leave no training stage of ${out.map((x) => x.name).join(', ')}; give one of them epochs ≥ 1`);
  }
  return kept;
}

/**
 * The stage shorthands of a `--resume` applied to the run's own stages. A run whose stages are the default plan's
 * (`stage-1`, `lr-find`, `stage-2`, some dropped by `--epochs 0`, `--no-lr-find` or `--fine-tune-epochs 0`) is
 * addressed as when it was made: `--epochs`/`--lr` set `stage-1`, `--fine-tune-epochs`/`--fine-tune-lr` set `stage-2`,
 * and a stage the run dropped stays dropped unless a flag brings it back (which the resume's check then refuses as
 * another plan). Other stages (a config file's) are addressed by position, as {@link applyStageShorthands}.
 * Which rule applies is where the run's stages came from (`stagesFrom`, recorded in its checkpoints): a config file's
 * stages named like the default plan's (only `stage-2`, or `lr-find, stage-2`) were taken for the default plan, so the
 * `--epochs 3` that set that `stage-2` when the run was made brought `stage-1` back on resume, and it was refused.
 * Runs recorded before `stagesFrom` (undefined) are told apart by their stages' names, as before.
 * Seen (tryout2): a `--load <model> --epochs 0 --fine-tune-epochs 2` run, resumed with its own command line, was
 * refused with '--fine-tune-epochs sets the epochs of fit stage 2, but the stages have 1 fit stage(s) (stage-2);
 * change the config file's stages instead' (its only fit stage is stage-2, and there was no config file).
 * @param s - the shorthands given with `--resume`
 * @param saved - the run's stages, from its checkpoint
 * @param stagesFrom - where those stages came from, as the checkpoint records it; undefined in older runs
 * @throws TrainerError ERR_BAD_FLAG as {@link applyStageShorthands}
 */
export function applyResumeStageShorthands(s: StageShorthands, saved: RunConfig['stages'], stagesFrom?: StagesFrom): RunConfig['stages'] {
  if (stagesFrom === 'config') return applyStageShorthands(s, saved);
  const ofPlan = (x: RunConfig['stages'][number]): boolean => DEFAULT_STAGES.some((d) => d.name === x.name && d.kind === x.kind);
  const names = saved.map((x) => x.name);
  const order = names.map((n) => DEFAULT_STAGES.findIndex((d) => d.name === n));
  if (saved.length === 0 || !saved.every(ofPlan) || order.some((k, i) => i > 0 && k <= order[i - 1]!)) return applyStageShorthands(s, saved);
  const full = DEFAULT_STAGES.map((d) => saved.find((x) => x.name === d.name) ?? d);
  const broughtBack = (name: string): boolean => name === DEFAULT_STAGES[0]!.name ? (s.epochs ?? 0) > 0 || s.lr !== undefined
    : name === DEFAULT_STAGES[2]!.name ? (s.fineTuneEpochs ?? 0) > 0 || s.fineTuneLr !== undefined : false;
  return applyStageShorthands(s, full).filter((x) => names.includes(x.name) || broughtBack(x.name));
}

/** Values of `--allreduce`. */
const ALLREDUCE_CHOICES: readonly RuntimeOptions['allreduce'][] = ['auto', 'ring', 'shm', 'star'];
/** Values of `--allreduce-dtype`. */
const ALLREDUCE_DTYPE_CHOICES: readonly RuntimeOptions['allreduceDtype'][] = ['float32', 'float16'];

/**
 * The value of a flag that takes one of a fixed set of words, or undefined when it was not given.
 * @throws TrainerError ERR_BAD_FLAG (see {@link checkChoice})
 */
function choice<T extends string>(flag: string, value: unknown, allowed: readonly T[]): T | undefined {
  return value === undefined ? undefined : checkChoice(flag, value, allowed);
}

function runtimeFrom(flags: Flags): RuntimeOptions {
  const r = runtimeFields(flags);
  checkRuntimeRules(r);
  return r;
}

/** The runtime settings of `flags`, each checked against its own flag's rule (not yet the rules between them). */
function runtimeFields(flags: Flags): RuntimeOptions {
  const int = (flag: string, key: string, min: number, max?: number): number | undefined =>
    flags[key] === undefined ? undefined : checkInt(flag, flags[key], min, max);
  const bind = typeof flags.bind === 'string' ? flags.bind : DEFAULT_RUNTIME.bind;
  if (!/^(tcp:\/\/[^:]+:\d+|ipc:\/\/.+)$/.test(bind)) {
    // `--bind 0.0.0.0:5555` (the address without its scheme) is answered with the form to write, as the worker's --connect.
    const hint = /^[^/:\s]+:\d+$/.test(bind) ? ` (did you mean tcp://${bind}?)` : '';
    throw new TrainerError('ERR_BAD_FLAG', `--bind must be tcp://host:port or ipc://path, got ${JSON.stringify(bind)}${hint}`);
  }
  // ZeroMQ takes the port modulo 65536 (tcp://h:99999 binds 34463), so the range is checked here.
  const port = /^tcp:\/\/.+:(\d+)$/.exec(bind)?.[1];
  if (port !== undefined && Number(port) > 65535) {
    throw new TrainerError('ERR_BAD_FLAG', `--bind port must be an integer in [0, 65535] (0 = any free port), got ${port}`);
  }
  const r: RuntimeOptions = {
    ...DEFAULT_RUNTIME,
    bind,
    bindGiven: typeof flags.bind === 'string',
    metricsPortGiven: flags.metricsPort !== undefined,
    heartbeatIntervalMs: int('--heartbeat-interval-ms', 'heartbeatIntervalMs', 10, MAX_TIMER_MS) ?? DEFAULT_RUNTIME.heartbeatIntervalMs,
    heartbeatTimeoutMs: int('--heartbeat-timeout-ms', 'heartbeatTimeoutMs', 50, MAX_TIMER_MS) ?? DEFAULT_RUNTIME.heartbeatTimeoutMs,
    allreduceTimeoutMs: int('--allreduce-timeout-ms', 'allreduceTimeoutMs', 100, MAX_TIMER_MS) ?? DEFAULT_RUNTIME.allreduceTimeoutMs,
    allreduce: choice('--allreduce', flags.allreduce, ALLREDUCE_CHOICES) ?? DEFAULT_RUNTIME.allreduce,
    allreduceDtype: choice('--allreduce-dtype', flags.allreduceDtype, ALLREDUCE_DTYPE_CHOICES) ?? DEFAULT_RUNTIME.allreduceDtype,
    bucketMb: int('--bucket-mb', 'bucketMb', 1, 1024) ?? DEFAULT_RUNTIME.bucketMb,
    checkpointEvery: int('--checkpoint-every', 'checkpointEvery', 0) ?? DEFAULT_RUNTIME.checkpointEvery,
    keep: int('--keep', 'keep', 1) ?? DEFAULT_RUNTIME.keep,
    resume: typeof flags.resume === 'string' ? flags.resume : null,
    autoResume: flags.autoResume === true,
    elastic: flags.elastic === true,
    maxRestarts: int('--max-restarts', 'maxRestarts', 0) ?? DEFAULT_RUNTIME.maxRestarts,
    metricsHost: typeof flags.metricsHost === 'string' ? flags.metricsHost : DEFAULT_RUNTIME.metricsHost,
    metricsPort: int('--metrics-port', 'metricsPort', -1, 65535) ?? DEFAULT_RUNTIME.metricsPort,
    metricsLingerS: int('--metrics-linger-s', 'metricsLingerS', 0, 3600) ?? DEFAULT_RUNTIME.metricsLingerS,
    joinTimeoutS: int('--join-timeout-s', 'joinTimeoutS', 1, 86_400) ?? DEFAULT_RUNTIME.joinTimeoutS,
    rejoinTimeoutS: int('--rejoin-timeout-s', 'rejoinTimeoutS', 1, 86_400) ?? DEFAULT_RUNTIME.rejoinTimeoutS,
    threads: int('--threads', 'threads', 0, 256) ?? DEFAULT_RUNTIME.threads,
    curveKeys: typeof flags.curveKeys === 'string' ? flags.curveKeys : null,
    plain: flags.plain === true || !process.stderr.isTTY, // progress is on stderr: bars only where it is a terminal
  };
  return r;
}

/**
 * The rules between runtime settings, checked once they are all known: a new run's flags, or a resumed run's flags
 * merged with the settings it keeps from the run ({@link inheritRuntime}).
 * @param prefix - put before the message, e.g. `--resume (…): ` when some values are the run's, not flags
 * @throws TrainerError ERR_BAD_FLAG for `--allreduce shm` with `--allreduce-dtype float16` (shared memory sends nothing
 *   to compress), or a `--heartbeat-timeout-ms` below 2 × `--heartbeat-interval-ms` (one late heartbeat would then
 *   declare a live peer dead)
 */
function checkRuntimeRules(r: RuntimeOptions, prefix = ''): void {
  if (r.allreduce === 'shm' && r.allreduceDtype !== 'float32') {
    throw new TrainerError('ERR_BAD_FLAG', `${prefix}--allreduce shm needs --allreduce-dtype float32 (shared memory sends nothing to compress), got ${r.allreduceDtype}; use --allreduce ring or auto for float16`);
  }
  if (r.heartbeatTimeoutMs < 2 * r.heartbeatIntervalMs) {
    throw new TrainerError('ERR_BAD_FLAG', `${prefix}--heartbeat-timeout-ms must be ≥ 2 × --heartbeat-interval-ms (${2 * r.heartbeatIntervalMs}), got ${r.heartbeatTimeoutMs}`);
  }
}

/**
 * Parses and validates a training command line.
 * @param argv - arguments after `coordinator` (and after `train` if given)
 * @throws TrainerError ERR_BAD_FLAG / ERR_BAD_CONFIG naming the flag or field and the rule; commander's own
 *   CommanderError for unknown flags and missing values
 */
export function parseTrainArgs(argv: readonly string[]): TrainCommand {
  const cmd = trainProgram();
  refuseUnknownCommand('coordinator', argv, COORDINATOR_COMMANDS);
  // fastai's name for it; commander's nearest flag was --max-warp, an augmentation setting.
  const maxLr = argv.find((a) => /^--(fine-tune-)?max-lr(=|$)/.test(a));
  if (maxLr !== undefined) {
    const flag = maxLr.split('=')[0]!;
    throw new TrainerError('ERR_BAD_FLAG', `unknown option '${flag}': fit_one_cycle's max_lr is ${flag.startsWith('--fine-tune-') ? '--fine-tune-lr (stage 2)' : '--lr (stage 1; --fine-tune-lr for stage 2)'}`);
  }
  cmd.parse([...argv], { from: 'user' });
  refuseStrayArguments(cmd, COORDINATOR_COMMANDS);
  const flags = cmd.opts<Flags>();
  const file: RunConfigInput = typeof flags.config === 'string' ? readConfigFile(flags.config) : {};
  const fromFlags = configFlagValues(cmd);
  const explicit: RunConfigInput = { ...file, ...fromFlags };
  // '' resolved to the current folder: `--run-dir "$RUN"` with RUN unset aimed the run at the checkout itself.
  if (typeof explicit.runDir === 'string' && explicit.runDir.trim() === '') {
    throw new TrainerError('ERR_BAD_FLAG', `--run-dir must be a non-empty path (default runs/<date-time>), got ${JSON.stringify(explicit.runDir)}`);
  }
  const shorthands = stageShorthandsOf(flags);
  const fileStages = explicit.stages !== undefined;
  if (shorthands !== undefined) (explicit as Record<string, unknown>).stages = applyStageShorthands(shorthands, resolveRunConfig(explicit).stages);
  const config = resolveRunConfig(explicit, { runDir: explicit.runDir ?? defaultRunDir() });
  checkAccumAgrees(explicit, config);
  const runtimeGiven = new Set((Object.keys(DEFAULT_RUNTIME) as (keyof RuntimeOptions)[]).filter((k) => cmd.getOptionValueSource(k) === 'cli'));
  return { config, runtime: runtimeFrom(flags), explicit, runtimeGiven, stagesFrom: fileStages ? 'config' : 'default', ...(shorthands !== undefined && !fileStages ? { stageShorthands: shorthands } : {}) };
}

/** Runtime fields a resumed run never takes from the run it resumes (they describe this invocation only). */
const RUNTIME_NOT_INHERITED: ReadonlySet<keyof RuntimeOptions> = new Set(['resume', 'autoResume', 'plain', 'bindGiven', 'metricsPortGiven']);

/**
 * The runtime of a resumed run: every setting whose flag is not on this command line is the run's own (from the
 * `runtime` its `config.json` recorded), not the default. A run started with `--keep 5 --checkpoint-every 1` and
 * resumed with `--resume <dir>` alone used to fall back to `--keep 2`, pruning three of the user's checkpoints at
 * its first checkpoint, and to epoch-end checkpoints; `--allreduce star`, `--allreduce-dtype`, `--bucket-mb` (which
 * change the float32 sums), `--elastic`, `--curve-keys` (remote workers hold its key) and the timeouts likewise.
 * A flag given again wins, as for the run configuration's runtime-free fields.
 * @param saved - the `runtime` object of the run's config.json (unknown or missing fields are ignored)
 * @param log - receives one line naming the settings taken from the run, if any differ from this command line's
 * @throws TrainerError ERR_BAD_FLAG when the merged settings break a rule between them ({@link checkRuntimeRules})
 */
export function inheritRuntime(cmd: TrainCommand, saved: Partial<Record<keyof RuntimeOptions, unknown>>, log: (line: string) => void): RuntimeOptions {
  const given = cmd.runtimeGiven ?? new Set<keyof RuntimeOptions>();
  const merged: Record<string, unknown> = { ...cmd.runtime };
  const taken: string[] = [];
  for (const key of Object.keys(DEFAULT_RUNTIME) as (keyof RuntimeOptions)[]) {
    if (RUNTIME_NOT_INHERITED.has(key) || given.has(key) || !(key in saved)) continue;
    const value = saved[key] === undefined ? null : saved[key];
    const fallback = DEFAULT_RUNTIME[key];
    if (value === null ? fallback !== null : typeof value !== typeof fallback && fallback !== null) continue; // not this field's type
    if (JSON.stringify(value) === JSON.stringify(merged[key])) continue;
    checkSavedRuntime(cmd.runtime.resume, key, value);
    merged[key] = value;
    taken.push(`--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} ${value === true ? '' : String(value)}`.trim());
  }
  // A port the run was given is still asked for (never replaced by a free one); a default one stays a default.
  if ('bind' in saved && !given.has('bind')) merged.bindGiven = saved.bindGiven === true;
  if ('metricsPort' in saved && !given.has('metricsPort')) merged.metricsPortGiven = saved.metricsPortGiven === true;
  const r = merged as unknown as RuntimeOptions;
  checkRuntimeRules(r, '--resume (a flag not given again keeps this run\'s value): ');
  if (taken.length > 0) log(`--resume: keeping this run's ${taken.join(', ')} (give a flag to change one)`);
  return r;
}

/**
 * A runtime setting a resumed run keeps from its `config.json` passes the rule its flag has. Before, the file's values
 * were taken as they were: an edited `"heartbeatIntervalMs": -5` reached the workers, which refused it and the run
 * ended `ERR_WORKER_LOST … exited with code 2 before joining`; `"allreduce": "pigeon"` ended it with `ERR_PROTOCOL:
 * rank 0: setup: setup.allreduce must be auto|ring|shm|star`.
 * @throws TrainerError ERR_BAD_FLAG naming the file, the field, its flag and the rule
 */
function checkSavedRuntime(runDir: string | null, key: keyof RuntimeOptions, value: unknown): void {
  try {
    runtimeFields({ [key]: value } as unknown as Flags);
  } catch (err) {
    if (!(err instanceof TrainerError)) throw err;
    const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    const file = runDir === null ? RUN_CONFIG_FILE : join(runDir, RUN_CONFIG_FILE);
    throw new TrainerError('ERR_BAD_FLAG', `--resume: ${file} records runtime.${key} ${JSON.stringify(value)}, which its flag refuses (${err.message}); give ${flag} to choose a value, or correct ${file}`, { cause: err });
  }
}

/**
 * `--global-bs` picks the accumulation, so an `--accum` given beside it (flag or config file) must be the one it picks:
 * `--accum 2 --global-bs 32 --bs 8 --workers 1` used to run with accum 4, silently dropping the `--accum 2`.
 * @throws TrainerError ERR_BAD_CONFIG naming both flags, the product and its factors
 */
function checkAccumAgrees(explicit: RunConfigInput, config: RunConfig): void {
  if (explicit.accum === undefined || explicit.globalBs === undefined || config.globalBs === null || config.expect === 0) return;
  const product = config.bs * config.expect * config.accum;
  if (product === config.globalBs) return;
  throw new TrainerError('ERR_BAD_CONFIG', `--accum ${config.accum} and --global-bs ${config.globalBs} disagree: bs × workers × accum = `
    + `${config.bs} × ${config.expect} × ${config.accum} = ${product}; give only one of them (--global-bs picks the accumulation)`);
}

function defaultRunDir(): string {
  return `runs/${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}`;
}
