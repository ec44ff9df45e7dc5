/**
 * The run's checkpoints as the coordinator writes and resumes them: rank 0's replica state blob plus the run's
 * position, history, configuration and class names, written atomically by `contract/checkpoint-format.ts`.
 *
 * Resume: the configuration comes from the checkpoint; flags given again must agree with it (fields that only
 * change how the run executes — workers, backend — may differ), otherwise the resume is refused
 * before anything starts.
 */
import { existsSync, statfsSync } from 'node:fs';
import { resolve } from 'node:path';
import { join, relative } from 'node:path';
import type { DataBunch } from '../training/data/databunch.js';
import { listCheckpoints, loadLatestCheckpoint, sha256, writeCheckpointDetailed, type WrittenCheckpoint } from '../contract/checkpoint-format.js';
import { checkCheckpointMeta } from './checkpoint-meta.js';
import type { RunConfig, RunConfigInput } from '../contract/config.js';
import { resolveRunConfig, settingName } from '../contract/config.js';
import { TrainerError, isTrainerError } from '../contract/errors.js';
import { formatBytes } from './disk.js';
import { stageDataEpochBase, trainingSeed, type StagePlan } from '../contract/plan/plan.js';
import type { ScaleOut } from './scale-out.js';
import type { RunHistory } from './history.js';
import { applyResumeStageShorthands, inheritRuntime, STAGES_SETTING, type StageShorthands, type StagesFrom, type TrainCommand } from './options.js';
import { resumeCommandLine } from './shell-arg.js';
import { readRunConfigFile } from './run-config-file.js';
import type { StartRecord } from './load-model.js';
import { RUN_CONFIG_FILE } from '../contract/run-files.js';
import { counted } from '../contract/log-text.js';

/** The stage plan as a checkpoint records it (resume checks it is unchanged). */
export interface CheckpointPlan {
  /** Images per optimizer step over all workers and accumulation steps. */
  readonly globalBs: number;
  /** Accumulation steps at the checkpoint's world size. */
  readonly accum: number;
  /** Factor of the lr scaling rule applied to every max lr. */
  readonly lrFactor: number;
  /** Per stage: kind, steps per epoch, total steps and max lr per layer group (after `lrFactor`). */
  readonly stages: readonly { name: string; kind: string; stepsPerEpoch: number; totalSteps: number; maxLrs: readonly number[] }[];
}

/**
 * Where the data sampler is: epoch e of the training set is `epochOrder(trainCount, seed, e)` and global step k of
 * the epoch reads positions [k·G, (k+1)·G) (`contract/plan/plan.ts`), so (dataEpoch, stepInEpoch) is the whole state.
 */
export interface SamplerState {
  readonly dataEpoch: number;
  readonly stepInEpoch: number;
  /** Seed of the epoch shuffles, augmentation and dropout (`--seed`, mixed with a loaded model's sha256: `plan.ts` trainingSeed; dropout of micro-batch m at global step k uses hashSeed(seed, k, m, 0): `plan.ts` dropoutSeed). */
  readonly seed: number;
}

/** What a checkpoint's manifest holds besides the state blob (weights, BN statistics, optimizer moments and step counts). */
export interface CheckpointMeta {
  readonly runId: string;
  readonly config: RunConfig;
  readonly classes: readonly string[];
  /** Position (stage, step in stage, global step), per-stage epoch rows, step losses and lrs, smoothed-loss state, lr_find results. */
  readonly history: RunHistory;
  /** Absent in checkpoints written before it was added. */
  readonly plan?: CheckpointPlan;
  readonly sampler?: SamplerState;
  /** Ring size and generation when the checkpoint was taken. */
  readonly worldSize?: number;
  readonly generation?: number;
  /** {@link dataFingerprint} of the run's data (absent in checkpoints written before it was added). */
  readonly data?: string;
  /** The model a `--load` run started from (absent: the run started from `pretrained`). */
  readonly startedFrom?: StartRecord;
  /** Where the run's stages came from ({@link StagesFrom}); absent in checkpoints written before it was added. */
  readonly stagesFrom?: StagesFrom;
}

