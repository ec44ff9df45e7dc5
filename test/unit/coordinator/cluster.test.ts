import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as zmq from 'zeromq';
import { Cluster } from '../../../src/coordinator/cluster.js';
import { validateAll } from '../../../src/coordinator/stage-runner.js';
import { ControlServer } from '../../../src/coordinator/control.js';
import { TrainerError, isTrainerError } from '../../../src/contract/errors.js';
import { decode, encode, type Message } from '../../../src/contract/protocol/index.js';
import { errorExit } from '../../../src/contract/cli-error.js';

function hello(rankRequest: number | null, port: number): Message {
  return { type: 'hello', rankRequest, dataAddress: `tcp://127.0.0.1:${port}`, pid: port, host: 'h', capabilities: { backend: 'wasm', wireDtypes: ['float32'], maxFrameBytes: 1024 } };
}

test('admission: a requested free rank is kept, the others get the lowest free ranks; welcome lists the ring; a silent member aborts the lost signal', async () => {
  const lines: string[] = [];
  const control = new ControlServer({ bind: 'tcp://127.0.0.1:0', heartbeatIntervalMs: 50, heartbeatTimeoutMs: 400, log: (l) => lines.push(l) });
  const endpoint = await control.start();
  const announced: [number, number][] = [];
  const cluster = new Cluster(control, (l) => lines.push(l), (worldSize, generation) => announced.push([worldSize, generation]));
  const dealers = [0, 1, 2].map((i) => {
    const d = new zmq.Dealer({ linger: 0, routingId: `w${i}`, receiveTimeout: 5000 });
    d.connect(endpoint);
    return d;
  });
  // The members heartbeat until the test stops them, so a loaded machine cannot lose them during admission.
  let seq = 0;
  const beats = setInterval(() => { for (const d of dealers) void d.send(encode({ type: 'heartbeat', sender: 'worker', rank: -1, seq: seq++, sentAtMs: Date.now() })); }, 50);
  try {
    await dealers[0]!.send(encode(hello(2, 1000)));
    await dealers[1]!.send(encode({ ...hello(null, 1001), localDataAddress: 'ipc:///tmp/pets-ring-1001', sharedMemory: { usable: true } } as Message));
    await dealers[2]!.send(encode({ ...hello(null, 1002), sharedMemory: { usable: false, reason: 'no g++' } } as Message));
    await assert.rejects(cluster.admit(4, 300), (e) => isTrainerError(e, 'ERR_TIMEOUT') && /for 4 worker\(s\) to join, 3 did/.test(e.message));
    await cluster.admit(3, 5000);
    assert.deepEqual(control.live().map((m) => [m.id, m.rank]), [['w1', 0], ['w2', 1], ['w0', 2]]);
    await cluster.announce();
    assert.deepEqual(announced, [[3, 1]], 'the group is announced to the listener (the star server) with its generation');
    for (const [i, d] of dealers.entries()) {
      let message: Message;
      do ({ message } = decode(await d.receive())); while (message.type === 'heartbeat');
      assert.equal(message.type, 'welcome');
      if (message.type !== 'welcome') return;
      assert.equal(message.generation, 1);
      assert.equal(message.rank, [2, 0, 1][i]);
      assert.deepEqual(message.ring.map((m) => m.dataAddress), ['tcp://127.0.0.1:1001', 'tcp://127.0.0.1:1002', 'tcp://127.0.0.1:1000']);
      assert.deepEqual(message.ring.map((m) => m.localDataAddress), ['ipc:///tmp/pets-ring-1001', undefined, undefined], 'same-host addresses are forwarded');
      assert.deepEqual(message.ring.map((m) => m.sharedMemory), [{ usable: true }, { usable: false, reason: 'no g++' }, undefined],
        'each member\'s shared-memory announcement is forwarded, so every rank chooses the transport from the same facts');
    }
    // Nobody heartbeats any more: after the 400 ms timeout every member is lost and the lost signal fires.
    clearInterval(beats);
    const signal = cluster.lostSignal;
    await new Promise<void>((res) => signal.addEventListener('abort', () => res(), { once: true }));
    assert.match(String(signal.reason), /rank \d lost: no heartbeat for \d+ ms \(timeout 400 ms\)/);
    // The signal fires on the first loss; on a loaded machine a sweep can fall between the members' deadlines, so
    // the others are lost at a later sweep: wait for them (no duration assumed) rather than drop them at once.
    while (control.live().length > 0) await new Promise((r) => setTimeout(r, 50));
    // A ring is never announced past a lost member that was not dropped: that would reset the signal its loss fired
    // (the loss unseen) and leave a gap in the ranks. The caller recovers instead.
    const generation = cluster.generation;
    await assert.rejects(cluster.announce(), (e) => isTrainerError(e, 'ERR_WORKER_LOST') && /^rank\(s\) \d \(pid 100\d on h\), .* lost while the ring was being re-formed$/.test(e.message));
    assert.equal(cluster.generation, generation, 'nothing announced');
    cluster.dropLost();
    assert.equal(cluster.worldSize, 0);
  } finally {
    clearInterval(beats);
    for (const d of dealers) d.close();
    control.close();
  }
});

