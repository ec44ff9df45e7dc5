/**
 * Ring all-reduce across 3 real child processes on loopback (ephemeral ports, so parallel runs never collide), two
 * links over Unix sockets and one over TCP: correct sums, bit-identical bytes across processes (also for a 6 MB
 * buffer: many slices, zero-copy all-gather, receipt tokens), and a SIGKILLed peer turning into ERR_TIMEOUT for the others
 * instead of a hang. Every child is reaped before the test ends.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { seededInput } from './fixtures/seeded.js';

const CHILD = fileURLToPath(new URL('./fixtures/ring-child.ts', import.meta.url));

interface Reply {
  kind: string;
  address?: string;
  local?: string;
  right?: string;
  bytes?: string;
  code?: string;
  message?: string;
}

/** A child with a queue of its IPC replies. */
class Child {
  readonly proc: ChildProcess;
  private readonly inbox: Reply[] = [];
  private wake: (() => void) | undefined;

  constructor() {
    this.proc = spawn(process.execPath, ['--import', 'tsx', CHILD], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (m: Reply) => {
      this.inbox.push(m);
      this.wake?.();
    });
  }

  async next(timeoutMs = 30_000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    while (this.inbox.length === 0) {
      if (Date.now() > deadline) throw new Error(`child ${this.proc.pid} sent nothing within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 100);
      });
    }
    return this.inbox.shift() as Reply;
  }

  send(cmd: object): void {
    this.proc.send(cmd);
  }
}

const SEEDS = [101, 202, 303];

test('3 processes: correct, bit-identical sums; a killed peer gives ERR_TIMEOUT, never a hang', async () => {
  const children = [new Child(), new Child(), new Child()];
  try {
    const hellos = await Promise.all(children.map((c) => c.next()));
    const peers = hellos.map((h) => h.address as string);
    assert.equal(new Set(peers).size, 3, `distinct ephemeral ports: ${peers}`);
    // Ranks 0 and 1 announce their Unix sockets, rank 2 does not (as a remote worker): rank 1 sends over TCP,
    // ranks 2 and 0 over ipc://, in one ring.
    const localPeers = [hellos[0].local, hellos[1].local, undefined];
    children.forEach((c, rank) => c.send({ kind: 'membership', peers, localPeers, rank, generation: 1 }));
    const ready = await Promise.all(children.map((c) => c.next()));
    assert.deepEqual(ready.map((r) => r.kind), ['ready', 'ready', 'ready']);
    assert.deepEqual(ready.map((r) => r.right), [hellos[1].local, peers[2], hellos[0].local]);
    assert.match(String(hellos[0].local), /^ipc:\/\//);

    // Length 100 003 is not divisible by 3: chunks of 33 334 / 33 334 / 33 335 elements.
    const length = 100_003;
    children.forEach((c, rank) => c.send({ kind: 'reduce', step: 0, length, seed: SEEDS[rank], average: true, timeoutMs: 20_000 }));
    const replies = await Promise.all(children.map((c) => c.next()));
    for (const r of replies) assert.equal(r.kind, 'result', `${r.code}: ${r.message}`);
    const bytes = replies.map((r) => Buffer.from(r.bytes as string, 'base64'));
    assert.ok(bytes[0].equals(bytes[1]) && bytes[0].equals(bytes[2]), 'bit-identical across processes');
    const result = new Float32Array(bytes[0].buffer, bytes[0].byteOffset, length);
    const inputs = SEEDS.map((s) => seededInput(s, length));
    // Reference: Float64 mean; tolerance (N+1)·2^-24·mean|x| (float32 summation bound, Higham §4.2).
    for (let i = 0; i < length; i++) {
      const mean = (inputs[0][i] + inputs[1][i] + inputs[2][i]) / 3;
      const abs = (Math.abs(inputs[0][i]) + Math.abs(inputs[1][i]) + Math.abs(inputs[2][i])) / 3;
      assert.ok(Math.abs(result[i] - mean) <= 4 * 2 ** -24 * abs + 1e-30, `element ${i}: ${result[i]} vs ${mean}`);
    }

    // 6 MB: many slices in flight, zero-copy all-gather and receipt tokens across processes.
    const big = 1_500_001;
    children.forEach((c, rank) => c.send({ kind: 'reduce', step: 2, length: big, seed: SEEDS[rank], average: false, timeoutMs: 60_000 }));
    const bigReplies = await Promise.all(children.map((c) => c.next()));
    for (const r of bigReplies) assert.equal(r.kind, 'result', `${r.code}: ${r.message}`);
    const bigBytes = bigReplies.map((r) => Buffer.from(r.bytes as string, 'base64'));
    assert.ok(bigBytes[0].equals(bigBytes[1]) && bigBytes[0].equals(bigBytes[2]), 'bit-identical across processes (6 MB)');
    const sum = new Float32Array(bigBytes[0].buffer, bigBytes[0].byteOffset, big);
    const bigInputs = SEEDS.map((s) => seededInput(s, big));
    for (let i = 0; i < big; i += 997) {
      const exact = bigInputs[0][i] + bigInputs[1][i] + bigInputs[2][i];
      const abs = Math.abs(bigInputs[0][i]) + Math.abs(bigInputs[1][i]) + Math.abs(bigInputs[2][i]);
      assert.ok(Math.abs(sum[i] - exact) <= 3 * 2 ** -24 * abs + 1e-30, `element ${i}: ${sum[i]} vs ${exact}`);
    }

    // Ranks 0 and 1 enter a call; rank 2 is SIGKILLed instead of joining: they must fail with ERR_TIMEOUT.
    children.slice(0, 2).forEach((c, rank) => c.send({ kind: 'reduce', step: 1, length, seed: SEEDS[rank], average: false, timeoutMs: 1500 }));
    children[2].proc.kill('SIGKILL');
    const failed = await Promise.all(children.slice(0, 2).map((c) => c.next()));
    for (const r of failed) assert.equal(r.code, 'ERR_TIMEOUT', `${r.kind}: ${r.message}`);
    // (No bound on how soon: a loaded machine stretches it. A hang fails on next()'s own 30 s guard.)

    const exits = children.slice(0, 2).map((c) => once(c.proc, 'exit'));
    children.slice(0, 2).forEach((c) => c.send({ kind: 'exit' }));
    const codes = await Promise.all(exits);
    assert.deepEqual(codes.map(([code]) => code), [0, 0], 'survivors close their sockets and exit cleanly');
  } finally {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  }
});
