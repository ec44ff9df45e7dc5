/**
 * The trainer's prom-client registry and the typed recording API the coordinator calls.
 *
 * Events (images processed, phase durations, checkpoints, skipped files) update counters and histograms when
 * they are recorded; values that are naturally "current" (losses, lr, workers by state, heartbeat age,
 * throughput, memory) are kept as plain state and projected into gauges at scrape time in `collect()`, the
 * prom-client way. Every series carries the default label `run`.
 */
import client from 'prom-client';
import { TrainerError } from '../../contract/errors.js';
import { SmoothedLoss } from '../../contract/plan/smoothing.js';
import {
  METRIC_PREFIX, METRICS, RESTART_REASONS, SKIP_REASONS, STEP_PHASES, WORKER_STATES,
  type MetricSpec, type RestartReason, type SkipReason, type StepPhase, type WorkerState,
} from './catalog.js';
import { replicaAgreementRatio } from './replica-agreement.js';
import type { StepStats } from '../../contract/protocol/index.js';

/** Options of {@link TrainingMetrics}; every field is optional. */
export interface TrainingMetricsOptions {
  /** Value of the `run` label on every series: 1–64 chars of `[A-Za-z0-9_.-]`, starting alphanumeric. */
  runId?: string;
  /** Register prom-client's default process metrics with the `pets_` prefix. */
  defaultMetrics?: boolean;
  /** Clock, milliseconds since the Unix epoch (injectable for tests). */
  nowMs?: () => number;
}

/** {@link TrainingMetricsOptions} with every field set. */
export type ResolvedTrainingMetricsOptions = Readonly<Required<TrainingMetricsOptions>>;

/** Defaults of {@link TrainingMetricsOptions}. */
export const DEFAULT_TRAINING_METRICS: ResolvedTrainingMetricsOptions = Object.freeze({
  runId: 'default',
  defaultMetrics: true,
  nowMs: Date.now,
});

const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/**
 * The `run` label of a run folder's name: the name itself when it fits {@link RUN_ID_PATTERN}, else with every other
 * character replaced by `_` (a name that does not start with a letter or digit gets a leading `r`) and cut to 64
 * characters. Any folder name is a valid `--run-dir` (spaces, accents, `runs/.exp`); before, one outside the pattern
 * stopped the run after its data step with a message naming a `--run` flag that does not exist.
 * @param name - the run directory's last path component
 */
export function runLabelOf(name: string): string {
  if (RUN_ID_PATTERN.test(name)) return name;
  const safe = name.replace(/[^A-Za-z0-9_.-]/g, '_');
  return (/^[A-Za-z0-9]/.test(safe) ? safe : `r${safe}`).slice(0, 64);
}

/** Largest worker rank accepted as a label value (keeps the `rank` label bounded). */
export const MAX_RANK = 4095;

/**
 * Fills in defaults and validates.
 * @throws TrainerError `ERR_BAD_FLAG` naming the field and the rule
 */
export function resolveTrainingMetricsOptions(options: TrainingMetricsOptions = {}): ResolvedTrainingMetricsOptions {
  const resolved = { ...DEFAULT_TRAINING_METRICS, ...dropUndefined(options) };
  if (!RUN_ID_PATTERN.test(resolved.runId)) {
    throw new TrainerError('ERR_BAD_FLAG', `--run must be 1-64 characters of [A-Za-z0-9_.-] starting with a letter or digit, got ${JSON.stringify(resolved.runId)}`);
  }
  return Object.freeze(resolved);
}

function dropUndefined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The plan of one fit (one `fit_one_cycle` call). */
export interface FitPlan {
  /** Epochs of the fit, integer ≥ 1. */
  readonly epochs: number;
  /** Optimizer steps of the fit (epochs × steps per epoch), integer ≥ 1. */
  readonly totalSteps: number;
}

