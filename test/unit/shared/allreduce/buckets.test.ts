import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTrainerError } from '../../../../src/shared/errors.js';
import {
  DEFAULT_BUCKETS,
  flattenBucket,
  planBuckets,
  unflattenBucket,
} from '../../../../src/shared/allreduce/buckets.js';

const MB = 1024 * 1024;

test('defaults are DDP’s: first bucket 1 MiB, then 25 MiB; frozen', () => {
  assert.deepEqual({ ...DEFAULT_BUCKETS }, { firstBucketBytes: MB, bucketBytes: 25 * MB });
  assert.ok(Object.isFrozen(DEFAULT_BUCKETS));
});

test('buckets are filled in reverse parameter order with the first capped at 1 MiB', () => {
  // 4 B per float32: 0.5 MiB = 131072 elements.
  const half = MB / 8;
  const params = [
    { name: 'conv1', size: 10 * half },
    { name: 'bn1', size: 100 },
    { name: 'fc.w', size: half },
    { name: 'fc.b', size: half },
  ];
  const plan = planBuckets(params);
  assert.deepEqual(
    plan.map((b) => b.entries.map((e) => e.name)),
    [['fc.b', 'fc.w'], ['bn1', 'conv1']],
  );
  assert.equal(plan[0].length * 4, MB, 'fc.b + fc.w fill the 1 MiB first bucket exactly');
  assert.deepEqual(plan[1].entries.map((e) => e.offset), [0, 100]);
  assert.equal(plan[1].length, 100 + 10 * half);
});

test('respects caps; an oversized parameter gets its own bucket; every parameter appears once', () => {
  const params = Array.from({ length: 50 }, (_, i) => ({ name: `p${i}`, size: 1000 + 37 * i }));
  params.splice(20, 0, { name: 'huge', size: 100_000 });
  const plan = planBuckets(params, { firstBucketBytes: 16_000, bucketBytes: 40_000 });
  plan.forEach((b, i) => {
    assert.equal(b.id, i);
    const cap = i === 0 ? 16_000 : 40_000;
    if (b.entries.length > 1) assert.ok(b.length * 4 <= cap, `bucket ${i}: ${b.length * 4} B ≤ ${cap}`);
  });
  const huge = plan.find((b) => b.entries.some((e) => e.name === 'huge'));
  assert.equal(huge?.entries.length, 1);
  const order = plan.flatMap((b) => b.entries.map((e) => e.name));
  assert.deepEqual(order, params.map((p) => p.name).reverse());
});

test('flatten then unflatten restores every gradient exactly', () => {
  const params = [
    { name: 'a', size: 3 },
    { name: 'b', size: 0 },
    { name: 'c', size: 5 },
  ];
  const [bucket] = planBuckets(params);
  const grads = new Map(params.map((p, k) => [p.name, Float32Array.from({ length: p.size }, (_, i) => k * 10 + i)]));
  const flat = flattenBucket(bucket, grads);
  assert.deepEqual(Array.from(flat), [20, 21, 22, 23, 24, 0, 1, 2]);
  const dest = new Map(params.map((p) => [p.name, new Float32Array(p.size)]));
  unflattenBucket(bucket, flat.map((x) => x * 2), dest);
  assert.deepEqual(Array.from(dest.get('a') ?? []), [0, 2, 4]);
  assert.deepEqual(Array.from(dest.get('c') ?? []), [40, 42, 44, 46, 48]);
});

test('invalid options and inputs name the field and rule', () => {
  const bad = (fn: () => unknown, code: 'ERR_BAD_CONFIG' | 'ERR_DATA', re: RegExp): void =>
    assert.throws(fn, (e: unknown) => isTrainerError(e, code) && re.test((e as Error).message));
  bad(() => planBuckets([], { bucketBytes: 0 }), 'ERR_BAD_CONFIG', /bucketBytes must be an integer ≥ 4, got 0/);
  bad(() => planBuckets([{ name: 'x', size: -1 }]), 'ERR_BAD_CONFIG', /x size must be an integer ≥ 0, got -1/);
  bad(() => planBuckets([{ name: 'x', size: 1 }, { name: 'x', size: 2 }]), 'ERR_BAD_CONFIG', /unique, got x twice/);
  const [b] = planBuckets([{ name: 'x', size: 2 }]);
  bad(() => flattenBucket(b, new Map()), 'ERR_DATA', /missing gradient for parameter x/);
  bad(() => flattenBucket(b, new Map([['x', new Float32Array(3)]])), 'ERR_DATA', /x must have 2 elements, got 3/);
  bad(() => unflattenBucket(b, new Float32Array(1), new Map()), 'ERR_DATA', /must have 2 elements, got 1/);
});
