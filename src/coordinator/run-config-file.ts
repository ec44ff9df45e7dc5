/**
 * A run directory's `config.json`: the resolved run configuration and the runtime flags the run was started with,
 * written once by the coordinator (atomically: a kill leaves the old file or the new one) and read back by
 * `--resume` (which runtime flags to inherit) and by `interpret` / `predict` (the data and model settings).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../contract/atomic-write.js';
import { LR_FIND_RECORDED, type RunConfig, type StageConfig } from '../contract/config.js';
import type { RuntimeOptions, StagesFrom } from './options.js';
import type { StartRecord } from './load-model.js';

import { RUN_CONFIG_FILE } from '../contract/run-files.js';

export { RUN_CONFIG_FILE };

/** What reading a run's `config.json` found. */
export type RunConfigFile =
  | { readonly state: 'missing'; readonly path: string }
  /** Parsed; `config` / `runtime` absent when the file lacks that object (an older or hand-edited file). */
  | { readonly state: 'read'; readonly path: string; readonly config?: Record<string, unknown>; readonly runtime?: Record<string, unknown>;
    /** The model a `--load` run started from, when the file records one whole (path, what, sha256). */
    readonly startedFrom?: StartRecord }
  /** Present but not JSON (cut short by a full disk before atomic writes, edited by hand): `fault` says why. */
  | { readonly state: 'unreadable'; readonly path: string; readonly fault: string };

/**
 * Writes `config.json` atomically: `{ config, runtime }`, the runtime without `resume` (a resumed run's file must
 * not make the next resume think it was itself a resume), and `startedFrom` for a run started with `--load`.
 * @param runDir - the run directory, which must exist
 * @param startedFrom - the model a `--load` run started from (file, what it is, sha256), or null
 * @param stagesFrom - where the run's stages came from (default plan or config file), for a `--resume`'s shorthands
 * @throws the file system's error as {@link writeFileAtomicSync} throws it, not wrapped in a TrainerError: a
 *   `NodeJS.ErrnoException` with its `code` (`ENOSPC` or `EDQUOT` on a full disk, `EACCES`, `ENOENT` when `runDir` is
 *   gone, `EROFS`). A failed write or rename leaves the previous `config.json`, if any, as it was, and no temporary
 *   file; a failed fsync of the folder comes after the rename (the new file is in place).
 */
export function writeRunConfigFile(runDir: string, config: RunConfig, runtime: RuntimeOptions, startedFrom: StartRecord | null = null, stagesFrom?: StagesFrom): void {
  const recorded = { ...config, stages: config.stages.map(recordedStage) };
  const start = startedFrom === null ? {} : { startedFrom: { ...startedFrom, optimizer: 'fresh (the loaded model\'s optimizer state is not loaded)' } };
  writeFileAtomicSync(join(runDir, RUN_CONFIG_FILE), JSON.stringify({ config: recorded, runtime: { ...runtime, resume: undefined }, ...start, ...(stagesFrom ? { stagesFrom } : {}) }, null, 2));
}

/** An lr_find stage as `config.json` records it: what the sweep runs (fastai 1.0.61 `lr_find`'s parameters). */
export interface RecordedLrFindStage {
  readonly kind: 'lr_find';
  readonly name: string;
  readonly frozen: boolean;
  /** First learning rate of the exponential sweep (fastai `start_lr`). */
  readonly startLr: number;
  /** Learning rate the sweep would reach at its last iteration (fastai `end_lr`). */
  readonly endLr: number;
  /** Iterations at most (fastai `num_it`): one optimizer step each. */
  readonly numIt: number;
  /** The sweep stops early when the smoothed loss exceeds 4× its minimum or is NaN (fastai `stop_div=True`). */
  readonly stopDiv: true;
}

/**
 * A stage as `config.json` records it: a fit stage as configured; an lr_find stage as what it runs (start and end
 * lr, iterations, early stop), not the fit fields `epochs` and `maxLr`, which mean nothing to it (they read
 * `epochs 0, maxLr "0"`). The recorded form is accepted back as a stage of a config file (`contract/config.ts`).
 */
export function recordedStage(stage: StageConfig): StageConfig | RecordedLrFindStage {
  if (stage.kind !== 'lr_find') return stage;
  return { kind: 'lr_find', name: stage.name, frozen: stage.frozen, ...LR_FIND_RECORDED };
}

/** Reads a run's `config.json`; never throws (a fault is returned as `unreadable`). */
export function readRunConfigFile(runDir: string): RunConfigFile {
  const path = join(runDir, RUN_CONFIG_FILE);
  if (!existsSync(path)) return { state: 'missing', path };
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    return { state: 'unreadable', path, fault: (err as Error).message };
  }
  const object = (v: unknown): Record<string, unknown> | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : undefined);
  const file = object(parsed);
  const config = object(file?.config), runtime = object(file?.runtime);
  const from = object(file?.startedFrom);
  const startedFrom = from !== undefined && typeof from.path === 'string' && typeof from.what === 'string' && typeof from.sha256 === 'string'
    ? { path: from.path, what: from.what, sha256: from.sha256 } : undefined;
  return { state: 'read', path, ...(config ? { config } : {}), ...(runtime ? { runtime } : {}), ...(startedFrom ? { startedFrom } : {}) };
}
