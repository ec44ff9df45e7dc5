/**
 * A worker sent `setup` twice (the coordinator's setup request failed after this worker answered `ready`: another
 * rank failed it, and no rank of that request counts as set up, so it is asked again) builds its replica and image
 * pool once more: the first ones must be released first. They were not: every repeated setup leaked the replica's
 * tensors (tens of MB for a ResNet) and the pool's threads.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../src/training/compute/backend.js';
import { encodeRunSetup, type RunSetup } from '../../../src/contract/run-setup.js';
import type { Message } from '../../../src/contract/protocol/index.js';
import type { ImagePool } from '../../../src/training/data/pool.js';
import { Worker } from '../../../src/worker/worker.js';

before(async () => {
  await initBackend('auto');
});

/** The worker's internals this test drives (private in the class). */
interface Seams {
  socket: { close(): void };
  pool: ImagePool | null;
  rank: number;
  worldSize: number;
  onSetup(request: Message, frame: Buffer): Promise<void>;
}

test('setup sent twice: the first replica\'s tensors and image pool are released before the second is built (tensor count flat)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'worker-setup-'));
  mkdirSync(join(dir, 'images'));
  for (const f of ['a_1.jpg', 'b_1.jpg']) writeFileSync(join(dir, 'images', f), 'x');
  const setup: RunSetup = {
    runId: 'r', arch: 'resnet10', size: 32, bs: 2, seed: 1, pretrained: 'none', frozen: true, classes: ['a', 'b'], dataRoot: join(dir, 'images'),
    paths: ['a_1.jpg', 'b_1.jpg'], labels: [0, 1], train: [0], valid: [1], allreduce: 'ring', allreduceDtype: 'float32', bucketBytes: 1 << 20,
    allreduceTimeoutMs: 1000, starAddress: null, threads: 1,
  };
  const frame = Buffer.from(encodeRunSetup(setup));
  const worker = new Worker({
    connect: 'tcp://127.0.0.1:1', backend: 'cpu', dataRoot: null, rank: null, dataBind: 'tcp://127.0.0.1:*',
    heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 10_000, curveServerKey: null, log: () => {},
  });
  const seams = worker as unknown as Seams;
  // No coordinator: the `ready` reply goes to a recorder.
  const replies: unknown[] = [];
  seams.socket.close();
  (seams as unknown as { socket: unknown }).socket = { closed: false, linger: 0, send: async (m: unknown) => { replies.push(m); }, close() {} };
  seams.rank = 0; // as after the first `welcome`
  seams.worldSize = 2;
  const request = (id: number): Message => ({ type: 'setup', requestId: id, byteLength: frame.byteLength });
  try {
    await seams.onSetup(request(1), frame);
    const afterFirst = tf.memory().numTensors;
    const firstPool = seams.pool!;
    await seams.onSetup(request(2), frame);
    assert.equal(tf.memory().numTensors, afterFirst, 'the first replica\'s tensors are disposed: the count is that of one replica');
    assert.notEqual(seams.pool, firstPool);
    assert.throws(() => firstPool.start(), /after close/, 'the first image pool is closed');
    assert.equal(replies.length, 2, 'each setup answered');
  } finally {
    await worker.close(5000);
    rmSync(dir, { recursive: true, force: true });
  }
});
