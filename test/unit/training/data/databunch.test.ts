import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertTrainable } from '../../../../src/training/data/databunch.js';
import { isTrainerError } from '../../../../src/contract/errors.js';

const ints = (...xs: number[]): Int32Array => Int32Array.from(xs);

test('assertTrainable accepts 2 classes with one train and one valid image', () => {
  assert.doesNotThrow(() => assertTrainable({ root: '/d', classes: ['a', 'b'], train: ints(0), valid: ints(1) }));
});

test('assertTrainable refuses an empty validation split, one class, or no training image, naming what was found', () => {
  // The case found by adversarial testing: bad-inputs/images alone leaves 4 train / 0 valid images after the
  // verify pass, and the run used to fail at the first validation with "shardPlan itemCount must be ≥ 1".
  const cases: [Parameters<typeof assertTrainable>[0], RegExp][] = [
    [{ root: '/d', classes: ['a', 'b', 'c'], train: ints(0, 1, 2, 3), valid: ints() }, /got 3 class\(es\), 4 train \/ 0 valid image\(s\)/],
    [{ root: '/d', classes: ['x'], train: ints(0, 1), valid: ints(2) }, /got 1 class\(es\), 2 train \/ 1 valid image\(s\)/],
    [{ root: '/d', classes: ['a', 'b'], train: ints(), valid: ints(0) }, /got 2 class\(es\), 0 train \/ 1 valid image\(s\)/],
  ];
  for (const [data, re] of cases) {
    assert.throws(() => assertTrainable(data), (e: unknown) => isTrainerError(e, 'ERR_BAD_DATA') && re.test(e.message) && e.message.startsWith('/d must give'));
  }
});
