/**
 * The pipelined ring (slices of a chunk forwarded as soon as they are added) and its transports: slices reassemble
 * into exactly the sums of the ring's schedule (chunk c summed along the ring starting at rank c, then ÷ N by its
 * owner), whatever the slice size; Unix sockets between same-host peers, TCP where a peer has none or its socket is
 * not on this host, both in one ring; the dtype switch at setup.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { chunkBounds } from '../../../../src/training/allreduce/ring-schedule.js';
import { addIntoJs } from '../../../../src/training/allreduce/add.js';
import { isLocalSocket, RingAllReduce, sameHostAddress, type RingOptions } from '../../../../src/worker/allreduce/ring.js';
import { hostIdentity, pidSpaceIdentity } from '../../../../src/contract/host-identity.js';

/** Seeded values spanning many binades (so float32 sums round, and their order shows), different per rank. */
function data(rank: number, length: number): Float32Array {
  let s = (rank + 7) * 2654435761;
  return Float32Array.from({ length }, () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    const u = s / 2 ** 32;
    return (u * 2 - 1) * 2 ** Math.floor(u * 1e6 % 24 - 12);
  });
}

/**
 * The ring's result by its definition (Patarasuk & Yuan 2009, `ring-schedule.ts`): chunk c is sent first by rank
 * c and each next rank on the ring adds its own value to the running float32 sum (c, c + 1, …, c + N − 1 mod N);
 * averaging divides the complete float32 sum by N once.
 */
function ringOrderReference(inputs: Float32Array[], average: boolean): Float32Array {
  const n = inputs.length;
  const length = inputs[0].length;
  const out = new Float32Array(length);
  for (let c = 0; c < n; c++) {
    const { start, end } = chunkBounds(length, n, c);
    for (let i = start; i < end; i++) {
      let acc = inputs[c][i];
      for (let j = 1; j < n; j++) acc = Math.fround(acc + inputs[(c + j) % n][i]);
      out[i] = average ? Math.fround(acc / n) : acc;
    }
  }
  return out;
}

/** This host's identity: every ring of these tests runs here. */
const HERE = hostIdentity() ?? undefined;

const bytes = (x: Float32Array): Buffer => Buffer.from(x.buffer, x.byteOffset, x.byteLength);

async function makeRings(options: RingOptions[], useLocal = true): Promise<RingAllReduce[]> {
  const rings = options.map((o) => new RingAllReduce({ onWarning: () => {}, ...o }));
  const peers = await Promise.all(rings.map((r) => r.start()));
  const localPeers = rings.map((r) => (useLocal && r.localAddress !== '' ? r.localAddress : undefined));
  await Promise.all(rings.map((r, rank) => r.reconfigure({ peers, localPeers, hostIds: rings.map(() => HERE), rank, generation: 1 })));
  return rings;
}

const closeAll = (rings: RingAllReduce[]): Promise<unknown> => Promise.all(rings.map((r) => r.close()));

const SLICE = 4096; // bytes: 1024 float32 values, the smallest slice, so small buffers span many slices

for (const n of [2, 3, 4]) {
  test(`N=${n}: slices reassemble to the ring-order float32 sums, bit for bit, at every slice size`, async () => {
    const lengths = [0, 1, n - 1, 1023, 1024, 1025, 1024 * n, 1024 * n * 3 + 5, 20_011];
    for (const sliceBytes of [SLICE, 3 * SLICE, 1 << 20]) {
      const rings = await makeRings(Array.from({ length: n }, () => ({ sliceBytes })));
      try {
        for (const [k, length] of lengths.entries()) {
          for (const average of [false, true]) {
            const inputs = rings.map((_, r) => data(r + 31 * k, length));
            const buffers = inputs.map((x) => x.slice());
            await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r], { step: k, bucket: average ? 1 : 0 }, { average })));
            const expected = bytes(ringOrderReference(inputs, average));
            buffers.forEach((b, r) => assert.ok(bytes(b).equals(expected), `N=${n} slice ${sliceBytes} length ${length} rank ${r}`));
          }
        }
        if (n >= 3) {
          // The check can fail: a plain rank-order sum ((x0 + x1) + x2 …) differs from the ring order here.
          const inputs = rings.map((_, r) => data(r, 20_011));
          const rankOrder = inputs[0].map((_, i) => inputs.slice(1).reduce((acc, x) => Math.fround(acc + x[i]), inputs[0][i]));
          assert.ok(!bytes(rankOrder).equals(bytes(ringOrderReference(inputs, false))));
        }
        // Each rank still sends 2(N−1)/N of every buffer: slicing adds messages, not bytes.
        const sent = rings.reduce((a, r) => a + r.stats().sentBytesTotal, 0);
        assert.equal(sent, 2 * 2 * (n - 1) * 4 * lengths.reduce((a, b) => a + b, 0));
      } finally {
        await closeAll(rings);
      }
    }
  });
}