/** Inputs of {@link checkpointMeta}. */
export interface CheckpointMetaInput {
  readonly runId: string;
  readonly config: RunConfig;
  readonly classes: readonly string[];
  readonly history: RunHistory;
  readonly stages: readonly StagePlan[];
  readonly scale: ScaleOut;
  readonly worldSize: number;
  readonly generation: number;
  readonly dataFingerprint?: string;
  readonly startedFrom?: StartRecord | null;
  /** Where the run's stages came from; recorded so a `--resume` addresses the stage shorthands as the run was made. */
  readonly stagesFrom?: StagesFrom;
  /**
   * Seed the workers train with (`sampler.seed`); default {@link trainingSeed} of the config's seed and `startedFrom`.
   * A resumed run passes its checkpoint's own, so a run checkpointed by an older build keeps its data order.
   */
  readonly samplerSeed?: number;
}

/**
 * What a run trains on, independent of where the data lies: sha256 of every training and validation item's path
 * relative to the image folder and its label, in split order. A run resumed with `--data` at another place (the
 * folder moved, another mount point, a copy on another machine) must find the same fingerprint there.
 */
export function dataFingerprint(data: Pick<DataBunch, 'root' | 'paths' | 'labels' | 'train' | 'valid'>): string {
  const items = (ix: Int32Array): Array<[string, number]> => Array.from(ix, (i) => [relative(data.root, data.paths[i]!), data.labels[i]!]);
  return sha256(Buffer.from(JSON.stringify({ train: items(data.train), valid: items(data.valid) })));
}

/** Data epoch of a fit stage's step: fit-stage epochs before it, plus the epoch within it (lr_find has its own). */
export function dataEpochOf(stages: readonly StagePlan[], stageIndex: number, stepInStage: number): { dataEpoch: number; stepInEpoch: number } {
  const stage = stages[stageIndex];
  const base = stageDataEpochBase(stages, stageIndex);
  if (!stage || stage.config.kind === 'lr_find') return { dataEpoch: base, stepInEpoch: 0 };
  return { dataEpoch: base + Math.floor(stepInStage / stage.stepsPerEpoch), stepInEpoch: stepInStage % stage.stepsPerEpoch };
}

/** Builds the manifest metadata of a checkpoint (a deep copy: the history keeps changing after the write). */
export function checkpointMeta(input: CheckpointMetaInput): CheckpointMeta {
  const { position } = input.history;
  return JSON.parse(JSON.stringify({
    runId: input.runId, config: input.config, classes: input.classes, history: input.history,
    plan: {
      globalBs: input.scale.globalBs, accum: input.scale.accum, lrFactor: input.scale.lrFactor,
      stages: input.stages.map((s) => ({ name: s.config.name, kind: s.config.kind, stepsPerEpoch: s.stepsPerEpoch, totalSteps: s.totalSteps, maxLrs: s.maxLrs })),
    },
    sampler: { ...dataEpochOf(input.stages, position.stageIndex, position.stepInStage), seed: input.samplerSeed ?? trainingSeed(input.config.seed, input.startedFrom?.sha256 ?? null) },
    worldSize: input.worldSize, generation: input.generation, data: input.dataFingerprint,
    ...(input.startedFrom ? { startedFrom: input.startedFrom } : {}),
    ...(input.stagesFrom ? { stagesFrom: input.stagesFrom } : {}),
  } satisfies CheckpointMeta)) as CheckpointMeta;
}

/**
 * Checks that a resumed run computed the same plan as the checkpointed one (same data size, global batch, steps
 * and max lrs), so it continues with the same schedule and data order.
 * @throws TrainerError ERR_CHECKPOINT naming what changed
 */
export function checkResumedPlan(point: ResumePoint, stages: readonly StagePlan[], scale: ScaleOut): void {
  const saved = point.meta.plan;
  if (!saved) return;
  if (saved.globalBs !== scale.globalBs) throw new TrainerError('ERR_CHECKPOINT', `--resume: the global batch would be ${scale.globalBs}, the run used ${saved.globalBs}; the worker count must divide it (bs × workers × accum)`);
  const now = stages.map((s) => ({ name: s.config.name, kind: s.config.kind, stepsPerEpoch: s.stepsPerEpoch, totalSteps: s.totalSteps, maxLrs: s.maxLrs }));
  for (let i = 0; i < Math.max(now.length, saved.stages.length); i++) {
    if (JSON.stringify(now[i]) !== JSON.stringify(saved.stages[i])) {
      throw new TrainerError('ERR_CHECKPOINT', `--resume: stage ${i} would be ${JSON.stringify(now[i])}, the run had ${JSON.stringify(saved.stages[i])} (did the data change?)`);
    }
  }
}

