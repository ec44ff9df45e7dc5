/**
 * The metric catalogue: every Prometheus metric the trainer exports, with its type, unit, labels and meaning.
 *
 * Conventions (Prometheus naming guide, https://prometheus.io/docs/practices/naming/, and prom-client's style):
 * one prefix `pets_`; the base unit is the last word of the name (`_seconds`, `_bytes`, `_ratio` for 0..1);
 * counters end in `_total`; labels are bounded (rank, group, phase, state, reason, and `run` as a registry-wide
 * default label) and never carry a step number or a file path. Histograms expose `_bucket`/`_sum`/`_count`.
 *
 * This module is pure data plus a convention checker: the prom-client objects are built from it by
 * `TrainingMetrics` (`./training-metrics.ts`), and dashboards are checked against it.
 */

/** The one prefix of every trainer metric. */
export const METRIC_PREFIX = 'pets_';

/** Prometheus metric types the trainer uses. */
export type MetricType = 'counter' | 'gauge' | 'histogram';

/**
 * Unit of a metric's value; the name must end with the matching suffix (see {@link UNIT_SUFFIXES}).
 * `count` and `dimensionless` carry no suffix (a loss, a learning rate, a number of tensors).
 */
export type MetricUnit =
  | 'seconds'
  | 'timestamp_seconds'
  | 'bytes'
  | 'bytes_per_second'
  | 'images_per_second'
  | 'ratio'
  | 'count'
  | 'dimensionless';

/** The bounded label names a metric may carry (`run` is added to every series as a default label). */
export type MetricLabel = 'rank' | 'group' | 'phase' | 'state' | 'reason';

/** Every allowed label, `run` included. */
export const ALLOWED_LABELS: readonly string[] = Object.freeze(['rank', 'group', 'phase', 'state', 'reason', 'run']);

/** Phases of one training step, as timed by a worker (label `phase`). */
export const STEP_PHASES = Object.freeze(['data_wait', 'forward_backward', 'allreduce', 'optimizer'] as const);
/** One of {@link STEP_PHASES}. */
export type StepPhase = (typeof STEP_PHASES)[number];

/** Membership states of a worker, as seen by the coordinator (label `state`). */
export const WORKER_STATES = Object.freeze(['joining', 'ready', 'training', 'lost', 'left'] as const);
/** One of {@link WORKER_STATES}. */
export type WorkerState = (typeof WORKER_STATES)[number];

/** Why the coordinator restarted the group from a checkpoint (label `reason`). */
export const RESTART_REASONS = Object.freeze(['worker_lost', 'timeout', 'replica_mismatch', 'resume'] as const);
/** One of {@link RESTART_REASONS}. */
export type RestartReason = (typeof RESTART_REASONS)[number];

/**
 * Why a file under `--data` is in neither split (label `reason`): exactly the data layer's `LeftOutReason` values
 * (`src/training/data/accounting.ts`: the decoder's reasons plus hidden file, unsupported extension, duplicate, unlabelled,
 * not in split, unknown label; a unit test keeps the two lists equal), so a reason passes straight through.
 * Label values may hold spaces and `/`; PromQL selects them as `reason="not an image"`.
 */
export const SKIP_REASONS = Object.freeze(['empty', 'not an image', 'truncated/corrupt', 'too large', 'unreadable',
  'hidden file', 'unsupported extension', 'duplicate', 'unlabelled', 'not in split', 'unknown label'] as const);
/** One of {@link SKIP_REASONS}. */
export type SkipReason = (typeof SKIP_REASONS)[number];

/** One metric of the catalogue. */
export interface MetricSpec {
  /** Full metric name, prefix included, base unit last. */
  readonly name: string;
  /** Prometheus type. */
  readonly type: MetricType;
  /** Unit of the value. */
  readonly unit: MetricUnit;
  /** The `# HELP` text: what the value means. */
  readonly help: string;
  /** Bounded labels (besides `run`). */
  readonly labelNames: readonly MetricLabel[];
  /** Upper bucket bounds in the metric's unit (histograms only). */
  readonly buckets?: readonly number[];
}

/** Buckets for step and phase durations, seconds: 1 ms (GPU kernels) up to 60 s (a WASM step on one core). */
export const STEP_SECONDS_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60,
]);

/** Buckets for checkpoint write durations, seconds: 10 ms up to 2 min (ResNet34 + optimizer state ≈ 260 MB). */
export const CHECKPOINT_SECONDS_BUCKETS: readonly number[] = Object.freeze([
  0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
]);