test('a 9 MiB buffer (many 1 MiB slices in flight) sums as the reference; the caller may reuse its buffer at once', async () => {
  const rings = await makeRings([{}, {}]);
  try {
    const length = (9 << 20) / 4 + 3;
    const inputs = rings.map((_, r) => data(r, length));
    const buffers = inputs.map((x) => x.slice());
    await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r], { step: 0, bucket: 0 }, { average: true })));
    const expected = bytes(ringOrderReference(inputs, true));
    for (const b of buffers) assert.ok(bytes(b).equals(expected));
    // Overwrite the buffers right away (as a trainer writing the next gradient) and reduce again: the
    // all-gather's queued slices were copies, so the peer's result cannot see these writes.
    const second = rings.map((_, r) => data(r + 5, length));
    buffers.forEach((b, r) => b.set(second[r]));
    await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r], { step: 1, bucket: 0 })));
    const expected2 = bytes(ringOrderReference(second, false));
    for (const b of buffers) assert.ok(bytes(b).equals(expected2));
  } finally {
    await closeAll(rings);
  }
});

test('N=3, 5 MiB (zero-copy all-gather, receipt tokens over 2 hops): ring-order sums; buffers reusable at once', async () => {
  const rings = await makeRings([{}, {}, {}]);
  try {
    const length = (5 << 20) / 4 + 1;
    for (const step of [0, 1]) {
      const inputs = rings.map((_, r) => data(r + 3 * step, length));
      const buffers = inputs.map((x) => x.slice());
      await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r], { step, bucket: 0 }, { average: true })));
      const expected = bytes(ringOrderReference(inputs, true));
      for (const b of buffers) assert.ok(bytes(b).equals(expected));
      for (const b of buffers) b.fill(Number.NaN); // a caller's next write: must not reach any peer's result
    }
    assert.equal(rings[0].stats().rejectedMessagesTotal, 0);
  } finally {
    await closeAll(rings);
  }
});

test('the ring adds through RingOptions.add, one call per received reduce-scatter slice', async () => {
  // One spy per rank: the two ranks add concurrently, so a shared log's order would depend on timing.
  const calls: string[][] = [[], []];
  const spy = (rank: number) => (target: Float32Array, values: Float32Array): void => {
    calls[rank].push(`${target.length}`);
    addIntoJs(target, values);
  };
  const rings = await makeRings([{ add: spy(0), sliceBytes: SLICE }, { add: spy(1), sliceBytes: SLICE }]);
  try {
    const inputs = rings.map((_, r) => data(r, 5000));
    const buffers = inputs.map((x) => x.slice());
    await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r], { step: 0, bucket: 0 })));
    assert.ok(bytes(buffers[0]).equals(bytes(ringOrderReference(inputs, false))));
    // 2500 elements per chunk in slices of 1024: 3 adds per rank.
    assert.deepEqual(calls, [['1024', '1024', '452'], ['1024', '1024', '452']]);
  } finally {
    await closeAll(rings);
  }
});

