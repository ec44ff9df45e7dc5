/**
 * The choice between the shared-memory all-reduce and the ring (src/worker/allreduce/transport.ts): it reads what
 * every rank announced in `hello` (so ranks whose own modules differ still agree), an explicit `--allreduce shm` with
 * a rank that cannot use it fails with ERR_BAD_CONFIG naming that rank, and a generation that leaves shared memory
 * ends the shared-memory reducer's call in flight and unmaps its segment. A fake native module stands in for
 * `pets_shm.node` (no process, no timing: its calls end only when aborted).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTrainerError } from '../../../../src/contract/errors.js';
import type { SharedMemorySupport } from '../../../../src/contract/protocol/index.js';
import type { AllReducer, Membership } from '../../../../src/training/allreduce/types.js';
import { loadShmModule, ShmAllReduce, type SegmentHandle, type ShmLoad, type ShmModule } from '../../../../src/worker/allreduce/shm.js';
import { chooseTransport, RefusedAllReduce, sharedMemorySupport, TransportSelector } from '../../../../src/worker/allreduce/transport.js';

const peersOf = (n: number): string[] => Array.from({ length: n }, (_, r) => `tcp://127.0.0.1:${40000 + r}`);
const m: Membership = { peers: peersOf(2), localPeers: ['ipc:///tmp/a', 'ipc:///tmp/b'], rank: 0, generation: 1 };
const loaded = { module: { maxRanks: 64 } } as unknown as ShmLoad;
const here = (): boolean => true;
const can: SharedMemorySupport = { usable: true };
const cannot: SharedMemorySupport = { usable: false, reason: 'shared-memory module not built: install g++' };

test('transport choice: shm only for float32 rings whose every rank is on this host and announced it can use shared memory', () => {
  assert.deepEqual(chooseTransport(m, 'float32', [can, can], loaded, here), { transport: 'shm', why: 'all 2 ranks are on this host' });
  assert.match(chooseTransport(m, 'float32', [can, can], loaded, (a) => a !== 'ipc:///tmp/b').why, /rank 1 is on another host/);
  assert.equal(chooseTransport(m, 'float32', [can, can], loaded, (a) => a !== 'ipc:///tmp/b').transport, 'ring');
  assert.match(chooseTransport({ ...m, localPeers: ['ipc:///tmp/a', undefined] }, 'float32', [can, can], loaded, here).why, /rank 1 announced no same-host socket/);
  assert.equal(chooseTransport(m, 'float16', [can, can], loaded, here).transport, 'ring');
  assert.equal(chooseTransport({ ...m, peers: peersOf(1), localPeers: ['ipc:///tmp/a'] }, 'float32', [can], loaded, here).transport, 'ring');
  assert.equal(chooseTransport(m, 'float32', [can, can], { module: { maxRanks: 1 } } as unknown as ShmLoad, here).transport, 'ring');
  // A build without the module (no compiler at install): it announces so, and every rank picks the ring, naming why.
  const absent = loadShmModule({ ...process.env, PETS_SHM_ADDON: '/nonexistent/pets_shm.node' });
  assert.ok('reason' in absent);
  assert.match(absent.reason, /PETS_SHM_ADDON.*does not exist/);
  assert.deepEqual(sharedMemorySupport(absent), { usable: false, reason: absent.reason });
  assert.deepEqual(sharedMemorySupport(loaded), { usable: true });
  assert.equal(sharedMemorySupport({ reason: 'x'.repeat(5000) }).reason!.length, 1000, 'a hello stays within the protocol\'s 4096-character strings');
  assert.deepEqual(chooseTransport(m, 'float32', [can, sharedMemorySupport(absent)], loaded, here),
    { transport: 'ring', why: `rank 1 cannot use shared memory: ${absent.reason}` });
});

test('ranks whose modules differ agree: a rank that loads the module still picks the ring when a peer announced it cannot', () => {
  // Rank 0's module loads; rank 1's does not (another checkout on the same host, no g++ there). Both read the same
  // announcements from `welcome`, so both pick the ring (before, rank 0 chose shm alone and both waited 120 s).
  const announced = [can, cannot];
  const rank0 = chooseTransport({ ...m, rank: 0 }, 'float32', announced, loaded, here);
  const rank1 = chooseTransport({ ...m, rank: 1 }, 'float32', announced, { reason: cannot.reason! }, here);
  assert.deepEqual(rank0, { transport: 'ring', why: `rank 1 cannot use shared memory: ${cannot.reason}` });
  assert.deepEqual(rank1, rank0);
  // A member that announced nothing (a worker that predates the field) counts as unable.
  assert.deepEqual(chooseTransport(m, 'float32', [can, undefined], loaded, here).transport, 'ring');
  assert.match(chooseTransport(m, 'float32', [undefined, can], loaded, here).why, /rank 0 did not say whether it can use shared memory/);
});

test('--allreduce shm where it cannot be used: every call fails with ERR_BAD_CONFIG naming the rank and why (not retried)', async () => {
  const refused = new RefusedAllReduce('rank 1 is on another host', 2, 0);
  await assert.rejects(refused.allReduce(), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && /--allreduce shm: rank 1 is on another host/.test(e.message));
  assert.deepEqual(refused.stats(), { callsTotal: 0, sentBytesTotal: 0, receivedBytesTotal: 0, staleMessagesTotal: 0, rejectedMessagesTotal: 0 });
  assert.throws(() => new ShmAllReduce({ pieceBytes: 1000, module: fakeModule().module }), /pieceBytes must be an integer multiple of 4/);

  const { selector, lines } = makeSelector();
  await selector.apply({ mode: 'shm', membership: m, dtype: 'float32', announced: [can, cannot], load: loaded, isLocal: here });
  await assert.rejects(selector.reducer.allReduce(new Float32Array(3), { step: 0, bucket: 0 }),
    (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && e.message.includes(`rank 1 cannot use shared memory: ${cannot.reason}`));
  assert.match(lines.join('\n'), /generation 1: all-reduce refused \(--allreduce shm: rank 1 cannot use shared memory/);
});

/** A stand-in for `pets_shm.node`: reduce() waits until abort() (then ERR_WORKER_LOST), as a peer that never calls. */
function fakeModule(): { module: ShmModule; closed: number; aborted: string[] } {
  const state = { closed: 0, aborted: [] as string[] };
  let wake: ((result: string) => void) | null = null;
  const module: ShmModule = {
    maxRanks: 64,
    open: () => ({}) as SegmentHandle,
    reduce: () => new Promise<string>((resolve) => { wake = resolve; }),
    abort: (_h, reason) => {
      state.aborted.push(reason);
      wake?.(`ERR_WORKER_LOST all-reduce aborted: ${reason}`);
      wake = null;
    },
    close: () => {
      state.closed++;
      return wake === null;
    },
    sweep: () => [],
  };
  return Object.assign(state, { module });
}

