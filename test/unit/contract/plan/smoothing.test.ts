import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { SMOOTH_START, SmoothedLoss } from '../../../../src/contract/plan/smoothing.js';

/** Relative closeness; tolerance 1e-12 relative (pure float64 arithmetic, only rounding differs). */
function close(actual: number, expected: number, rel = 1e-12): void {
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected), `${actual} vs ${expected}`);
}

test('SmoothedLoss is the debiased EMA with β = 0.98', () => {
  const s = new SmoothedLoss();
  assert.ok(Number.isNaN(s.value));
  close(s.add(2), 2); // 0.02·2 / 0.02
  // k=2: mov = 0.98·0.04 + 0.02·4 = 0.1192; smooth = 0.1192 / (1 − 0.9604) = 0.1192 / 0.0396
  close(s.add(4), 0.1192 / 0.0396, 1e-12);
  assert.equal(s.n, 2);
  close(s.state.mov, 0.1192);
});

test('a SmoothedLoss continued from its JSON state gives bit-identical values (a resumed run prints the same table)', () => {
  const losses = [3.61, 2.9, 2.41, 1.97, 1.5, 1.62, 1.21, 0.98];
  const undisturbed = new SmoothedLoss();
  const straight = losses.map((l) => undisturbed.add(l));
  const first = new SmoothedLoss();
  for (const l of losses.slice(0, 3)) first.add(l);
  const saved = JSON.parse(JSON.stringify(first.state)) as typeof first.state;
  const resumed = new SmoothedLoss(0.98, saved);
  assert.equal(resumed.value, straight[2]);
  assert.deepEqual(losses.slice(3).map((l) => resumed.add(l)), straight.slice(3));
  assert.deepEqual(resumed.state, undisturbed.state);
  assert.deepEqual(new SmoothedLoss().state, SMOOTH_START);
});

test('bad beta or a malformed state is refused, naming the rule', () => {
  assert.throws(() => new SmoothedLoss(1), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') && /\[0, 1\), got 1/.test(e.message));
  assert.throws(() => new SmoothedLoss(0.98, { mov: 1, n: -1 }), (e: unknown) => isTrainerError(e, 'ERR_CHECKPOINT') && /n: integer ≥ 0/.test(e.message));
});