test('Unix sockets between same-host peers; TCP to a peer without one, in the same ring', async () => {
  const rings = await makeRings([{}, { ipc: false }, {}]);
  try {
    assert.match(rings[0].localAddress, /^ipc:\/\/.*pets-ring-/);
    assert.equal(rings[1].localAddress, '', 'ipc: false binds no Unix socket');
    assert.ok(isLocalSocket(rings[0].localAddress));
    assert.equal(rings[0].rightAddress, rings[1].address, 'rank 1 has no Unix socket: TCP');
    assert.equal(rings[1].rightAddress, rings[2].localAddress);
    assert.equal(rings[2].rightAddress, rings[0].localAddress);
    const inputs = rings.map((_, r) => data(r, 30_000));
    const buffers = inputs.map((x) => x.slice());
    await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r], { step: 0, bucket: 0 }, { average: true })));
    const expected = bytes(ringOrderReference(inputs, true));
    for (const b of buffers) assert.ok(bytes(b).equals(expected));
  } finally {
    await closeAll(rings);
  }
});

test('a peer Unix socket that is not on this host (no such file, or not a socket) falls back to TCP', async () => {
  const plain = join(tmpdir(), `pets-ring-test-${process.pid}`);
  writeFileSync(plain, 'not a socket');
  const rings = [new RingAllReduce({ onWarning: () => {} }), new RingAllReduce({ onWarning: () => {} })];
  try {
    assert.equal(isLocalSocket(`ipc://${plain}`), false);
    assert.equal(isLocalSocket('ipc:///nonexistent/pets-ring-x'), false);
    assert.equal(isLocalSocket('tcp://127.0.0.1:1'), false);
    const peers = await Promise.all(rings.map((r) => r.start()));
    const localPeers = [`ipc://${plain}`, 'ipc:///nonexistent/pets-ring-x'];
    await Promise.all(rings.map((r, rank) => r.reconfigure({ peers, localPeers, rank, generation: 1 })));
    assert.deepEqual(rings.map((r) => r.rightAddress), [peers[1], peers[0]]);
    const inputs = rings.map((_, r) => data(r, 3000));
    const buffers = inputs.map((x) => x.slice());
    await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r], { step: 0, bucket: 0 })));
    assert.ok(bytes(buffers[1]).equals(bytes(ringOrderReference(inputs, false))));
    await assert.rejects(rings[0].reconfigure({ peers, localPeers: ['tcp://127.0.0.1:1', undefined], rank: 0, generation: 2 }),
      /localPeers must list 2 ipc:\/\/ endpoints or undefined/);
  } finally {
    rmSync(plain, { force: true });
    await closeAll(rings);
  }
});

test('a peer\'s Unix socket found here is used only with proof that the peer is on this host (its host identity): in a /tmp shared over NFS it is another host\'s', async () => {
  // Both rings run here, so the socket file exists; rank 0 stands for a worker on another machine that shares this
  // /tmp (its socket file appears here, but connecting to it reaches nobody: every all-reduce with it timed out).
  const elsewhere = hostIdentity('0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0')!;
  assert.notEqual(elsewhere, HERE);
  const rings = [new RingAllReduce({ onWarning: () => {}, hostId: elsewhere }), new RingAllReduce({ onWarning: () => {} })];
  try {
    const peers = await Promise.all(rings.map((r) => r.start()));
    const localPeers = rings.map((r) => r.localAddress);
    assert.ok(isLocalSocket(localPeers[0]!), 'the socket file exists here');
    await Promise.all(rings.map((r, rank) => r.reconfigure({ peers, localPeers, hostIds: [elsewhere, HERE], rank, generation: 1 })));
    assert.equal(rings[1].rightAddress, peers[0], 'rank 0 is not proven on this host: TCP');
    assert.equal(rings[0].rightAddress, peers[1], 'nor is rank 1 on rank 0\'s host');
    const inputs = rings.map((_, r) => data(r, 3000));
    const buffers = inputs.map((x) => x.slice());
    await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r], { step: 0, bucket: 0 })));
    assert.ok(bytes(buffers[1]).equals(bytes(ringOrderReference(inputs, false))));
    // Same identity: the socket. No identity announced (a member without a boot id) or none of our own: TCP.
    await rings[1].reconfigure({ peers, localPeers, hostIds: [HERE, HERE], rank: 1, generation: 2 });
    assert.equal(rings[1].rightAddress, localPeers[0]);
    await rings[1].reconfigure({ peers, localPeers, rank: 1, generation: 3 });
    assert.equal(rings[1].rightAddress, peers[0]);
    const m = { peers, localPeers, hostIds: [HERE, HERE], rank: 1, generation: 4 };
    assert.equal(sameHostAddress(m, 0, HERE ?? null), localPeers[0]);
    assert.equal(sameHostAddress(m, 0, null), undefined);
    assert.equal(sameHostAddress(m, 0, HERE ?? null, () => false), undefined, 'proven host, but no socket file here');
  } finally {
    await closeAll(rings);
  }
});