/** A checkpoint loaded for resuming. */
export interface ResumePoint {
  readonly dir: string;
  readonly state: Uint8Array;
  readonly meta: CheckpointMeta;
}

/** Settings that may change between a run and its resume. */
export const RESUME_MAY_DIFFER: ReadonlySet<keyof RunConfig> = new Set(['workers', 'expect', 'backend', 'runDir', 'data']);

/**
 * The error of a checkpoint that could not be written, saying what the user can do: on a full disk (ENOSPC, EDQUOT)
 * how much it needs and how much is free; in every case whether an earlier checkpoint is intact to resume from.
 * @param free - bytes available on the run directory's file system, or null when unknown
 * @param newestDir - the newest complete checkpoint on disk, or null
 * @param onDisk - complete checkpoints on disk now. A new checkpoint is written before the oldest is pruned, so a
 *   lower `--keep` frees space only when more than one is on disk; with one, the advice was a dead end.
 */
export function checkpointWriteFailure(err: TrainerError, runDir: string, stateBytes: number, free: number | null, newestDir: string | null, onDisk: number): TrainerError {
  const fewer = onDisk > 1
    ? `, or keep fewer checkpoints with --keep (${onDisk} on disk now)`
    : ' (--keep cannot help: the previous checkpoint stays until the next one is complete, so the disk needs room for two)';
  const full = /ENOSPC|EDQUOT/.test(err.message)
    ? ` (the disk is full: a checkpoint needs about ${formatBytes(stateBytes)}${free === null ? '' : `, ${formatBytes(free)} are free`}; free some space${fewer})` : '';
  const next = newestDir === null
    ? 'no earlier checkpoint of this run is on disk'
    : `the newest checkpoint, ${newestDir}, is intact: resume from it with: ${resumeCommandLine(runDir)}`;
  return new TrainerError('ERR_CHECKPOINT', `${err.message}${full}; ${next}`, { cause: err });
}

/** Writes checkpoints of one run. */
export class CheckpointStore {
  /** The newest checkpoint this store wrote: global step, state file and its sha256 (null before the first). */
  newest: { readonly globalStep: number; readonly stateFile: string; readonly sha256: string } | null = null;

  constructor(private readonly runDir: string, private readonly keep: number) {}

  /**
   * Writes one checkpoint at the history's global step; a state identical to the newest checkpoint's is
   * hard-linked, not written again. @returns its directory, what was linked and the bytes written
   */
  write(meta: CheckpointMeta, state: Uint8Array): WrittenCheckpoint {
    let written: WrittenCheckpoint;
    try {
      written = writeCheckpointDetailed(this.runDir, meta.history.position.globalStep, new Map([['state.safetensors', state]]), meta, this.keep);
    } catch (err) {
      if (!isTrainerError(err, 'ERR_CHECKPOINT')) throw err;
      let free: number | null = null;
      try {
        const fs = statfsSync(this.runDir);
        free = fs.bavail * fs.bsize;
      } catch { /* the message goes without the free space */ }
      const onDisk = listCheckpoints(this.runDir);
      throw checkpointWriteFailure(err, this.runDir, state.byteLength, free, onDisk.at(-1) ?? null, onDisk.length);
    }
    this.newest = { globalStep: meta.history.position.globalStep, stateFile: join(written.dir, 'state.safetensors'), sha256: written.files['state.safetensors']!.sha256 };
    return written;
  }

  /**
   * Starts a resumed run from the checkpoint it loaded, as if this store had written it: a stage model saved at that
   * step (a run resumed after its last epoch's checkpoint, whose final checkpoint failed on a full disk) shares the
   * checkpoint's file. Before, it was written again in full (65 MB for resnet10 unfrozen), and on the nearly full
   * disk that had stopped the run, the resume failed the same way.
   */
  resumedFrom(point: ResumePoint): void {
    this.newest = { globalStep: point.meta.history.position.globalStep, stateFile: join(point.dir, 'state.safetensors'), sha256: sha256(point.state) };
  }

