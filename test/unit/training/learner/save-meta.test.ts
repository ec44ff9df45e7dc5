/**
 * `models/<name>.json` as `predict`, `interpret` and `Learner.load` read it (`readModelMeta`): a file that parses but
 * is not what `saveModel` wrote is refused naming the file, the field and the rule (ERR_CHECKPOINT), never taken as it
 * is. Seen by the breaker: `"size": -3` made `predict` blame every image it was given (`ERR_BAD_IMAGE:
 * truncated/corrupt: …/Bengal_107.jpg (Expected positive integer … for width but received -3)`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readModelMeta } from '../../../../src/training/learner/save.js';

/** What saveModel writes for a tiny ResNet of two classes at 32 px (the shape of `SavedModelMeta`). */
const GOOD = {
  format: 1, arch: { block: 'basic', layers: [1, 1, 1, 1] }, classes: ['cat', 'dog'], size: 32,
  normalize: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }, frozen: true,
  optimizerSteps: { 'head.8.weight': 3 }, bnSteps: { body: 3, head: 3 },
};

test('readModelMeta takes what saveModel writes and refuses a damaged field, naming the file, the field and the rule', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'model-meta-'));
  try {
    mkdirSync(join(dir, 'models'));
    const file = join(dir, 'models', 'stage-1.json');
    writeFileSync(file, JSON.stringify(GOOD));
    assert.deepEqual(await readModelMeta(dir, 'stage-1'), GOOD);
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ size: -3 }, /size must be an integer in \[16, 1024\] \(the --size rule\), got -3/],
      [{ size: '32' }, /size must be an integer in \[16, 1024\] \(the --size rule\), got "32"/],
      [{ classes: [] }, /classes must be a non-empty list of class names, got \[\]/],
      [{ classes: undefined }, /classes must be a non-empty list of class names, got nothing/],
      [{ arch: { block: 'basic', layers: [1, 1, 0, 1] } }, /arch must be \{block: basic\|bottleneck, layers: 4 integers ≥ 1\}/],
      [{ arch: 'resnet18' }, /arch must be/],
      [{ normalize: { mean: [0, 0, 0], std: [0.2, 0, 0.2] } }, /normalize must be \{mean: 3 numbers, std: 3 numbers > 0\}/],
      [{ frozen: 'yes' }, /frozen must be true or false, got "yes"/],
      [{ optimizerSteps: { w: -1 } }, /optimizerSteps must map parameter names to integers ≥ 0/],
      [{ bnSteps: { body: 1 } }, /bnSteps must be \{body, head\} integers ≥ 0/],
    ];
    for (const [change, message] of cases) {
      writeFileSync(file, JSON.stringify({ ...GOOD, ...change }));
      await assert.rejects(readModelMeta(dir, 'stage-1'), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_CHECKPOINT', JSON.stringify(change));
        assert.ok(err.message.startsWith(`${file}: `), err.message);
        assert.match(err.message, message);
        assert.match(err.message, /it is not the metadata this trainer saved with the model/);
        return true;
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
