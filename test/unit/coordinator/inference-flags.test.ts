// `coordinator predict --top` and `coordinator interpret --bs` are checked before anything loads, with the flag named
// (as every training flag is): `--top abc` used to mean 1 and `--bs abc` 32 without a word, and `interpret --bs -5`
// failed after loading the model, naming an internal "shardPlan batchSize".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTrainerError } from '../../../src/contract/errors.js';
import { runInterpretCommand, runPredictCommand } from '../../../src/coordinator/inference.js';

const badFlag = (re: RegExp) => (err: unknown): boolean => {
  assert.ok(isTrainerError(err), String(err));
  assert.match(err.code, /^ERR_BAD_(FLAG|CONFIG)$/);
  assert.match(err.message, re);
  return true;
};

test('predict --top must be an integer ≥ 1', async () => {
  for (const top of ['abc', '0', '1.5']) {
    // The model path does not exist: the flag is refused before it is looked for.
    await assert.rejects(runPredictCommand(['/nonexistent-run', 'a.jpg', '--top', top]), badFlag(new RegExp(`--top must be an integer ≥ 1, got "${top}"`)));
  }
});

test('interpret --bs must be an integer in [1, 4096]', async () => {
  for (const bs of ['abc', '-5', '0']) {
    await assert.rejects(runInterpretCommand(['/nonexistent-run', '--bs', bs]), badFlag(new RegExp(`--bs must be an integer in \\[1, 4096\\], got "${bs}"`)));
  }
});
