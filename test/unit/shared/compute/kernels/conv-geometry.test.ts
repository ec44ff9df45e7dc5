import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backend_util } from '@tensorflow/tfjs-core';
import {
  convFlops, convGeometry, filterGradAxisPlan, inputGradAxisPlan, pointwiseInputGradAxisPlan,
} from '../../../../../src/shared/compute/kernels/conv-geometry.js';
import { isTrainerError } from '../../../../../src/shared/errors.js';

// Expected values are derived by hand from the index formulas in conv-geometry.ts:
// forward y[i] reads x[i·s + a − p] for a in 0..k−1, i in 0..Ho−1.

test('ResNet stem (224, k7, s2, p3): filter grad pads 3/2, input grad pads 3/3', () => {
  const axis = { inSize: 224, outSize: 112, kernel: 7, stride: 2, padBefore: 3 };
  // Last input index read: 111·2 + 6 − 3 = 225 → 2 rows past the end (224, 225) are padding.
  assert.deepEqual(filterGradAxisPlan(axis), { cropBefore: 0, cropAfter: 0, padBefore: 3, padAfter: 2 });
  // dyd has 224 rows (112·2); dx needs 224 + 7 − 1 = 230 rows: 3 before (k−1−p), 3 after.
  assert.deepEqual(inputGradAxisPlan(axis), { cropBefore: 0, cropAfter: 0, padBefore: 3, padAfter: 3 });
});

test("'valid' 3x3 stride 2 on 8 rows: the never-read last row is cropped for the filter gradient", () => {
  const axis = { inSize: 8, outSize: 3, kernel: 3, stride: 2, padBefore: 0 };
  // Rows read: 0..2·2+2 = 6, so row 7 is dropped.
  assert.deepEqual(filterGradAxisPlan(axis), { cropBefore: 0, cropAfter: 1, padBefore: 0, padAfter: 0 });
  // dyd: 6 rows; need 8 + 2 = 10: 2 before, 2 after.
  assert.deepEqual(inputGradAxisPlan(axis), { cropBefore: 0, cropAfter: 0, padBefore: 2, padAfter: 2 });
});

test('1x1 stride 2: pointwise placement crops the extra inserted zero on odd sizes', () => {
  // H = 9, Ho = 5: placed length 10, needs 9 → crop 1 at the end.
  assert.deepEqual(pointwiseInputGradAxisPlan({ inSize: 9, outSize: 5, kernel: 1, stride: 2, padBefore: 0 }),
    { cropBefore: 0, cropAfter: 1, padBefore: 0, padAfter: 0 });
  // H = 8, Ho = 4: exact.
  assert.deepEqual(pointwiseInputGradAxisPlan({ inSize: 8, outSize: 4, kernel: 1, stride: 2, padBefore: 0 }),
    { cropBefore: 0, cropAfter: 0, padBefore: 0, padAfter: 0 });
});

test('padding larger than kernel − 1 turns into a crop of the dilated gradient', () => {
  // k = 1, p = 1 (explicit), H = 4: Ho = 6; dx[q] = dy[q + 1] → crop 1 before; 6 rows − 1 = 5, need 4 → crop 1 after.
  assert.deepEqual(inputGradAxisPlan({ inSize: 4, outSize: 6, kernel: 1, stride: 1, padBefore: 1 }),
    { cropBefore: 1, cropAfter: 1, padBefore: 0, padAfter: 0 });
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