function makeSelector(fake = fakeModule()): { selector: TransportSelector; lines: string[]; made: ShmAllReduce[] } {
  const lines: string[] = [];
  const made: ShmAllReduce[] = [];
  const ring = { worldSize: 2, rank: 0, dtype: 'float32' } as AllReducer;
  const selector = new TransportSelector(ring, () => {
    const shm = new ShmAllReduce({ module: fake.module, directory: '/tmp', pieceBytes: 4096 });
    made.push(shm);
    return shm;
  }, (line) => lines.push(line));
  return { selector, lines, made };
}

test('a generation that leaves shared memory aborts the call in flight (ERR_WORKER_LOST at once) and unmaps the segment', async () => {
  const fake = fakeModule();
  const { selector, lines, made } = makeSelector(fake);
  const ring = selector.reducer;
  await selector.apply({ mode: 'auto', membership: m, dtype: 'float32', announced: [can, can], load: loaded, isLocal: here });
  assert.equal(selector.reducer, made[0], 'generation 1 uses shared memory');
  assert.match(lines[0]!, /generation 1: all-reduce through shared memory/);
  // A call of generation 1 waits for a peer that has moved on (its rank 1 now runs another checkout).
  const waiting = selector.reducer.allReduce(new Float32Array(3), { step: 0, bucket: 0 });
  await selector.apply({ mode: 'auto', membership: { ...m, generation: 2 }, dtype: 'float32', announced: [can, cannot], load: loaded, isLocal: here });
  // Without the fix the call waited for its full timeout (30 s here; the fake waits forever) and the segment stayed.
  await assert.rejects(waiting, (e: unknown) => isTrainerError(e, 'ERR_WORKER_LOST'));
  assert.equal(fake.closed, 1, 'the segment is unmapped');
  assert.equal(fake.aborted.length, 1);
  assert.equal(selector.reducer, ring, 'generation 2 uses the ring');
  assert.equal(selector.sharedMemory, null);
  assert.match(lines[1]!, /generation 2: all-reduce through the ring \(--allreduce auto: rank 1 cannot use shared memory/);
  // Back on shared memory later: a fresh reducer, a new segment.
  await selector.apply({ mode: 'auto', membership: { ...m, generation: 3 }, dtype: 'float32', announced: [can, can], load: loaded, isLocal: here });
  assert.equal(made.length, 2);
  assert.equal(selector.reducer, made[1]);
  await selector.close();
  assert.equal(fake.closed, 2);
});

test('a segment the host has no room for stops the run at its first all-reduce (ERR_BAD_CONFIG, not retried), naming the room and the remedies', async () => {
  // Seen with a full /dev/shm under --allreduce auto: every generation failed to size its segment, the step was redone
  // --max-restarts + 1 times and the run ended blaming 'a worker whose main thread hangs'. NCCL stops alike when it
  // cannot create its /dev/shm segment; another error (a file of another membership's size) still only breaks this
  // generation, for recovery to re-form the ring under a new segment name.
  const full = fakeModule();
  full.module.open = (path) => { throw Object.assign(new Error(`cannot size ${path}: No space left on device`), { errnoName: 'ENOSPC' }); };
  const { selector, lines } = makeSelector(full);
  await selector.apply({ mode: 'auto', membership: m, dtype: 'float32', announced: [can, can], load: loaded, isLocal: here });
  await assert.rejects(selector.reducer.allReduce(new Float32Array(3), { step: 0, bucket: 0 }), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG')
    && /^--allreduce auto: cannot open the shared-memory segment: cannot size \/tmp\/pets-shm-[0-9a-f]{16}: No space left on device \(it needs about 0\.0 MiB for 2 ranks, [0-9.]+ MiB free in \/tmp\); make room in \/dev\/shm \(a container: docker run --shm-size, a Kubernetes emptyDir with medium: Memory\) or use --allreduce ring$/.test(e.message));
  assert.match(lines[0]!, /^generation 1: cannot open the shared-memory segment: .*; the run stops at its first all-reduce \(--allreduce auto\)$/);

  const other = fakeModule();
  other.module.open = (path) => { throw new Error(`${path} has 7 bytes, expected 8192 (another membership?)`); };
  const broken = makeSelector(other);
  await broken.selector.apply({ mode: 'auto', membership: m, dtype: 'float32', announced: [can, can], load: loaded, isLocal: here });
  await assert.rejects(broken.selector.reducer.allReduce(new Float32Array(3), { step: 0, bucket: 0 }), (e: unknown) => isTrainerError(e, 'ERR_WORKER_LOST'));
  assert.match(broken.lines[0]!, /this generation's all-reduces fail$/);
});
