/**
 * The heartbeat thread's lifetime (issue #14): `close()` makes the thread close its own ZeroMQ socket and exit by
 * itself (exit code 0, not a `terminate()`), every call awaits that same close, and the coordinator stops hearing it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as zmq from 'zeromq';
import { decode } from '../../../src/contract/protocol/index.js';
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
