/**
 * End to end through a real Prometheus: it scrapes a MetricsServer every second, then EVERY PromQL expression of
 * EVERY dashboard panel (and every templating query) is evaluated through /api/v1/query with the template
 * variables substituted, and must return data with at least one finite value.
 *
 * STAND-IN: until the training runtime lands, the scrape target is a MetricsServer fed by `feedStandIn` below,
 * which calls the recording API the coordinator will call, with plausible values for a 2-worker run. The
 * harness takes any target URL, so the end-to-end test of a real 2-worker run reuses it unchanged.
 *
 * Skipped (with the install command) only when the `prometheus` binary is absent.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { MetricsServer } from '../../src/coordinator/metrics.js';
import { listDashboardQueries } from '../../src/shared/metrics/dashboard.js';
import { PROMETHEUS_INSTALL_HINT, PrometheusHarness, findPrometheusBinary, substituteVariables } from './support/prometheus.js';

const RUN_ID = 'it-prometheus';
const WORKERS = 2;
const FEED_PERIOD_MS = 150;

/**
 * Stand-in for the training runtime: a 2-worker run reporting a step every {@link FEED_PERIOD_MS} ms.
 * @returns a function that stops the loop
 */
function feedStandIn(server: MetricsServer): () => void {
  server.setPlan({ epochs: 4, totalSteps: 400 });
  server.setLinkBandwidth(1.25e9);
  server.recordSkipped('truncated/corrupt');
  server.recordSkipped('empty');
  server.recordSkipped('not an image');
  server.recordReplicaChecksums(['c0ffee', 'c0ffee']);
  for (let rank = 0; rank < WORKERS; rank += 1) server.setWorkerState(rank, 'training');
  let step = 0;
  const timer = setInterval(() => {
    step += 1;
    for (let rank = 0; rank < WORKERS; rank += 1) {
      const jitter = 1 + 0.1 * Math.sin(step + rank);
      server.recordWorkerReport(rank, {
        images: 32, stepSeconds: 0.12 * jitter,
        phases: { dataWaitSeconds: 0.005 * jitter, forwardBackwardSeconds: 0.08 * jitter, allreduceSeconds: 0.03 * jitter, optimizerSeconds: 0.005 },
        allreduceBytes: 2 * 85_000_000 * (WORKERS - 1) / WORKERS, loaderQueueDepth: 2 + (step % 3),
        tfjsBytes: 350e6, tfjsTensors: 420, rssBytes: 900e6,
      });
    }
    server.recordStep({ step, epoch: Math.floor(step / 100), trainLoss: 3.6 / (1 + step / 20), lrs: [1e-4, 1e-3, 3e-3], moms: [0.95, 0.95, 0.95], durationSeconds: 0.13 });
    if (step % 10 === 0) {
      server.recordValidation({ validLoss: 2 / (1 + step / 20), errorRate: 0.5 / (1 + step / 50) });
      server.recordCheckpoint(0.2 + 0.01 * (step % 7));
    }
  }, FEED_PERIOD_MS);
  return () => clearInterval(timer);
}

const binary = findPrometheusBinary();

describe('dashboard queries against a real Prometheus', { skip: binary ? false : `prometheus binary not found: ${PROMETHEUS_INSTALL_HINT}` }, () => {
  let server: MetricsServer;
  let prometheus: PrometheusHarness | undefined;
  let stopFeed = (): void => undefined;

  before(async () => {
    server = new MetricsServer({ port: 0, runId: RUN_ID });
    await server.start();
    stopFeed = feedStandIn(server);
    prometheus = await PrometheusHarness.start({ targetUrl: server.url, scrapeIntervalSeconds: 1 });
    // Rate windows below are 10 s: 5 scrapes give every rate() and histogram_quantile() ≥ 2 samples to work with.
    await prometheus.waitForScrapes(5);
  });

  after(async () => {
    stopFeed();
    await prometheus?.close();
    await server?.close();
  });

  it('scrapes the target with every series labelled by run', async () => {
    const up = await prometheus!.query('up{job="pets-trainer"}');
    assert.equal(up.length, 1);
    assert.equal(up[0].value[1], '1');
    const unlabelled = await prometheus!.query('count({job="pets-trainer", run="", __name__=~"pets_.+"})');
    assert.equal(unlabelled.length, 0, 'some pets_ series lack the run label');
  });

  it('every panel and templating expression returns data with a finite value', async () => {
    const dashboard = JSON.parse(await readFile(new URL('../../grafana/dashboards/training.json', import.meta.url), 'utf8'));
    const queries = listDashboardQueries(dashboard);
    assert.ok(queries.length >= 25, `expected ≥ 25 queries, got ${queries.length}`);
    const vars = { run: RUN_ID, worker: '.*', datasource: 'pets-prometheus', __rate_interval: '10s', __interval: '1s', __range: '1m' };
    const failures: string[] = [];
    for (const { where, expr } of queries) {
      const labelValues = /^label_values\((.+),\s*(\w+)\)$/.exec(expr);
      const promql = substituteVariables(labelValues ? labelValues[1] : expr, vars);
      const result = await prometheus!.query(promql);
      if (labelValues) {
        if (!result.some((s) => s.metric[labelValues[2]] !== undefined)) failures.push(`${where}: no ${labelValues[2]} values from ${promql}`);
      } else if (!result.some((s) => Number.isFinite(Number(s.value[1])))) {
        failures.push(`${where}: ${result.length === 0 ? 'no data' : `only non-finite values ${JSON.stringify(result.map((s) => s.value[1]))}`} for ${promql}`);
      }
    }
    assert.deepEqual(failures, [], `dashboard queries without data:\n${failures.join('\n')}\n--- prometheus log ---\n${prometheus!.logTail}`);
  });

  it('sees per-worker series for both ranks and the worker variable values', async () => {
    const ranks = await prometheus!.query(`pets_images_per_second{run="${RUN_ID}"}`);
    assert.deepEqual(ranks.map((s) => s.metric.rank).sort(), ['0', '1']);
    // 32 images / (0.12 s × jitter in [0.9, 1.1]) → between 242 and 297 images/s per worker.
    for (const sample of ranks) {
      const value = Number(sample.value[1]);
      assert.ok(value > 240 && value < 300, `rank ${sample.metric.rank}: ${value} images/s`);
    }
  });
});
