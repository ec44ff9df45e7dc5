import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Push } from 'zeromq';
import { Packr } from 'msgpackr';
import { isTrainerError, type TrainerError } from '../../../../src/contract/errors.js';
import { encode, PROTOCOL_VERSION, type ChunkMessage } from '../../../../src/contract/protocol/index.js';
import { RingAllReduce, type RingOptions } from '../../../../src/worker/allreduce/ring.js';

/** Seeded uniform values in [-1, 1), different per rank. */
function data(rank: number, length: number): Float32Array {
  let s = (rank + 1) * 2654435761;
  return Float32Array.from({ length }, () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  });
}

async function makeRings(n: number, options: RingOptions = {}): Promise<RingAllReduce[]> {
  const rings = Array.from({ length: n }, () => new RingAllReduce({ onWarning: () => {}, ...options }));
  const peers = await Promise.all(rings.map((r) => r.start()));
  await Promise.all(rings.map((r, rank) => r.reconfigure({ peers, rank, generation: 1 })));
  return rings;
}

const closeAll = (rings: RingAllReduce[]): Promise<unknown> => Promise.all(rings.map((r) => r.close()));

/**
 * Checks results against a Float64 sum of the inputs. Tolerance: the classic bound for float32 recursive summation
 * of n terms, (n − 1)·u·Σ|x| with u = 2^-24 (Higham, "Accuracy and Stability of Numerical Algorithms", §4.2),
 * plus one rounding of the final average; `relTol` overrides u for the fp16 path.
 */
function checkAgainstReference(results: Float32Array[], inputs: Float32Array[], average: boolean, u = 2 ** -24): void {
  const n = inputs.length;
  for (let i = 0; i < inputs[0].length; i++) {
    let sum = 0;
    let abs = 0;
    for (const x of inputs) {
      sum += x[i];
      abs += Math.abs(x[i]);
    }
    const expected = average ? sum / n : sum;
    const tol = (n + 1) * u * (average ? abs / n : abs) + 1e-30;
    for (const r of results) assert.ok(Math.abs(r[i] - expected) <= tol, `element ${i}: ${r[i]} vs ${expected} ± ${tol}`);
  }
}

function assertBitIdentical(results: Float32Array[]): void {
  const first = Buffer.from(results[0].buffer, results[0].byteOffset, results[0].byteLength);
  for (const r of results.slice(1)) assert.ok(first.equals(Buffer.from(r.buffer, r.byteOffset, r.byteLength)));
}

for (const n of [2, 3, 4]) {
  test(`N=${n}: sums match a Float64 reference and are bit-identical across ranks (lengths 1000, 7, 2, 0)`, async () => {
    const rings = await makeRings(n);
    try {
      for (const [k, length] of [1000, 7, 2, 0].entries()) {
        const inputs = rings.map((_, r) => data(r + 10 * k, length));
        const buffers = inputs.map((x) => x.slice());
        const out = await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r], { step: k, bucket: 0 })));
        out.forEach((o, r) => assert.equal(o, buffers[r], 'reduces in place'));
        checkAgainstReference(buffers, inputs, false);
        assertBitIdentical(buffers);
      }
      const inputs = rings.map((_, r) => data(r, 333));
      const buffers = inputs.map((x) => x.slice());
      await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r], { step: 9, bucket: 1 }, { average: true })));
      checkAgainstReference(buffers, inputs, true);
      assertBitIdentical(buffers);
      assert.equal(rings[0].stats().callsTotal, 5);
      // Every chunk travels N−1 times per phase, so all ranks together send 2(N−1) × 4 B × Σ lengths, i.e.
      // 2(N−1)/N of the buffer per rank (Patarasuk & Yuan 2009); every sent byte is received.
      const sent = rings.reduce((a, r) => a + r.stats().sentBytesTotal, 0);
      const received = rings.reduce((a, r) => a + r.stats().receivedBytesTotal, 0);
      assert.equal(sent, 2 * (n - 1) * 4 * (1000 + 7 + 2 + 0 + 333));
      assert.equal(received, sent);
    } finally {
      await closeAll(rings);
    }
  });
}

