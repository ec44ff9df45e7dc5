/**
 * MetricsServer: scraped over real HTTP on 127.0.0.1 (ephemeral ports); checks the naming/label conventions on
 * the wire, the recording API's effect on the exposition, the dashboard ↔ catalogue link, and the lifecycle.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { DEFAULT_METRICS_PORT, MetricsServer, parseMetricsPort, resolveMetricsServerOptions } from '../../../../src/coordinator/metrics/server.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { ALLOWED_LABELS, METRICS, PROCESS_METRIC_NAMES, exposedSeriesNames, type MetricSpec } from '../../../../src/coordinator/metrics/catalog.js';
import { listDashboardQueries, metricNamesIn } from '../../../../src/coordinator/metrics/dashboard.js';
import type { StepStats } from '../../../../src/contract/protocol/index.js';
import { resolveTrainingMetricsOptions, runLabelOf } from '../../../../src/coordinator/metrics/training-metrics.js';

interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** Parses Prometheus text exposition 0.0.4 sample lines (no escaped quotes in our label values). */
function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function find(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

function one(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = find(samples, name, labels);
  assert.equal(found.length, 1, `expected one sample of ${name}${JSON.stringify(labels)}, got ${found.length}`);
  return found[0].value;
}

async function scrape(server: MetricsServer): Promise<{ text: string; samples: Sample[]; type: string | null }> {
  const res = await fetch(server.url);
  assert.equal(res.status, 200);
  const text = await res.text();
  return { text, samples: parseSamples(text), type: res.headers.get('content-type') };
}

// A step-done's statistics, as the wire carries them. Durations are binary fractions, so the step's wall time
// (data wait + forward/backward + all-reduce; the optimizer runs at the commit) is exactly 0.5 s.
const STATS: StepStats = Object.freeze({
  count: 32,
  dataWaitSeconds: 0.0625,
  forwardBackwardSeconds: 0.3125,
  allreduceSeconds: 0.125,
  optimizerSeconds: 0.04,
  allreduceBytes: 170_000_000,
  decodeQueueTasks: 3,
  tfjsBytes: 350_000_000,
  tfjsTensors: 420,
  rssBytes: 900_000_000,
});

async function withServer(fn: (server: MetricsServer, clock: { ms: number }) => Promise<void>, defaultMetrics = false): Promise<void> {
  const clock = { ms: 1_700_000_000_000 };
  const server = new MetricsServer({ port: 0, runId: 'unit-run', defaultMetrics, nowMs: () => clock.ms });
  await server.start();
  try {
    await fn(server, clock);
  } finally {
    await server.close();
  }
}

describe('MetricsServer exposition', () => {
  it('declares every catalogue metric with its type, and every series carries run and only bounded labels', async () => {
    await withServer(async (server) => {
      server.setPlan({ epochs: 4, totalSteps: 92 });
      server.setWorkerState(0, 'training');
      server.recordWorkerReport(0, STATS);
      server.recordStep({ step: 1, globalStep: 1, epoch: 0, trainLoss: 3.6, lrs: [1e-4, 1e-3], moms: [0.95, 0.95], durationSeconds: 0.6 });
      const { text, samples, type } = await scrape(server);
      assert.match(type ?? '', /^text\/plain; version=0\.0\.4/);
      for (const metric of Object.values(METRICS) as MetricSpec[]) {
        assert.ok(text.includes(`# TYPE ${metric.name} ${metric.type}\n`), `missing # TYPE ${metric.name} ${metric.type}`);
      }
      assert.ok(samples.length > 50, `expected many samples, got ${samples.length}`);
      for (const sample of samples) {
        assert.equal(sample.labels.run, 'unit-run', `${sample.name} lacks run="unit-run"`);
        for (const label of Object.keys(sample.labels)) {
          assert.ok(ALLOWED_LABELS.includes(label) || label === 'le', `${sample.name} has unbounded label ${label}`);
        }
      }
    });
  });

  it('serves the recorded step, smoothed loss (fastai formula), lr/mom per group and progress', async () => {
    await withServer(async (server) => {
      server.setPlan({ epochs: 4, totalSteps: 92 });
      server.recordStep({ step: 1, globalStep: 31, epoch: 0, trainLoss: 2, lrs: [1e-4, 1e-3], moms: [0.95, 0.9], durationSeconds: 0.5 });
      server.recordStep({ step: 2, globalStep: 32, epoch: 0, trainLoss: 1, lrs: [2e-4, 2e-3], moms: [0.94, 0.89], durationSeconds: 0.7 });
      const { samples } = await scrape(server);
      assert.equal(one(samples, 'pets_train_loss'), 1);
      // fastai SmoothenValue, beta 0.98: mov = 0.02·2 = 0.04, then 0.98·0.04 + 0.02·1 = 0.0592; debiased by 1 − 0.98².
      assert.ok(Math.abs(one(samples, 'pets_train_loss_smoothed') - 0.0592 / (1 - 0.98 ** 2)) < 1e-12);
      assert.equal(one(samples, 'pets_learning_rate', { group: '1' }), 2e-3);
      assert.equal(one(samples, 'pets_momentum', { group: '0' }), 0.94);
      // A second fit, after 30 steps of a first: the run's step (Lightning's global_step) and the fit's, of its plan.
      assert.equal(one(samples, 'pets_global_step'), 32);
      assert.equal(one(samples, 'pets_fit_step'), 2);
      assert.equal(one(samples, 'pets_steps_planned'), 92);
      assert.equal(one(samples, 'pets_epochs_planned'), 4);
      assert.equal(one(samples, 'pets_step_duration_seconds_count'), 2);
      assert.ok(Math.abs(one(samples, 'pets_step_duration_seconds_sum') - 1.2) < 1e-12);
      assert.equal(one(samples, 'pets_step_duration_seconds_bucket', { le: '0.5' }), 1, 'le is inclusive: 0.5 falls in le="0.5"');
      // Not yet known: no sample rather than a misleading 0.
      assert.equal(find(samples, 'pets_valid_loss').length, 0);
      server.recordValidation({ validLoss: 0.31, errorRate: 0.07 });
      const after = (await scrape(server)).samples;
      assert.equal(one(after, 'pets_valid_loss'), 0.31);
      assert.equal(one(after, 'pets_error_rate'), 0.07);
    });
  });

  it('computes heartbeat age and workers by state at scrape time, and drops a lost worker\'s current gauges', async () => {
    await withServer(async (server, clock) => {
      server.setWorkerState(0, 'training');
      server.setWorkerState(1, 'training');
      server.recordWorkerReport(0, STATS);
      server.recordWorkerReport(1, STATS);
      clock.ms += 7500;
      server.observeHeartbeat(0);
      let { samples } = await scrape(server);
      assert.equal(one(samples, 'pets_worker_heartbeat_age_seconds', { rank: '0' }), 0);
      assert.equal(one(samples, 'pets_worker_heartbeat_age_seconds', { rank: '1' }), 7.5);
      assert.equal(one(samples, 'pets_workers', { state: 'training' }), 2);
      assert.equal(one(samples, 'pets_workers', { state: 'lost' }), 0);
      assert.equal(one(samples, 'pets_images_per_second', { rank: '1' }), 64, '32 images / 0.5 s');
      server.setWorkerState(1, 'lost');
      clock.ms += 2500;
      ({ samples } = await scrape(server));
      assert.equal(one(samples, 'pets_workers', { state: 'lost' }), 1);
      assert.equal(one(samples, 'pets_worker_heartbeat_age_seconds', { rank: '1' }), 10);
      assert.equal(find(samples, 'pets_images_per_second', { rank: '1' }).length, 0);
      assert.equal(find(samples, 'pets_tfjs_tensors', { rank: '1' }).length, 0);
      server.forgetWorker(1);
      ({ samples } = await scrape(server));
      assert.equal(find(samples, 'pets_worker_heartbeat_age_seconds', { rank: '1' }).length, 0);
      assert.equal(find(samples, 'pets_images_processed_total', { rank: '1' }).length, 0);
    });
  });

  it('accumulates worker reports into counters and phase histograms per rank', async () => {
    await withServer(async (server) => {
      server.setWorkerState(3, 'training');
      for (let i = 0; i < 3; i += 1) server.recordWorkerReport(3, STATS);
      const { samples } = await scrape(server);
      assert.equal(one(samples, 'pets_images_processed_total', { rank: '3' }), 96);
      assert.equal(one(samples, 'pets_allreduce_sent_bytes_total', { rank: '3' }), 510_000_000);
      assert.equal(one(samples, 'pets_step_phase_seconds_count', { rank: '3', phase: 'forward_backward' }), 3);
      assert.equal(one(samples, 'pets_step_phase_seconds_sum', { rank: '3', phase: 'allreduce' }), 0.375, '3 × 0.125 s');
      assert.equal(one(samples, 'pets_step_phase_seconds_sum', { rank: '3', phase: 'forward_backward' }), 0.9375, '3 × 0.3125 s');
      assert.equal(one(samples, 'pets_allreduce_duration_seconds_count', { rank: '3' }), 3);
      assert.equal(one(samples, 'pets_tfjs_memory_bytes', { rank: '3' }), 350_000_000);
      assert.equal(one(samples, 'pets_decode_queue_tasks', { rank: '3' }), 3);
    });
  });

  it('counts checkpoints, restarts, skipped files and replica checks; closed label sets start at 0', async () => {
    await withServer(async (server, clock) => {
      let { samples } = await scrape(server);
      assert.equal(one(samples, 'pets_restarts_total', { reason: 'worker_lost' }), 0);
      assert.equal(one(samples, 'pets_skipped_files_total', { reason: 'empty' }), 0);
      assert.equal(find(samples, 'pets_last_checkpoint_timestamp_seconds').length, 0);
      server.recordCheckpoint(1.5);
      server.recordRestart('worker_lost');
      server.recordSkipped('truncated/corrupt', 2);
      server.recordSkipped('empty');
      assert.equal(server.recordReplicaChecksums(['a', 'a', 'b', 'a']), 0.75);
      server.setLinkBandwidth(1.25e9);
      ({ samples } = await scrape(server));
      assert.equal(one(samples, 'pets_checkpoints_written_total'), 1);
      assert.equal(one(samples, 'pets_last_checkpoint_timestamp_seconds'), clock.ms / 1000);
      assert.equal(one(samples, 'pets_restarts_total', { reason: 'worker_lost' }), 1);
      assert.equal(one(samples, 'pets_skipped_files_total', { reason: 'truncated/corrupt' }), 2);
      assert.equal(one(samples, 'pets_skipped_files_total', { reason: 'empty' }), 1);
      assert.equal(one(samples, 'pets_replica_checksum_agreement_ratio'), 0.75);
      assert.equal(one(samples, 'pets_replica_checksum_mismatches_total'), 1);
      assert.equal(one(samples, 'pets_link_bandwidth_bytes_per_second'), 1.25e9);
    });
  });

  it('rejects labels outside the bounded sets and out-of-range values with ERR_INTERNAL', async () => {
    await withServer(async (server) => {
      assert.throws(() => server.recordSkipped('weird' as never), (e) => isTrainerError(e, 'ERR_INTERNAL') && /skip reason/.test(e.message));
      assert.throws(() => server.setWorkerState(-1, 'ready'), (e) => isTrainerError(e, 'ERR_INTERNAL') && /rank/.test(e.message));
      assert.throws(() => server.setWorkerState(0, 'sleeping' as never), (e) => isTrainerError(e, 'ERR_INTERNAL'));
      const step = { step: 1, globalStep: 1, epoch: 0, trainLoss: 1, lrs: [1e-3], moms: [0.9], durationSeconds: Number.NaN };
      assert.throws(() => server.recordStep(step), (e) => isTrainerError(e, 'ERR_INTERNAL') && /durationSeconds must be a finite number ≥ 0, got NaN/.test(e.message));
      assert.throws(() => server.recordCheckpoint(-1), (e) => isTrainerError(e, 'ERR_INTERNAL') && /checkpoint seconds/.test(e.message));
      assert.throws(() => server.recordSkipped('empty', 1.5), (e) => isTrainerError(e, 'ERR_INTERNAL'));
      // A rejected call leaves nothing behind: no step recorded, no checkpoint counted.
      const { samples } = await scrape(server);
      assert.equal(find(samples, 'pets_global_step').length, 0);
      assert.equal(one(samples, 'pets_checkpoints_written_total'), 0);
    });
  });
});

describe('dashboard ↔ catalogue', () => {
  it('every metric name used in a dashboard expression is defined, and exposed on a real scrape', async () => {
    const dashboard = JSON.parse(await readFile(new URL('../../../../grafana/dashboards/training.json', import.meta.url), 'utf8'));
    const queries = listDashboardQueries(dashboard);
    assert.ok(queries.length >= 25, `expected ≥ 25 dashboard queries, got ${queries.length}`);
    const defined = exposedSeriesNames();
    await withServer(async (server) => {
      server.recordStep({ step: 1, globalStep: 1, epoch: 0, trainLoss: 3, lrs: [1e-3], moms: [0.9], durationSeconds: 1 });
      const exposed = new Set((await scrape(server)).samples.map((s) => s.name));
      for (const name of PROCESS_METRIC_NAMES) assert.ok(exposed.has(name), `process metric ${name} not exposed by prom-client`);
      for (const { where, expr } of queries) {
        const names = metricNamesIn(expr);
        assert.ok(names.length > 0, `${where}: no pets_ metric in ${expr}`);
        for (const name of names) assert.ok(defined.has(name), `${where}: ${name} is not in the catalogue`);
      }
    }, true);
  });
});

describe('MetricsServer lifecycle and options', () => {
  it('reports a taken port as ERR_PORT_IN_USE naming the flag', async () => {
    await withServer(async (first) => {
      const second = new MetricsServer({ port: first.port, defaultMetrics: false });
      await assert.rejects(second.start(), (e) => isTrainerError(e, 'ERR_PORT_IN_USE') && e.message.includes(`--metrics-port ${first.port}`));
      await second.close();
      await second.close();
    });
  });

  it('close() is idempotent, stops serving, and start() after close() is refused', async () => {
    const server = new MetricsServer({ port: 0, defaultMetrics: false });
    await Promise.all([server.start(), server.start()]);
    const url = server.url;
    assert.equal((await fetch(url.replace('/metrics', '/nope'))).status, 404);
    await Promise.all([server.close(), server.close()]);
    await server.close();
    await assert.rejects(fetch(url));
    await assert.rejects(server.start(), (e) => isTrainerError(e, 'ERR_INTERNAL'));
  });

  it('validates options and --metrics-port text', () => {
    assert.equal(resolveMetricsServerOptions().port, DEFAULT_METRICS_PORT);
    assert.equal(resolveMetricsServerOptions().host, '127.0.0.1');
    assert.equal(parseMetricsPort('0'), 0);
    assert.equal(parseMetricsPort(' 9464 '), 9464);
    for (const bad of ['abc', '-1', '65536', '1.5', '']) {
      assert.throws(() => parseMetricsPort(bad), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /--metrics-port must be an integer in 0\.\.65535/.test(e.message));
    }
    assert.throws(() => new MetricsServer({ port: 70000 }), (e) => isTrainerError(e, 'ERR_BAD_FLAG'));
    assert.throws(() => new MetricsServer({ host: ' ' }), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /--metrics-host/.test(e.message));
    assert.throws(() => new MetricsServer({ runId: 'a b' }), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /--run/.test(e.message));
  });
});

describe('runLabelOf', () => {
  it('keeps a name of the label rule and maps any other folder name into it (never refuses one)', () => {
    assert.equal(runLabelOf('2026-11-30T12-00-00'), '2026-11-30T12-00-00');
    assert.equal(runLabelOf('my run'), 'my_run');
    assert.equal(runLabelOf('ünï ☃'), 'r_n___');
    assert.equal(runLabelOf('.exp'), 'r.exp');
    assert.equal(runLabelOf('x'.repeat(100)), 'x'.repeat(64));
    for (const name of ['my run', 'ünï ☃', '.exp', '-', 'x'.repeat(100)]) resolveTrainingMetricsOptions({ runId: runLabelOf(name) });
  });
});