function spec(
  name: string,
  type: MetricType,
  unit: MetricUnit,
  help: string,
  labelNames: readonly MetricLabel[] = [],
  buckets?: readonly number[],
): MetricSpec {
  return Object.freeze({ name: METRIC_PREFIX + name, type, unit, help, labelNames: Object.freeze([...labelNames]), buckets });
}

/** The catalogue, keyed by a short camel-case id used in code. */
export const METRICS = Object.freeze({
  trainLoss: spec('train_loss', 'gauge', 'dimensionless', 'Training loss (mean cross-entropy, nats) of the last step over the global batch.'),
  trainLossSmoothed: spec('train_loss_smoothed', 'gauge', 'dimensionless', 'Training loss smoothed as fastai does: debiased exponential moving average, beta 0.98.'),
  validLoss: spec('valid_loss', 'gauge', 'dimensionless', 'Validation loss (mean cross-entropy, nats) of the last validation pass.'),
  errorRate: spec('error_rate', 'gauge', 'ratio', 'Validation error rate of the last validation pass, 0..1 (fastai error_rate = 1 - accuracy).'),
  learningRate: spec('learning_rate', 'gauge', 'dimensionless', 'Learning rate of the current step, per layer group (discriminative learning rates).', ['group']),
  momentum: spec('momentum', 'gauge', 'dimensionless', 'Momentum (Adam beta1) of the current step, per layer group (one-cycle schedule).', ['group']),
  epoch: spec('epoch', 'gauge', 'count', 'Current epoch, 0-based.'),
  epochsPlanned: spec('epochs_planned', 'gauge', 'count', 'Epochs planned for the current fit.'),
  globalStep: spec('global_step', 'gauge', 'count', 'Optimizer steps completed in the whole run, across fits (the logs\' global step, Lightning global_step; a restart from a checkpoint goes back to its step).'),
  fitStep: spec('fit_step', 'gauge', 'count', 'Optimizer steps completed in the current fit, of pets_steps_planned.'),
  stepsPlanned: spec('steps_planned', 'gauge', 'count', 'Optimizer steps planned for the current fit.'),
  imagesProcessed: spec('images_processed_total', 'counter', 'count', 'Training images processed (forward and backward), per worker rank.', ['rank']),
  imagesPerSecond: spec('images_per_second', 'gauge', 'images_per_second', 'Training throughput of the last step, images per second, per worker rank.', ['rank']),
  stepDuration: spec('step_duration_seconds', 'histogram', 'seconds', 'Wall time of one global step as seen by the coordinator, seconds.', [], STEP_SECONDS_BUCKETS),
  stepPhase: spec('step_phase_seconds', 'histogram', 'seconds', 'Time a worker spent in each phase of a step, seconds.', ['rank', 'phase'], STEP_SECONDS_BUCKETS),
  allreduceSentBytes: spec('allreduce_sent_bytes_total', 'counter', 'bytes', 'Bytes a worker sent in gradient all-reduce.', ['rank']),
  allreduceDuration: spec('allreduce_duration_seconds', 'histogram', 'seconds', 'Wall time of one gradient all-reduce on a worker, seconds.', ['rank'], STEP_SECONDS_BUCKETS),
  linkBandwidth: spec('link_bandwidth_bytes_per_second', 'gauge', 'bytes_per_second', 'Measured bandwidth limit of the link between workers, bytes per second (the all-reduce ceiling).'),
  workers: spec('workers', 'gauge', 'count', 'Workers known to the coordinator, by membership state.', ['state']),
  heartbeatAge: spec('worker_heartbeat_age_seconds', 'gauge', 'seconds', 'Seconds since the coordinator last heard from a worker, computed at scrape time.', ['rank']),
  restarts: spec('restarts_total', 'counter', 'count', 'Group restarts from the last checkpoint, by reason.', ['reason']),
  checkpointsWritten: spec('checkpoints_written_total', 'counter', 'count', 'Checkpoints written (temp file, fsync, rename).'),
  checkpointDuration: spec('checkpoint_duration_seconds', 'histogram', 'seconds', 'Time to write one checkpoint, seconds.', [], CHECKPOINT_SECONDS_BUCKETS),
  lastCheckpoint: spec('last_checkpoint_timestamp_seconds', 'gauge', 'timestamp_seconds', 'Unix time of the last checkpoint written, seconds.'),
  replicaAgreement: spec('replica_checksum_agreement_ratio', 'gauge', 'ratio', 'Fraction of replicas whose parameter checksum equals rank 0\'s at the last check, 0..1.'),
  replicaMismatches: spec('replica_checksum_mismatches_total', 'counter', 'count', 'Replica checks where at least one parameter checksum differed from rank 0\'s.'),
  skippedFiles: spec('skipped_files_total', 'counter', 'count', 'Files under --data in neither split, by reason.', ['reason']),
  decodeQueue: spec('decode_queue_tasks', 'gauge', 'count', 'Image decode tasks waiting for a thread in a worker\'s decode pool after its last step.', ['rank']),
  tfjsMemory: spec('tfjs_memory_bytes', 'gauge', 'bytes', 'Bytes held by tfjs tensors on a worker (tf.memory().numBytes).', ['rank']),
  tfjsTensors: spec('tfjs_tensors', 'gauge', 'count', 'Live tfjs tensors on a worker (tf.memory().numTensors); should stay flat over steps.', ['rank']),
  workerResidentMemory: spec('worker_resident_memory_bytes', 'gauge', 'bytes', 'Resident set size of a worker process, bytes.', ['rank']),
} as const satisfies Record<string, MetricSpec>);

