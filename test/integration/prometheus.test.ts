/**
 * End to end through a real Prometheus: a REAL short training run (`coordinator` from dist/ or the sources, 2 local worker
 * processes, 6 breeds of the shared photos, resnet10 at 64 px, a checkpoint after every step) is scraped every
 * second; `--metrics-linger-s` keeps `/metrics` up after the run so the final values are scraped too. Then EVERY
 * PromQL expression of EVERY dashboard panel (and every templating query) is evaluated over the run's time range
 * through `/api/v1/query_range` — what a Grafana panel does — with the template variables substituted, and must
 * return at least one finite value. Finally the series the runtime must set (worker states, heartbeat ages, link
 * bandwidth, checkpoints, replica agreement, queue depth, tfjs memory) are checked for both ranks.
 *
 * Skipped (with the install command) only when the `prometheus` binary is absent.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { listDashboardQueries } from '../../src/coordinator/metrics/dashboard.js';
import { CoordinatorProcess, makePetsSubset, type CommandResult } from './support/coordinator.js';
import { PROMETHEUS_INSTALL_HINT, PrometheusHarness, findPrometheusBinary, substituteVariables, type PromSeries } from './support/prometheus.js';

const RUN_ID = 'it-prometheus-run';
// A hang guard only, far above the run time on a loaded machine (see main-job.test.ts).
const RUN_TIMEOUT_MS = 1_200_000;
const LINGER_S = 4;
const binary = findPrometheusBinary();

function finiteValues(series: readonly PromSeries[]): number[] {
  return series.flatMap((s) => s.values.map(([, v]) => Number(v))).filter((v) => Number.isFinite(v));
}

describe('dashboards against a real Prometheus scraping a real 2-worker run', { skip: binary ? false : `prometheus binary not found: ${PROMETHEUS_INSTALL_HINT}`, timeout: RUN_TIMEOUT_MS + 120_000 }, () => {
  let tmp: string;
  let coordinator: CoordinatorProcess | undefined;
  let prometheus: PrometheusHarness | undefined;
  let run: CommandResult;
  let startS: number;
  let endS: number;

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'pets-prometheus-'));
    makePetsSubset(tmp, 6);
    // Prometheus is scraping before the run starts (it is ready in ~0.1 s), so it sees the run from its first
    // moments whatever the machine's speed; started after the run's metrics line, it began late by its start-up,
    // which on a fast machine is a good part of the training. The metrics port is chosen here and held until
    // Prometheus has taken its own port, so that the two cannot collide.
    const hold = net.createServer();
    await new Promise<void>((res) => hold.listen(0, '127.0.0.1', res));
    const metricsPort = (hold.address() as net.AddressInfo).port;
    const url = `http://127.0.0.1:${metricsPort}/metrics`;
    startS = Math.floor(Date.now() / 1000) - 1;
    prometheus = await PrometheusHarness.start({ targetUrl: url, scrapeIntervalSeconds: 1 });
    await new Promise((res) => hold.close(res));
    coordinator = new CoordinatorProcess([
      '--workers', '2', '--data', tmp, '--pretrained', 'none', '--arch', 'resnet10', '--size', '64', '--bs', '2',
      '--epochs', '1', '--fine-tune-epochs', '1', '--no-lr-find', '--checkpoint-every', '1', '--keep', '2',
      '--metrics-port', String(metricsPort), '--metrics-linger-s', String(LINGER_S), '--bind', 'tcp://127.0.0.1:0',
      '--run-dir', path.join(tmp, RUN_ID), '--plain',
    ]);
    assert.equal((await coordinator.waitForLine(/^metrics: (http:\/\/\S+)$/m, 120_000))[1], url);
    const timer = setTimeout(() => void coordinator?.close(), RUN_TIMEOUT_MS);
    run = await coordinator.exited;
    clearTimeout(timer);
    endS = Math.ceil(Date.now() / 1000);
  });

  after(async () => {
    await coordinator?.close();
    await prometheus?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('the run finishes, keeps /metrics up after its summary, and leaves no process behind', async () => {
    assert.equal(run.code, 0, coordinator!.tail());
    assert.match(run.stdout, /^final error_rate \d\.\d{4} \(9 validation images\)$/m);
    assert.match(run.stderr, new RegExp(`keeping \\S+ up ${LINGER_S} s for a last scrape`));
    assert.equal(await coordinator!.waitGroupGone(), true, coordinator!.groupProcesses().join('\n'));
    const up = finiteValues(await prometheus!.queryRange('up{job="pets-trainer"}', startS, endS));
    assert.ok(up.filter((v) => v === 1).length >= 5, `only ${up.filter((v) => v === 1).length} successful scrapes`);
    const unlabelled = await prometheus!.queryRange('count({job="pets-trainer", run="", __name__=~"pets_.+"})', startS, endS);
    assert.equal(finiteValues(unlabelled).length, 0, 'some pets_ series lack the run label');
  });

  it('every panel and templating expression returns data over the run', async () => {
    const dashboard = JSON.parse(readFileSync(new URL('../../grafana/dashboards/training.json', import.meta.url), 'utf8'));
    const queries = listDashboardQueries(dashboard);
    assert.ok(queries.length >= 25, `expected ≥ 25 queries, got ${queries.length}`);
    const vars = { run: RUN_ID, worker: '.*', datasource: 'pets-prometheus', __rate_interval: '10s', __interval: '1s', __range: '1m' };
    const failures: string[] = [];
    for (const { where, expr } of queries) {
      const labelValues = /^label_values\((.+),\s*(\w+)\)$/.exec(expr);
      const promql = substituteVariables(labelValues ? labelValues[1]! : expr, vars);
      const result = await prometheus!.queryRange(promql, startS, endS);
      if (labelValues) {
        if (!result.some((s) => s.metric[labelValues[2]!] !== undefined)) failures.push(`${where}: no ${labelValues[2]} values from ${promql}`);
      } else if (finiteValues(result).length === 0) {
        failures.push(`${where}: ${result.length === 0 ? 'no data' : 'only non-finite values'} for ${promql}`);
      }
    }
    assert.deepEqual(failures, [], `dashboard queries without data:\n${failures.join('\n')}\n--- prometheus log ---\n${prometheus!.logTail}`);
  });

  it('the runtime sets worker states, heartbeat ages, link bandwidth, checkpoints, agreement, queue depth and tfjs memory', async () => {
    const sel = `run="${RUN_ID}"`;
    const max = async (expr: string): Promise<number> => Math.max(...finiteValues(await prometheus!.queryRange(expr, startS, endS)), Number.NEGATIVE_INFINITY);
    const ranks = async (expr: string): Promise<string[]> => [...new Set((await prometheus!.queryRange(expr, startS, endS)).map((s) => s.metric.rank!))].sort();
    assert.equal(await max(`pets_workers{${sel}, state="training"}`), 2, 'both workers seen training');
    assert.equal(await max(`pets_workers{${sel}, state="left"}`), 2, 'both workers seen leaving at the end (scraped during the linger)');
    assert.deepEqual(await ranks(`pets_worker_heartbeat_age_seconds{${sel}}`), ['0', '1']);
    // Heartbeats every 1 s (default): a live worker is never seen older than the 10 s timeout.
    assert.ok(await max(`pets_worker_heartbeat_age_seconds{${sel}}`) < 10);
    assert.ok(await max(`pets_link_bandwidth_bytes_per_second{${sel}}`) > 0);
    // 9 steps per stage (39 train items, global batch 4, drop_last) × 2 stages, each followed by a checkpoint.
    assert.ok(await max(`pets_checkpoints_written_total{${sel}}`) >= 18);
    assert.equal(await max(`pets_replica_checksum_agreement_ratio{${sel}}`), 1);
    assert.deepEqual(await ranks(`pets_decode_queue_tasks{${sel}}`), ['0', '1']);
    assert.deepEqual(await ranks(`pets_tfjs_memory_bytes{${sel}}`), ['0', '1']);
    assert.ok(await max(`pets_tfjs_memory_bytes{${sel}}`) > 1e6, 'a resnet10 replica holds more than 1 MB of tensors');
    assert.deepEqual(await ranks(`pets_images_per_second{${sel}}`), ['0', '1']);
  });
});