  /** The newest checkpoint's state file when it holds exactly `state` (a stage model saved after it can share it). */
  sameStateFile(state: Uint8Array): string | null {
    return this.newest !== null && existsSync(this.newest.stateFile) && sha256(state) === this.newest.sha256 ? this.newest.stateFile : null;
  }
}

/**
 * Loads the newest intact checkpoint of `runDir` and merges the flags given again.
 * @param explicitGiven - settings the user gave on this command line (flags or --config)
 * @param log - receives one line per skipped (corrupt/truncated) checkpoint
 * @param shorthands - `--epochs`/`--fine-tune-epochs`/`--no-lr-find` as given, applied to the run's own stages
 * @throws TrainerError ERR_BAD_FLAG when `runDir` does not exist or has no `checkpoints/`, a flag disagrees with the
 *   run, or a `--run-dir` names another folder; ERR_CHECKPOINT when its checkpoints/ holds no intact checkpoint
 */
export function loadResumePoint(runDir: string, explicitGiven: RunConfigInput, log: (line: string) => void, shorthands?: StageShorthands): { point: ResumePoint; config: RunConfig } {
  // A path that does not exist is a bad flag (exit 2, nothing started), not a failed run.
  if (!existsSync(runDir)) throw new TrainerError('ERR_BAD_FLAG', `--resume ${runDir}: no such run directory`);
  // A resumed run goes on in its own folder; a --run-dir naming another was silently ignored.
  if (typeof explicitGiven.runDir === 'string' && resolve(explicitGiven.runDir) !== resolve(runDir)) {
    throw new TrainerError('ERR_BAD_FLAG', `--resume ${runDir} continues the run in that folder, but --run-dir names another (${explicitGiven.runDir}): drop --run-dir, or copy the run folder there and --resume the copy`);
  }
  // No checkpoints/ at all: a folder given by mistake (the data, an empty folder) or a run that never checkpointed is a
  // bad flag (exit 2), as a path that does not exist; it was ERR_CHECKPOINT, exit 1, the code of a failed run.
  if (!existsSync(join(runDir, 'checkpoints'))) {
    throw new TrainerError('ERR_BAD_FLAG', existsSync(join(runDir, RUN_CONFIG_FILE))
      ? `--resume ${runDir}: the run there stopped before its first checkpoint (no checkpoints/ in it): nothing to resume; start it again without --resume`
      : `--resume ${runDir}: not a run directory (no checkpoints/ in it); --resume takes the folder a run printed (runs/<date-time>)`);
  }
  const loaded = loadLatestCheckpoint(runDir, checkCheckpointMeta);
  if (!loaded) throw new TrainerError('ERR_CHECKPOINT', `--resume ${runDir}: no checkpoint in ${resolve(runDir, 'checkpoints')} (not a run directory, or the run stopped before its first checkpoint)`);
  for (const line of loaded.skipped) log(line);
  const saved = loaded.manifest.meta.config;
  // The stage shorthands change the run's own stages, not the default plan: `--resume <dir> --fine-tune-epochs 1` of
  // a run made with `--epochs 3 --fine-tune-epochs 1 --no-lr-find` was refused as if it asked for 4 epochs and lr_find.
  const explicit: RunConfigInput = shorthands === undefined ? explicitGiven
    : { ...explicitGiven, stages: applyResumeStageShorthands(shorthands, saved.stages, loaded.manifest.meta.stagesFrom) };
  // The checkpoint holds the resolved expect (= the old --workers by default): a resume with only --workers N
  // expects N, as a new run would, instead of waiting for the old world size that N local workers never reach, or
  // (N above it) being refused with 'expect must be an integer ≥ workers (2), got 1'.
  const expectFollows: RunConfigInput = explicit.workers !== undefined && explicit.expect === undefined ? { expect: 0 } : {};
  const given = resolveRunConfig(saved as unknown as RunConfigInput, explicit, expectFollows);
  for (const key of Object.keys(explicit) as (keyof RunConfig)[]) {
    if (RESUME_MAY_DIFFER.has(key)) continue;
    if (JSON.stringify(given[key]) !== JSON.stringify(saved[key])) {
      const show = (c: RunConfig): string => (key === 'stages' ? stagesText(c.stages) : JSON.stringify(c[key]));
      throw new TrainerError('ERR_BAD_FLAG', `--resume ${runDir}: ${key === 'stages' ? STAGES_SETTING : settingName(key)} was ${show(saved)} in this run, got ${show(given)}; drop the flag or start a new run`);
    }
  }
  const overrides = { ...pick(explicit, RESUME_MAY_DIFFER), runDir, ...expectFollows };
  const config = resolveRunConfig(saved as unknown as RunConfigInput, overrides);
  const state = loaded.files.get('state.safetensors');
  if (!state) throw new TrainerError('ERR_CHECKPOINT', `${loaded.dir} has no state.safetensors`);
  return { point: { dir: loaded.dir, state, meta: loaded.manifest.meta }, config };
}

