import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTrainerError } from '../../../../src/contract/errors.js';
import {
  annealCos, constantSchedule, lrFindLr, lrFindStep, lrSpread, numericalGradient, oneCycle,
  parseLrSpec, suggestLr,
} from '../../../../src/contract/plan/schedule.js';

/** Relative closeness; tolerance 1e-12 relative (pure float64 arithmetic, only rounding differs). */
function close(actual: number, expected: number, rel = 1e-12, what = ''): void {
  const err = Math.abs(actual - expected) / Math.max(Math.abs(expected), 1e-300);
  assert.ok(err <= rel, `${what}: expected ${expected}, got ${actual} (rel err ${err})`);
}

function closeAll(actual: readonly number[], expected: readonly number[], what = ''): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((a, i) => close(a, expected[i]!, 1e-12, `${what}[${i}]`));
}

test('lrSpread: number, slice(a,b) geometric, slice(b) = b/10 … b (fastai lr_range)', () => {
  closeAll(lrSpread(3e-3, 3), [3e-3, 3e-3, 3e-3], 'number');
  closeAll(lrSpread({ start: 1e-6, end: 1e-4 }, 3), [1e-6, 1e-5, 1e-4], 'slice(1e-6,1e-4)');
  closeAll(lrSpread({ end: 3e-3 }, 3), [3e-4, 3e-4, 3e-3], 'slice(3e-3)');
  // 4 groups: exponents 0, 1/3, 2/3, 1 of 1000 → 1, 10, 100, 1000 times the start.
  closeAll(lrSpread({ start: 1e-5, end: 1e-2 }, 4), [1e-5, 1e-4, 1e-3, 1e-2], 'slice over 4 groups');
  closeAll(lrSpread({ start: 1e-6, end: 1e-4 }, 1), [1e-4], 'one group gets the end');
  assert.throws(() => lrSpread(0, 3), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') && /max_lr must be/.test(e.message));
  assert.throws(() => lrSpread(1e-3, 0), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') && /integer ≥ 1, got 0/.test(e.message));
});

test('parseLrSpec accepts the three forms and rejects others with ERR_BAD_FLAG naming the flag', () => {
  assert.equal(parseLrSpec('3e-3'), 3e-3);
  assert.deepEqual(parseLrSpec('slice(1e-6,1e-4)'), { start: 1e-6, end: 1e-4 });
  assert.deepEqual(parseLrSpec(' slice( 1e-6 , 1e-4 ) '), { start: 1e-6, end: 1e-4 });
  assert.deepEqual(parseLrSpec('slice(3e-3)'), { end: 3e-3 });
  assert.equal(parseLrSpec('0.01'), 0.01);
  for (const bad of ['', 'abc', 'slice()', 'slice(1e-6,)', 'slice(1,2,3)', '-1e-3', '0', 'slice(0,1e-3)', 'slice(1e-3', '1e-3x']) {
    assert.throws(() => parseLrSpec(bad, '--max-lr'), (e: unknown) =>
      isTrainerError(e, 'ERR_BAD_FLAG') && e.message.startsWith('--max-lr must be') && e.message.includes(JSON.stringify(bad)),
    `should reject ${JSON.stringify(bad)}`);
  }
});

test('annealCos goes from start to end through the midpoint', () => {
  close(annealCos(1, 3, 0), 1);
  close(annealCos(1, 3, 0.5), 2);
  close(annealCos(1, 3, 1), 3);
});

// n = 10 batches → a1 = int(0.3·10) = 3, a2 = 7. Hand-derived values of the fastai formula:
//  step 0 (first):            p = 0    → lr = m/25,                                   mom = 0.95
//  step 2 (last of phase 1):  p = 2/3, cos(2π/3) = −1/2 → lr = m + (m/25 − m)/4 = 0.76·m, mom = 0.85 + 0.1/4 = 0.875
//  step 3 (first of phase 2): p = 0    → lr = m exactly,                              mom = 0.85
//  step 9 (last):             p = 6/7, cos(6π/7) = −0.9009688679024191
//                             → lr = m/25e4 + (m − m/25e4)·(1 − 0.9009688679024191)/2, mom = 0.95 − 0.1·(1 − 0.90096…)/2
const HALF_GAP = (1 - 0.9009688679024191) / 2;
const CASES: ReadonlyArray<{ step: number; lr: (m: number) => number; mom: number }> = [
  { step: 0, lr: (m) => m / 25, mom: 0.95 },
  { step: 2, lr: (m) => 0.76 * m, mom: 0.875 },
  { step: 3, lr: (m) => m, mom: 0.85 },
  { step: 9, lr: (m) => m / 25e4 + (m - m / 25e4) * HALF_GAP, mom: 0.95 - 0.1 * HALF_GAP },
];

for (const [name, maxLrs] of [['slice(1e-6,1e-4)', [1e-6, 1e-5, 1e-4]], ['slice(3e-3)', [3e-4, 3e-4, 3e-3]]] as const) {
  test(`oneCycle matches hand-computed fastai values for 3 groups at ${name}`, () => {
    for (const c of CASES) {
      const got = oneCycle({ step: c.step, totalSteps: 10, maxLrs });
      closeAll(got.lrs, maxLrs.map(c.lr), `step ${c.step} lrs`);
      close(got.momentum, c.mom, 1e-12, `step ${c.step} momentum`);
    }
    // First batch of phase 2 is EXACTLY the max (no rounding at p = 0 of cos annealing).
    assert.deepEqual(oneCycle({ step: 3, totalSteps: 10, maxLrs }).lrs, [...maxLrs]);
  });
}

test('oneCycle on the Pets tutorial length (92 batches × 4 epochs): phase boundary at int(0.3·368) = 110', () => {
  const maxLrs = [3e-4, 3e-4, 3e-3];
  const at = (step: number) => oneCycle({ step, totalSteps: 368, maxLrs });
  assert.deepEqual(at(110).lrs, maxLrs);
  assert.equal(at(110).momentum, 0.85);
  assert.ok(at(109).lrs[2]! < 3e-3 && at(111).lrs[2]! < 3e-3);
  // Rising through phase 1, falling through phase 2; momentum the mirror image.
  for (let s = 1; s < 368; s += 1) {
    const [prev, cur] = [at(s - 1), at(s)];
    if (s <= 110) assert.ok(cur.lrs[2]! > prev.lrs[2]! && cur.momentum < prev.momentum, `phase 1 step ${s}`);
    else assert.ok(cur.lrs[2]! < prev.lrs[2]! && cur.momentum > prev.momentum, `phase 2 step ${s}`);
  }
  // Pure: same inputs, same outputs, any order (resume at any step).
  assert.deepEqual(at(200), at(200));
});

test('oneCycle with a1 = 0 spends one batch at the start as fastai Scheduler(n_iter=max(1,0))', () => {
  // n = 3 → a1 = int(0.9) = 0: batch 0 at m/25, batch 1 = first of phase 2 at m, batch 2 at p = 1/3.
  const m = 1e-3;
  close(oneCycle({ step: 0, totalSteps: 3, maxLrs: [m] }).lrs[0]!, m / 25);
  assert.equal(oneCycle({ step: 1, totalSteps: 3, maxLrs: [m] }).lrs[0], m);
  close(oneCycle({ step: 2, totalSteps: 3, maxLrs: [m] }).lrs[0]!, m / 25e4 + (m - m / 25e4) * 0.75);
});

test('oneCycle validates its inputs with ERR_BAD_FLAG', () => {
  const bad = (o: Parameters<typeof oneCycle>[0], re: RegExp) =>
    assert.throws(() => oneCycle(o), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') && re.test(e.message));
  bad({ step: 10, totalSteps: 10, maxLrs: [1e-3] }, /step must be < totalSteps \(10\), got 10/);
  bad({ step: -1, totalSteps: 10, maxLrs: [1e-3] }, /step must be an integer ≥ 0, got -1/);
  bad({ step: 0, totalSteps: 0, maxLrs: [1e-3] }, /totalSteps must be an integer ≥ 1, got 0/);
  bad({ step: 0, totalSteps: 10, maxLrs: [] }, /maxLrs must not be empty/);
  bad({ step: 0, totalSteps: 10, maxLrs: [1e-3], pctStart: 1 }, /pct_start must be in \[0, 1\), got 1/);
});

test('constantSchedule copies the rates and checks momentum', () => {
  assert.deepEqual(constantSchedule([1e-3, 2e-3]), { lrs: [1e-3, 2e-3], momentum: 0.9 });
  assert.throws(() => constantSchedule([1e-3], 1), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG'));
});

test('lrFindLr: start·(end/start)^(i/numIt), never reaching end', () => {
  close(lrFindLr(0), 1e-7);
  close(lrFindLr(50), 1e-7 * 1e8 ** 0.5); // = 1e-3
  close(lrFindLr(50), 1e-3, 1e-12);
  close(lrFindLr(99), 1e-7 * 1e8 ** 0.99);
  close(lrFindLr(3, { startLr: 1e-4, endLr: 1, numIt: 4 }), 1e-1);
  assert.throws(() => lrFindLr(100), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') && /< num_it \(100\), got 100/.test(e.message));
});

test('lrFindStep: best first, then stop on 4× best, NaN, or end of sweep', () => {
  assert.deepEqual(lrFindStep(0, 5, Number.NaN, 100), { best: 5, stop: null });
  assert.deepEqual(lrFindStep(1, 3, 5, 100), { best: 3, stop: null });
  assert.deepEqual(lrFindStep(2, 12, 3, 100), { best: 3, stop: null }); // 12 = 4×3 is not > 4×best
  assert.deepEqual(lrFindStep(3, 12.01, 3, 100), { best: 3, stop: 'diverged' });
  assert.equal(lrFindStep(4, Number.NaN, 3, 100).stop, 'nan');
  assert.deepEqual(lrFindStep(99, 2, 3, 100), { best: 2, stop: 'done' });
});

test('numericalGradient is numpy.gradient (unit spacing)', () => {
  // np.gradient([1, 2, 4, 7, 11]) = [1, 1.5, 2.5, 3.5, 4]
  assert.deepEqual(numericalGradient([1, 2, 4, 7, 11]), [1, 1.5, 2.5, 3.5, 4]);
});

test('suggestLr: steepest descent and min-loss/10 after skipping 10 + 5 points (fastai Recorder.plot)', () => {
  const lrs = Array.from({ length: 30 }, (_, i) => 10 ** (-7 + i * 0.25));
  // A loss that is flat, drops fastest between indices 17 and 19, bottoms out at 22, then rises.
  const losses: number[] = lrs.map((_, i) => (i < 15 ? 5 : i < 17 ? 4.9 : i === 17 ? 4.5 : i === 18 ? 3 : i === 19 ? 2 : i < 22 ? 1.5 : i === 22 ? 1 : 9));
  // The very steep drop at index 1 must be ignored (skipped), so make it there.
  losses[1] = 0;
  const s = suggestLr(lrs, losses);
  // trimmed = losses[10..24]; gradient at 18 = (2 − 4.5)/2 = −1.25, the most negative.
  assert.equal(s.steepestIndex, 18);
  assert.equal(s.steepest, lrs[18]);
  assert.equal(s.minLossIndex, 22);
  close(s.minLossDiv10, lrs[22]! / 10);
  assert.throws(() => suggestLr(lrs.slice(0, 16), losses.slice(0, 16)), (e: unknown) => isTrainerError(e, 'ERR_DATA'));
  assert.throws(() => suggestLr(lrs, losses.slice(1)), (e: unknown) => isTrainerError(e, 'ERR_DATA'));
});
