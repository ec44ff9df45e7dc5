/**
 * `measureWholeStepAB` (`learner/step-bench.ts`, `npm run bench:compute -- --ab NAME=VALUE`): one timed step per
 * block and setting, the variable set only while its B steps run and restored after (unset or its old value),
 * bad arguments refused. The bench's median (the mean of the middle two for an even count, as Python's
 * `statistics.median` on the PyTorch side) and `measureWholeStep`'s warm-up argument (steps counted through a spy on
 * `Replica.accumulate`). No timing is asserted (the
 * figures are for the benchmark to print).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { Replica } from '../../../../src/training/learner/replica.js';
import { median, measureWholeStep, measureWholeStepAB } from '../../../../src/training/learner/step-bench.js';

const TINY = { block: 'basic', layers: [1, 1, 1, 1] } as const;
const VAR = 'PETS_STEP_BENCH_TEST_SETTING';

before(async () => {
  await initBackend('auto'); // native where built, else WASM or cpu
});

test('measureWholeStepAB: one step per setting and pair, the variable restored after (unset, or its old value)', async () => {
  delete process.env[VAR];
  const ab = await measureWholeStepAB(TINY, 32, 2, 1, [VAR, 'b']);
  assert.equal(process.env[VAR], undefined, 'unset again');
  assert.equal(ab.variable, VAR);
  assert.equal(ab.value, 'b');
  for (const xs of [ab.cpuMsA, ab.cpuMsB, ab.optimizerCpuMsA, ab.optimizerCpuMsB]) {
    assert.equal(xs.length, 1);
    assert.ok(xs.every((x) => Number.isFinite(x) && x >= 0));
  }
  ab.optimizerCpuMsA.forEach((o, i) => assert.ok(o <= ab.cpuMsA[i]!, 'AdamW is part of the step'));
  assert.ok(ab.medianRatio > 0 && Number.isFinite(ab.medianRatio));
  process.env[VAR] = 'a';
  try {
    await measureWholeStepAB(TINY, 32, 2, 1, [VAR, 'b']);
    assert.equal(process.env[VAR], 'a', 'the old value back');
  } finally {
    delete process.env[VAR];
  }
});

test('measureWholeStepAB refuses a bad number of pairs or shape with ERR_BAD_FLAG', async () => {
  for (const [size, batch, pairs] of [[32, 2, 0], [32, 2, 1.5], [16, 2, 1], [32, 1, 1]] as const) {
    await assert.rejects(measureWholeStepAB(TINY, size, batch, pairs, [VAR, 'b']),
      (e: unknown) => isTrainerError(e) && e.code === 'ERR_BAD_FLAG', `${size}/${batch}/${pairs}`);
  }
});

test('median: the middle value, or the mean of the middle two (Python statistics.median), in any order', () => {
  assert.equal(median([5]), 5);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4000, 3000]), 3500, 'two steps: their mean, not the slower one');
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.throws(() => median([]), (e: unknown) => isTrainerError(e) && e.code === 'ERR_INTERNAL');
});

test('measureWholeStep runs warm-up + reps training steps and times only the last reps; a negative or fractional warm-up is refused with ERR_BAD_FLAG', async (t) => {
  // Every step, warm-up or timed, is one Replica.accumulate (forward + backward) followed by AdamW.
  const accumulate = t.mock.method(Replica.prototype, 'accumulate');
  for (const [warmup, reps] of [[2, 1], [0, 2], [1, 3]] as const) {
    accumulate.mock.resetCalls();
    const r = await measureWholeStep(TINY, 32, 2, reps, undefined, warmup);
    assert.equal(accumulate.mock.callCount(), warmup + reps, `warm-up ${warmup}, reps ${reps}: steps run`);
    assert.equal(r.stepsMs.length, reps, `warm-up ${warmup}, reps ${reps}: steps timed`);
    assert.equal(r.stepMs, median(r.stepsMs));
  }
  accumulate.mock.restore();
  for (const warmup of [-1, 1.5]) {
    await assert.rejects(measureWholeStep(TINY, 32, 2, 1, undefined, warmup),
      (e: unknown) => isTrainerError(e) && e.code === 'ERR_BAD_FLAG', String(warmup));
  }
});
