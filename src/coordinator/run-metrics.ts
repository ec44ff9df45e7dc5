/**
 * Feeds the Prometheus metrics from what the coordinator learns each step: its own view (loss, learning rate and
 * momentum per group, step time) and each worker's stats record carried by `step-done` (phase durations, bytes,
 * memory, loader queue, skipped files), labelled by rank; and, polled from the control plane, each worker's
 * membership state and the time it was last heard from (heartbeat age is computed at scrape time).
 */
import type { StagePlan } from '../contract/plan/plan.js';
import type { StepDoneMessage } from '../contract/protocol/index.js';
import type { SkipReason } from '../training/data/decode.js';
import { SKIP_REASONS } from '../training/data/decode.js';
import type { Reply } from './cluster.js';
import type { ControlServer, Member } from './control.js';
import type { MetricsServer } from './metrics/server.js';

/**
 * The `pets_worker_state` value of a control-plane member: `lost` and `joining` as they are; an admitted member is
 * `training` once the run has committed a step, `ready` before.
 */
export function workerStateOf(member: Pick<Member, 'state'>, training: boolean): 'joining' | 'ready' | 'training' | 'lost' {
  if (member.state === 'lost' || member.state === 'joining') return member.state;
  return training ? 'training' : 'ready';
}

/**
 * All-reduce send rate of one step report, bytes per second (0 when the report has no all-reduce time or bytes).
 * The best rate seen is what `pets_link_bandwidth_bytes_per_second` shows: a measured lower bound of the link's
 * limit (a ring worker sends 2(N−1)/N × gradient bytes per step; Horovod/NCCL "bus bandwidth").
 */
export function allreduceSendRate(bytes: number, seconds: number): number {
  return bytes > 0 && seconds > 0 && Number.isFinite(bytes / seconds) ? bytes / seconds : 0;
}

/** Records step results, worker membership and heartbeats into a {@link MetricsServer}; `watch()` then `close()`. */
export class StepMetricsRecorder {
  /** Per-rank cumulative skip counts already recorded (workers report running totals). */
  private readonly skipped = new Map<string, number>();
  private control: ControlServer | null = null;
  private timer: NodeJS.Timeout | null = null;
  private training = false;
  private bestLinkRate = 0;
  /** Index of the stage whose plan the gauges show (null before the first step this process records). */
  private plannedStage: number | null = null;

  constructor(private readonly metrics: MetricsServer) {}

  /**
   * Starts polling `control`'s member table every `periodMs` (ms ≥ 10): worker state per rank and last-heard time.
   * Idempotent per control server.
   */
  watch(control: ControlServer, periodMs = 500): void {
    if (this.control === control) return;
    this.close();
    this.control = control;
    this.timer = setInterval(() => this.sync(), Math.max(10, periodMs));
    this.timer.unref();
    this.sync();
  }

  /** Marks every admitted worker `left` (the run is over) and stops polling. */
  finish(): void {
    this.sync();
    for (const m of this.control?.live() ?? []) if (m.rank >= 0) this.metrics.setWorkerState(m.rank, 'left');
    this.close();
  }

  /** Stops polling (idempotent). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private sync(): void {
    if (!this.control) return;
    // Lost members first, so a newcomer that took a lost member's rank wins.
    const members = this.control.all().filter((m) => m.rank >= 0).sort((a, b) => Number(b.state === 'lost') - Number(a.state === 'lost'));
    for (const m of members) {
      // Heartbeat first: a rank first seen here starts its clock at its real last-heard time, not at now.
      this.metrics.observeHeartbeat(m.rank, m.lastSeenMs);
      this.metrics.setWorkerState(m.rank, workerStateOf(m, this.training));
    }
  }

  /**
   * Records one committed step of `stage` (stepInStage is the count of committed steps, ≥ 1). The stage's plan
   * (`pets_epochs_planned`, `pets_steps_planned`) is set on the first step this process records of each stage, not
   * on the stage's step 1: a run resumed mid-stage never records its step 1, and used to export no plan at all (the
   * dashboard's "fit progress" showed no data until the next stage).
   */
  record(stage: StagePlan, stepInStage: number, globalStep: number, replies: readonly Reply<StepDoneMessage>[], loss: number, lrs: readonly number[], momentum: number, seconds: number): void {
    if (stage.index !== this.plannedStage) {
      this.plannedStage = stage.index;
      this.metrics.setPlan({ epochs: Math.max(1, stage.config.epochs), totalSteps: stage.totalSteps });
    }
    this.training = true;
    this.metrics.recordStep({
      step: stepInStage, globalStep, epoch: Math.floor((stepInStage - 1) / stage.stepsPerEpoch), trainLoss: loss, lrs,
      moms: lrs.map(() => momentum), durationSeconds: seconds,
    });
    for (const { rank, message: m } of replies) {
      this.metrics.recordWorkerReport(rank, m);
      const rate = allreduceSendRate(m.allreduceBytes, m.allreduceSeconds);
      if (rate > this.bestLinkRate) this.metrics.setLinkBandwidth(this.bestLinkRate = rate);
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