test('fp16 compression: within fp16 rounding of the reference, bit-identical, half the bytes on the wire', async () => {
  const rings = await makeRings(3, { dtype: 'float16' });
  const f32 = await makeRings(3);
  try {
    const inputs = rings.map((_, r) => data(r, 1001));
    for (const average of [true, false]) {
      const buffers = inputs.map((x) => x.slice());
      await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r], { step: average ? 0 : 1, bucket: 0 }, { average })));
      // Each partial sum is rounded to float16 (u = 2^-11) at most N times along its path.
      checkAgainstReference(buffers, inputs, average, 2 ** -11);
      assertBitIdentical(buffers);
    }
    await Promise.all(f32.map((ring, r) => ring.allReduce(inputs[r].slice(), { step: 0, bucket: 0 })));
    assert.equal(rings[0].stats().sentBytesTotal, f32[0].stats().sentBytesTotal, 'two fp16 calls = one float32 call');
  } finally {
    await closeAll([...rings, ...f32]);
  }
});

test('world size 1 is a no-op', async () => {
  const [ring] = await makeRings(1);
  try {
    const x = data(0, 5);
    const y = x.slice();
    await ring.allReduce(y, { step: 0, bucket: 0 }, { average: true });
    assert.deepEqual(y, x);
    assert.equal(ring.stats().sentBytesTotal, 0);
  } finally {
    await ring.close();
  }
});

const isCode = (code: TrainerError['code']) => (err: unknown) => isTrainerError(err, code);

test('a closed peer makes the others time out (ERR_TIMEOUT), then the ring re-forms without it', async () => {
  const rings = await makeRings(3);
  try {
    await rings[2].close();
    const calls = rings.slice(0, 2).map((ring) => ring.allReduce(data(0, 100), { step: 0, bucket: 0 }, { timeoutMs: 300 }));
    for (const c of calls) await assert.rejects(c, isCode('ERR_TIMEOUT'));
    await assert.rejects(rings[0].allReduce(data(0, 10), { step: 1, bucket: 0 }), isCode('ERR_WORKER_LOST'));
    const peers = [rings[0].address, rings[1].address];
    await Promise.all([0, 1].map((rank) => rings[rank].reconfigure({ peers, rank, generation: 2 })));
    const inputs = [data(0, 50), data(1, 50)];
    const buffers = inputs.map((x) => x.slice());
    await Promise.all([0, 1].map((r) => rings[r].allReduce(buffers[r], { step: 1, bucket: 0 })));
    checkAgainstReference(buffers, inputs, false);
  } finally {
    await closeAll(rings);
  }
});

test('abort() cancels the call in flight and queued calls with ERR_WORKER_LOST', async () => {
  const rings = await makeRings(2);
  try {
    const inFlight = rings[0].allReduce(data(0, 10), { step: 0, bucket: 0 });
    const queued = rings[0].allReduce(data(0, 10), { step: 0, bucket: 1 });
    setTimeout(() => rings[0].abort('membership changed'), 50);
    await assert.rejects(inFlight, (e: unknown) => isCode('ERR_WORKER_LOST')(e) && /membership changed/.test(String(e)));
    await assert.rejects(queued, isCode('ERR_WORKER_LOST'));
  } finally {
    await closeAll(rings);
  }
});