/** What the coordinator knows after one global step. */
export interface StepRecord {
  /** Steps completed in the current fit (stage), integer ≥ 1: `pets_fit_step`, of `pets_steps_planned`. */
  readonly step: number;
  /**
   * Steps completed in the whole run, across its fits (stages), integer ≥ 1: `pets_global_step`, the logs' "global
   * step" and PyTorch Lightning's `trainer.global_step`. It only grows, except on a restart from a checkpoint, which
   * takes it back to the checkpoint's step (as Lightning restores `global_step` from a checkpoint).
   */
  readonly globalStep: number;
  /** Current epoch, 0-based. */
  readonly epoch: number;
  /** Training loss of the step over the global batch (mean cross-entropy, nats). */
  readonly trainLoss: number;
  /** Learning rate per layer group for this step (index = group). */
  readonly lrs: readonly number[];
  /** Momentum (Adam beta1) per layer group for this step. */
  readonly moms: readonly number[];
  /** Wall time of the global step at the coordinator, seconds ≥ 0. */
  readonly durationSeconds: number;
}

/** Result of a validation pass. */
export interface ValidationRecord {
  /** Mean validation cross-entropy, nats. */
  readonly validLoss: number;
  /** fastai `error_rate`, 0..1. */
  readonly errorRate: number;
}

interface WorkerEntry {
  state: WorkerState;
  lastHeardMs: number;
  stats?: StepStats;
}

const PHASE_FIELD: Readonly<Record<StepPhase, 'dataWaitSeconds' | 'forwardBackwardSeconds' | 'allreduceSeconds' | 'optimizerSeconds'>> = Object.freeze({
  data_wait: 'dataWaitSeconds',
  forward_backward: 'forwardBackwardSeconds',
  allreduce: 'allreduceSeconds',
  optimizer: 'optimizerSeconds',
});

/**
 * Wall time of a worker's step as throughput counts it, seconds (> 0): data wait + forward/backward + all-reduce.
 * The optimizer update is left out: it is applied at the commit, after the step's images are counted.
 */
export function stepSeconds(s: StepStats): number {
  return Math.max(1e-9, s.dataWaitSeconds + s.forwardBackwardSeconds + s.allreduceSeconds);
}

function promName(metric: MetricSpec): { name: string; help: string; labelNames: string[]; registers: client.Registry[] } {
  return { name: metric.name, help: metric.help, labelNames: [...metric.labelNames], registers: [] };
}

function checkRank(rank: number): string {
  if (!Number.isInteger(rank) || rank < 0 || rank > MAX_RANK) {
    throw new TrainerError('ERR_INTERNAL', `metrics: rank must be an integer in 0..${MAX_RANK}, got ${rank}`);
  }
  return String(rank);
}

function checkNonNegative(value: number, what: string, integer = false): number {
  if (!(Number.isFinite(value) && value >= 0 && (!integer || Number.isInteger(value)))) {
    throw new TrainerError('ERR_INTERNAL', `metrics: ${what} must be ${integer ? 'an integer' : 'a finite number'} ≥ 0, got ${value}`);
  }
  return value;
}

