/**
 * Where a restarted worker group starts from (torchrun restarts the whole group and its script loads the newest
 * checkpoint; Horovod elastic restores the last committed state): the newest intact state the run has, of
 *
 * 1. the newest intact checkpoint on disk (corrupt or truncated ones are skipped, each with one log line);
 * 2. the state a `--resume`d run resumed from, which the coordinator holds in memory (its folder may have been pruned
 *    by `--keep`, deleted or damaged since);
 * 3. what a new run starts from: the pretrained weights of `--pretrained` (ImageNet, or a file), or the seeded
 *    initial weights of `--seed` with `--pretrained none`; the setup gives a fresh replica exactly these.
 *
 * A checkpoint older than the resumed state (the run resumed from the newest, and only older ones are left) loses to
 * it. Before, a group restart that found no intact checkpoint went back to global step 0 with a fresh replica: for a
 * resumed run (whose workers are set up with `--pretrained none`, their weights to come from the checkpoint) that was
 * random weights, the training before the resume lost.
 */
import { isTrainerError } from '../contract/errors.js';
import { listCheckpoints, loadLatestCheckpoint } from '../contract/checkpoint-format.js';
import { checkCheckpointMeta } from './checkpoint-meta.js';
import type { RunHistory } from './history.js';
import type { CheckpointMeta, ResumePoint } from './checkpoint-store.js';

/** The state a restarted group loads, or `start`: none (each fresh replica holds what the run started from). */
export type RestartPoint =
  | { readonly kind: 'checkpoint'; readonly dir: string; readonly state: Uint8Array; readonly meta: CheckpointMeta }
  | { readonly kind: 'resumed'; readonly dir: string; readonly state: Uint8Array; readonly meta: CheckpointMeta }
  | { readonly kind: 'start' };

/**
 * What a new run's replicas start from, for the log: `the pretrained ImageNet weights (--pretrained imagenet)`,
 * `the pretrained weights of w.safetensors (--pretrained)`, or `the seeded initial weights (--seed 42, --pretrained none)`.
 * @param pretrained - the run's `--pretrained` (`imagenet`, `none` or a safetensors file)
 * @param seed - the run's `--seed`
 */
export function describeRunStart(pretrained: string, seed: number): string {
  if (pretrained === 'imagenet') return 'the pretrained ImageNet weights (--pretrained imagenet)';
  if (pretrained === 'none') return `the seeded initial weights (--seed ${seed}, --pretrained none)`;
  return `the pretrained weights of ${pretrained} (--pretrained)`;
}

/**
 * Chooses where a restarted group starts from (see the module comment).
 * @param runDir - the run directory (its `checkpoints/`)
 * @param resumed - the checkpoint this run was `--resume`d from, as it was when loaded (its history not moved on
 *   with the run: pass a copy taken before training), or null for a new run
 * @param log - one line per checkpoint skipped as damaged
 * @returns the state to load into every rank, or `start`
 */
export function chooseRestartPoint(runDir: string, resumed: ResumePoint | null, log: (line: string) => void): RestartPoint {
  let newest: RestartPoint | null = null;
  try {
    const loaded = loadLatestCheckpoint(runDir, checkCheckpointMeta);
    for (const line of loaded?.skipped ?? []) log(line);
    const state = loaded?.files.get('state.safetensors');
    if (loaded && state) newest = { kind: 'checkpoint', dir: loaded.dir, state, meta: loaded.manifest.meta };
  } catch (err) {
    // Checkpoints exist but none is intact: the message lists each and why.
    if (!isTrainerError(err, 'ERR_CHECKPOINT')) throw err;
    log(err.message);
  }
  if (resumed !== null && (newest === null || globalStep(newest.meta.history) < globalStep(resumed.meta.history))) {
    return { kind: 'resumed', dir: resumed.dir, state: resumed.state, meta: resumed.meta };
  }
  return newest ?? { kind: 'start' };
}

function globalStep(history: RunHistory): number {
  return history.position.globalStep;
}

/**
 * Names a {@link RestartPoint} for the log: the checkpoint's folder; `the state it resumed from (<dir>, held in
 * memory: no newer intact checkpoint on disk)`; or `the start of the run (<what it started from>)`.
 * @param start - {@link describeRunStart} of the run
 */
export function describeRestartPoint(point: RestartPoint, start: string): string {
  if (point.kind === 'checkpoint') return point.dir;
  if (point.kind === 'resumed') return `the state it resumed from (${point.dir}, global step ${globalStep(point.meta.history)}, held in memory: no newer intact checkpoint on disk)`;
  return `the start of the run (${start})`;
}

/**
 * What a group restart will go back to, for the line that announces it, before anything is read (the driver then
 * verifies and logs what it loads): the newest checkpoint folder on disk, the state a resumed run resumed from when
 * that is newer (or no checkpoint is listed), else the run's start.
 * @param start - {@link describeRunStart} of the run
 * @returns e.g. `runs/x/checkpoints/step-000000004` or `the start of the run (no checkpoint was written yet: the
 *   pretrained ImageNet weights (--pretrained imagenet))`
 */
export function previewRestartPoint(runDir: string, resumed: { readonly dir: string; readonly globalStep: number } | null, start: string): string {
  const newest = listCheckpoints(runDir).at(-1);
  const step = newest === undefined ? -1 : Number(/step-(\d+)$/.exec(newest)?.[1] ?? -1);
  if (resumed !== null && step < resumed.globalStep) return `the state it resumed from (${resumed.dir}, global step ${resumed.globalStep})`;
  return newest ?? `the start of the run (no checkpoint was written yet: ${start})`;
}