test('host identity: the kernel\'s boot id alone (a Unix socket connects exactly within one kernel); none without one', () => {
  const boot = 'a1b2c3d4-0000-4000-8000-000000000001';
  assert.match(hostIdentity(boot)!, /^[0-9a-f]{16}$/);
  assert.equal(hostIdentity(boot), hostIdentity(boot));
  assert.notEqual(hostIdentity(boot), hostIdentity('a1b2c3d4-0000-4000-8000-000000000002'), 'another boot: another host, whatever its name');
  // Docker containers of one kernel: one boot id (whatever their host names, which are not hashed), so one identity.
  const m = { peers: ['tcp://a:1', 'tcp://b:2'], localPeers: ['ipc:///tmp/a', 'ipc:///tmp/b'], hostIds: [hostIdentity(boot)!, hostIdentity(boot)!], rank: 1, generation: 1 };
  assert.equal(sameHostAddress(m, 0, hostIdentity(boot), () => true), 'ipc:///tmp/a', 'the container next door is reached over its socket');
  // No boot id (no procfs): no identity, so no peer is taken for a same-host one (a host name proves nothing).
  assert.equal(hostIdentity(null), null);
  assert.equal(sameHostAddress(m, 0, hostIdentity(null), () => true), undefined, 'without a boot id: TCP');
});

test('pid-space identity: one per host identity and pid namespace (what a stale socket sweep may judge); none without either', () => {
  const host = hostIdentity('a1b2c3d4-0000-4000-8000-000000000001');
  assert.match(pidSpaceIdentity(host, 'pid:[4026531836]')!, /^[0-9a-f]{16}$/);
  assert.notEqual(pidSpaceIdentity(host, 'pid:[4026531836]'), pidSpaceIdentity(host, 'pid:[4026532999]'), 'a container\'s own pid namespace');
  assert.notEqual(pidSpaceIdentity(host, 'pid:[4026531836]'), pidSpaceIdentity(hostIdentity('a1b2c3d4-0000-4000-8000-000000000002'), 'pid:[4026531836]'));
  assert.equal(pidSpaceIdentity(null, 'pid:[4026531836]'), null);
  assert.equal(pidSpaceIdentity(host, null), null);
});

test('ranks with different sliceBytes fail with ERR_PROTOCOL naming the cause, not a wrong sum', async () => {
  const rings = await makeRings([{ sliceBytes: SLICE }, { sliceBytes: 2 * SLICE }]);
  try {
    const results = await Promise.allSettled(rings.map((ring, r) => ring.allReduce(data(r, 10_000), { step: 0, bucket: 0 }, { timeoutMs: 20_000 })));
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(isTrainerError(r.reason, 'ERR_PROTOCOL') && /same buffer length and sliceBytes/.test(String(r.reason)), String(r.reason));
    }
    assert.throws(() => new RingAllReduce({ sliceBytes: 4094 }), /sliceBytes must be an integer multiple of 4, ≥ 4096, got 4094/);
    assert.throws(() => new RingAllReduce({ sliceBytes: 1000 }), /sliceBytes must be/);
  } finally {
    await closeAll(rings);
  }
});