function checkMember<T extends string>(value: T, allowed: readonly string[], what: string): T {
  if (!allowed.includes(value)) {
    throw new TrainerError('ERR_INTERNAL', `metrics: ${what} must be one of ${allowed.join('|')}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * The trainer's metrics: a prom-client registry built from the catalogue, and the recording API.
 * Holds no sockets; `MetricsServer` (coordinator) serves it over HTTP.
 */
export class TrainingMetrics {
  /** The registry every catalogue metric (and the default process metrics) is registered in. */
  readonly registry = new client.Registry();
  /** Resolved options. */
  readonly options: ResolvedTrainingMetricsOptions;

  private plan?: FitPlan;
  private lastStep?: StepRecord;
  private smoothed = new SmoothedLoss();
  private smoothedValue = Number.NaN;
  private validation?: ValidationRecord;
  private linkBandwidth?: number;
  private agreement?: number;
  private lastCheckpointMs?: number;
  private readonly workers = new Map<number, WorkerEntry>();

  private readonly imagesProcessed: client.Counter<string>;
  private readonly stepDuration: client.Histogram<string>;
  private readonly stepPhase: client.Histogram<string>;
  private readonly allreduceSent: client.Counter<string>;
  private readonly allreduceDuration: client.Histogram<string>;
  private readonly restarts: client.Counter<string>;
  private readonly checkpoints: client.Counter<string>;
  private readonly checkpointDuration: client.Histogram<string>;
  private readonly replicaMismatches: client.Counter<string>;
  private readonly skipped: client.Counter<string>;

  /**
   * @param options - see {@link TrainingMetricsOptions}
   * @throws TrainerError `ERR_BAD_FLAG` on a bad `runId`
   */
  constructor(options: TrainingMetricsOptions = {}) {
    this.options = resolveTrainingMetricsOptions(options);
    this.registry.setDefaultLabels({ run: this.options.runId });
    this.imagesProcessed = this.counter(METRICS.imagesProcessed);
    this.stepDuration = this.histogram(METRICS.stepDuration);
    this.stepPhase = this.histogram(METRICS.stepPhase);
    this.allreduceSent = this.counter(METRICS.allreduceSentBytes);
    this.allreduceDuration = this.histogram(METRICS.allreduceDuration);
    this.restarts = this.counter(METRICS.restarts);
    this.checkpoints = this.counter(METRICS.checkpointsWritten);
    this.checkpointDuration = this.histogram(METRICS.checkpointDuration);
    this.replicaMismatches = this.counter(METRICS.replicaMismatches);
    this.skipped = this.counter(METRICS.skippedFiles);
    // Closed label sets start at 0 so that "no restarts" reads 0, not "No data".
    for (const reason of RESTART_REASONS) this.restarts.inc({ reason }, 0);
    for (const reason of SKIP_REASONS) this.skipped.inc({ reason }, 0);
    this.registerGauges();
    if (this.options.defaultMetrics) client.collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
  }

  /** Starts a fit: sets the plan and resets the smoothed loss (fastai resets it when a fit begins). */
  setPlan(plan: FitPlan): void {
    this.plan = Object.freeze({ ...plan });
    this.smoothed = new SmoothedLoss();
    this.smoothedValue = Number.NaN;
  }

  /**
   * Records one completed global step (losses, lr and momentum per group, progress, duration).
   * @throws TrainerError `ERR_INTERNAL` when step/epoch are not integers ≥ 0 or durationSeconds is not finite ≥ 0
   */
  recordStep(record: StepRecord): void {
    checkNonNegative(record.step, 'step', true);
    checkNonNegative(record.globalStep, 'globalStep', true);
    checkNonNegative(record.epoch, 'epoch', true);
    const seconds = checkNonNegative(record.durationSeconds, 'step durationSeconds');
    this.lastStep = Object.freeze({ ...record, lrs: [...record.lrs], moms: [...record.moms] });
    // A NaN/inf loss (divergence) is shown as such in pets_train_loss but kept out of the smoothed average.
    if (Number.isFinite(record.trainLoss)) this.smoothedValue = this.smoothed.add(record.trainLoss);
    this.stepDuration.observe(seconds);
  }

  /** Records the result of a validation pass. */
  recordValidation(record: ValidationRecord): void {
    this.validation = Object.freeze({ ...record });
  }

  /**
   * Sets a worker's membership state (a new rank starts with its heartbeat clock at now).
   * @throws TrainerError `ERR_INTERNAL` on a rank outside 0..MAX_RANK or an unknown state
   */
  setWorkerState(rank: number, state: WorkerState): void {
    checkRank(rank);
    checkMember(state, WORKER_STATES, 'worker state');
    const entry = this.workers.get(rank);
    if (entry) entry.state = state;
    else this.workers.set(rank, { state, lastHeardMs: this.options.nowMs() });
  }

  /**
   * Forgets a worker entirely (its per-rank series disappear from the next scrape).
   * @throws TrainerError `ERR_INTERNAL` on a rank outside 0..MAX_RANK
   */
  forgetWorker(rank: number): void {
    const label = checkRank(rank);
    this.workers.delete(rank);
    for (const metric of [this.imagesProcessed, this.allreduceSent, this.allreduceDuration]) metric.remove({ rank: label });
    for (const phase of STEP_PHASES) this.stepPhase.remove({ rank: label, phase });
  }

  /**
   * Notes that a heartbeat (or any message) from `rank` arrived; the age is computed at scrape time.
   * @param atMs - arrival time, ms since the Unix epoch (default: now)
   * @throws TrainerError `ERR_INTERNAL` on a rank outside 0..MAX_RANK
   */
  observeHeartbeat(rank: number, atMs: number = this.options.nowMs()): void {
    checkRank(rank);
    const entry = this.workers.get(rank);
    if (entry) entry.lastHeardMs = Math.max(entry.lastHeardMs, atMs);
    else this.workers.set(rank, { state: 'joining', lastHeardMs: atMs });
  }

  /**
   * Records a worker's statistics of one step (also counts as a heartbeat): the {@link StepStats} of its
   * `step-done`, validated by the protocol's decoder.
   * @throws TrainerError `ERR_INTERNAL` on a rank outside 0..MAX_RANK
   */
  recordWorkerReport(rank: number, stats: StepStats): void {
    const label = checkRank(rank);
    this.observeHeartbeat(rank);
    (this.workers.get(rank) as WorkerEntry).stats = stats;
    this.imagesProcessed.inc({ rank: label }, stats.count);
    this.allreduceSent.inc({ rank: label }, stats.allreduceBytes);
    this.allreduceDuration.observe({ rank: label }, stats.allreduceSeconds);
    for (const phase of STEP_PHASES) this.stepPhase.observe({ rank: label, phase }, stats[PHASE_FIELD[phase]]);
  }

  /**
   * Records one checkpoint written.
   * @param seconds - time the write took, seconds ≥ 0
   * @param atMs - completion time, ms since the Unix epoch (default: now)
   * @throws TrainerError `ERR_INTERNAL` when seconds is not a finite number ≥ 0
   */
  recordCheckpoint(seconds: number, atMs: number = this.options.nowMs()): void {
    this.checkpointDuration.observe(checkNonNegative(seconds, 'checkpoint seconds'));
    this.checkpoints.inc();
    this.lastCheckpointMs = atMs;
  }

  /**
   * Counts one group restart from the last checkpoint.
   * @throws TrainerError `ERR_INTERNAL` on a reason outside RESTART_REASONS
   */
  recordRestart(reason: RestartReason): void {
    this.restarts.inc({ reason: checkMember(reason, RESTART_REASONS, 'restart reason') });
  }

  /**
   * Counts `n` image files skipped by the loader for `reason` (n: integer ≥ 0).
   * @throws TrainerError `ERR_INTERNAL` on a reason outside SKIP_REASONS or a bad n
   */
  recordSkipped(reason: SkipReason, n = 1): void {
    this.skipped.inc({ reason: checkMember(reason, SKIP_REASONS, 'skip reason') }, checkNonNegative(n, 'skipped file count', true));
  }

  /**
   * Records a replica check.
   * @param checksums - parameter checksum per rank (index = rank), see {@link replicaAgreementRatio}
   * @returns the agreement ratio, 0..1
   * @throws TrainerError `ERR_INTERNAL` when `checksums` is empty
   */
  recordReplicaChecksums(checksums: readonly (string | number | bigint)[]): number {
    this.agreement = replicaAgreementRatio(checksums);
    if (this.agreement < 1) this.replicaMismatches.inc();
    return this.agreement;
  }

  /**
   * Sets the measured bandwidth limit of the inter-worker link, bytes per second ≥ 0.
   * @throws TrainerError `ERR_INTERNAL` when not a finite number ≥ 0
   */
  setLinkBandwidth(bytesPerSecond: number): void {
    this.linkBandwidth = checkNonNegative(bytesPerSecond, 'link bandwidth');
  }

  /** The Prometheus text exposition of every metric, as served on `/metrics`. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  private counter(metric: MetricSpec): client.Counter<string> {
    const counter = new client.Counter(promName(metric));
    this.registry.registerMetric(counter);
    return counter;
  }

  private histogram(metric: MetricSpec): client.Histogram<string> {
    const histogram = new client.Histogram({ ...promName(metric), buckets: [...(metric.buckets ?? [])] });
    this.registry.registerMetric(histogram);
    return histogram;
  }

  private gauge(metric: MetricSpec, fill: (gauge: client.Gauge<string>) => void): void {
    const gauge: client.Gauge<string> = new client.Gauge({
      ...promName(metric),
      collect: () => {
        gauge.reset();
        if (metric.labelNames.length === 0) gauge.remove();
        fill(gauge);
      },
    });
    this.registry.registerMetric(gauge);
  }

  private registerGauges(): void {
    const scalar = (metric: MetricSpec, read: () => number | undefined): void =>
      this.gauge(metric, (g) => {
        const value = read();
        if (value !== undefined && !Number.isNaN(value)) g.set(value);
      });
    scalar(METRICS.trainLoss, () => this.lastStep?.trainLoss);
    scalar(METRICS.trainLossSmoothed, () => this.smoothedValue);
    scalar(METRICS.validLoss, () => this.validation?.validLoss);
    scalar(METRICS.errorRate, () => this.validation?.errorRate);
    scalar(METRICS.epoch, () => this.lastStep?.epoch);
    scalar(METRICS.globalStep, () => this.lastStep?.globalStep);
    scalar(METRICS.fitStep, () => this.lastStep?.step);
    scalar(METRICS.epochsPlanned, () => this.plan?.epochs);
    scalar(METRICS.stepsPlanned, () => this.plan?.totalSteps);
    scalar(METRICS.linkBandwidth, () => this.linkBandwidth);
    scalar(METRICS.replicaAgreement, () => this.agreement);
    scalar(METRICS.lastCheckpoint, () => (this.lastCheckpointMs === undefined ? undefined : this.lastCheckpointMs / 1000));
    this.gauge(METRICS.learningRate, (g) => this.lastStep?.lrs.forEach((v, i) => g.set({ group: String(i) }, v)));
    this.gauge(METRICS.momentum, (g) => this.lastStep?.moms.forEach((v, i) => g.set({ group: String(i) }, v)));
    this.gauge(METRICS.workers, (g) => this.fillWorkersByState(g));
    this.gauge(METRICS.heartbeatAge, (g) => this.fillHeartbeatAges(g));
    this.registerWorkerStatGauges();
  }

  private fillWorkersByState(gauge: client.Gauge<string>): void {
    for (const state of WORKER_STATES) gauge.set({ state }, 0);
    for (const entry of this.workers.values()) gauge.inc({ state: entry.state });
  }

  private fillHeartbeatAges(gauge: client.Gauge<string>): void {
    const now = this.options.nowMs();
    for (const [rank, entry] of this.workers) {
      if (entry.state !== 'left') gauge.set({ rank: String(rank) }, Math.max(0, (now - entry.lastHeardMs) / 1000));
    }
  }

  private registerWorkerStatGauges(): void {
    const perRank = (metric: MetricSpec, read: (s: StepStats) => number): void =>
      this.gauge(metric, (g) => {
        for (const [rank, entry] of this.workers) {
          if (entry.stats && entry.state !== 'lost' && entry.state !== 'left') g.set({ rank: String(rank) }, read(entry.stats));
        }
      });
    perRank(METRICS.imagesPerSecond, (s) => s.count / stepSeconds(s));
    perRank(METRICS.decodeQueue, (s) => s.decodeQueueTasks);
    perRank(METRICS.tfjsMemory, (s) => s.tfjsBytes);
    perRank(METRICS.tfjsTensors, (s) => s.tfjsTensors);
    perRank(METRICS.workerResidentMemory, (s) => s.rssBytes);
  }
}
