import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backend_util } from '@tensorflow/tfjs-core';
import {
  convFlops, convGeometry, filterGradAxisPlan, inputGradPhases,
} from '../../../../../src/training/compute/kernels/conv-geometry.js';
import { isTrainerError } from '../../../../../src/contract/errors.js';

// Expected values are derived by hand from the index formulas in conv-geometry.ts:
// forward y[i] reads x[i·s + a − p] for a in 0..k−1, i in 0..Ho−1.

const plan = (cropBefore: number, cropAfter: number, padBefore: number, padAfter: number) =>
  ({ cropBefore, cropAfter, padBefore, padAfter });

test('filter gradient of the ResNet stem (224, k7, s2, p3) pads 3 before and 2 after', () => {
  // Last input index read: 111·2 + 6 − 3 = 225 → 2 rows past the end (224, 225) are padding.
  assert.deepEqual(filterGradAxisPlan({ inSize: 224, outSize: 112, kernel: 7, stride: 2, padBefore: 3 }), plan(0, 0, 3, 2));
});

test("filter gradient of 'valid' 3x3 stride 2 on 8 rows crops the never-read last row", () => {
  // Rows read: 0..2·2+2 = 6, so row 7 is dropped.
  assert.deepEqual(filterGradAxisPlan({ inSize: 8, outSize: 3, kernel: 3, stride: 2, padBefore: 0 }), plan(0, 1, 0, 0));
});

test('input gradient, stride 1: one phase, the full reversed kernel, padding k − 1 − p', () => {
  assert.deepEqual(inputGradPhases({ inSize: 9, outSize: 9, kernel: 3, stride: 1, padBefore: 1 }),
    [{ residue: 0, outSize: 9, firstTap: 0, taps: 3, plan: plan(0, 0, 1, 1) }]);
});

test('input gradient, 3x3 stride 2 pad 1 on 8 rows: even rows get tap 1, odd rows taps 0 and 2', () => {
  // Forward y[i] reads x[2i + a − 1]. x[2u] is read by a = 1 (i = u): one tap, dy[u], no padding.
  // x[2u + 1] is read by a = 0 (i = u + 1) and a = 2 (i = u): taps {0, 2}, dy[u] and dy[u + 1] → 1 row past the end.
  assert.deepEqual(inputGradPhases({ inSize: 8, outSize: 4, kernel: 3, stride: 2, padBefore: 1 }), [
    { residue: 0, outSize: 4, firstTap: 1, taps: 1, plan: plan(0, 0, 0, 0) },
    { residue: 1, outSize: 4, firstTap: 0, taps: 2, plan: plan(0, 0, 0, 1) },
  ]);
});

test('input gradient, 1x1 stride 2 on 9 rows: odd rows receive nothing (taps 0)', () => {
  const [even, odd] = inputGradPhases({ inSize: 9, outSize: 5, kernel: 1, stride: 2, padBefore: 0 });
  assert.deepEqual(even, { residue: 0, outSize: 5, firstTap: 0, taps: 1, plan: plan(0, 0, 0, 0) });
  assert.equal(odd!.taps, 0);
  assert.equal(odd!.outSize, 4);
});

test('input gradient with padding larger than kernel − 1 crops dy', () => {
  // k = 1, p = 1, H = 4: Ho = 6; dx[q] = dy[q + 1] → crop 1 before and 1 after.
  assert.deepEqual(inputGradPhases({ inSize: 4, outSize: 6, kernel: 1, stride: 1, padBefore: 1 }),
    [{ residue: 0, outSize: 4, firstTap: 0, taps: 1, plan: plan(1, 1, 0, 0) }]);
});

test("convGeometry reads tfjs's asymmetric SAME split (even size, stride 2) and counts FLOPs", () => {
  const info = backend_util.computeConv2DInfo([2, 8, 8, 3], [3, 3, 3, 4], 2, 1, 'same');
  const g = convGeometry(info);
  // tfjs: padAlong = (4 − 1)·2 + 3 − 8 = 1 → top 0, bottom 1.
  assert.equal(g.rows.padBefore, 0);
  assert.equal(g.rows.outSize, 4);
  assert.equal(convFlops(g), 2 * 2 * 4 * 4 * 3 * 3 * 3 * 4);
});

test('convGeometry rejects NCHW and dilation ≠ 1 with ERR_BACKEND', () => {
  const nchw = backend_util.computeConv2DInfo([2, 3, 8, 8], [3, 3, 3, 4], 1, 1, 'same', undefined, false, 'channelsFirst');
  assert.throws(() => convGeometry(nchw), (err: unknown) => isTrainerError(err, 'ERR_BACKEND') && /NHWC/.test(err.message));
  const dilated = backend_util.computeConv2DInfo([2, 8, 8, 3], [3, 3, 3, 4], 1, 2, 'same');
  assert.throws(() => convGeometry(dilated), (err: unknown) => isTrainerError(err, 'ERR_BACKEND'));
});