test('setDtype switches the wire dtype between calls on the same sockets (the run\'s --allreduce-dtype at setup)', async () => {
  const rings = await makeRings([{}, {}]);
  try {
    const local = rings.map((r) => r.localAddress);
    await Promise.all(rings.map((r) => r.setDtype('float16')));
    assert.deepEqual(rings.map((r) => r.dtype), ['float16', 'float16']);
    assert.deepEqual(rings.map((r) => r.localAddress), local, 'addresses announced in hello still hold');
    const buffers = rings.map((_, r) => new Float32Array(4000).fill(r + 1));
    await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r], { step: 0, bucket: 0 }, { average: true })));
    for (const b of buffers) assert.ok(b.every((v) => v === 1.5));
    assert.equal(rings[0].stats().sentBytesTotal, 4000 * 2, '2(N−1)/N × 4000 values × 2 bytes');
    await assert.rejects(rings[0].setDtype('int8' as 'float16'), /ring dtype must be float32\|float16/);
  } finally {
    await closeAll(rings);
  }
});

test('the Unix socket of a ring killed with SIGKILL is swept by the next ring of its pid space; live rings\', other hosts\', other pid namespaces\' sockets and other files stay', async () => {
  const { spawn } = await import('node:child_process');
  const { existsSync, mkdtempSync } = await import('node:fs');
  const { createServer } = await import('node:net');
  const dir = mkdtempSync(join(tmpdir(), 'ring-sweep-'));
  // What a SIGKILLed worker leaves: a Unix socket file named with its pid, which no longer runs (a pid of an exited
  // child; the file is made by this process, as nothing unlinks a killed process's socket).
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => child.once('exit', r));
  const SPACE = pidSpaceIdentity();
  const dead = `pets-ring-${child.pid}-0123456789ab-${SPACE}`;
  // A container of this kernel sharing /tmp, in its own pid namespace: the same host identity, but its pids do not run here.
  const otherSpace = `pets-ring-${child.pid}-0123456789ab-${pidSpaceIdentity(HERE ?? null, 'pid:[4026532999]')}`;
  const otherSpaceServer = createServer();
  await new Promise<void>((r) => otherSpaceServer.listen(join(dir, otherSpace), r));
  // The same, of another host sharing this directory (a /tmp over NFS): its pid means nothing here, and it may run.
  const otherHost = `pets-ring-${child.pid}-0123456789ab-ffffffffffffffff`;
  const otherServer = createServer();
  await new Promise<void>((r) => otherServer.listen(join(dir, otherHost), r));
  const server = createServer();
  await new Promise<void>((r) => server.listen(join(dir, dead), r));
  const live = `pets-ring-${process.pid}-abcdef012345-${SPACE}`;
  const liveServer = createServer();
  await new Promise<void>((r) => liveServer.listen(join(dir, live), r));
  writeFileSync(join(dir, `pets-ring-${child.pid}-notes`), 'not a socket name');
  writeFileSync(join(dir, `pets-ring-999999999-0123456789ab-${SPACE}`), 'a regular file under a ring name');
  try {
    const { sweepStaleRingSockets } = await import('../../../../src/worker/allreduce/ring.js');
    assert.deepEqual(sweepStaleRingSockets(dir), [dead]);
    assert.equal(existsSync(join(dir, dead)), false, 'the dead pid\'s socket is removed');
    assert.ok(existsSync(join(dir, live)), 'a live ring\'s socket stays');
    assert.ok(existsSync(join(dir, `pets-ring-${child.pid}-notes`)), 'another name stays');
    assert.ok(existsSync(join(dir, `pets-ring-999999999-0123456789ab-${SPACE}`)), 'a file that is not a socket stays');
    assert.ok(existsSync(join(dir, otherHost)), 'another host\'s socket stays');
    assert.ok(existsSync(join(dir, otherSpace)), 'another pid namespace\'s socket stays (its writer may run there)');
    assert.deepEqual(sweepStaleRingSockets(join(dir, 'missing')), []);
    assert.deepEqual(sweepStaleRingSockets(dir, null), [], 'no pid-space identity: nothing is taken for this one\'s');
  } finally {
    otherServer.close();
    otherSpaceServer.close();
    server.close();
    liveServer.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
