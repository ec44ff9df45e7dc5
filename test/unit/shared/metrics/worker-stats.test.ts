/**
 * parseWorkerStepStats: accepts a well-formed record from the wire, rejects each malformed field by name.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTrainerError } from '../../../../src/shared/errors.js';
import { parseWorkerStepStats } from '../../../../src/shared/metrics/worker-stats.js';

const good = {
  images: 16,
  stepSeconds: 1.25,
  phases: { dataWaitSeconds: 0, forwardBackwardSeconds: 1, allreduceSeconds: 0.2, optimizerSeconds: 0.05 },
  allreduceBytes: 1024,
  loaderQueueDepth: 2,
  tfjsBytes: 4096,
  tfjsTensors: 12,
  rssBytes: 1 << 20,
};

describe('parseWorkerStepStats', () => {
  it('returns the record, frozen', () => {
    const parsed = parseWorkerStepStats(structuredClone(good));
    assert.deepEqual(parsed, good);
    assert.ok(Object.isFrozen(parsed) && Object.isFrozen(parsed.phases));
  });

  it('rejects bad values with ERR_PROTOCOL naming the field and the rule', () => {
    const cases: [unknown, RegExp][] = [
      [null, /record must be an object/],
      [{ ...good, phases: 3 }, /phases must be an object/],
      [{ ...good, phases: { ...good.phases, allreduceSeconds: -1 } }, /phases\.allreduceSeconds must be a finite number ≥ 0, got -1/],
      [{ ...good, images: 1.5 }, /images must be an integer ≥ 0, got 1\.5/],
      [{ ...good, tfjsTensors: '12' }, /tfjsTensors must be an integer ≥ 0, got "12"/],
      [{ ...good, rssBytes: undefined }, /rssBytes must be an integer ≥ 0/],
      [{ ...good, stepSeconds: Number.NaN }, /stepSeconds must be a finite number ≥ 0/],
      [{ ...good, stepSeconds: 0 }, /stepSeconds must be > 0, got 0/],
    ];
    for (const [value, message] of cases) {
      assert.throws(() => parseWorkerStepStats(value), (e) => isTrainerError(e, 'ERR_PROTOCOL') && message.test(e.message), String(message));
    }
  });
});
