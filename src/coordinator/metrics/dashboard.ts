/**
 * The Grafana "training" dashboard, as data: `scripts/gen-dashboard.ts` writes it to
 * `grafana/dashboards/training.json`, and tests check that the file is in sync, that every metric an expression
 * uses is in the catalogue, and (with a real Prometheus) that every expression returns data.
 *
 * Format: Grafana dashboard JSON model, schemaVersion 39 (Grafana 10.x/11.x,
 * https://grafana.com/docs/grafana/latest/dashboards/build-dashboards/view-dashboard-json-model/).
 */

/** uid of the provisioned Prometheus datasource (grafana/provisioning/datasources/prometheus.yaml). */
export const DATASOURCE_UID = 'pets-prometheus';
/** uid of the training dashboard (stable URL: /d/pets-training). */
export const DASHBOARD_UID = 'pets-training';
/** Dashboard schema version written (Grafana 10.4+ reads it natively). */
export const DASHBOARD_SCHEMA_VERSION = 39;
/** How every panel and query references the datasource: through the `datasource` template variable. */
export const DATASOURCE_REF = Object.freeze({ type: 'prometheus', uid: '${datasource}' });

interface QueryDef {
  readonly expr: string;
  readonly legend: string;
  /** Grafana unit of this query when it differs from the panel's (written as a field override by refId). */
  readonly unit?: string;
}

interface PanelDef {
  readonly title: string;
  readonly description: string;
  readonly type: 'timeseries' | 'stat';
  /** Grafana unit id: s, bytes, Bps, percentunit, short, none, dateTimeFromNow. */
  readonly unit: string;
  readonly queries: readonly QueryDef[];
  readonly width?: number;
  readonly stack?: boolean;
  readonly log?: boolean;
}

interface RowDef {
  readonly title: string;
  readonly panels: readonly PanelDef[];
}

const R = 'run=~"$run"';
const W = 'run=~"$run", rank=~"$worker"';
const RI = '$__rate_interval';

const q = (expr: string, legend: string, unit?: string): QueryDef => (unit === undefined ? { expr, legend } : { expr, legend, unit });
const quantile = (p: number, metric: string, by: string, filter: string): string =>
  `histogram_quantile(${p}, sum by (le${by ? `, ${by}` : ''}) (rate(${metric}_bucket{${filter}}[${RI}])))`;

const TRAINING: RowDef = {
  title: 'Training progress',
  panels: [
    { title: 'Loss', description: 'Train loss per step, fastai-smoothed train loss, validation loss (nats).', type: 'timeseries', unit: 'none', width: 12, queries: [
      q(`pets_train_loss{${R}}`, 'train'), q(`pets_train_loss_smoothed{${R}}`, 'train (smoothed)'), q(`pets_valid_loss{${R}}`, 'valid')] },
    { title: 'Error rate', description: 'Validation error rate (1 − accuracy).', type: 'timeseries', unit: 'percentunit', width: 12, queries: [
      q(`pets_error_rate{${R}}`, 'error_rate')] },
    { title: 'Learning rate per layer group', description: 'One-cycle lr of each layer group (discriminative lrs), log scale.', type: 'timeseries', unit: 'none', width: 8, log: true, queries: [
      q(`pets_learning_rate{${R}}`, 'group {{group}}')] },
    { title: 'Momentum per layer group', description: 'One-cycle momentum (Adam beta1) of each layer group.', type: 'timeseries', unit: 'none', width: 8, queries: [
      q(`pets_momentum{${R}}`, 'group {{group}}')] },
    { title: 'Fit progress', description: 'Steps done / steps planned in the current fit.', type: 'stat', unit: 'percentunit', width: 4, queries: [
      q(`pets_fit_step{${R}} / pets_steps_planned{${R}}`, 'steps')] },
    { title: 'Epoch', description: 'Current epoch (1-based) and epochs planned.', type: 'stat', unit: 'none', width: 4, queries: [
      q(`pets_epoch{${R}} + 1`, 'epoch'), q(`pets_epochs_planned{${R}}`, 'of')] },
  ],
};

