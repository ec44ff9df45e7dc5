/**
 * The shape check of a checkpoint manifest's metadata ({@link CheckpointMeta}) as `--resume`, a worker-group restart and
 * `interpret` read it. The manifest's sha256 sums cover the state file, not the manifest itself: a manifest that is
 * valid JSON but not what the coordinator wrote (edited by hand, a field lost, a bit flipped inside a number or a
 * key) used to reach the code that reads it and end the command with a bare TypeError naming no file (`coordinator:
 * Cannot convert undefined or null to object` on `--resume`, `Cannot read properties of undefined (reading
 * 'filter')` on `interpret`). Checked on reading, such a checkpoint is skipped as damaged, with the field and the
 * rule, and the previous intact one is used, as for a truncated state file.
 */
import { resolveRunConfig, type RunConfigInput } from '../contract/config.js';
import { isTrainerError } from '../contract/errors.js';
import type { CheckpointMeta } from './checkpoint-store.js';
import { shownJson } from '../contract/shown-value.js';

const STAGE_KINDS = new Set(['one_cycle', 'fit', 'lr_find']);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Throws an Error `<field> must be <rule>, got <value>` (the caller names the file). */
function bad(field: string, rule: string, value: unknown): never {
  throw new Error(`meta.${field} must be ${rule}, got ${shownJson(value)}`);
}

function count(v: unknown, field: string): number {
  if (!Number.isSafeInteger(v) || (v as number) < 0) bad(field, 'an integer ≥ 0', v);
  return v as number;
}

function record(v: unknown, field: string): Record<string, unknown> {
  if (!isRecord(v)) bad(field, 'an object', v);
  return v;
}

function list(v: unknown, field: string): unknown[] {
  if (!Array.isArray(v)) bad(field, 'a list', v);
  return v;
}

/** A number or null (JSON writes NaN, a step that decoded nothing, as null). */
function numberOrNull(v: unknown, field: string): void {
  if (v !== null && typeof v !== 'number') bad(field, 'a number or null', v);
}

function checkHistory(h: unknown): void {
  const history = record(h, 'history');
  const position = record(history.position, 'history.position');
  for (const k of ['stageIndex', 'stepInStage', 'globalStep']) count(position[k], `history.position.${k}`);
  list(history.stages, 'history.stages').forEach((s, i) => {
    const at = `history.stages[${i}]`;
    // A stage not reached yet is a hole (null) in the list.
    if (s === null) return;
    const stage = record(s, at);
    if (typeof stage.name !== 'string') bad(`${at}.name`, 'a string', stage.name);
    if (!STAGE_KINDS.has(stage.kind as string)) bad(`${at}.kind`, `one of ${[...STAGE_KINDS].join(', ')}`, stage.kind);
    list(stage.epochs, `${at}.epochs`).forEach((row, j) => record(row, `${at}.epochs[${j}]`));
    list(stage.steps, `${at}.steps`).forEach((step, j) => {
      const st = record(step, `${at}.steps[${j}]`);
      numberOrNull(st.loss, `${at}.steps[${j}].loss`);
      list(st.lrs, `${at}.steps[${j}].lrs`);
    });
    const smooth = record(stage.smooth, `${at}.smooth`);
    numberOrNull(smooth.mov, `${at}.smooth.mov`);
    count(smooth.n, `${at}.smooth.n`);
    if (stage.epochSums !== undefined) record(stage.epochSums, `${at}.epochSums`);
  });
}

/**
 * Checks that `meta` has the shape the coordinator writes ({@link CheckpointMeta}): its configuration passes the
 * run-configuration rules, the class names are strings, the history's position holds integers ≥ 0 and each stage's
 * record its lists; the optional fields (plan, sampler, world size, generation, data fingerprint) have their types
 * when present.
 * @returns `meta`, typed
 * @throws Error naming the field and the rule (the checkpoint reader adds the file and makes it ERR_CHECKPOINT)
 */
export function checkCheckpointMeta(meta: unknown): CheckpointMeta {
  if (!isRecord(meta)) throw new Error(`meta must be an object, got ${JSON.stringify(meta)?.slice(0, 80) ?? 'nothing'}`);
  if (typeof meta.runId !== 'string') bad('runId', 'a string', meta.runId);
  try {
    resolveRunConfig(record(meta.config, 'config') as RunConfigInput);
  } catch (err) {
    if (!isTrainerError(err)) throw err;
    throw new Error(`meta.config: ${err.message}`, { cause: err });
  }
  const classes = list(meta.classes, 'classes');
  if (classes.length === 0 || !classes.every((c) => typeof c === 'string')) bad('classes', 'a non-empty list of class names', meta.classes);
  checkHistory(meta.history);
  if (meta.plan !== undefined) {
    const plan = record(meta.plan, 'plan');
    count(plan.globalBs, 'plan.globalBs');
    count(plan.accum, 'plan.accum');
    if (typeof plan.lrFactor !== 'number') bad('plan.lrFactor', 'a number', plan.lrFactor);
    list(plan.stages, 'plan.stages').forEach((s, i) => record(s, `plan.stages[${i}]`));
  }
  if (meta.sampler !== undefined) {
    const sampler = record(meta.sampler, 'sampler');
    for (const k of ['dataEpoch', 'stepInEpoch', 'seed']) count(sampler[k], `sampler.${k}`);
  }
  for (const k of ['worldSize', 'generation'] as const) if (meta[k] !== undefined) count(meta[k], k);
  // A --load run's record: its sha256 seeds the workers' draws (plan.ts trainingSeed) when the manifest has no sampler.
  if (meta.startedFrom !== undefined) {
    const from = record(meta.startedFrom, 'startedFrom');
    for (const k of ['path', 'what']) if (typeof from[k] !== 'string') bad(`startedFrom.${k}`, 'a string', from[k]);
    if (typeof from.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(from.sha256)) bad('startedFrom.sha256', '64 hex digits', from.sha256);
  }
  if (meta.stagesFrom !== undefined && meta.stagesFrom !== 'default' && meta.stagesFrom !== 'config') bad('stagesFrom', 'default or config', meta.stagesFrom);
  if (meta.data !== undefined && typeof meta.data !== 'string') bad('data', 'a string (the data fingerprint)', meta.data);
  return meta as unknown as CheckpointMeta;
}
