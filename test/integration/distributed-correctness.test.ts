// A real coordinator with 2 local workers trains resnet10 for a few steps; meanwhile the test throws garbage,
// truncated, oversized and wrong-version messages at the coordinator's ROUTER and at a worker's data-plane socket.
// The run must complete, and its weights, BatchNorm statistics and validation numbers must equal a single-process
// replay of the same global batches (distributed-reference.ts).
// Expected values: the reference run in this process. Tolerances: parameters ≤ 1e-6 relative per tensor (the
// ring sums the 2 ranks' float32 gradients in another order than one process does; AdamW then moves each weight
// by ≈ lr, so the difference stays at float32 rounding); valid loss ≤ 1e-5 relative (float32 sums of per-item
// losses in other groupings); error rate exact.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as zmq from 'zeromq';
import { Packr } from 'msgpackr';
import { initBackend } from '../../src/training/compute/backend.js';
import { loadLatestCheckpoint } from '../../src/contract/checkpoint-format.js';
import { ImagePool } from '../../src/training/data/pool.js';
import { decodeReplicaState } from '../../src/training/learner/state-codec.js';
import { decode, encode, MAX_HEADER_BYTES, PROTOCOL_VERSION } from '../../src/contract/protocol/index.js';
import type { CheckpointMeta } from '../../src/coordinator/checkpoint-store.js';
import { loadShmModule } from '../../src/worker/allreduce/shm.js';
import { killAll, makePhotoDir, startProc, tinyRunFlags } from './distributed-harness.js';
import { referenceRun } from './distributed-reference.js';
import { maxRelativeDiff } from './distributed-compare.js';

const STAGES = [{ kind: 'one_cycle', name: 'stage-1', epochs: 1, maxLr: 'slice(1e-3,1e-2)', frozen: false }];
let dataDir: string, tmp: string, pool: ImagePool;

before(async () => {
  await initBackend('wasm');
  dataDir = makePhotoDir(4, 5);
  tmp = mkdtempSync(join(tmpdir(), 'dist-correct-'));
  pool = new ImagePool({ threads: 1 });
  pool.start();
});

after(async () => {
  await killAll();
  await pool.close();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
});

const packr = new Packr({ useRecords: false });
const HELLO = { type: 'hello', rankRequest: null, dataAddress: 'tcp://127.0.0.1:1', pid: 1, host: 'x', capabilities: { backend: 'wasm', wireDtypes: ['float32'], maxFrameBytes: 1024 } };

/** Garbage for the coordinator's ROUTER; a v+1 hello must get a readable error back. */
async function attackRouter(endpoint: string): Promise<string> {
  const d = new zmq.Dealer({ linger: 0, receiveTimeout: 10_000 });
  d.connect(endpoint);
  const hello = packr.pack({ v: PROTOCOL_VERSION, ...HELLO });
  await d.send([Buffer.from('not msgpack at all \xc1\xc1')]);
  await d.send([hello.subarray(0, Math.floor(hello.length / 2))]);
  await d.send([Buffer.alloc(MAX_HEADER_BYTES + 1024, 0x41)]);
  await d.send([packr.pack({ v: PROTOCOL_VERSION, type: 'no-such-type' })]);
  await d.send([packr.pack({ v: PROTOCOL_VERSION, type: 'step-done', step: -1 })]);
  await d.send([packr.pack({ v: PROTOCOL_VERSION + 1, ...HELLO })]);
  const [reply] = await d.receive();
  d.close();
  const { message } = decode([reply!]);
  assert.equal(message.type, 'error');
  return message.type === 'error' ? message.message : '';
}

/** Garbage for a worker's data-plane PULL socket. */
async function attackDataPlane(address: string): Promise<void> {
  const p = new zmq.Push({ linger: 2000, sendTimeout: 5000 });
  p.connect(address);
  const chunk = encode({ type: 'chunk', generation: 0, step: 0, bucket: 0, phase: 'reduce-scatter', ringStep: 0, chunk: 0, offset: 0, from: 0, dtype: 'float32', byteLength: 8 }, [new Uint8Array(8)]);
  await p.send([Buffer.from([0xff, 0x00, 0x13])]);
  await p.send([chunk[0]!.subarray(0, 5), chunk[1]!]);
  await p.send([Buffer.alloc(MAX_HEADER_BYTES + 1, 0x90)]);
  await p.send([packr.pack({ ...(decode(chunk).message), v: PROTOCOL_VERSION + 1 }), chunk[1]!]);
  await p.send([chunk[0]!, new Uint8Array(12)]);
  p.close();
}

