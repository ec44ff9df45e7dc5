/**
 * The choice between the shared-memory all-reduce and the ring (src/worker/allreduce/transport.ts): it reads what
 * every rank announced in `hello` (so ranks whose own modules differ still agree), an explicit `--allreduce shm` with
 * a rank that cannot use it fails with ERR_BAD_CONFIG naming that rank, and a generation that leaves shared memory
 * ends the shared-memory reducer's call in flight and unmaps its segment. A fake native module stands in for
 * `pets_shm.node` (no process, no timing: its calls end only when aborted).
 */
import { after, test } from 'node:test';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { isTrainerError } from '../../../../src/contract/errors.js';
import type { SharedMemorySupport } from '../../../../src/contract/protocol/index.js';
import type { AllReducer, Membership } from '../../../../src/training/allreduce/types.js';
import { loadShmModule, ShmAllReduce, type SegmentHandle, type ShmLoad, type ShmModule } from '../../../../src/worker/allreduce/shm.js';
import { chooseTransport, RefusedAllReduce, sharedMemorySupport, TransportSelector } from '../../../../src/worker/allreduce/transport.js';
import { probeName, probeVisible, ShmProbe } from '../../../../src/worker/allreduce/shm-probe.js';
import { hostIdentity } from '../../../../src/contract/host-identity.js';

const peersOf = (n: number): string[] => Array.from({ length: n }, (_, r) => `tcp://127.0.0.1:${40000 + r}`);
/** This host's identity: the ranks of these rings are on this host unless a test says otherwise. */
const HERE = hostIdentity() ?? undefined;
const m: Membership = { peers: peersOf(2), localPeers: ['ipc:///tmp/a', 'ipc:///tmp/b'], hostIds: [HERE, HERE], rank: 0, generation: 1 };
const loaded = { module: { maxRanks: 64 } } as unknown as ShmLoad;
const here = (): boolean => true;
/** The segment directory every rank of these rings shares (a temporary one), holding both ranks' probes. */
const shared = mkdtempSync(path.join(tmpdir(), 'transport-shm-'));
for (const address of m.localPeers!) assert.equal(new ShmProbe(address!, shared).write(), null);
after(() => rmSync(shared, { recursive: true, force: true }));
const can: SharedMemorySupport = { usable: true };
const cannot: SharedMemorySupport = { usable: false, reason: 'shared-memory module not built: install g++' };

