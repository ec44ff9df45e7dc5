import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { DEFAULT_BUCKETS, MIB, planBuckets } from '../../../../src/training/allreduce/buckets.js';

test('defaults are DDP’s: first bucket 1 MiB (1,048,576 B, not 1,000,000), then 25 MiB; frozen', () => {
  assert.deepEqual({ ...DEFAULT_BUCKETS }, { firstBucketBytes: 1_048_576, bucketBytes: 25 * 1_048_576 });
  assert.equal(MIB, 1_048_576);
  assert.ok(Object.isFrozen(DEFAULT_BUCKETS));
});

test('buckets are filled in reverse parameter order with the first capped at 1 MiB, as ranges of the flat gradient', () => {
  // 4 B per float32: 0.5 MiB = 131072 elements.
  const half = MIB / 8;
  const params = [
    { name: 'conv1', size: 10 * half },
    { name: 'bn1', size: 100 },
    { name: 'fc.w', size: half },
    { name: 'fc.b', size: half },
  ];
  const plan = planBuckets(params);
  assert.deepEqual(plan.map((b) => b.names), [['fc.b', 'fc.w'], ['bn1', 'conv1']]);
  // fc.w + fc.b fill the 1 MiB first bucket exactly: the last 2·half elements of the flat gradient.
  const total = 12 * half + 100;
  assert.deepEqual(plan.map((b) => [b.id, b.start, b.end]), [[0, total - 2 * half, total], [1, 0, total - 2 * half]]);
});

test('the first-bucket cap is 1 MiB: a last layer of 1,000,000 B < size ≤ 1 MiB shares it with the layer before', () => {
  // 250,001 elements = 1,000,004 B: over the old 1,000,000-byte cap, under 1 MiB; with a 100-element bias, 1,000,404 B.
  const plan = planBuckets([{ name: 'w', size: 500_000 }, { name: 'fc.w', size: 250_001 }, { name: 'fc.b', size: 100 }]);
  assert.deepEqual(plan.map((b) => b.names), [['fc.b', 'fc.w'], ['w']]);
});

test('respects caps; an oversized parameter gets its own bucket; the ranges tile the gradient once, back to front', () => {
  const params = Array.from({ length: 50 }, (_, i) => ({ name: `p${i}`, size: 1000 + 37 * i }));
  params.splice(20, 0, { name: 'huge', size: 100_000 });
  const plan = planBuckets(params, { firstBucketBytes: 16_000, bucketBytes: 40_000 });
  let end = params.reduce((s, p) => s + p.size, 0);
  plan.forEach((b, i) => {
    assert.equal(b.id, i);
    assert.equal(b.end, end, `bucket ${i} starts where bucket ${i - 1} ended`);
    end = b.start;
    const cap = i === 0 ? 16_000 : 40_000;
    if (b.names.length > 1) assert.ok((b.end - b.start) * 4 <= cap, `bucket ${i}: ${(b.end - b.start) * 4} B ≤ ${cap}`);
  });
  assert.equal(end, 0);
  assert.deepEqual(plan.find((b) => b.names.includes('huge'))?.names, ['huge']);
  assert.deepEqual(plan.flatMap((b) => b.names), params.map((p) => p.name).reverse());
  assert.deepEqual(planBuckets([]), []);
});

test('invalid options and inputs name the field and rule', () => {
  const bad = (fn: () => unknown, re: RegExp): void =>
    assert.throws(fn, (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && re.test((e as Error).message));
  bad(() => planBuckets([], { bucketBytes: 0 }), /bucketBytes must be an integer ≥ 4, got 0/);
  bad(() => planBuckets([], { firstBucketBytes: 2.5 }), /firstBucketBytes must be an integer ≥ 4, got 2.5/);
  bad(() => planBuckets([{ name: 'x', size: -1 }]), /x size must be an integer ≥ 0, got -1/);
  bad(() => planBuckets([{ name: 'x', size: 1 }, { name: 'x', size: 2 }]), /unique, got x twice/);
});
