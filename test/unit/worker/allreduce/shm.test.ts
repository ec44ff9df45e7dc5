/**
 * The shared-memory all-reduce (src/worker/allreduce/shm.ts, native/pets_shm.cc): sums in the ring's order
 * (bit-identical to the ring and to a hand-computed float32 sum), the AllReducer contract's errors (abort, deadline,
 * a peer killed mid-call, mismatched calls, an abort after the last barrier, unbounded deadlines), segments per
 * generation, and stale segment removal. The choice between shm and ring is in transport.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { chunkBounds } from '../../../../src/training/allreduce/ring-schedule.js';
import { RingAllReduce } from '../../../../src/worker/allreduce/ring.js';
import { nativeSourceHash } from '../../../../src/training/compute/native/addon.js';
import { loadShmModule, segmentName, ShmAllReduce, type SegmentHandle, type ShmLoad, type ShmModule } from '../../../../src/worker/allreduce/shm.js';

const load = loadShmModule();
const skip = 'reason' in load ? `shared-memory module not available: ${load.reason}` : false;
const PIECE_BYTES = 4096; // 1024 floats: calls of a few thousand elements span several pieces and both slot sets

/**
 * Values whose float32 sums depend on the order of the additions: magnitudes from 2^-20 to 2^20 and both signs, so a
 * reducer that adds in another order than the ring's gives other bits (checked below, so the test can fail).
 */
function data(rank: number, length: number): Float32Array {
  let s = (rank + 7) * 2654435761;
  const next = (): number => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  return Float32Array.from({ length }, () => (next() * 2 - 1) * 2 ** Math.floor(next() * 41 - 20));
}

/**
 * The ring's float32 sum, by hand: element i of chunk c (the ring's split of the whole call) is x_c, then
 * x_(c+1) + acc, …, x_(c+N−1) + acc, each rounded to float32 (Math.fround); then ÷ N when averaging.
 */
function ringOrderSum(inputs: readonly Float32Array[], average: boolean): Float32Array {
  const n = inputs.length;
  const length = inputs[0]!.length;
  const out = new Float32Array(length);
  for (let c = 0; c < n; c++) {
    const { start, end } = chunkBounds(length, n, c);
    for (let i = start; i < end; i++) {
      let acc = inputs[c]![i]!;
      for (let k = 1; k < n; k++) acc = Math.fround(inputs[(c + k) % n]![i]! + acc);
      out[i] = average ? Math.fround(acc / n) : acc;
    }
  }
  return out;
}

const bytes = (x: Float32Array): Buffer => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
const peersOf = (n: number): string[] => Array.from({ length: n }, (_, r) => `tcp://127.0.0.1:${40000 + r}`);

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'pets-shm-test-'));
}

async function makeShm(n: number, directory: string, generation = 1, peers = peersOf(n)): Promise<ShmAllReduce[]> {
  const ranks = Array.from({ length: n }, () => new ShmAllReduce({ directory, pieceBytes: PIECE_BYTES, timeoutMs: 60_000 }));
  await Promise.all(ranks.map((s, rank) => s.reconfigure({ peers, rank, generation })));
  return ranks;
}

async function makeRings(n: number): Promise<RingAllReduce[]> {
  const rings = Array.from({ length: n }, () => new RingAllReduce({ onWarning: () => {}, sliceBytes: PIECE_BYTES }));
  const peers = await Promise.all(rings.map((r) => r.start()));
  await Promise.all(rings.map((r, rank) => r.reconfigure({ peers, rank, generation: 1 })));
  return rings;
}

const closeAll = (xs: readonly { close(): Promise<void> }[]): Promise<unknown> => Promise.all(xs.map((x) => x.close()));

