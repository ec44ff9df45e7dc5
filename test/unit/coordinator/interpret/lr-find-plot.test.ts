import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lrFindPlotData, numericalGradient } from '../../../../src/coordinator/interpret/lr-find-plot.js';
import { isTrainerError } from '../../../../src/contract/errors.js';

test('numericalGradient matches numpy.gradient (values computed by hand from its definition)', () => {
  // numpy.gradient([1, 4, 9, 16, 25]) = [3, 4, 6, 8, 9]: one-sided at the ends, central inside.
  assert.deepEqual(numericalGradient([1, 4, 9, 16, 25]), [3, 4, 6, 8, 9]);
  assert.deepEqual(numericalGradient([5]), [0]);
  assert.deepEqual(numericalGradient([]), []);
});

test('lrFindPlotData skips the first 10 and last 5 points and finds the steepest descent and min/10', () => {
  // 20 iterations, lr = 10^(i−10). Plotted slice: i = 10..14 with losses [3, 2.9, 2.0, 1.8, 1.9].
  // np.gradient → [−0.1, −0.5, −0.55, −0.05, 0.1] → argmin 2 → lr 1e2; min loss at index 3 → lr 1e3 / 10 = 1e2.
  const lrs = Array.from({ length: 20 }, (_, i) => 10 ** (i - 10));
  const losses = [...new Array<number>(10).fill(9), 3, 2.9, 2.0, 1.8, 1.9, ...new Array<number>(5).fill(-100)];
  const plot = lrFindPlotData(lrs, losses);
  assert.deepEqual(plot.lrs, [1, 10, 100, 1000, 10000]);
  assert.deepEqual(plot.losses, [3, 2.9, 2.0, 1.8, 1.9]);
  assert.equal(plot.steepestIndex, 2);
  assert.equal(plot.steepestLr, 100);
  assert.equal(plot.minLossLrDiv10, 100);
});

test('lrFindPlotData with too few points plots nothing and says so with NaN suggestions', () => {
  const plot = lrFindPlotData([1, 2, 3], [1, 2, 3]);
  assert.deepEqual(plot.lrs, []);
  assert.equal(plot.steepestIndex, -1);
  assert.ok(Number.isNaN(plot.steepestLr) && Number.isNaN(plot.minLossLrDiv10));
  assert.throws(() => lrFindPlotData([1], [1, 2]), (e: unknown) => isTrainerError(e, 'ERR_DATA') && /same length, got 1 and 2/.test(e.message));
  assert.throws(() => lrFindPlotData([1], [1], -1), (e: unknown) => isTrainerError(e, 'ERR_DATA') && /skipStart must be an integer ≥ 0, got -1/.test(e.message));
});
