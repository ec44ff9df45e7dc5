/**
 * The heartbeat thread's lifetime (issue #14): `close()` makes the thread close its own ZeroMQ socket and exit by
 * itself (exit code 0, not a `terminate()`), every call awaits that same close, and the coordinator stops hearing it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as zmq from 'zeromq';
import { decode, encode } from '../../../src/contract/protocol/index.js';
import { Worker } from 'node:worker_threads';
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

/**
 * The heartbeat thread run as HeartbeatThread starts it, with its wall clock (`Date.now`) shifted by `shift[0]`
 * seconds, which the test sets: a clock stepped by NTP, `date -s`, or a laptop resumed from suspend.
 */
function threadWithShiftedClock(endpoint: string, timeoutMs: number, shift: Int32Array): Worker {
  const entry = new URL('../../../src/worker/heartbeat-thread.ts', import.meta.url).href;
  const api = import.meta.resolve('tsx/esm/api');
  const code = `import { register } from ${JSON.stringify(api)}; register();
    import { workerData } from 'node:worker_threads';
    const real = Date.now; Date.now = () => real() + Atomics.load(workerData.shift, 0) * 1000;
    await import(${JSON.stringify(entry)});`;
  const workerData = { endpoint, routingId: 'w/hb', intervalMs: 20, timeoutMs, graceMs: 600_000, curveServerKey: null, shift };
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), { workerData });
}

test('a wall-clock step is not silence: the coordinator is timed on the monotonic clock', { timeout: 120_000 }, async () => {
  // Seen by the breaker: the thread measured silence with Date.now(), so a clock stepped forward by more than
  // --heartbeat-timeout-ms (NTP after a VM pause, `date -s`, a laptop resumed) made every worker of the run declare a
  // live coordinator lost at its next tick and exit 3 at once; a clock stepped back hid a dead coordinator that long.
  // The coordinator here never answers: the silence counts from the thread's start, and its heartbeats (one per
  // 20 ms tick at most) count its ticks.
  for (const jumpS of [3600, -3600]) {
    const router = new zmq.Router({ linger: 0 });
    await router.bind('tcp://127.0.0.1:*');
    const shift = new Int32Array(new SharedArrayBuffer(4));
    const timeoutMs = jumpS > 0 ? 600_000 : 5000;
    const w = threadWithShiftedClock(router.lastEndpoint!, timeoutMs, shift);
    const lostEvent = new Promise<'lost'>((resolve) => w.on('message', (ev: { kind: string }) => {
      if (ev.kind === 'coordinator-lost') resolve('lost');
    }));
    const ticks = async (n: number): Promise<'ticking'> => {
      for (let i = 0; i < n; i++) await router.receive();
      return 'ticking';
    };
    try {
      // The thread runs: its silence counts from its start. (A start stalled past the 5 s timeout by load ends the
      // backward case early, which then proves nothing but fails nothing.)
      if (await Promise.race([ticks(1), lostEvent]) === 'lost') {
        assert.ok(jumpS < 0, 'a 10-minute timeout passed before the first tick');
        continue;
      }
      Atomics.store(shift, 0, jumpS);
      if (jumpS > 0) {
        // 20 ticks after the step, 0.4 s or more: far within the 10-minute timeout.
        assert.equal(await Promise.race([ticks(20), lostEvent]), 'ticking', `clock +${jumpS} s: the coordinator was declared lost`);
      } else {
        // 5 s of silence ends within ~250 ticks of 20 ms (a loaded machine delays the ticks, never adds any), not an hour.
        assert.equal(await Promise.race([ticks(1000), lostEvent]), 'lost', `clock ${jumpS} s: a silent coordinator was not found lost`);
      }
    } finally {
      w.postMessage({ kind: 'stop' });
      await new Promise((r) => w.once('exit', r));
      router.close();
    }
  }
});
