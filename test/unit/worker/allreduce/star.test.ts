import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Dealer } from 'zeromq';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { encode } from '../../../../src/contract/protocol/index.js';
import { StarReduceServer, sumInRankOrder } from '../../../../src/coordinator/star-reduce.js';
import { StarAllReduce } from '../../../../src/worker/allreduce/star.js';
import { RingAllReduce } from '../../../../src/worker/allreduce/ring.js';

function data(rank: number, length: number): Float32Array {
  let s = (rank + 7) * 2246822519;
  return Float32Array.from({ length }, () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  });
}

const quiet = { onWarning: () => {} };

async function makeStar(n: number, timeoutMs = 5000): Promise<{ server: StarReduceServer; clients: StarAllReduce[] }> {
  const server = new StarReduceServer(quiet);
  const address = await server.start();
  server.reconfigure(n, 1);
  const clients = Array.from({ length: n }, () => new StarAllReduce(address, { ...quiet, timeoutMs }));
  for (const [rank, c] of clients.entries()) {
    await c.start();
    await c.reconfigure({ rank, worldSize: n, generation: 1 });
  }
  return { server, clients };
}

async function closeStar(s: { server: StarReduceServer; clients: StarAllReduce[] }): Promise<void> {
  await Promise.all(s.clients.map((c) => c.close()));
  await s.server.close();
}

test('sumInRankOrder is ((x0 + x1) + x2) in float32, optionally / N', () => {
  const xs = [new Float32Array([1, 2 ** 24]), new Float32Array([2, 1]), new Float32Array([3, 1])];
  // 2^24 + 1 rounds to 2^24 in float32 (ties to even), twice: rank order is visible in the result.
  assert.deepEqual(Array.from(sumInRankOrder(xs, false)), [6, 2 ** 24]);
  assert.deepEqual(Array.from(sumInRankOrder(xs, true)), [2, 2 ** 24 / 3].map(Math.fround));
});

for (const n of [2, 3]) {
  test(`star N=${n}: every client gets the rank-ordered float32 sum (exactly), average too`, async () => {
    const star = await makeStar(n);
    try {
      for (const average of [false, true]) {
        const inputs = star.clients.map((_, r) => data(r, 1001));
        const buffers = inputs.map((x) => x.slice());
        await Promise.all(star.clients.map((c, r) => c.allReduce(buffers[r], { step: average ? 1 : 0, bucket: 0 }, { average })));
        const expected = sumInRankOrder(inputs, average);
        for (const b of buffers) assert.deepEqual(b, expected);
      }
      assert.equal(star.server.stats().roundsTotal, 2);
      assert.equal(star.clients[0].stats().sentBytesTotal, 2 * 1001 * 4);
    } finally {
      await closeStar(star);
    }
  });
}

test('N=2: ring and star give bit-identical results (float addition is commutative)', async () => {
  const star = await makeStar(2);
  const rings = [new RingAllReduce(quiet), new RingAllReduce(quiet)];
  try {
    const peers = await Promise.all(rings.map((r) => r.start()));
    await Promise.all(rings.map((r, rank) => r.reconfigure({ peers, rank, generation: 1 })));
    const inputs = [data(0, 999), data(1, 999)];
    const viaStar = inputs.map((x) => x.slice());
    const viaRing = inputs.map((x) => x.slice());
    await Promise.all(star.clients.map((c, r) => c.allReduce(viaStar[r], { step: 0, bucket: 0 }, { average: true })));
    await Promise.all(rings.map((c, r) => c.allReduce(viaRing[r], { step: 0, bucket: 0 }, { average: true })));
    assert.deepEqual(viaRing[0], viaStar[0]);
    assert.deepEqual(viaRing[1], viaStar[1]);
  } finally {
    await Promise.all(rings.map((r) => r.close()));
    await closeStar(star);
  }
});

test('a missing rank makes star clients time out; garbage to the server is rejected, not fatal', async () => {
  const star = await makeStar(2, 300);
  const intruder = new Dealer({ linger: 0 });
  try {
    star.server.reconfigure(3, 2);
    await Promise.all(star.clients.map((c, rank) => c.reconfigure({ rank, worldSize: 3, generation: 2 })));
    intruder.connect(star.server.address);
    await intruder.send([Buffer.from('not msgpack at all')]);
    await intruder.send(encode({ type: 'star-push', generation: 1, step: 0, bucket: 0, rank: 0, worldSize: 3, average: false, byteLength: 4 }, [Buffer.alloc(4)]));
    const calls = star.clients.map((c) => c.allReduce(data(0, 10), { step: 0, bucket: 0 }));
    for (const call of calls) await assert.rejects(call, (e: unknown) => isTrainerError(e, 'ERR_TIMEOUT'));
    assert.equal(star.server.stats().rejectedMessagesTotal, 2);
    // The star checks a call's deadline and tag as the ring does (it checked neither: Infinity reached its timer).
    assert.throws(() => star.clients[0]!.allReduce(data(0, 10), { step: 1, bucket: 0 }, { timeoutMs: Infinity }), /timeoutMs must be a finite number > 0/);
    assert.throws(() => star.clients[0]!.allReduce(data(0, 10), { step: -1, bucket: 0 }), /tag step and bucket must be integers ≥ 0/);
  } finally {
    intruder.close();
    await closeStar(star);
  }
});
