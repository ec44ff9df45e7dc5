/**
 * A local worker (spawned by its coordinator, with a control pipe and its slot in the environment) and a remote one
 * (started by hand) differ in what they say: a local worker's error reaches the user from its coordinator, in the same
 * terminal, so the worker logs it in short; a remote worker's own terminal is the only place the user sees it, so it is
 * logged in full. Whether a worker is local is decided once (`localWorkerSlot`, contract/local-pipe.ts) from what the
 * coordinator gives it (`workerEnv`, coordinator/local-workers.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type * as zmq from 'zeromq';
import { Worker } from '../../../src/worker/worker.js';
import { localWorkerSlot, WORKER_SLOT_ENV } from '../../../src/contract/local-pipe.js';
import { workerEnv } from '../../../src/coordinator/local-workers.js';
import type { Message } from '../../../src/contract/protocol/index.js';

test('a local worker is one with a control pipe and a slot from its coordinator: the slot workerEnv gives is the one the worker reads', () => {
  for (const slot of [0, 3]) assert.equal(localWorkerSlot(true, workerEnv(slot, 0, {})), slot);
  assert.equal(localWorkerSlot(false, workerEnv(1, 0, {})), null, 'the variable alone (copied into a shell) is not a coordinator');
  assert.equal(localWorkerSlot(true, {}), null, 'another parent\'s IPC channel (a process manager) is not a coordinator');
  assert.equal(localWorkerSlot(true, { [WORKER_SLOT_ENV]: 'x' }), null);
});

/** A worker never started, its control socket swapped for a sink (zeromq's sockets are sealed), its log recorded. */
function worker(localSlot: number | null): { process(msg: Message, frames: readonly Buffer[]): Promise<void>; lines: string[]; w: Worker } {
  const lines: string[] = [];
  const w = new Worker({
    connect: 'tcp://127.0.0.1:1', backend: 'cpu', dataRoot: null, rank: null, dataBind: 'tcp://127.0.0.1:*',
    heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 10_000, curveServerKey: null, localSlot, log: (l) => lines.push(l),
  });
  const seams = w as unknown as { socket: zmq.Dealer; process(msg: Message, frames: readonly Buffer[]): Promise<void> };
  seams.socket.close();
  (seams as { socket: unknown }).socket = { closed: false, linger: 0, send: async (): Promise<void> => {}, close(): void {} };
  return { process: (m, f) => seams.process.call(w, m, f), lines, w };
}

test('a failed command: a remote worker logs the error in full, a local worker once in short (its coordinator prints it)', async () => {
  // `checksum` before any setup fails with a message naming what is missing.
  const checksum: Message = { type: 'checksum', requestId: 1 };
  const remote = worker(null);
  await remote.process(checksum, []);
  await remote.w.close();
  const local = worker(2);
  await local.process(checksum, []);
  await local.w.close();
  assert.equal(remote.lines.length, 1);
  assert.match(remote.lines[0]!, /^checksum failed: ERR_\w+: \S/);
  assert.doesNotMatch(remote.lines[0]!, /sent to the coordinator/);
  assert.deepEqual(local.lines.map((l) => l.replace(/ERR_\w+/, 'ERR')), ['checksum failed: ERR: sent to the coordinator, which reports it']);
});