const THROUGHPUT: RowDef = {
  title: 'Throughput',
  panels: [
    { title: 'Images/s, total', description: 'Sum of the workers\' last-step throughput, and the counter rate.', type: 'timeseries', unit: 'short', width: 8, queries: [
      q(`sum(pets_images_per_second{${R}})`, 'last step'), q(`sum(rate(pets_images_processed_total{${R}}[${RI}]))`, 'rate')] },
    { title: 'Images/s per worker', description: 'Each worker\'s throughput; a straggler shows here first.', type: 'timeseries', unit: 'short', width: 8, queries: [
      q(`pets_images_per_second{${W}}`, 'rank {{rank}}')] },
    { title: 'Step time p50 / p90', description: 'Global step wall time at the coordinator.', type: 'timeseries', unit: 's', width: 8, queries: [
      q(quantile(0.5, 'pets_step_duration_seconds', '', R), 'p50'), q(quantile(0.9, 'pets_step_duration_seconds', '', R), 'p90')] },
    { title: 'Step phases (mean seconds per step, stacked)', description: 'Where a step goes: data wait, forward+backward, all-reduce, optimizer (mean over the selected workers).', type: 'timeseries', unit: 's', width: 24, stack: true, queries: [
      q(`sum by (phase) (rate(pets_step_phase_seconds_sum{${W}}[${RI}])) / sum by (phase) (rate(pets_step_phase_seconds_count{${W}}[${RI}]))`, '{{phase}}')] },
  ],
};

const COMMUNICATION: RowDef = {
  title: 'Communication',
  panels: [
    { title: 'All-reduce bandwidth vs link limit', description: 'Bytes sent per second of all-reduce time, against the measured link limit.', type: 'timeseries', unit: 'Bps', width: 12, queries: [
      q(`sum by (rank) (rate(pets_allreduce_sent_bytes_total{${W}}[${RI}])) / sum by (rank) (rate(pets_allreduce_duration_seconds_sum{${W}}[${RI}]))`, 'rank {{rank}}'),
      q(`pets_link_bandwidth_bytes_per_second{${R}}`, 'measured link limit')] },
    { title: 'All-reduce time p50 / p90', description: 'Wall time of one gradient all-reduce.', type: 'timeseries', unit: 's', width: 12, queries: [
      q(quantile(0.5, 'pets_allreduce_duration_seconds', '', W), 'p50'), q(quantile(0.9, 'pets_allreduce_duration_seconds', '', W), 'p90')] },
  ],
};

const HEALTH: RowDef = {
  title: 'Cluster health',
  panels: [
    { title: 'Workers up', description: 'Workers ready or training.', type: 'stat', unit: 'short', width: 4, queries: [
      q(`sum(pets_workers{${R}, state=~"ready|training"})`, 'up')] },
    { title: 'Workers by state', description: 'Membership as the coordinator sees it.', type: 'timeseries', unit: 'short', width: 8, stack: true, queries: [
      q(`pets_workers{${R}}`, '{{state}}')] },
    { title: 'Heartbeat age', description: 'Seconds since each worker was last heard from.', type: 'timeseries', unit: 's', width: 12, queries: [
      q(`pets_worker_heartbeat_age_seconds{${W}}`, 'rank {{rank}}')] },
    { title: 'Restarts', description: 'Group restarts from checkpoint, by reason.', type: 'stat', unit: 'short', width: 6, queries: [
      q(`sum by (reason) (pets_restarts_total{${R}})`, '{{reason}}')] },
    { title: 'Checkpoints', description: 'Checkpoints written and mean write time.', type: 'stat', unit: 'short', width: 6, queries: [
      q(`pets_checkpoints_written_total{${R}}`, 'written'),
      q(`pets_checkpoint_duration_seconds_sum{${R}} / pets_checkpoint_duration_seconds_count{${R}}`, 'mean write time', 's')] },
    { title: 'Since last checkpoint', description: 'Seconds since the last checkpoint was written.', type: 'stat', unit: 's', width: 6, queries: [
      q(`time() - pets_last_checkpoint_timestamp_seconds{${R}}`, 'age')] },
    { title: 'Replica agreement', description: 'Fraction of replicas whose parameter checksum equals rank 0\'s (1 = bit-identical), and mismatching checks.', type: 'stat', unit: 'percentunit', width: 6, queries: [
      q(`pets_replica_checksum_agreement_ratio{${R}}`, 'agreement'), q(`pets_replica_checksum_mismatches_total{${R}}`, 'mismatches', 'short')] },
  ],
};

