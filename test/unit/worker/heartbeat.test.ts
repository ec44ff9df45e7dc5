/**
 * The heartbeat thread's lifetime (issue #14): `close()` makes the thread close its own ZeroMQ socket and exit by
 * itself (exit code 0, not a `terminate()`), every call awaits that same close, and the coordinator stops hearing it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as zmq from 'zeromq';
import { decode, encode } from '../../../src/contract/protocol/index.js';
import { HeartbeatThread } from '../../../src/worker/heartbeat.js';

test('close(): the thread closes its socket and exits by itself; idempotent', { timeout: 120_000 }, async () => {
  const router = new zmq.Router({ linger: 0 });
  await router.bind('tcp://127.0.0.1:*');
  try {
    for (let i = 0; i < 3; i++) {
      const hb = new HeartbeatThread({ endpoint: router.lastEndpoint!, routingId: `w${i}/hb`, intervalMs: 20, timeoutMs: 600_000 });
      hb.start();
      hb.setRank(i);
      // Heard from: the thread holds a connected socket now.
      for (;;) {
        const [id, ...frames] = await router.receive();
        const { message } = decode(frames);
        if (id!.toString() === `w${i}/hb` && message.type === 'heartbeat' && message.rank === i) break;
      }
      const first = hb.close();
      const second = hb.close();
      assert.equal(first, second, 'every caller awaits the same close');
      await first;
      assert.equal(hb.exitCode, 0, 'exited by itself, not terminated');
      hb.start();
      assert.equal(hb.exitCode, 0, 'start() after close() starts nothing');
    }
  } finally {
    router.close();
  }
});

test('close() before start() resolves at once', async () => {
  const hb = new HeartbeatThread({ endpoint: 'tcp://127.0.0.1:1', routingId: 'x/hb', intervalMs: 20, timeoutMs: 1000 });
  await hb.close();
  assert.equal(hb.exitCode, null);
});

test('coordinator lost: says whether it ever answered (a spare or a worker waiting to join heard it; an unreachable one did not)', { timeout: 120_000 }, async () => {
  // Seen by the breaker: a spare worker (joined a full ring) whose coordinator was then killed said the coordinator
  // 'never answered (is it running and reachable …?)', though it had answered every heartbeat.
  for (const answer of [true, false]) {
    const router = new zmq.Router({ linger: 0 });
    await router.bind('tcp://127.0.0.1:*');
    let lost: ((v: boolean) => void) | null = null;
    const heard = new Promise<boolean>((r) => { lost = r; });
    // 5 s of silence: the replies below come long before it, even on a loaded machine.
    const hb = new HeartbeatThread({ endpoint: router.lastEndpoint!, routingId: 'w/hb', intervalMs: 20, timeoutMs: 5000, onCoordinatorLost: (_ms, h) => lost!(h) });
    hb.start();
    try {
      // Answer the first 3 heartbeats (or none), then go silent as a killed coordinator.
      for (let i = 0; i < 3; i++) {
        const [id] = await router.receive();
        if (answer) await router.send([id!, ...encode({ type: 'heartbeat', sender: 'coordinator', rank: -1, seq: i, sentAtMs: Date.now() })]);
      }
      assert.equal(await heard, answer);
    } finally {
      await hb.close();
      router.close();
    }
  }
});
