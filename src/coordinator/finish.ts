/**
 * The end of a run: validation predictions gathered from every rank (each real validation item exactly once),
 * fastai's interpretation (top losses, confusion matrix, most confused), the run report with its pictures, and the
 * closing summary (where the model, report and metrics are, and the final error_rate).
 */
import { join } from 'node:path';
import type { RunConfig } from '../contract/config.js';
import type { DataBunch } from '../training/data/databunch.js';
import { ClassificationInterpretation } from './interpret/interpretation.js';
import type { StagePlan } from '../contract/plan/plan.js';
import type { Cluster } from './cluster.js';
import type { RunHistory } from './history.js';
import { writeRunReport } from './report/write-report.js';
import { mostConfusedLines, reportInput } from './stage-report.js';
import { validateAll } from './stage-runner.js';
import { diskLine } from './disk.js';
import { TrainerError, isTrainerError } from '../contract/errors.js';
import { interpretCommandLine } from './shell-arg.js';
import type { StartRecord } from './load-model.js';

/** What a finished (or stopped) run reports. */
export interface RunResult {
  readonly runDir: string;
  readonly stopped: boolean;
  readonly finalErrorRate: number | null;
  readonly modelPath: string | null;
  readonly reportPath: string | null;
  readonly metricsUrl: string | null;
}

/** Inputs of {@link finishRun}. */
export interface FinishInput {
  readonly cluster: Cluster;
  readonly data: DataBunch;
  readonly config: RunConfig;
  readonly runDir: string;
  readonly history: RunHistory;
  readonly stages: readonly StagePlan[];
  readonly metricsUrl: string | null;
  readonly out: (line: string) => void;
  readonly timeoutMs: number;
  /**
   * Runs the final validation as the driver runs any idempotent collective (`Coordinator.guarded`): a worker lost
   * during it is recovered (counted once against `--max-restarts`) and the validation run again. Omitted: run once.
   */
  readonly guard?: <T>(what: string, fn: () => Promise<T>) => Promise<T>;
  /** The model a `--load` run started from, for the report (null or omitted: none). */
  readonly startedFrom?: StartRecord | null;
}

/**
 * Gathers validation probabilities from all ranks into validation-set order.
 * @returns `[nValid × classes]` probabilities and `[nValid]` targets
 */
export async function gatherPredictions(cluster: Cluster, data: DataBunch, timeoutMs: number, remedy: () => string): Promise<{ probs: Float32Array; targets: Int32Array; errorRate: number }> {
  const k = data.classes.length;
  const n = data.valid.length;
  const v = await validateAll(cluster, timeoutMs, true, remedy);
  const probs = new Float32Array(n * k);
  const seen = new Uint8Array(n);
  for (const { message, frames } of v.replies) {
    const frame = frames[0]!;
    const count = frame.byteLength / (4 + 4 * k);
    const items = new Int32Array(frame.buffer.slice(frame.byteOffset, frame.byteOffset + count * 4));
    const p = new Float32Array(frame.buffer.slice(frame.byteOffset + count * 4, frame.byteOffset + frame.byteLength));
    if (items.length !== message.count && message.count !== 0) throw new Error(`rank ${message.rank}: ${items.length} predictions for ${message.count} items`);
    items.forEach((pos, i) => { probs.set(p.subarray(i * k, (i + 1) * k), pos * k); seen[pos] = 1; });
  }
  const targets = Int32Array.from(data.valid, (item) => data.labels[item]!);
  const missing = seen.reduce((s, x) => s + (x ? 0 : 1), 0);
  if (missing > 0) {
    // Items that failed to decode have no prediction; give them a uniform row so they count as errors, not gaps.
    for (let i = 0; i < n; i++) if (!seen[i]) probs.fill(1 / k, i * k, (i + 1) * k);
  }
  return { probs, targets, errorRate: v.errorRate };
}

/** Interprets, writes the report, prints the summary. */
export async function finishRun(f: FinishInput): Promise<RunResult> {
  const lastFit = [...f.stages].reverse().find((s) => s.config.kind !== 'lr_find');
  const modelPath = lastFit ? join(f.runDir, 'models', `${lastFit.config.name}.safetensors`) : null;
  // The training is done and saved: a resume would find nothing left to train, so each error says how to get the report.
  const saved = `the training finished and its model is saved (${modelPath ?? f.runDir})`;
  const gather = (): ReturnType<typeof gatherPredictions> => gatherPredictions(f.cluster, f.data, f.timeoutMs,
    () => `${saved}; restore the data and write the report with: ${interpretCommandLine(f.runDir)}`);
  // A worker lost during the final validation (its predictions feed the interpretation) is replaced like one lost
  // during any other validation; before, the run ended there with ERR_WORKER_LOST, its training done.
  const { probs, targets, errorRate } = await (f.guard ? f.guard('final validation', gather) : gather());
  const interp = new ClassificationInterpretation({ probs, targets, classes: f.data.classes, items: Array.from(f.data.valid, (i) => f.data.paths[i]!) });
  f.out('');
  for (const line of mostConfusedLines(interp)) f.out(line);
  const input = reportInput(f.runDir, f.config, f.history, interp, f.startedFrom ?? null);
  let report: Awaited<ReturnType<typeof writeRunReport>>;
  try {
    report = await writeRunReport(f.runDir, input);
  } catch (err) {
    if (!isTrainerError(err, 'ERR_REPORT')) throw err;
    // The training is done and saved: say so, and how to write the report once the disk has room, rather than end
    // on the file error alone as if the run had failed.
    f.out(`\nfinal error_rate ${errorRate.toFixed(4)} (${f.data.valid.length} validation images)`);
    f.out(`model:   ${modelPath ?? '-'}`);
    f.out('report:  not written (below)');
    throw new TrainerError('ERR_REPORT', `${err.message}; ${saved}; `
      + `make room and write the report with: ${interpretCommandLine(f.runDir)}`, { cause: err });
  }
  f.out(`\nfinal error_rate ${errorRate.toFixed(4)} (${f.data.valid.length} validation images)`);
  f.out(`model:   ${modelPath ?? '-'}`);
  f.out(`report:  ${report.indexHtml}`);
  f.out(diskLine(f.runDir));
  if (f.metricsUrl) f.out(`metrics: ${f.metricsUrl}`);
  if (!report.textRenders) f.out('warning: no font installed, picture text renders as boxes (apt-get install fonts-dejavu-core)');
  return { runDir: f.runDir, stopped: false, finalErrorRate: errorRate, modelPath, reportPath: report.indexHtml, metricsUrl: f.metricsUrl };
}