/** Short id of a catalogue metric. */
export type MetricId = keyof typeof METRICS;

/**
 * prom-client's default process metrics as registered with the `pets_` prefix
 * (`collectDefaultMetrics({ prefix: 'pets_' })`, prom-client 15) that the dashboards use. They follow
 * prom-client's own names, so they are outside {@link checkMetricSpec}'s rules (some gauges end in `_total`).
 */
export const PROCESS_METRIC_NAMES: readonly string[] = Object.freeze([
  'pets_process_cpu_seconds_total',
  'pets_process_resident_memory_bytes',
  'pets_process_start_time_seconds',
  'pets_nodejs_heap_size_used_bytes',
  'pets_nodejs_eventloop_lag_p99_seconds',
]);

/** Name suffix each unit requires (`undefined`: no suffix rule). */
export const UNIT_SUFFIXES: Readonly<Record<MetricUnit, readonly string[] | undefined>> = Object.freeze({
  seconds: ['_seconds', '_seconds_total'],
  timestamp_seconds: ['_timestamp_seconds'],
  bytes: ['_bytes', '_bytes_total'],
  bytes_per_second: ['_bytes_per_second'],
  images_per_second: ['_images_per_second'],
  ratio: ['_ratio', '_rate'],
  count: undefined,
  dimensionless: undefined,
});

const NAME_PATTERN = /^[a-z][a-z0-9_]*$/;

/**
 * Checks one metric against the naming conventions.
 * @param metric - the spec to check
 * @returns the violations, as sentences naming the metric and the rule; empty when the spec is fine
 */
export function checkMetricSpec(metric: MetricSpec): string[] {
  const problems: string[] = [];
  const { name } = metric;
  if (!name.startsWith(METRIC_PREFIX)) problems.push(`${name}: must start with "${METRIC_PREFIX}"`);
  if (!NAME_PATTERN.test(name)) problems.push(`${name}: must be snake_case [a-z0-9_]`);
  const isTotal = name.endsWith('_total');
  if (metric.type === 'counter' && !isTotal) problems.push(`${name}: a counter must end in "_total"`);
  if (metric.type !== 'counter' && isTotal) problems.push(`${name}: only counters may end in "_total"`);
  const suffixes = UNIT_SUFFIXES[metric.unit];
  if (suffixes !== undefined && !suffixes.some((s) => name.endsWith(s))) {
    problems.push(`${name}: unit ${metric.unit} needs a name ending in ${suffixes.join(' or ')}`);
  }
  for (const label of metric.labelNames) {
    if (!ALLOWED_LABELS.includes(label)) problems.push(`${name}: label "${label}" is not one of the bounded labels`);
  }
  if ((metric.type === 'histogram') !== (metric.buckets !== undefined)) {
    problems.push(`${name}: buckets are required for histograms and only for them`);
  }
  return problems;
}

/**
 * Series names a catalogue metric exposes: the name itself, plus `_bucket`/`_sum`/`_count` for histograms.
 * @returns every exposed series name of the catalogue and of {@link PROCESS_METRIC_NAMES}
 */
export function exposedSeriesNames(): Set<string> {
  const names = new Set<string>(PROCESS_METRIC_NAMES);
  for (const metric of Object.values(METRICS) as MetricSpec[]) {
    names.add(metric.name);
    if (metric.type === 'histogram') {
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(metric.name + suffix);
    }
  }
  return names;
}