/** The `runtime` the run recorded in its config.json ({} when the file is missing or unreadable: defaults apply). */
function savedRuntime(runDir: string): Record<string, unknown> {
  const file = readRunConfigFile(runDir);
  return file.state === 'read' ? file.runtime ?? {} : {};
}

/** Stages as one line: `stage-1 (one_cycle, 3 epochs, frozen), lr-find (lr_find), stage-2 (one_cycle, 1 epoch, slice(1e-6,1e-4))`. */
function stagesText(stages: RunConfig['stages']): string {
  return stages.map((s) => (s.kind === 'lr_find' ? `${s.name} (lr_find)`
    : `${s.name} (${s.kind}, ${counted(s.epochs, 'epoch')}, ${s.maxLr}${s.frozen ? ', frozen' : ''})`)).join(', ') || 'none';
}

function pick(input: RunConfigInput, keys: ReadonlySet<string>): RunConfigInput {
  return Object.fromEntries(Object.entries(input).filter(([k]) => keys.has(k)));
}

/**
 * `--auto-resume`: the command as given when `--run-dir` holds no checkpoint (a new run starts there), else that of
 * `--resume <run-dir>` (then {@link resumeCommand} applies: the flags given again must agree with the run). For a
 * container restarted with its command line unchanged (k8s, compose): resume what the last start left, as Lightning's
 * `ckpt_path="last"` or mmengine's `resume="auto"`. One log line says which.
 * @throws TrainerError ERR_BAD_FLAG with `--resume` as well, or without `--run-dir`
 */
export function autoResumeCommand(cmd: TrainCommand, log: (line: string) => void): TrainCommand {
  if (!cmd.runtime.autoResume) return cmd;
  if (cmd.runtime.resume !== null) {
    throw new TrainerError('ERR_BAD_FLAG', '--auto-resume and --resume: give one (--resume <run-dir> continues that run; --auto-resume continues the --run-dir when it holds a checkpoint, else starts it)');
  }
  if (cmd.explicit.runDir === undefined) {
    throw new TrainerError('ERR_BAD_FLAG', '--auto-resume needs --run-dir <dir>: without it every start makes a new runs/<date-time>, so there is never a run to continue');
  }
  const dir = cmd.config.runDir;
  const newest = listCheckpoints(dir).at(-1);
  if (newest === undefined) {
    log(`--auto-resume: ${dir} holds no checkpoint: starting a new run there`);
    return cmd;
  }
  log(`--auto-resume: ${dir} holds a run (newest checkpoint ${relative(dir, newest)}): resuming it`);
  return { ...cmd, runtime: { ...cmd.runtime, resume: dir } };
}

/**
 * The command of a `--resume`: the run's configuration from its newest intact checkpoint (checked against the flags
 * given again), its recorded runtime flags where none is given, and the point to resume from.
 * @throws TrainerError as {@link loadResumePoint}
 */
export function resumeCommand(cmd: TrainCommand, log: (line: string) => void): { cmd: TrainCommand; point: ResumePoint } {
  const runDir = cmd.runtime.resume!;
  const { point, config } = loadResumePoint(runDir, cmd.explicit, log, cmd.stageShorthands);
  return { cmd: { ...cmd, config, runtime: inheritRuntime(cmd, savedRuntime(runDir), log) }, point };
}
