/**
 * What a stopping worker leaves on its control socket (the tryout's flaky "worker lost, --max-restarts 0" ending: the
 * survivor printed zeromq's `Waiting for queued ZeroMQ messages to be delivered` after a failed run's `shutdown`).
 * Once stopped, a worker starts no queued command and sends nothing: the coordinator reads nothing after its
 * `shutdown` (it closes its ROUTER at once), and otherwise sees the worker leave from its exit or silence. Its
 * control DEALER then closes with linger 0, except after a failure of its own once joined (1 s, so a reply queued just
 * before can reach the coordinator that waits for it).
 *
 * The race itself (a reply queued behind a step that waited for the dead peer, sent after `shutdown`) depends on
 * timing, so these tests drive the worker's own seams: `stop()` and the command path, with the socket observed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type * as zmq from 'zeromq';
import { WORKER_EXIT, Worker } from '../../../src/worker/worker.js';
import type { Message } from '../../../src/contract/protocol/index.js';

/** The worker's internals these tests observe (private in the class). */
interface Seams {
  socket: zmq.Dealer;
  rank: number;
  process(msg: Message, frames: readonly Buffer[]): Promise<void>;
}

/** A worker never started (no backend, no ring) whose control socket's sends and closing linger are recorded. */
function observed(): { worker: Worker; seams: Seams; sent: unknown[]; lingerAtClose: () => number | null } {
  const worker = new Worker({
    connect: 'tcp://127.0.0.1:1', backend: 'cpu', dataRoot: null, rank: null, dataBind: 'tcp://127.0.0.1:*',
    heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 10_000, curveServerKey: null, log: () => {},
  });
  const seams = worker as unknown as Seams;
  const sent: unknown[] = [];
  let linger: number | null = null;
  // zeromq's sockets are sealed: the worker's control socket is swapped for a recorder with the real one's linger.
  const real = seams.socket;
  const recorder = {
    closed: false, linger: real.linger,
    send: async (m: unknown): Promise<void> => { sent.push(m); },
    close(): void { linger = this.linger; this.closed = true; },
  };
  real.close();
  (seams as { socket: unknown }).socket = recorder;
  return { worker, seams, sent, lingerAtClose: () => linger };
}

const checksum: Message = { type: 'checksum', requestId: 1 };

test('a command still queued when the coordinator said shutdown is not started, and nothing is sent', async () => {
  const { worker, seams, sent } = observed();
  // Before the stop the same command is answered (an error: no setup yet), so the spy does see replies.
  await seams.process(checksum, []);
  assert.equal(sent.length, 1, 'answered while running');
  worker.stop(WORKER_EXIT.ok);
  await seams.process(checksum, []);
  assert.equal(sent.length, 1, 'no reply once stopping');
  await worker.close();
});

for (const [why, code, joined, linger] of [
  ['shutdown from the coordinator (run finished or failed)', WORKER_EXIT.ok, true, 0],
  ['SIGTERM', WORKER_EXIT.sigterm, true, 0],
  ['SIGINT (a worker started by hand)', WORKER_EXIT.sigint, true, 0],
  ['the coordinator lost', WORKER_EXIT.coordinatorLost, true, 0],
  ['its own failure before joining (nobody answered)', WORKER_EXIT.failed, false, 0],
  ['its own failure after joining', WORKER_EXIT.failed, true, 1000],
] as const) {
  test(`control socket linger after ${why}: ${linger} ms`, async () => {
    const { worker, seams, lingerAtClose } = observed();
    if (joined) seams.rank = 0;
    worker.stop(code);
    await worker.close();
    assert.equal(lingerAtClose(), linger);
  });
}
