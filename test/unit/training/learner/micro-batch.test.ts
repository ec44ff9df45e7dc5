import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTrainerError } from '../../../../src/contract/errors.js';
import {
  activationBytesPerImage, defaultMaxMicroBatch, RESNET34_128_BYTES_PER_IMAGE, splitChunks, WASM_ACTIVATION_BUDGET_BYTES,
} from '../../../../src/training/learner/micro-batch.js';
import { RESNET_CONFIGS } from '../../../../src/contract/resnet-spec.js';

test('splitChunks: balanced contiguous cover, each chunk ≤ max and ≥ 2 when n ≥ 2', () => {
  assert.deepEqual(splitChunks(8, 4), [[0, 4], [4, 8]]);
  assert.deepEqual(splitChunks(10, 4), [[0, 4], [4, 7], [7, 10]]);
  assert.deepEqual(splitChunks(3, 2), [[0, 3]], 'a chunk of 1 would break BatchNorm: one chunk of 3 instead');
  assert.deepEqual(splitChunks(1, 8), [[0, 1]]);
  for (let n = 2; n <= 40; n++) {
    for (const max of [2, 3, 5, 16, Number.MAX_SAFE_INTEGER]) {
      const chunks = splitChunks(n, max);
      assert.equal(chunks[0]![0], 0);
      assert.equal(chunks.at(-1)![1], n);
      chunks.forEach(([s, e], i) => {
        if (i > 0) assert.equal(s, chunks[i - 1]![1]);
        assert.ok(e - s >= 2, `n ${n} max ${max}: chunk of ${e - s}`);
        assert.ok(e - s <= Math.max(max, 3), `n ${n} max ${max}: chunk of ${e - s}`);
      });
    }
  }
  assert.throws(() => splitChunks(4, 1), (e) => isTrainerError(e, 'ERR_INTERNAL'));
  assert.throws(() => splitChunks(0, 4), (e) => isTrainerError(e, 'ERR_INTERNAL'));
});

test('default micro-batch: budget / measured bytes on wasm and native, unlimited elsewhere', () => {
  const r34 = RESNET_CONFIGS.resnet34;
  assert.equal(activationBytesPerImage(r34, 128), RESNET34_128_BYTES_PER_IMAGE);
  // Activations scale with pixels: 224² / 128² = 3.0625 times.
  assert.ok(Math.abs(activationBytesPerImage(r34, 224) / RESNET34_128_BYTES_PER_IMAGE - 3.0625) < 1e-12);
  assert.equal(defaultMaxMicroBatch(r34, 128, 'wasm'), Math.floor(WASM_ACTIVATION_BUDGET_BYTES / RESNET34_128_BYTES_PER_IMAGE));
  assert.ok(defaultMaxMicroBatch(r34, 224, 'wasm') < 64, 'the tutorial bs 64 at 224 must be split on wasm');
  assert.ok(defaultMaxMicroBatch(RESNET_CONFIGS.resnet50, 224, 'wasm') >= 2);
  assert.equal(defaultMaxMicroBatch(r34, 224, 'tensorflow'), Number.MAX_SAFE_INTEGER);
  // The native (oneDNN) backend keeps activations in ordinary memory under the same 2 GB worker bound.
  assert.equal(defaultMaxMicroBatch(r34, 224, 'native'), defaultMaxMicroBatch(r34, 224, 'wasm'));
  // Chunks of 16 at 224 px measured 2005 MiB peak RSS at bs 64 on native (chunks of 8: 1501 MiB).
  assert.ok(defaultMaxMicroBatch(r34, 224, 'native') < 16, 'resnet34/224 on native must stay in chunks below 16');
});