test('stale-generation, garbage, wrong-version and wrong-sender messages are dropped; the ring keeps working', async () => {
  const warnings: TrainerError[] = [];
  const rings = await makeRings(2, { onWarning: (w) => warnings.push(w) });
  const intruder = new Push({ linger: 0 });
  try {
    const peers = [rings[0].address, rings[1].address];
    await Promise.all([0, 1].map((rank) => rings[rank].reconfigure({ peers, rank, generation: 5 })));
    intruder.connect(rings[0].address);
    const stale: ChunkMessage = {
      type: 'chunk', generation: 4, step: 0, bucket: 0, phase: 'reduce-scatter',
      ringStep: 0, chunk: 1, offset: 0, from: 1, dtype: 'float32', byteLength: 8,
    };
    // Same tag as the real call below: if the stale chunk were accepted, the sum would be wrong.
    await intruder.send(encode(stale, [Buffer.from(new Float32Array([1e6, 1e6]).buffer)]));
    await intruder.send([Buffer.from('garbage'), Buffer.alloc(3)]);
    await intruder.send([new Packr({ useRecords: false }).pack({ v: PROTOCOL_VERSION + 1, type: 'chunk' })]);
    await intruder.send(encode({ ...stale, generation: 5, from: 0 }, [Buffer.alloc(8)]));
    await intruder.send(encode({ type: 'shutdown', reason: 'x' }));
    const deadline = Date.now() + 2000;
    while (warnings.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const s = rings[0].stats();
    assert.equal(s.staleMessagesTotal, 1);
    assert.equal(s.rejectedMessagesTotal, 4);
    assert.ok(warnings.every((w) => w.code === 'ERR_PROTOCOL'));
    const inputs = [data(0, 4), data(1, 4)];
    const buffers = inputs.map((x) => x.slice());
    await Promise.all([0, 1].map((r) => rings[r].allReduce(buffers[r], { step: 0, bucket: 0 }, { timeoutMs: 5000 })));
    checkAgainstReference(buffers, inputs, false);
  } finally {
    intruder.close();
    await closeAll(rings);
  }
});

test('mismatched buffer lengths across ranks are ERR_PROTOCOL; invalid options and membership are rejected', async () => {
  const rings = await makeRings(2);
  try {
    const calls = [rings[0].allReduce(data(0, 10), { step: 0, bucket: 0 }, { timeoutMs: 1000 }),
      rings[1].allReduce(data(1, 12), { step: 0, bucket: 0 }, { timeoutMs: 1000 })];
    const results = await Promise.allSettled(calls);
    assert.ok(results.some((r) => r.status === 'rejected' && isTrainerError(r.reason, 'ERR_PROTOCOL')));
    assert.throws(() => new RingAllReduce({ timeoutMs: 0 }), /ring timeoutMs must be a number > 0, got 0/);
    assert.throws(() => new RingAllReduce({ dtype: 'int8' as 'float32' }), isCode('ERR_BAD_CONFIG'));
    // A per-call deadline must be finite: Infinity once reached setTimeout (which fires at once for it) unchecked.
    for (const timeoutMs of [Infinity, 0, Number.NaN]) {
      assert.throws(() => rings[0].allReduce(data(0, 10), { step: 1, bucket: 0 }, { timeoutMs }), /timeoutMs must be a finite number > 0/);
    }
    await assert.rejects(rings[0].reconfigure({ peers: [rings[0].address], rank: 0, generation: 1 }), /generation must be an integer > 1/);
    await assert.rejects(rings[0].reconfigure({ peers: [rings[0].address], rank: 1, generation: 2 }), /rank must be an integer in \[0, 0\]/);
  } finally {
    await closeAll(rings);
  }
});

test('start() and close() are idempotent', async () => {
  const ring = new RingAllReduce();
  const a = await ring.start();
  assert.match(a, /^tcp:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(await ring.start(), a);
  await ring.close();
  await ring.close();
  await assert.rejects(ring.start(), isCode('ERR_INTERNAL'));
});

test('a wall clock stepped forward during an all-reduce is not a timeout (deadlines on the monotonic clock)', async () => {
  // Seen by the breaker: each wait of a call measured its deadline against Date.now(), so a clock stepped forward
  // (NTP after a VM pause, `date -s`) while rank 0 waited for rank 1 failed the step with ERR_TIMEOUT at once.
  const rings = await makeRings(2);
  const realNow = Date.now;
  try {
    const inputs = [data(0, 4096), data(1, 4096)];
    const buffers = inputs.map((x) => x.slice());
    const first = rings[0].allReduce(buffers[0], { step: 0, bucket: 0 }, { timeoutMs: 600_000 });
    await new Promise((r) => setImmediate(r)); // rank 0 waits for its left peer
    Date.now = () => realNow() + 3_600_000;
    await Promise.all([first, rings[1].allReduce(buffers[1], { step: 0, bucket: 0 }, { timeoutMs: 600_000 })]);
    checkAgainstReference(buffers, inputs, false);
  } finally {
    Date.now = realNow;
    await closeAll(rings);
  }
});
