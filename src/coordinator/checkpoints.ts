/**
 * The run's checkpoints as the coordinator writes and resumes them: rank 0's replica state blob plus the run's
 * position, history, configuration and class names, written atomically by `shared/checkpoint.ts`.
 *
 * Resume: the configuration comes from the checkpoint; flags given again must agree with it (fields that only
 * change how the run executes — workers, backend — may differ), otherwise the resume is refused
 * before anything starts.
 */
import { resolve } from 'node:path';
import { loadLatestCheckpoint, writeCheckpoint } from '../shared/checkpoint.js';
import type { RunConfig, RunConfigInput } from '../shared/config.js';
import { resolveRunConfig } from '../shared/config.js';
import { TrainerError } from '../shared/errors.js';
import type { RunHistory } from './history.js';
import type { TrainCommand } from './options.js';

/** What a checkpoint's manifest holds besides the state blob. */
export interface CheckpointMeta {
  readonly runId: string;
  readonly config: RunConfig;
  readonly classes: readonly string[];
  readonly history: RunHistory;
}

/** A checkpoint loaded for resuming. */
export interface ResumePoint {
  readonly dir: string;
  readonly state: Uint8Array;
  readonly meta: CheckpointMeta;
}

/** Settings that may change between a run and its resume. */
export const RESUME_MAY_DIFFER: ReadonlySet<keyof RunConfig> = new Set(['workers', 'expect', 'backend', 'runDir']);

/** Writes checkpoints of one run. */
export class CheckpointStore {
  constructor(private readonly runDir: string, private readonly keep: number) {}

  /** Writes one checkpoint at the history's global step. @returns its directory */
  write(meta: CheckpointMeta, state: Uint8Array): string {
    return writeCheckpoint(this.runDir, meta.history.position.globalStep, new Map([['state.safetensors', state]]), meta, this.keep);
  }
}

/**
 * Loads the newest intact checkpoint of `runDir` and merges the flags given again.
 * @param explicit - settings the user gave on this command line (flags or --config)
 * @param log - receives one line per skipped (corrupt/truncated) checkpoint
 * @throws TrainerError ERR_CHECKPOINT when there is none; ERR_BAD_FLAG when a flag disagrees with the run
 */
export function loadResumePoint(runDir: string, explicit: RunConfigInput, log: (line: string) => void): { point: ResumePoint; config: RunConfig } {
  const loaded = loadLatestCheckpoint<CheckpointMeta>(runDir);
  if (!loaded) throw new TrainerError('ERR_CHECKPOINT', `--resume ${runDir}: no checkpoint in ${resolve(runDir, 'checkpoints')}`);
  for (const line of loaded.skipped) log(line);
  const saved = loaded.manifest.meta.config;
  const given = resolveRunConfig(saved as unknown as RunConfigInput, explicit);
  for (const key of Object.keys(explicit) as (keyof RunConfig)[]) {
    if (RESUME_MAY_DIFFER.has(key)) continue;
    if (JSON.stringify(given[key]) !== JSON.stringify(saved[key])) {
      throw new TrainerError('ERR_BAD_FLAG', `--resume ${runDir}: ${key} was ${JSON.stringify(saved[key])} in this run, got ${JSON.stringify(given[key])}; drop the flag or start a new run`);
    }
  }
  const config = resolveRunConfig(saved as unknown as RunConfigInput, { ...pick(explicit, RESUME_MAY_DIFFER), runDir });
  const state = loaded.files.get('state.safetensors');
  if (!state) throw new TrainerError('ERR_CHECKPOINT', `${loaded.dir} has no state.safetensors`);
  return { point: { dir: loaded.dir, state, meta: loaded.manifest.meta }, config };
}

function pick(input: RunConfigInput, keys: ReadonlySet<string>): RunConfigInput {
  return Object.fromEntries(Object.entries(input).filter(([k]) => keys.has(k)));
}

/** Builds the command of a resumed run. */
export function resumeCommand(cmd: TrainCommand, log: (line: string) => void): { cmd: TrainCommand; point: ResumePoint } {
  const runDir = cmd.runtime.resume!;
  const { point, config } = loadResumePoint(runDir, cmd.explicit, log);
  return { cmd: { ...cmd, config }, point };
}