for (const n of [2, 3, 4]) {
  test(`N=${n}: shm gives the ring's bits and the hand-computed ring-order float32 sum (sum and average; lengths 5000, 7, 2, 0)`, { skip }, async () => {
    const dir = tempDir();
    const shm = await makeShm(n, dir);
    const rings = await makeRings(n);
    try {
      let step = 0;
      for (const average of [false, true]) {
        for (const length of [5000, 7, 2, 0]) {
          const inputs = Array.from({ length: n }, (_, r) => data(r + 31 * step, length));
          const viaShm = inputs.map((x) => x.slice());
          const viaRing = inputs.map((x) => x.slice());
          const out = await Promise.all(shm.map((s, r) => s.allReduce(viaShm[r]!, { step, bucket: 0 }, { average })));
          out.forEach((o, r) => assert.equal(o, viaShm[r], 'reduces in place'));
          await Promise.all(rings.map((ring, r) => ring.allReduce(viaRing[r]!, { step, bucket: 0 }, { average })));
          const expected = bytes(ringOrderSum(inputs, average));
          for (let r = 0; r < n; r++) {
            assert.ok(bytes(viaShm[r]!).equals(expected), `N=${n} rank ${r} length ${length} average ${average}: shm ≠ hand-computed`);
            assert.ok(bytes(viaRing[r]!).equals(expected), `N=${n} rank ${r} length ${length} average ${average}: ring ≠ hand-computed`);
          }
          step++;
        }
      }
      // The inputs are order-sensitive: summing from rank 0 instead of the chunk's owner changes some bits, so the
      // comparisons above would catch a reducer that ignores the ring's order.
      const inputs = Array.from({ length: n }, (_, r) => data(r, 5000));
      const fromRank0 = new Float32Array(5000);
      for (let i = 0; i < 5000; i++) {
        let acc = inputs[0]![i]!;
        for (let k = 1; k < n; k++) acc = Math.fround(inputs[k]![i]! + acc);
        fromRank0[i] = acc;
      }
      if (n > 2) assert.ok(!bytes(fromRank0).equals(bytes(ringOrderSum(inputs, false))), 'inputs must be order-sensitive');
      assert.equal(shm[0]!.stats().callsTotal, 8);
      assert.equal(shm[0]!.stats().sentBytesTotal, 2 * 4 * (5000 + 7 + 2), 'each call writes its buffer\'s size into the segment (the others\' parts, then its own part\'s sums)');
    } finally {
      await closeAll(shm);
      await closeAll(rings);
      assert.deepEqual(readdirSync(dir), [], 'segments removed');
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('the segment file is removed once every rank has mapped it; a new generation uses a new segment', { skip }, async () => {
  const dir = tempDir();
  const [a, b] = await makeShm(2, dir, 1);
  try {
    const first = a!.segmentPath;
    assert.equal(b!.segmentPath, first, 'both ranks derive the same name');
    assert.ok(existsSync(first));
    await Promise.all([a!.allReduce(new Float32Array(10), { step: 0, bucket: 0 }), b!.allReduce(new Float32Array(10), { step: 0, bucket: 0 })]);
    assert.ok(!existsSync(first), 'removed after the first call: a SIGKILL can no longer leave it behind');
    await Promise.all([a!.reconfigure({ peers: peersOf(2), rank: 0, generation: 2 }), b!.reconfigure({ peers: peersOf(2), rank: 1, generation: 2 })]);
    assert.notEqual(a!.segmentPath, first);
    const x = [Float32Array.of(1, 2), Float32Array.of(10, 20)];
    await Promise.all([a!.allReduce(x[0]!, { step: 1, bucket: 0 }), b!.allReduce(x[1]!, { step: 1, bucket: 0 })]);
    assert.deepEqual([...x[0]!], [11, 22]);
    await assert.rejects(a!.reconfigure({ peers: peersOf(2), rank: 0, generation: 1 }), /generation must be an integer > 2/);
  } finally {
    await closeAll([a!, b!]);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.notEqual(segmentName({ peers: peersOf(2), rank: 0, generation: 1 }, 1024), segmentName({ peers: peersOf(2), rank: 0, generation: 2 }, 1024));
  assert.equal(segmentName({ peers: peersOf(2), rank: 0, generation: 1 }, 1024), segmentName({ peers: peersOf(2), rank: 1, generation: 1 }, 1024));
});

test('abort ends a waiting call with ERR_WORKER_LOST and breaks the segment for the peers, until the next generation', { skip }, async () => {
  const dir = tempDir();
  const [a, b] = await makeShm(2, dir);
  try {
    const waiting = a!.allReduce(new Float32Array(3000), { step: 0, bucket: 0 });
    // Rank 1 never calls: only abort can end rank 0's wait before its 60 s deadline.
    setTimeout(() => a!.abort('test abort'), 50);
    await assert.rejects(waiting, (e: unknown) => isTrainerError(e, 'ERR_WORKER_LOST') && /test abort/.test(e.message));
    await assert.rejects(b!.allReduce(new Float32Array(3000), { step: 0, bucket: 0 }),
      (e: unknown) => isTrainerError(e, 'ERR_WORKER_LOST') && /rank 0 was aborted/.test(e.message));
    await assert.rejects(a!.allReduce(new Float32Array(3), { step: 1, bucket: 0 }), (e: unknown) => isTrainerError(e, 'ERR_WORKER_LOST'));
    await Promise.all([a!.reconfigure({ peers: peersOf(2), rank: 0, generation: 2 }), b!.reconfigure({ peers: peersOf(2), rank: 1, generation: 2 })]);
    const x = [Float32Array.of(1), Float32Array.of(2)];
    await Promise.all([a!.allReduce(x[0]!, { step: 2, bucket: 0 }), b!.allReduce(x[1]!, { step: 2, bucket: 0 })]);
    assert.deepEqual([x[0]![0], x[1]![0]], [3, 3]);
  } finally {
    await closeAll([a!, b!]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a call past its deadline fails with ERR_TIMEOUT; mismatched calls fail with ERR_PROTOCOL on every rank', { skip }, async () => {
  const dir = tempDir();
  const [a, b] = await makeShm(2, dir);
  try {
    await assert.rejects(a!.allReduce(new Float32Array(5), { step: 0, bucket: 0 }, { timeoutMs: 100 }), (e: unknown) => isTrainerError(e, 'ERR_TIMEOUT'));
    // The peer that came late finds the segment broken by rank 0's timeout: a timeout for it too (as on the ring, where
    // every rank times out when one stalls), not a lost worker.
    await assert.rejects(b!.allReduce(new Float32Array(5), { step: 0, bucket: 0 }),
      (e: unknown) => isTrainerError(e, 'ERR_TIMEOUT') && /rank 0 timed out/.test(e.message));
    await Promise.all([a!.reconfigure({ peers: peersOf(2), rank: 0, generation: 2 }), b!.reconfigure({ peers: peersOf(2), rank: 1, generation: 2 })]);
    const results = await Promise.allSettled([
      a!.allReduce(new Float32Array(5), { step: 3, bucket: 0 }),
      b!.allReduce(new Float32Array(6), { step: 3, bucket: 0 }),
    ]);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(isTrainerError((r as PromiseRejectedResult).reason, 'ERR_PROTOCOL'), String((r as PromiseRejectedResult).reason));
      assert.match(String((r as PromiseRejectedResult).reason), /called with length/);
    }
  } finally {
    await closeAll([a!, b!]);
    rmSync(dir, { recursive: true, force: true });
  }
});

interface ChildMessage {
  kind: string;
  code?: string;
  message?: string;
  values?: number[];
  path?: string;
}

function startChild(): { child: ChildProcess; next: (kind: string) => Promise<ChildMessage> } {
  const child = fork(join(import.meta.dirname, 'fixtures', 'shm-child.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const queue: ChildMessage[] = [];
  let waiter: (() => void) | null = null;
  child.on('message', (m: ChildMessage) => {
    queue.push(m);
    waiter?.();
  });
  const next = async (kind: string): Promise<ChildMessage> => {
    for (;;) {
      const i = queue.findIndex((m) => m.kind === kind || m.kind === 'error');
      if (i >= 0) return queue.splice(i, 1)[0]!;
      await new Promise<void>((resolve) => { waiter = resolve; });
    }
  };
  return { child, next };
}

test('a rank killed mid-call: the others fail with ERR_WORKER_LOST instead of waiting for their deadline', { skip }, async () => {
  const dir = tempDir();
  const { child, next } = startChild();
  try {
    await next('started');
    const peers = peersOf(3);
    // Ranks 0 and 1 here, rank 2 in the child.
    const [a, b] = [0, 1].map(() => new ShmAllReduce({ directory: dir, pieceBytes: PIECE_BYTES }));
    await Promise.all([a!.reconfigure({ peers, rank: 0, generation: 1 }), b!.reconfigure({ peers, rank: 1, generation: 1 })]);
    child.send({ kind: 'membership', peers, rank: 2, generation: 1, directory: dir, pieceBytes: PIECE_BYTES });
    await next('ready');
    // One full call: every rank has seen the others running.
    const x = [Float32Array.of(1, 2, 3), Float32Array.of(10, 20, 30)];
    child.send({ kind: 'reduce', step: 0, values: [100, 200, 300], timeoutMs: 60_000 });
    await Promise.all([a!.allReduce(x[0]!, { step: 0, bucket: 0 }), b!.allReduce(x[1]!, { step: 0, bucket: 0 })]);
    assert.deepEqual((await next('result')).values, [111, 222, 333]);
    // The child enters call 1 (possibly waiting at its first barrier) and is killed there.
    child.send({ kind: 'reduce', step: 1, values: Array.from({ length: 5000 }, () => 1), timeoutMs: 60_000 });
    await next('calling');
    child.kill('SIGKILL');
    const started = Date.now();
    const results = await Promise.allSettled([
      a!.allReduce(new Float32Array(5000), { step: 1, bucket: 0 }, { timeoutMs: 60_000 }),
      b!.allReduce(new Float32Array(5000), { step: 1, bucket: 0 }, { timeoutMs: 60_000 }),
    ]);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      const err = (r as PromiseRejectedResult).reason;
      assert.ok(isTrainerError(err, 'ERR_WORKER_LOST'), String(err));
      assert.match(err.message, /rank 2 \(pid \d+\) exited|broken: rank [01] found a peer dead/);
    }
    assert.ok(Date.now() - started < 60_000, 'ended before the deadline');
    await closeAll([a!, b!]);
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('stale segments of dead processes are removed; live ones and other files stay', { skip }, async () => {
  const dir = tempDir();
  const { child, next } = startChild();
  try {
    await next('started');
    // A rank that opened its segment and was killed before its peers joined leaves the file behind.
    child.send({ kind: 'membership', peers: peersOf(2), rank: 1, generation: 5, directory: dir, pieceBytes: PIECE_BYTES });
    const stale = (await next('ready')).path!;
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const live = new ShmAllReduce({ directory: dir, pieceBytes: PIECE_BYTES });
    await live.reconfigure({ peers: peersOf(3), rank: 0, generation: 1 });
    spawnSync('touch', [join(dir, 'pets-shm-notasegment'), join(dir, 'other-file')]);
    const module = (load as Exclude<ShmLoad, { reason: string }>).module;
    assert.deepEqual(module.sweep(dir, 60_000), [], 'nothing younger than the age limit is removed');
    const removed = module.sweep(dir, 0);
    assert.deepEqual(removed.sort(), [stale.slice(dir.length + 1), 'pets-shm-notasegment'].sort(),
      'the dead rank\'s segment and a file too short to be one (no live process in it) are removed');
    assert.ok(existsSync(live.segmentPath), 'a segment of a live process stays');
    assert.ok(existsSync(join(dir, 'other-file')));
    await live.close();
    assert.ok(!existsSync(live.segmentPath), 'closed before its peers joined: removed by its own close');
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the module carries the stamp of the sources beside it; a file that is not the module is refused, naming the rebuild', { skip }, () => {
  assert.equal((load as { module: ShmModule }).module.sourceHash, nativeSourceHash());
  const other = join(import.meta.dirname, '..', '..', '..', '..', 'native', 'build', 'pets_dnnl.node');
  if (!existsSync(other)) return;
  const wrong = loadShmModule({ ...process.env, PETS_SHM_ADDON: other }); // the oneDNN addon: it has a `reduce`, not the rest
  assert.ok('reason' in wrong);
  assert.match(wrong.reason, /lacks open, abort, close, sweep; rebuild it with `npm run build:native`/);
});

test('an unbounded or invalid deadline is ERR_BAD_CONFIG before the call (Infinity would overflow the native deadline)', { skip }, async () => {
  const dir = tempDir();
  const [a, b] = await makeShm(2, dir);
  try {
    for (const timeoutMs of [Infinity, -1, 0, Number.NaN]) {
      assert.throws(() => a!.allReduce(new Float32Array(5), { step: 0, bucket: 0 }, { timeoutMs }),
        (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && /timeoutMs must be a finite number > 0/.test(e.message));
    }
    const module = (load as Exclude<ShmLoad, { reason: string }>).module;
    const handle = module.open(join(dir, 'pets-shm-direct'), 2, 0, 1024);
    assert.throws(() => module.reduce(handle, new Float32Array(5), false, 0, 0, Infinity), /timeoutMs must be a finite number in \(0, 1e12\]/);
    // The module's typed argument checks (native/napi_args.h), each naming the function and the argument: a value of
    // the wrong type is a TypeError (code ERR_SHM), a count that is no integer too (it was truncated before).
    const loose = module as unknown as Record<string, (...args: unknown[]) => unknown>;
    assert.throws(() => loose.reduce!(handle, new Float64Array(5), false, 0, 0, 1000), /^TypeError: reduce: buffer must be a Float32Array$/);
    assert.throws(() => loose.reduce!(handle, new Float32Array(5), false, '0', 0, 1000), /^TypeError: reduce: step must be an integer \(Number.isSafeInteger\), got a string$/);
    assert.throws(() => loose.reduce!(handle, new Float32Array(5), false, 0.5, 0, 1000), /^TypeError: reduce: step must be an integer \(Number.isSafeInteger\), got 0.5$/);
    assert.throws(() => loose.reduce!(handle, new Float32Array(5), false, 0, Number.NaN, 1000), /^TypeError: reduce: bucket must be an integer \(Number.isSafeInteger\), got NaN$/);
    assert.throws(() => loose.reduce!(handle, new Float32Array(5), false, 2 ** 53, 0, 1000), /^TypeError: reduce: step must be an integer \(Number.isSafeInteger\), got 9007199254740992$/);
    assert.throws(() => loose.reduce!(handle, new Float32Array(5), false, -1, 0, 1000), /^Error: reduce: step and bucket must be ≥ 0, got -1 and 0$/);
    assert.throws(() => loose.reduce!(handle, new Float32Array(5), 1, 0, 0, 1000), /^TypeError: reduce: average must be a boolean, got 1$/);
    assert.throws(() => loose.reduce!(handle, new Float32Array(5)), /^TypeError: reduce: expected 6 arguments, got 2$/);
    assert.throws(() => loose.open!(join(dir, 'pets-shm-x'), 2, 0), /^TypeError: open: expected 4 arguments, got 3$/);
    assert.throws(() => loose.open!(7, 2, 0, 1024), /^TypeError: open: path must be a string$/);
    assert.throws(() => loose.sweep!(dir, 'old'), /^TypeError: sweep: minAgeMs must be a number, got a string$/);
    assert.throws(() => loose.abort!(handle, 5), /^TypeError: abort: reason must be a string$/);
    // A failed system call names its errno (what the transport matches to stop for want of room, not strerror's words).
    assert.throws(() => module.open(join(dir, 'no-such-folder', 'pets-shm-y'), 2, 0, 1024),
      (e: unknown) => (e as { errnoName?: string; code?: string }).errnoName === 'ENOENT' && (e as { code?: string }).code === 'ERR_SHM' && /^cannot open .*no-such-folder\/pets-shm-y: No such file or directory$/.test((e as Error).message));
    assert.ok(module.close(handle));
    // Nothing was broken: the ranks still reduce together.
    const x = [Float32Array.of(1), Float32Array.of(2)];
    await Promise.all([a!.allReduce(x[0]!, { step: 0, bucket: 0 }), b!.allReduce(x[1]!, { step: 0, bucket: 0 })]);
    assert.deepEqual([x[0]![0], x[1]![0]], [3, 3]);
  } finally {
    await closeAll([a!, b!]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a value that is not a segment handle (a plain object, a number, null, a typed array) is a TypeError, not a bad cast', { skip }, () => {
  const module = (load as Exclude<ShmLoad, { reason: string }>).module;
  const loose = module as unknown as Record<string, (...args: unknown[]) => unknown>;
  const kind = 'handle must be a shared-memory segment handle \\(from open\\(\\)\\)';
  for (const [value, got] of [[{}, 'an object'], [5, '5'], [null, 'null'], [undefined, 'undefined'], [new Float32Array(4), 'an object']] as const) {
    for (const [fn, call] of [['close', () => loose.close!(value)], ['abort', () => loose.abort!(value, 'x')],
      ['reduce', () => loose.reduce!(value, new Float32Array(4), false, 0, 0, 1000)]] as const) {
      assert.throws(call, (e: unknown) => e instanceof TypeError && (e as { code?: string }).code === 'ERR_SHM' &&
        new RegExp(`^${fn}: ${kind}, got ${got}$`).test(e.message), `${fn}(${got})`);
    }
  }
  // A closed segment is still a segment: the calls say so (or do nothing), as before.
  const dir = tempDir();
  try {
    const handle = module.open(join(dir, 'pets-shm-closed'), 2, 0, 1024);
    assert.ok(module.close(handle));
    assert.ok(module.close(handle), 'closing twice');
    module.abort(handle, 'after close');
    assert.throws(() => module.reduce(handle, new Float32Array(4), false, 0, 0, 1000), /^Error: reduce: the segment is closed$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a call aborted after its last barrier rejects with ERR_WORKER_LOST, as the ring\'s does (never resolves after abort)', async () => {
  // A stand-in module whose reduce() has finished its barriers and reports success only after abort() was called.
  let finish: ((result: string) => void) | null = null;
  const module: ShmModule = {
    maxRanks: 64, open: () => ({}) as SegmentHandle, abort: () => {}, close: () => true, sweep: () => [],
    reduce: () => new Promise<string>((resolve) => { finish = resolve; }),
  };
  const shm = new ShmAllReduce({ module, directory: tmpdir() });
  await shm.reconfigure({ peers: peersOf(2), rank: 0, generation: 1 });
  const call = shm.allReduce(new Float32Array(3), { step: 0, bucket: 0 });
  while (finish === null) await new Promise((resolve) => setImmediate(resolve));
  shm.abort('test abort');
  (finish as (result: string) => void)('');
  await assert.rejects(call, (e: unknown) => isTrainerError(e, 'ERR_WORKER_LOST') && /test abort/.test(e.message));
  assert.equal(shm.stats().callsTotal, 0, 'an aborted call does not count as completed');
  await shm.close();
});
