import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chunkBounds,
  ownedChunk,
  receiveChunk,
  ringBytesPerRank,
  sendChunk,
} from '../../../../src/training/allreduce/ring-schedule.js';

test('chunks tile the buffer, sizes differ by ≤ 1, empty chunks when length < n', () => {
  for (const [length, n] of [[10, 3], [2, 4], [0, 2], [7, 7], [1000, 4]]) {
    let next = 0;
    for (let c = 0; c < n; c++) {
      const { start, end } = chunkBounds(length, n, c);
      assert.equal(start, next);
      assert.ok(end - start === Math.floor(length / n) || end - start === Math.ceil(length / n));
      next = end;
    }
    assert.equal(next, length);
  }
});

// Simulates the schedule symbolically: each chunk holds the set of ranks summed into it. The expected end state
// (every rank holds every rank's contribution in every chunk) is the definition of all-reduce.
test('the schedule all-reduces for n = 2 … 6: every rank ends with all contributions in every chunk', () => {
  for (let n = 2; n <= 6; n++) {
    const state = Array.from({ length: n }, (_, r) => Array.from({ length: n }, () => new Set([r])));
    for (const phase of ['reduce-scatter', 'all-gather'] as const) {
      for (let t = 0; t < n - 1; t++) {
        const sent = state.map((chunks, r) => new Set(chunks[sendChunk(phase, r, t, n)]));
        for (let r = 0; r < n; r++) {
          const left = (r - 1 + n) % n;
          const c = receiveChunk(phase, r, t, n);
          assert.equal(sendChunk(phase, left, t, n), c);
          if (phase === 'reduce-scatter') {
            for (const x of sent[left]) {
              assert.ok(!state[r][c].has(x), `n=${n}: rank ${x} counted twice in chunk ${c}`);
              state[r][c].add(x);
            }
          } else state[r][c] = sent[left];
        }
      }
      if (phase === 'reduce-scatter') {
        for (let r = 0; r < n; r++) assert.equal(state[r][ownedChunk(r, n)].size, n, `n=${n} rank ${r} owns a full sum`);
      }
    }
    for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) assert.equal(state[r][c].size, n);
  }
});

test('each rank sends 2(N−1)/N of the buffer', () => {
  assert.equal(ringBytesPerRank(1200, 4), 1800);
  assert.equal(ringBytesPerRank(1200, 1), 0);
});
