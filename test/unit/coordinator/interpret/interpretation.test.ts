import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClassificationInterpretation, MIN_PROBABILITY } from '../../../../src/coordinator/interpret/interpretation.js';
import { isTrainerError } from '../../../../src/contract/errors.js';

// Fixed set of 8 predictions over 3 classes. Every expected value below was derived by hand from these rows:
// item: probs (cat, dog, fox) → actual; pred = argmax (first max on ties); loss = −ln p[actual].
const CLASSES = ['cat', 'dog', 'fox'];
const ROWS: [number[], number][] = [
  [[0.7, 0.2, 0.1], 0], //   0: pred cat, loss −ln 0.7  = 0.356675
  [[0.1, 0.6, 0.3], 0], //   1: pred dog, loss −ln 0.1  = 2.302585
  [[0.2, 0.5, 0.3], 1], //   2: pred dog, loss −ln 0.5  = 0.693147
  [[0.3, 0.3, 0.4], 1], //   3: pred fox, loss −ln 0.3  = 1.203973
  [[0.05, 0.9, 0.05], 2], // 4: pred dog, loss −ln 0.05 = 2.995732
  [[0.25, 0.25, 0.5], 2], // 5: pred fox, loss −ln 0.5  = 0.693147 (ties item 2)
  [[0.2, 0.7, 0.1], 0], //   6: pred dog, loss −ln 0.2  = 1.609438
  [[0.5, 0.5, 0], 2], //     7: pred cat (tie → first), p = 0 → clamped: −ln FLT_MIN = 87.336545
];
const ITEMS = ROWS.map((_, i) => `img_${i}.jpg`);

function build(): ClassificationInterpretation {
  return new ClassificationInterpretation({
    probs: Float32Array.from(ROWS.flatMap(([p]) => p)),
    targets: Int32Array.from(ROWS.map(([, t]) => t)),
    classes: CLASSES,
    items: ITEMS,
  });
}

// Tolerance: probabilities are stored as float32 (relative rounding ≤ 6e-8), so −ln p is off by ≤ ~1e-7.
const TOL = 1e-6;

test('predictions and per-item losses match hand-computed −ln p[actual], with p = 0 clamped to FLT_MIN', () => {
  const interp = build();
  assert.deepEqual(Array.from(interp.preds), [0, 1, 1, 2, 1, 2, 1, 0]);
  const expected = [0.356675, 2.302585, 0.693147, 1.203973, 2.995732, 0.693147, 1.609438, 87.336545];
  interp.losses.forEach((loss, i) => assert.ok(Math.abs(loss - expected[i]) < TOL, `loss[${i}] = ${loss}, expected ${expected[i]}`));
  assert.equal(interp.losses[7], -Math.log(MIN_PROBABILITY));
  assert.equal(interp.errorRate(), 5 / 8); // correct: items 0, 2, 5
});

test('confusionMatrix: rows actual, columns predicted (hand-derived)', () => {
  assert.deepEqual(build().confusionMatrix(), [
    // pred: cat dog fox
    [1, 2, 0], // actual cat: items 0→cat, 1→dog, 6→dog
    [0, 1, 1], // actual dog: items 2→dog, 3→fox
    [1, 1, 1], // actual fox: items 4→dog, 5→fox, 7→cat
  ]);
});

test('topLosses: descending, equal losses in item order, with pred/actual/prob of actual', () => {
  const interp = build();
  assert.deepEqual(interp.topLosses().map((t) => t.index), [7, 4, 1, 6, 3, 2, 5, 0]);
  const top = interp.topLosses(3);
  assert.equal(top.length, 3);
  assert.deepEqual(top.map(({ index, pred, actual, item }) => ({ index, pred, actual, item })), [
    { index: 7, pred: 0, actual: 2, item: 'img_7.jpg' },
    { index: 4, pred: 1, actual: 2, item: 'img_4.jpg' },
    { index: 1, pred: 1, actual: 0, item: 'img_1.jpg' },
  ]);
  assert.ok(Math.abs(top[1].probActual - 0.05) < 1e-7 && Math.abs(top[1].loss - 2.995732) < TOL);
  assert.equal(top[0].probActual, 0);
  assert.deepEqual(interp.topLosses(0), []);
});

test('mostConfused: off-diagonal cells ≥ minVal, count descending, ties in row-major order', () => {
  const interp = build();
  assert.deepEqual(interp.mostConfused(), [
    { actual: 'cat', predicted: 'dog', count: 2 },
    { actual: 'dog', predicted: 'fox', count: 1 },
    { actual: 'fox', predicted: 'cat', count: 1 },
    { actual: 'fox', predicted: 'dog', count: 1 },
  ]);
  assert.deepEqual(interp.mostConfused(2), [{ actual: 'cat', predicted: 'dog', count: 2 }]);
  assert.deepEqual(interp.mostConfused(3), []);
});

test('toJsonReport survives a JSON round trip and JSON.stringify does not call it by accident', () => {
  const interp = build();
  const json = JSON.parse(JSON.stringify(interp.toJsonReport(2)));
  assert.equal(json.n, 8);
  assert.equal(json.errorRate, 0.625);
  assert.deepEqual(json.confusionMatrix, interp.confusionMatrix());
  assert.deepEqual(json.topLosses.map((t: { index: number }) => t.index), [7, 4]);
  assert.equal(json.mostConfused.length, 4);
});

test('bad inputs are rejected with ERR_DATA naming the field and rule', () => {
  const probs = Float32Array.from([0.5, 0.5]);
  const make = (over: Partial<ConstructorParameters<typeof ClassificationInterpretation>[0]>) => () =>
    new ClassificationInterpretation({ probs, targets: Int32Array.from([1]), classes: ['a', 'b'], ...over });
  const rejects = (fn: () => unknown, re: RegExp) => assert.throws(fn, (e: unknown) => isTrainerError(e, 'ERR_DATA') && re.test(e.message));
  rejects(make({ probs: Float32Array.from([1]) }), /probs must have targets.length × classes = 1 × 2 = 2 values, got 1/);
  rejects(make({ targets: Int32Array.from([2]) }), /targets\[0\] must be a class id in \[0, 2\), got 2/);
  rejects(make({ probs: Float32Array.from([Number.NaN, 1]) }), /probs\[0\] must be a probability/);
  rejects(make({ items: ['a', 'b'] }), /items must have one entry per target \(1\), got 2/);
  rejects(make({ classes: [], probs: new Float32Array(0) }), /classes must list at least 1 class/);
  rejects(() => make({})().topLosses(2), /topLosses k must be an integer in \[0, 1\], got 2/);
  rejects(() => make({})().mostConfused(0), /minVal must be a finite number > 0, got 0/);
});