const DATA: RowDef = {
  title: 'Data',
  panels: [
    { title: 'Skipped image files', description: 'Files the loader skipped, by reason.', type: 'stat', unit: 'short', width: 12, queries: [
      q(`sum by (reason) (pets_skipped_files_total{${R}})`, '{{reason}}')] },
    { title: 'Decode queue', description: 'Image decode tasks waiting for a thread in each worker\'s decode pool after its last step; a queue that keeps growing means decoding cannot keep up (compare the data-wait phase).', type: 'timeseries', unit: 'short', width: 12, queries: [
      q(`pets_decode_queue_tasks{${W}}`, 'rank {{rank}}')] },
  ],
};

const RESOURCES: RowDef = {
  title: 'Process resources',
  panels: [
    { title: 'Resident memory', description: 'RSS of the coordinator and of each worker.', type: 'timeseries', unit: 'bytes', width: 8, queries: [
      q(`pets_process_resident_memory_bytes{${R}}`, 'coordinator'), q(`pets_worker_resident_memory_bytes{${W}}`, 'rank {{rank}}')] },
    { title: 'tfjs memory per worker', description: 'Bytes held by tfjs tensors (tf.memory().numBytes).', type: 'timeseries', unit: 'bytes', width: 8, queries: [
      q(`pets_tfjs_memory_bytes{${W}}`, 'rank {{rank}}')] },
    { title: 'tfjs tensors per worker', description: 'Live tensors; a rising line is a leak.', type: 'timeseries', unit: 'short', width: 8, queries: [
      q(`pets_tfjs_tensors{${W}}`, 'rank {{rank}}')] },
    { title: 'Coordinator CPU', description: 'CPU seconds per second used by the coordinator.', type: 'timeseries', unit: 'percentunit', width: 8, queries: [
      q(`rate(pets_process_cpu_seconds_total{${R}}[${RI}])`, 'cpu')] },
    { title: 'Coordinator heap', description: 'V8 heap used by the coordinator.', type: 'timeseries', unit: 'bytes', width: 8, queries: [
      q(`pets_nodejs_heap_size_used_bytes{${R}}`, 'heap used')] },
    { title: 'Coordinator event-loop lag p99', description: 'A busy event loop delays heartbeats and step commands.', type: 'timeseries', unit: 's', width: 8, queries: [
      q(`pets_nodejs_eventloop_lag_p99_seconds{${R}}`, 'p99')] },
  ],
};

/** The dashboard's rows, top to bottom. */
export const DASHBOARD_ROWS: readonly RowDef[] = Object.freeze([TRAINING, THROUGHPUT, COMMUNICATION, HEALTH, DATA, RESOURCES]);

function fieldConfig(panel: PanelDef): object {
  const custom = panel.type === 'timeseries'
    ? {
        drawStyle: 'line', lineWidth: 1, fillOpacity: panel.stack ? 30 : 0, showPoints: 'never', spanNulls: true,
        stacking: { mode: panel.stack ? 'normal' : 'none', group: 'A' },
        scaleDistribution: panel.log ? { type: 'log', log: 10 } : { type: 'linear' },
      }
    : {};
  // A query in another unit than the panel's (a count beside a ratio, seconds beside a count) gets its own, or
  // Grafana shows 3 mismatches as "300%" and 1.5 s as a bare "1.50".
  const overrides = panel.queries.flatMap((query, i) => (query.unit === undefined || query.unit === panel.unit ? [] : [{
    matcher: { id: 'byFrameRefID', options: refIdOf(i) },
    properties: [{ id: 'unit', value: query.unit }],
  }]));
  return { defaults: { unit: panel.unit, custom }, overrides };
}

/** Grafana's refId of a panel's i-th query: A, B, C, … */
function refIdOf(i: number): string {
  return String.fromCharCode(65 + i);
}

