/**
 * The metric catalogue follows the Prometheus naming conventions, and the checker really catches violations.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { LEFT_OUT_REASONS as DATA_SKIP_REASONS } from '../../../../src/training/data/accounting.js';
import { METRICS, SKIP_REASONS, checkMetricSpec, exposedSeriesNames, type MetricSpec } from '../../../../src/coordinator/metrics/catalog.js';
import { listDashboardQueries, metricNamesIn, renderTrainingDashboard } from '../../../../src/coordinator/metrics/dashboard.js';
import { replicaAgreementRatio } from '../../../../src/coordinator/metrics/replica-agreement.js';
import { isTrainerError } from '../../../../src/contract/errors.js';

const base: MetricSpec = { name: 'pets_x_seconds', type: 'gauge', unit: 'seconds', help: 'h', labelNames: [] };

describe('metric catalogue', () => {
  it('every metric passes the conventions and names are unique', () => {
    const specs = Object.values(METRICS) as MetricSpec[];
    for (const spec of specs) assert.deepEqual(checkMetricSpec(spec), [], spec.name);
    assert.equal(new Set(specs.map((s) => s.name)).size, specs.length);
    assert.ok(specs.length >= 28, `catalogue shrank to ${specs.length} metrics`);
  });

  it('the checker flags each rule it states', () => {
    const cases: [Partial<MetricSpec>, RegExp][] = [
      [{ name: 'trainer_x_seconds' }, /must start with "pets_"/],
      [{ name: 'pets_X_seconds' }, /snake_case/],
      [{ type: 'counter' }, /counter must end in "_total"/],
      [{ name: 'pets_x_total', unit: 'count' }, /only counters may end in "_total"/],
      [{ name: 'pets_x_ms' }, /unit seconds needs a name ending in _seconds/],
      [{ labelNames: ['step' as never] }, /label "step" is not one of the bounded labels/],
      [{ type: 'histogram' }, /buckets are required/],
    ];
    for (const [patch, rule] of cases) {
      const problems = checkMetricSpec({ ...base, ...patch });
      assert.equal(problems.length, 1, `${JSON.stringify(patch)} → ${problems.join('; ')}`);
      assert.match(problems[0], rule);
    }
  });

  it('skip reasons are exactly the data layer\'s SkipReason values', () => {
    assert.deepEqual([...SKIP_REASONS].sort(), [...DATA_SKIP_REASONS].sort());
  });

  it('docs/metrics.md documents every catalogue metric', () => {
    const doc = readFileSync(new URL('../../../../docs/metrics.md', import.meta.url), 'utf8');
    for (const spec of Object.values(METRICS) as MetricSpec[]) {
      assert.ok(doc.includes(`| \`${spec.name}\` | ${spec.type} |`), `docs/metrics.md lacks a table row for ${spec.name}`);
    }
  });

  it('exposes _bucket/_sum/_count for histograms only', () => {
    const names = exposedSeriesNames();
    assert.ok(names.has('pets_step_phase_seconds_bucket') && names.has('pets_step_phase_seconds_count'));
    assert.ok(!names.has('pets_train_loss_bucket'));
  });

  it("the fit progress panel divides the fit's steps by the fit's plan, not the run's global step", () => {
    const progress = listDashboardQueries(JSON.parse(renderTrainingDashboard())).filter((q) => q.where === 'Fit progress');
    assert.deepEqual(progress.map((q) => metricNamesIn(q.expr)), [['pets_fit_step', 'pets_steps_planned']]);
  });

  it('metricNamesIn finds metric names but not label values', () => {
    assert.deepEqual(
      metricNamesIn('sum by (rank) (rate(pets_a_total{run=~"pets_not_a_metric"}[1m])) / pets_b_seconds_sum'),
      ['pets_a_total', 'pets_b_seconds_sum'],
    );
  });
});

describe('replicaAgreementRatio', () => {
  it('is the fraction of ranks equal to rank 0 (hand-counted)', () => {
    assert.equal(replicaAgreementRatio(['x']), 1);
    assert.equal(replicaAgreementRatio([7, 7, 7]), 1);
    assert.equal(replicaAgreementRatio(['a', 'b', 'b', 'b']), 0.25, 'rank 0 is the reference even when outvoted');
    assert.equal(replicaAgreementRatio([1n, 1n, 2n, 1n, 3n]), 0.6);
    assert.throws(() => replicaAgreementRatio([]), (e) => isTrainerError(e, 'ERR_INTERNAL'));
  });
});