test('request: one typed reply per rank, paired by request id (a stale reply or another reply type is not taken); an error reply rejects with its code', async () => {
  const control = new ControlServer({ bind: 'tcp://127.0.0.1:0', heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 600_000, log: () => undefined });
  const endpoint = await control.start();
  const cluster = new Cluster(control, () => undefined);
  const dealers = [0, 1].map((i) => {
    const d = new zmq.Dealer({ linger: 0, routingId: `r${i}`, receiveTimeout: 30_000 });
    d.connect(endpoint);
    return d;
  });
  /** The next non-heartbeat message a dealer receives. */
  const next = async (d: zmq.Dealer): Promise<Message> => {
    for (;;) {
      const { message } = decode(await d.receive());
      if (message.type !== 'heartbeat') return message;
    }
  };
  const sum = (c: string): string => c.repeat(64);
  try {
    await dealers[0]!.send(encode(hello(0, 2000)));
    await dealers[1]!.send(encode(hello(1, 2001)));
    await cluster.admit(2, 30_000);
    await cluster.announce();
    for (const d of dealers) assert.equal((await next(d)).type, 'welcome');

    const pending = cluster.request('checksum', {}, { timeoutMs: 60_000 });
    const asked = await Promise.all(dealers.map(next));
    assert.deepEqual(asked.map((m) => m.type), ['checksum', 'checksum']);
    const id = (asked[0] as Extract<Message, { type: 'checksum' }>).requestId;
    assert.equal((asked[1] as Extract<Message, { type: 'checksum' }>).requestId, id, 'one request id for the whole request');
    // Rank 1 first answers an older request and sends an ack with the right id: neither is its reply.
    await dealers[1]!.send(encode({ type: 'weights-checksum', requestId: id - 1, rank: 1, checksum: sum('0') }));
    await dealers[1]!.send(encode({ type: 'ack', requestId: id, rank: 1 }));
    await dealers[1]!.send(encode({ type: 'weights-checksum', requestId: id, rank: 1, checksum: sum('1') }));
    await dealers[0]!.send(encode({ type: 'weights-checksum', requestId: id, rank: 0, checksum: sum('a') }));
    const replies = await pending;
    assert.deepEqual(replies.map((r) => [r.rank, r.message.checksum]), [[0, sum('a')], [1, sum('1')]], 'replies in rank order, typed');

    const failing = cluster.request('sync-bn', { generation: cluster.generation }, { ranks: [1], timeoutMs: 60_000 });
    const syncBn = await next(dealers[1]!);
    assert.deepEqual(syncBn, { type: 'sync-bn', requestId: id + 1, generation: 1 });
    // A late error of an earlier request (a get-state that failed before this request began) is no reply to it;
    // the worker's error naming this request is.
    await dealers[1]!.send(encode({ type: 'error', code: 'ERR_WORKER_LOST', message: 'get-state: all-reduce aborted: welcome from the coordinator', rank: 1, command: 'get-state', requestId: id - 1 }));
    await dealers[1]!.send(encode({ type: 'error', code: 'ERR_DATA', message: 'sync-bn: disk gone', rank: 1, command: 'sync-bn', requestId: id + 1 }));
    await assert.rejects(failing, (e) => isTrainerError(e, 'ERR_DATA') && /rank 1: sync-bn: disk gone/.test(e.message));
    // A worker's input error (its environment, its flags) ends the request as the worker's, never as the
    // coordinator's bad input (ERR_BAD_* → exit 2, "nothing was started"): re-coded ERR_WORKER_INPUT, exit 1.
    const bad = cluster.request('sync-bn', { generation: cluster.generation }, { ranks: [1], timeoutMs: 60_000 });
    const badId = (await next(dealers[1]!) as Extract<Message, { type: 'sync-bn' }>).requestId;
    await dealers[1]!.send(encode({ type: 'error', code: 'ERR_BAD_CONFIG', message: 'sync-bn: PETS_TRAINER_CACHE_DIR /ro: cannot create the folder', rank: 1, command: 'sync-bn', requestId: badId }));
    const badErr = await bad.then(() => null, (e: unknown) => e);
    assert.ok(isTrainerError(badErr, 'ERR_WORKER_INPUT') && /^rank 1: sync-bn: PETS_TRAINER_CACHE_DIR \/ro: cannot create the folder \(reported by the worker as ERR_BAD_CONFIG/.test(badErr.message), String(badErr));
    assert.equal(errorExit('coordinator', badErr, () => undefined), 1);
    // The run's error carries rank 1's message: rank 0 failing the same way later is said as "the same error as rank 1".
    assert.equal(cluster.rankThatReported('sync-bn: disk gone'), 1);
    assert.equal(cluster.rankThatReported('sync-bn: disk full'), null);

    // The one rank-0 BatchNorm broadcast: a sync-bn to every rank with the ring's generation, done when all ack.
    const synced = cluster.syncBatchNorm(60_000);
    const asks = await Promise.all(dealers.map(next));
    assert.deepEqual(asks, [0, 1].map(() => ({ type: 'sync-bn', requestId: id + 3, generation: 1 })));
    for (const [rank, d] of dealers.entries()) await d.send(encode({ type: 'ack', requestId: id + 3, rank }));
    await synced;
  } finally {
    for (const d of dealers) d.close();
    control.close();
  }
});

test('gather: a rank that reports failure ends the gather at once; the ranks still silent (a hung worker) are not waited for', async () => {
  const control = new ControlServer({ bind: 'tcp://127.0.0.1:0', heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 600_000, log: () => undefined });
  const endpoint = await control.start();
  const cluster = new Cluster(control, () => undefined);
  const dealers = [0, 1].map((i) => {
    const d = new zmq.Dealer({ linger: 0, routingId: `g${i}`, receiveTimeout: 30_000 });
    d.connect(endpoint);
    return d;
  });
  try {
    await dealers[0]!.send(encode(hello(0, 3000)));
    await dealers[1]!.send(encode(hello(1, 3001)));
    await cluster.admit(2, 30_000);
    type Done = Extract<Message, { type: 'step-done' | 'step-failed' }>;
    const isStep = (m: Message): m is Done => (m.type === 'step-done' || m.type === 'step-failed') && m.step === 4;
    let settled: unknown = null;
    // Rank 0 never answers (stopped); the step timeout is far away (10 min).
    const gathering = cluster.gather([0, 1], isStep, { what: 'step 4', timeoutMs: 600_000,
      failed: (m, rank) => (m.type === 'step-failed' ? new TrainerError(m.code, `rank ${rank} failed step 4: ${m.message}`) : null) });
    gathering.then(() => { settled = 'resolved'; }, (e: unknown) => { settled = e; });
    // Rank 1's all-reduce timed out waiting for rank 0: it fails the step; then it sends a message nobody waits for,
    // which the server emits only after the failure (one peer's messages arrive in order).
    const after = new Promise<void>((res) => control.once('message', () => res()));
    await dealers[1]!.send(encode({ type: 'step-failed', step: 4, generation: 0, rank: 1, code: 'ERR_TIMEOUT', message: 'all-reduce timed out after 120000 ms' }));
    await dealers[1]!.send(encode({ type: 'ack', requestId: 99, rank: 1 }));
    await after;
    await new Promise((r) => setImmediate(r));
    assert.ok(isTrainerError(settled, 'ERR_TIMEOUT'), `the gather ended with rank 1's failure (got ${String(settled)})`);
    assert.match((settled as Error).message, /^rank 1 failed step 4: all-reduce timed out after 120000 ms$/);
    assert.equal((control as unknown as { waiters: unknown[] }).waiters.length, 0, 'rank 0\'s wait ended too (no 10-minute timer left)');
  } finally {
    for (const d of dealers) d.close();
    control.close();
  }
});

test('a late error of a request that timed out and was redone (sync-bn) is dropped, said once: it does not fail the redo', async () => {
  // torch.distributed and Horovod match each response to its collective. A worker's `sync-bn` error used to be taken
  // by any later sync-bn of that rank (errors were paired by their `sync-bn: ` prefix): the redo of a sync-bn that had
  // timed out failed on the first one's late error, and recovery started over for nothing.
  const lines: string[] = [];
  const control = new ControlServer({ bind: 'tcp://127.0.0.1:0', heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 600_000, log: (l) => lines.push(l) });
  const endpoint = await control.start();
  const cluster = new Cluster(control, (l) => lines.push(l));
  const dealer = new zmq.Dealer({ linger: 0, routingId: 's0', receiveTimeout: 30_000 });
  dealer.connect(endpoint);
  const next = async (): Promise<Message> => {
    for (;;) {
      const { message } = decode(await dealer.receive());
      if (message.type !== 'heartbeat') return message;
    }
  };
  try {
    await dealer.send(encode(hello(0, 4000)));
    await cluster.admit(1, 30_000);
    await cluster.announce();
    assert.equal((await next()).type, 'welcome');
    // The first sync-bn times out (the worker is slow: its all-reduce waits for a peer)…
    const first = cluster.syncBatchNorm(200);
    const asked = await next() as Extract<Message, { type: 'sync-bn' }>;
    await assert.rejects(first, (e) => isTrainerError(e, 'ERR_TIMEOUT'));
    // … and is redone. The first one's error arrives during the redo (twice: a worker may report it more than once).
    const redo = cluster.syncBatchNorm(60_000);
    const again = await next() as Extract<Message, { type: 'sync-bn' }>;
    assert.notEqual(again.requestId, asked.requestId, 'the redo is another request');
    const late = { type: 'error', code: 'ERR_TIMEOUT', message: 'sync-bn: ring all-reduce timed out after 120000 ms', rank: 0, command: 'sync-bn', requestId: asked.requestId } as const;
    await dealer.send(encode(late));
    await dealer.send(encode(late));
    // A message nobody waits for comes out as `message` after the late errors (one peer's messages arrive in order).
    await dealer.send(encode({ type: 'ack', requestId: 10_000, rank: 0 }));
    await new Promise<void>((res) => { const on = (_m: unknown, msg: Message) => { if (msg.type === 'ack') { control.off('message', on); res(); } }; control.on('message', on); });
    await dealer.send(encode({ type: 'ack', requestId: again.requestId, rank: 0 }));
    await redo;
    const said = lines.filter((l) => /late error/.test(l));
    assert.deepEqual(said, [`worker rank 0: dropped a late error of sync-bn request ${asked.requestId}, which had ended (ERR_TIMEOUT: sync-bn: ring all-reduce timed out after 120000 ms)`], 'said once');

    // An error that answers no request (a failed commit) ends the step's gather: the replica did not apply the step.
    const step = cluster.gather([0], (m: Message): m is Extract<Message, { type: 'step-done' }> => m.type === 'step-done', { what: 'step 5', timeoutMs: 60_000 });
    await dealer.send(encode({ type: 'error', code: 'ERR_INTERNAL', message: 'commit: no pending gradients for step 4', rank: 0, command: 'commit', requestId: null }));
    await assert.rejects(step, (e) => isTrainerError(e, 'ERR_INTERNAL') && /rank 0: commit: no pending gradients/.test(e.message));
  } finally {
    dealer.close();
    control.close();
  }
});

test('validation that read none of its images (the data folder went away mid-run) is ERR_DATA, not error_rate 1 and valid_loss 0', async () => {
  const replies = (count: number) => [0, 1].map((rank) => ({ rank, message: { type: 'valid-done', requestId: 1, rank, count, correct: count, lossSum: count * 0.5 }, frames: [] }));
  let answer = replies(0);
  const cluster = { syncBatchNorm: async () => undefined, request: async () => answer } as unknown as Cluster;
  const remedy = () => 'the newest checkpoint on disk stands (runs/x/checkpoints/step-000000004; later steps are redone); resume with: npx coordinator --resume runs/x after restoring the data';
  await assert.rejects(validateAll(cluster, 1000, false, remedy), (e) => isTrainerError(e, 'ERR_DATA') && e.message === 'validation read none of its images: every one failed to decode '
    + '(each was readable when the run started: was the data folder moved, deleted or unmounted? the log lines above name the files); ' + remedy());
  answer = replies(2);
  assert.deepEqual(await validateAll(cluster, 1000, false, remedy).then((v) => [v.validLoss, v.errorRate]), [0.5, 0]);
});