test('transport choice: shm only for float32 rings whose every rank is on this host and announced it can use shared memory', () => {
  assert.deepEqual(chooseTransport(m, 'float32', [can, can], loaded, here, shared), { transport: 'shm', why: `all 2 ranks are on this host and share ${shared}` });
  assert.match(chooseTransport(m, 'float32', [can, can], loaded, (a) => a !== 'ipc:///tmp/b').why, /rank 1 is on another host/);
  assert.equal(chooseTransport(m, 'float32', [can, can], loaded, (a) => a !== 'ipc:///tmp/b').transport, 'ring');
  // A socket file here is no proof (a /tmp shared over NFS): a rank whose host identity is another is on another host.
  assert.match(chooseTransport({ ...m, hostIds: [HERE, 'ffffffffffffffff'] }, 'float32', [can, can], loaded, here, shared).why,
    /rank 1 is on another host \(its host identity ffffffffffffffff is not this one's [0-9a-f]{16}\)/);
  assert.match(chooseTransport({ ...m, localPeers: ['ipc:///tmp/a', undefined] }, 'float32', [can, can], loaded, here, shared).why, /rank 1 announced no same-host socket/);
  assert.equal(chooseTransport(m, 'float16', [can, can], loaded, here, shared).transport, 'ring');
  assert.equal(chooseTransport({ ...m, peers: peersOf(1), localPeers: ['ipc:///tmp/a'] }, 'float32', [can], loaded, here, shared).transport, 'ring');
  assert.equal(chooseTransport(m, 'float32', [can, can], { module: { maxRanks: 1 } } as unknown as ShmLoad, here).transport, 'ring');
  // A build without the module (no compiler at install): it announces so, and every rank picks the ring, naming why.
  const absent = loadShmModule({ ...process.env, PETS_SHM_ADDON: '/nonexistent/pets_shm.node' });
  assert.ok('reason' in absent);
  assert.match(absent.reason, /PETS_SHM_ADDON.*does not exist/);
  assert.deepEqual(sharedMemorySupport(absent), { usable: false, reason: absent.reason });
  assert.deepEqual(sharedMemorySupport(loaded), { usable: true });
  assert.equal(sharedMemorySupport({ reason: 'x'.repeat(5000) }).reason!.length, 1000, 'a hello stays within the protocol\'s 4096-character strings');
  assert.deepEqual(chooseTransport(m, 'float32', [can, sharedMemorySupport(absent)], loaded, here, shared),
    { transport: 'ring', why: `rank 1 cannot use shared memory: ${absent.reason}` });
});

test('ranks whose modules differ agree: a rank that loads the module still picks the ring when a peer announced it cannot', () => {
  // Rank 0's module loads; rank 1's does not (another checkout on the same host, no g++ there). Both read the same
  // announcements from `welcome`, so both pick the ring (before, rank 0 chose shm alone and both waited 120 s).
  const announced = [can, cannot];
  const rank0 = chooseTransport({ ...m, rank: 0 }, 'float32', announced, loaded, here, shared);
  const rank1 = chooseTransport({ ...m, rank: 1 }, 'float32', announced, { reason: cannot.reason! }, here);
  assert.deepEqual(rank0, { transport: 'ring', why: `rank 1 cannot use shared memory: ${cannot.reason}` });
  assert.deepEqual(rank1, rank0);
  // A member that announced nothing (a worker that predates the field) counts as unable.
  assert.deepEqual(chooseTransport(m, 'float32', [can, undefined], loaded, here, shared).transport, 'ring');
  assert.match(chooseTransport(m, 'float32', [undefined, can], loaded, here, shared).why, /rank 0 did not say whether it can use shared memory/);
});

test('--allreduce shm where it cannot be used: every call fails with ERR_BAD_CONFIG naming the rank and why (not retried)', async () => {
  const refused = new RefusedAllReduce('rank 1 is on another host', 2, 0);
  await assert.rejects(refused.allReduce(), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && /--allreduce shm: rank 1 is on another host/.test(e.message));
  assert.deepEqual(refused.stats(), { callsTotal: 0, sentBytesTotal: 0, receivedBytesTotal: 0, staleMessagesTotal: 0, rejectedMessagesTotal: 0 });
  assert.throws(() => new ShmAllReduce({ pieceBytes: 1000, module: fakeModule().module }), /pieceBytes must be an integer multiple of 4/);

  const { selector, lines } = makeSelector();
  await selector.apply({ mode: 'shm', membership: m, dtype: 'float32', announced: [can, cannot], load: loaded, isLocal: here, segmentDir: shared });
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
  await selector.apply({ mode: 'auto', membership: m, dtype: 'float32', announced: [can, can], load: loaded, isLocal: here, segmentDir: shared });
  assert.equal(selector.reducer, made[0], 'generation 1 uses shared memory');
  assert.match(lines[0]!, /generation 1: all-reduce through shared memory/);
  // A call of generation 1 waits for a peer that has moved on (its rank 1 now runs another checkout).
  const waiting = selector.reducer.allReduce(new Float32Array(3), { step: 0, bucket: 0 });
  await selector.apply({ mode: 'auto', membership: { ...m, generation: 2 }, dtype: 'float32', announced: [can, cannot], load: loaded, isLocal: here, segmentDir: shared });
  // Without the fix the call waited for its full timeout (30 s here; the fake waits forever) and the segment stayed.
  await assert.rejects(waiting, (e: unknown) => isTrainerError(e, 'ERR_WORKER_LOST'));
  assert.equal(fake.closed, 1, 'the segment is unmapped');
  assert.equal(fake.aborted.length, 1);
  assert.equal(selector.reducer, ring, 'generation 2 uses the ring');
  assert.equal(selector.sharedMemory, null);
  assert.match(lines[1]!, /generation 2: all-reduce through the ring \(--allreduce auto: rank 1 cannot use shared memory/);
  // Back on shared memory later: a fresh reducer, a new segment.
  await selector.apply({ mode: 'auto', membership: { ...m, generation: 3 }, dtype: 'float32', announced: [can, can], load: loaded, isLocal: here, segmentDir: shared });
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
  await selector.apply({ mode: 'auto', membership: m, dtype: 'float32', announced: [can, can], load: loaded, isLocal: here, segmentDir: shared });
  await assert.rejects(selector.reducer.allReduce(new Float32Array(3), { step: 0, bucket: 0 }), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG')
    && /^--allreduce auto: cannot open the shared-memory segment: cannot size \/tmp\/pets-shm-[0-9a-f]{16}: No space left on device \(it needs about 0\.0 MiB for 2 ranks, [0-9.]+ MiB free in \/tmp\); make room in \/dev\/shm \(a container: docker run --shm-size, a Kubernetes emptyDir with medium: Memory\) or use --allreduce ring$/.test(e.message));
  assert.match(lines[0]!, /^generation 1: cannot open the shared-memory segment: .*; the run stops at its first all-reduce \(--allreduce auto\)$/);

  const other = fakeModule();
  other.module.open = (path) => { throw new Error(`${path} has 7 bytes, expected 8192 (another membership?)`); };
  const broken = makeSelector(other);
  await broken.selector.apply({ mode: 'auto', membership: m, dtype: 'float32', announced: [can, can], load: loaded, isLocal: here, segmentDir: shared });
  await assert.rejects(broken.selector.reducer.allReduce(new Float32Array(3), { step: 0, bucket: 0 }), (e: unknown) => isTrainerError(e, 'ERR_WORKER_LOST'));
  assert.match(broken.lines[0]!, /this generation's all-reduces fail$/);
});

/** Two segment directories standing for two containers' own /dev/shm (their /tmp, so their sockets, shared). */
function containers(): { a: string; b: string; done: () => void } {
  const a = mkdtempSync(path.join(tmpdir(), 'shm-container-a-'));
  const b = mkdtempSync(path.join(tmpdir(), 'shm-container-b-'));
  return { a, b, done: () => { rmSync(a, { recursive: true, force: true }); rmSync(b, { recursive: true, force: true }); } };
}

test('ranks that share a host name and /tmp but not /dev/shm (containers): every rank picks the ring, saying why', () => {
  // Before, each rank saw its peers' ipc:// sockets in the shared /tmp and chose shared memory; each then mapped a
  // segment of its own /dev/shm and waited for peers that never came, until the all-reduce timeout.
  const { a, b, done } = containers();
  try {
    const three: Membership = { peers: peersOf(3), localPeers: ['ipc:///tmp/r0', 'ipc:///tmp/r1', 'ipc:///tmp/r2'], hostIds: [HERE, HERE, HERE], rank: 0, generation: 1 };
    // Ranks 0 and 1 run in container A, rank 2 in container B.
    new ShmProbe('ipc:///tmp/r0', a).write();
    new ShmProbe('ipc:///tmp/r1', a).write();
    new ShmProbe('ipc:///tmp/r2', b).write();
    const choices = [a, a, b].map((dir, rank) => chooseTransport({ ...three, rank }, 'float32', [can, can, can], loaded, here, dir));
    assert.deepEqual(choices.map((c) => c.transport), ['ring', 'ring', 'ring'], 'all ranks agree');
    assert.match(choices[0]!.why, new RegExp(`^rank 2 does not share this rank's ${a} \\(its probe ${probeName('ipc:///tmp/r2')} is not there\\): the ranks share a host name or /tmp but not the shared-memory directory`));
    assert.match(choices[2]!.why, /^rank 0 does not share this rank's/);
    // Once rank 2 maps the same directory (the containers share the IPC namespace), shared memory is chosen.
    new ShmProbe('ipc:///tmp/r2', a).write();
    assert.equal(chooseTransport({ ...three, rank: 2 }, 'float32', [can, can, can], loaded, here, a).transport, 'shm');
  } finally {
    done();
  }
});

test('a non-shared /dev/shm: --allreduce auto logs one line and keeps the ring; --allreduce shm fails naming the flag and the rule', async () => {
  const { a, b, done } = containers();
  try {
    new ShmProbe('ipc:///tmp/a', a).write();
    new ShmProbe('ipc:///tmp/b', b).write();
    const auto = makeSelector();
    await auto.selector.apply({ mode: 'auto', membership: m, dtype: 'float32', announced: [can, can], load: loaded, isLocal: here, segmentDir: a });
    assert.equal(auto.made.length, 0, 'no segment is opened');
    assert.equal(auto.selector.sharedMemory, null);
    assert.deepEqual(auto.lines, [`generation 1: all-reduce through the ring (--allreduce auto: rank 1 does not share this rank's ${a} (its probe ${probeName('ipc:///tmp/b')} is not there): the ranks share a host name or /tmp but not the shared-memory directory (containers without a shared IPC namespace?), and shared memory needs every rank to map the same one)`]);
    const shm = makeSelector();
    await shm.selector.apply({ mode: 'shm', membership: m, dtype: 'float32', announced: [can, can], load: loaded, isLocal: here, segmentDir: a });
    await assert.rejects(shm.selector.reducer.allReduce(new Float32Array(3), { step: 0, bucket: 0 }), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG')
      && e.message.startsWith('--allreduce shm: rank 1 does not share this rank\'s ')
      && e.message.endsWith('shared memory needs every rank to map the same one; use --allreduce auto or ring'));
    assert.equal(shm.made.length, 0);
  } finally {
    done();
  }
});

test('a probe is the rank\'s own (it holds its address), is removed on close, and stale ones of dead processes are swept', () => {
  const { a, done } = containers();
  try {
    const probe = new ShmProbe('ipc:///tmp/mine', a);
    assert.equal(probe.write(), null);
    assert.equal(probeVisible('ipc:///tmp/mine', a), true);
    // A file of that name holding another address (a hash collision, a foreign file) is not this rank's probe.
    writeFileSync(path.join(a, probeName('ipc:///tmp/other')), JSON.stringify({ address: 'ipc:///tmp/else', pid: 1, pidNamespace: null }));
    assert.equal(probeVisible('ipc:///tmp/other', a), false);
    probe.remove();
    probe.remove();
    assert.equal(probeVisible('ipc:///tmp/mine', a), false);
    // Left by SIGKILLed workers: one of this pid namespace whose process is gone is swept once older than 10 s; one of
    // another namespace (a container sharing this /dev/shm, its processes invisible here) and a recent one are kept.
    const ns = readlinkSafe();
    const dead = 4_194_305; // above Linux's largest pid_max (2^22): no such process
    const old = (name: string, content: object): void => {
      writeFileSync(path.join(a, name), JSON.stringify(content));
      utimesSync(path.join(a, name), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    };
    old(probeName('ipc:///tmp/dead'), { address: 'ipc:///tmp/dead', pid: dead, pidNamespace: ns, hostId: HERE });
    old(probeName('ipc:///tmp/elsewhere'), { address: 'ipc:///tmp/elsewhere', pid: dead, pidNamespace: 'pid:[1]', hostId: HERE });
    // Another host's (a segment directory that fell back to a /tmp shared with it): the same first pid namespace id as
    // ours, a pid that means nothing here.
    old(probeName('ipc:///tmp/other-host'), { address: 'ipc:///tmp/other-host', pid: dead, pidNamespace: ns, hostId: 'ffffffffffffffff' });
    old(probeName('ipc:///tmp/alive'), { address: 'ipc:///tmp/alive', pid: process.pid, pidNamespace: ns, hostId: HERE });
    writeFileSync(path.join(a, probeName('ipc:///tmp/recent')), JSON.stringify({ address: 'ipc:///tmp/recent', pid: dead, pidNamespace: ns, hostId: HERE }));
    new ShmProbe('ipc:///tmp/next', a).write();
    const left = readdirSync(a).sort();
    const expect = ['elsewhere', 'other-host', 'alive', 'recent', 'next', 'other'].map((x) => probeName(`ipc:///tmp/${x}`));
    if (ns !== null) assert.deepEqual(left, expect.sort(), 'only the dead process\'s probe of this namespace and host was swept');
    else assert.equal(left.length, 7, 'without /proc nothing is swept');
  } finally {
    done();
  }
});

function readlinkSafe(): string | null {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return null;
  }
}
