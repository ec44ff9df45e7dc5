/**
 * The run report's inputs from the run history, and the report written at the end of every stage (training
 * curves, lr_find, epoch tables, configuration; the interpretation pictures come with the end of the run).
 */
import type { RunConfig } from '../contract/config.js';
import type { ClassificationInterpretation } from './interpret/interpretation.js';
import type { RunHistory } from './history.js';
import type { RunReportInput } from './report/types.js';
import { writeRunReport, type ReportManifest } from './report/write-report.js';
import { logText } from '../contract/log-text.js';
import type { StartRecord } from './load-model.js';

/**
 * Builds the report input from what the run has done so far.
 * @param startedFrom - the model a `--load` run started from: a `startedFrom` row follows the configuration's
 */
export function reportInput(runDir: string, config: RunConfig, history: RunHistory, interpretation?: ClassificationInterpretation, startedFrom: StartRecord | null = null): RunReportInput {
  const stages = history.stages.filter((s) => s && s.kind !== 'lr_find');
  return {
    title: `pets-trainer run ${runDir.split('/').pop()}`,
    config: { ...config, ...(startedFrom === null ? {} : { startedFrom: startedFromText(startedFrom) }) } as unknown as Record<string, unknown>,
    stages: stages.map((s) => ({
      name: s.name,
      epochs: s.epochs.map((e) => ({ epoch: e.epoch, trainLoss: e.trainLoss, validLoss: e.validLoss, errorRate: e.errorRate, timeSeconds: e.seconds })),
      steps: s.steps,
    })),
    lrFinds: history.stages.filter((s) => s && s.kind === 'lr_find' && s.lrFind)
      .map((s) => ({ name: s.name, lrs: s.steps.map((x) => x.lrs[0]!), smoothedLosses: s.lrFind!.smoothed })),
    interpretation,
  };
}

/** `<file> (<what>, sha256 <hex>): weights and BatchNorm statistics; optimizer state fresh`, the report's row. */
export function startedFromText(r: StartRecord): string {
  return `${r.path} (${r.what}, sha256 ${r.sha256}): weights and BatchNorm statistics; optimizer state fresh`;
}

/** Writes `index.html` and the pictures for the stages finished so far. @param startedFrom - as {@link reportInput} */
export function writeStageReport(runDir: string, config: RunConfig, history: RunHistory, startedFrom: StartRecord | null = null): Promise<ReportManifest> {
  return writeRunReport(runDir, reportInput(runDir, config, history, undefined, startedFrom));
}

/** The terminal lines of fastai's `most_confused(min_val)` (or a line saying there is none). */
export function mostConfusedLines(interp: ClassificationInterpretation, minVal = 2, max = 10): string[] {
  const pairs = interp.mostConfused(minVal).slice(0, max);
  if (pairs.length === 0) return [`most_confused(min_val=${minVal}): no pair of classes confused ${minVal} times or more`];
  return [`most_confused(min_val=${minVal}) (actual → predicted: count):`, ...pairs.map((c) => `  ${logText(c.actual)} → ${logText(c.predicted)}: ${c.count}`)];
}