function panelOptions(panel: PanelDef): object {
  if (panel.type === 'stat') {
    return { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value', graphMode: 'none', textMode: 'value_and_name' };
  }
  return { legend: { displayMode: 'list', placement: 'bottom', showLegend: true }, tooltip: { mode: 'multi', sort: 'none' } };
}

function buildPanel(panel: PanelDef, id: number, x: number, y: number): object {
  const targets = panel.queries.map((query, i) => ({
    refId: refIdOf(i),
    datasource: DATASOURCE_REF,
    expr: query.expr,
    legendFormat: query.legend,
    range: true,
    instant: false,
  }));
  const gridPos = { h: 8, w: panel.width ?? 12, x, y };
  return { id, type: panel.type, title: panel.title, description: panel.description, datasource: DATASOURCE_REF, gridPos, fieldConfig: fieldConfig(panel), options: panelOptions(panel), targets };
}

function buildPanels(): object[] {
  const panels: object[] = [];
  let id = 1;
  let y = 0;
  for (const row of DASHBOARD_ROWS) {
    panels.push({ id: id++, type: 'row', title: row.title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] });
    y += 1;
    let x = 0;
    for (const panel of row.panels) {
      const w = panel.width ?? 12;
      if (x + w > 24) {
        x = 0;
        y += 8;
      }
      panels.push(buildPanel(panel, id++, x, y));
      x += w;
    }
    y += 8;
  }
  return panels;
}

function queryVariable(name: string, label: string, query: string, multi: boolean): object {
  return {
    name, label, type: 'query', datasource: DATASOURCE_REF, definition: query,
    query: { query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
    refresh: 2, sort: 3, multi, includeAll: multi, ...(multi ? { allValue: '.*', current: { text: 'All', value: '$__all' } } : {}),
    hide: 0, options: [], regex: '',
  };
}

function templating(): object {
  return {
    list: [
      { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus', current: { text: 'Prometheus', value: DATASOURCE_UID }, hide: 0, refresh: 1, regex: '', options: [] },
      queryVariable('run', 'Run', 'label_values(pets_global_step, run)', false),
      queryVariable('worker', 'Worker rank', 'label_values(pets_worker_heartbeat_age_seconds{run=~"$run"}, rank)', true),
    ],
  };
}

/** Builds the training dashboard (Grafana JSON model). */
export function buildTrainingDashboard(): Record<string, unknown> {
  return {
    uid: DASHBOARD_UID,
    title: 'Pets trainer: training',
    description: 'Distributed pets trainer: progress, throughput, communication, cluster health, data, resources. Generated by scripts/gen-dashboard.ts; do not edit by hand.',
    tags: ['pets-trainer', 'training'],
    schemaVersion: DASHBOARD_SCHEMA_VERSION,
    version: 1,
    editable: true,
    graphTooltip: 1,
    timezone: 'browser',
    refresh: '10s',
    time: { from: 'now-1h', to: 'now' },
    timepicker: {},
    annotations: { list: [] },
    links: [],
    templating: templating(),
    panels: buildPanels(),
  };
}

/** The dashboard as written to disk: 2-space JSON and a final newline. */
export function renderTrainingDashboard(): string {
  return `${JSON.stringify(buildTrainingDashboard(), null, 2)}\n`;
}

/** One PromQL expression of a dashboard, with where it lives. */
export interface DashboardQuery {
  /** Title of the panel (or `variable <name>` for a templating query). */
  readonly where: string;
  /** The PromQL text, template variables unsubstituted. */
  readonly expr: string;
}

/**
 * Lists every PromQL expression of a dashboard JSON model: panel targets (rows' nested panels included) and
 * `label_values(...)` templating queries.
 * @param dashboard - a parsed dashboard JSON
 */
export function listDashboardQueries(dashboard: unknown): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  const visit = (panels: unknown): void => {
    if (!Array.isArray(panels)) return;
    for (const panel of panels as { title?: string; targets?: { expr?: string }[]; panels?: unknown }[]) {
      for (const target of panel.targets ?? []) if (typeof target.expr === 'string') out.push({ where: String(panel.title), expr: target.expr });
      visit(panel.panels);
    }
  };
  const model = dashboard as { panels?: unknown; templating?: { list?: { name: string; type: string; definition?: string }[] } };
  visit(model.panels);
  for (const variable of model.templating?.list ?? []) {
    if (variable.type === 'query' && variable.definition) out.push({ where: `variable ${variable.name}`, expr: variable.definition });
  }
  return out;
}

/**
 * Metric names a PromQL expression refers to: identifiers starting with `pets_` (all trainer metrics do).
 * @param expr - PromQL text, e.g. `rate(pets_images_processed_total{run=~"$run"}[1m])` → ['pets_images_processed_total']
 */
export function metricNamesIn(expr: string): string[] {
  const withoutStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  return [...new Set(withoutStrings.match(/\bpets_[a-zA-Z0-9_]*/g) ?? [])];
}
