/**
 * Feeds the Prometheus metrics from what the coordinator learns each step: its own view (loss, learning rate and
 * momentum per group, step time) and each worker's stats record carried by `step-done` (phase durations, bytes,
 * memory, loader queue, skipped files), labelled by rank.
 */
import type { StagePlan } from '../shared/plan.js';
import type { StepDoneMessage } from '../shared/protocol.js';
import type { SkipReason } from '../shared/data/decode.js';
import { SKIP_REASONS } from '../shared/data/decode.js';
import type { Reply } from './cluster.js';
import type { MetricsServer } from './metrics.js';

/** Per-rank cumulative skip counts already recorded (workers report running totals). */
export class StepMetricsRecorder {
  private readonly skipped = new Map<string, number>();

  constructor(private readonly metrics: MetricsServer) {}

  /** Records one committed step of `stage` (stepInStage is the count of committed steps, ≥ 1). */
  record(stage: StagePlan, stepInStage: number, replies: readonly Reply<StepDoneMessage>[], loss: number, lrs: readonly number[], momentum: number, seconds: number): void {
    if (stepInStage === 1) this.metrics.setPlan({ epochs: Math.max(1, stage.config.epochs), totalSteps: stage.totalSteps });
    this.metrics.recordStep({
      step: stepInStage, epoch: Math.floor((stepInStage - 1) / stage.stepsPerEpoch), trainLoss: loss, lrs,
      moms: lrs.map(() => momentum), durationSeconds: seconds,
    });
    for (const { rank, message: m } of replies) {
      this.metrics.recordWorkerReport(rank, {
        images: m.count, stepSeconds: Math.max(1e-9, m.dataWaitSeconds + m.computeSeconds + m.allreduceSeconds),
        phases: { dataWaitSeconds: m.dataWaitSeconds, forwardBackwardSeconds: m.computeSeconds, allreduceSeconds: m.allreduceSeconds, optimizerSeconds: m.optimizerSeconds },
        allreduceBytes: m.allreduceBytes, loaderQueueDepth: m.queueDepth, tfjsBytes: m.tfBytes, tfjsTensors: m.tfTensors, rssBytes: m.rssBytes,
      });
      for (const [reason, total] of Object.entries(m.skipped)) {
        if (!(SKIP_REASONS as readonly string[]).includes(reason)) continue;
        const key = `${rank}/${reason}`;
        const delta = total - (this.skipped.get(key) ?? 0);
        if (delta > 0) this.metrics.recordSkipped(reason as SkipReason, delta);
        this.skipped.set(key, total);
      }
    }
  }
}