const row0 = (c: { manifest: { meta: CheckpointMeta } }): { validLoss: number; errorRate: number } => c.manifest.meta.history.stages[0]!.epochs[0]!;

test('2 workers = one process replaying the same global batches; garbage at the ROUTER and the data plane is rejected and the run completes', { timeout: 240_000 }, async (t) => {
  const runDir = join(tmp, 'run2');
  const cfg = join(tmp, 'stages.json');
  writeFileSync(cfg, JSON.stringify({ stages: STAGES }));
  const coord = startProc('coordinator', [...tinyRunFlags(dataDir, runDir, ['--workers', '2', '--config', cfg])]);
  // The data-plane attack is armed before anything is awaited: it fires as soon as a worker joins, while the run
  // still has all its steps ahead. Awaiting the ROUTER attack first let a fast machine train to the end meanwhile, and
  // garbage sent to a worker that has exited is never logged.
  const dataAttack = coord.waitFor(/worker joined: .*data plane (tcp:\/\/\S+),/, 60_000).then((m) => attackDataPlane(m[1]!));
  dataAttack.catch(() => undefined); // awaited below; a failure before that must not also surface as unhandled
  const endpoint = (await coord.waitFor(/coordinator listening on (tcp:\/\/\S+);/, 60_000))[1]!;
  const refusal = await attackRouter(endpoint);
  assert.match(refusal, new RegExp(`protocol version mismatch: this coordinator speaks v${PROTOCOL_VERSION}, the worker sent v${PROTOCOL_VERSION + 1}`));
  await dataAttack;
  const code = await coord.exited;
  const out = coord.output();
  assert.equal(code, 0, out.slice(-4000));
  // 6 ROUTER messages rejected and logged (the v+1 hello too), 5 on the data plane (logged by the ring).
  assert.ok((out.match(/rejected a frame from/g) ?? []).length >= 6, out.slice(-4000));
  assert.ok((out.match(/ring: ERR_PROTOCOL/g) ?? []).length >= 5, out.slice(-4000));
  // Local workers of one host send to each other over their Unix sockets (issue #18), not TCP loopback.
  for (const rank of [0, 1]) assert.match(out, new RegExp(`ring generation 1: rank ${rank} sends to ipc://`), out.slice(-4000));
  // With --allreduce auto (the default) the gradients of same-host workers go through shared memory when the module
  // is built, one line per worker saying so and why; without it, through the ring, saying why not.
  const viaShm = 'module' in loadShmModule();
  const transport = viaShm ? /generation 1: all-reduce through shared memory \/\S+ \(--allreduce auto: all 2 ranks are on this host and share \/\S+\)/g
    : /generation 1: all-reduce through the ring \(--allreduce auto: shared-memory module/g;
  assert.equal((out.match(transport) ?? []).length, 2, out.slice(-4000));
  assert.doesNotMatch(out, /TypeError|RangeError|Unhandled|uncaught/i);

  const n0 = tf.memory().numTensors;
  const ref = await referenceRun({ data: dataDir, arch: 'resnet10', size: 32, bs: 2, pretrained: 'none', stages: STAGES }, 2, pool);
  assert.equal(tf.memory().numTensors, n0, 'the reference leaks no tensors');
  const ckpt = loadLatestCheckpoint<CheckpointMeta>(runDir)!;
  const got = decodeReplicaState(ckpt.files.get('state.safetensors')!);
  assert.equal(ckpt.manifest.meta.history.position.globalStep, ref.steps);
  assert.ok(ref.steps >= 3, `steps ${ref.steps}`);
  const diff = maxRelativeDiff(got, ref.state);
  t.diagnostic(`${ref.steps} steps; max relative weight difference ${diff.worst.toExponential(2)} (${diff.name}); valid loss ${row0(ckpt).validLoss} vs ${ref.validLoss}`);
  assert.ok(diff.worst <= 1e-6, `max relative difference ${diff.worst} in ${diff.name}`);
  const row = row0(ckpt);
  assert.ok(Math.abs(row.validLoss - ref.validLoss) <= 1e-5 * ref.validLoss, `valid loss ${row.validLoss} vs ${ref.validLoss}`);
  assert.equal(row.errorRate, ref.errorRate);
});
