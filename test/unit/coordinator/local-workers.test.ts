// Local worker death is seen from the process (exit, closed control pipe), both ways, without heartbeats: the
// coordinator hears of a SIGKILLed worker at once, and a worker whose coordinator was SIGKILLed exits by itself.
// No assertion depends on how fast anything happens: each waits for the event (a hang fails on the test timeout).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { LocalWorkers, type WorkerExit, type WorkerLoss } from '../../../src/coordinator/local-workers.js';

/** An endpoint nobody listens on: the workers never hear a heartbeat. */
const NOBODY = 'tcp://127.0.0.1:9';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

test('a SIGKILLed local worker is reported lost from its exit, with its slot; heartbeats are never waited for', { timeout: 120_000 }, async () => {
  // Heartbeat timeout 200 ms, and no coordinator at all: if silence could end a local worker, both would be gone.
  const workers = new LocalWorkers({ endpoint: NOBODY, args: ['--backend', 'cpu', '--heartbeat-interval-ms', '100', '--heartbeat-timeout-ms', '200'], gpus: 0, stdio: 'ignore' });
  const losses: WorkerLoss[] = [];
  workers.on('lost', (l) => losses.push(l));
  try {
    workers.start(2);
    const [pid0, pid1] = [workers.pids().get(0)!, workers.pids().get(1)!];
    assert.equal(workers.slotOf(pid1), 1);
    assert.equal(workers.slotOf(process.pid), null, 'a pid this set did not spawn (e.g. a remote worker) has no slot');
    const lost = once(workers, 'lost') as Promise<[WorkerLoss]>;
    process.kill(pid1, 'SIGKILL');
    const [loss] = await lost;
    assert.equal(loss.slot, 1);
    assert.equal(loss.pid, pid1);
    assert.match(loss.reason, new RegExp(`process ${pid1}( exited on SIGKILL|'s control pipe closed)$`));
    assert.equal(workers.isRunning(pid0), true);
    await once(workers, 'exit');
    assert.equal(workers.isRunning(pid1), false);
    assert.equal(workers.slotOf(pid1), 1, 'the slot of an exited process is still known');
    assert.ok(alive(pid0), 'the silent but alive worker was not ended by its heartbeat timeout');
  } finally {
    await workers.close();
  }
  assert.equal(losses.length, 1, `one loss, none for the closed worker: ${JSON.stringify(losses)}`);
});

test('a local worker whose coordinator is SIGKILLed sees its control pipe close and exits by itself', { timeout: 120_000 }, async () => {
  const fixture = new URL('../../integration/fixtures/local-workers-parent.ts', import.meta.url).pathname;
  // Heartbeat timeout 200 ms in the worker: it must not have exited over silence before the parent is killed.
  const parent = spawn(process.execPath, ['--import', 'tsx', fixture, NOBODY], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  parent.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const [line] = await once(parent.stdout, 'data') as [Buffer];
  const pid = Number(line.toString().trim());
  // Wait until the worker is past its start (it logs its backend line), then take the coordinator away.
  while (!err.includes(`[worker ${pid}]`)) await once(parent.stderr, 'data');
  assert.ok(alive(pid), `the worker outlived its 200 ms heartbeat timeout without a coordinator:\n${err}`);
  parent.kill('SIGKILL');
  await once(parent, 'exit');
  while (alive(pid)) await new Promise((r) => setTimeout(r, 50));
  assert.match(err, /the coordinator process is gone \(its control pipe closed\); exiting/);
});

test('a local worker that fails its backend setup is reported with its own exit code and error, never ended by SIGKILL', { timeout: 120_000 }, async () => {
  // --backend native with PETS_NATIVE_ADDON naming a missing file: the worker's backend setup fails (ERR_BACKEND) and
  // it exits 1 by itself, its control pipe closing just before it ends. Taken for a lost worker, that closing got it
  // SIGKILLed and reported as `exited on SIGKILL`.
  const saved = process.env.PETS_NATIVE_ADDON;
  process.env.PETS_NATIVE_ADDON = '/nonexistent/pets_dnnl.node';
  const workers = new LocalWorkers({ endpoint: NOBODY, args: ['--backend', 'native'], gpus: 0, stdio: 'ignore' });
  try {
    const lost = once(workers, 'lost') as Promise<[WorkerLoss]>;
    const exit = once(workers, 'exit') as Promise<[WorkerExit]>;
    workers.start(1);
    if (saved === undefined) delete process.env.PETS_NATIVE_ADDON;
    else process.env.PETS_NATIVE_ADDON = saved;
    const pid = workers.pids().get(0)!;
    const [e] = await exit;
    assert.deepEqual({ pid: e.pid, code: e.code, signal: e.signal, expected: e.expected }, { pid, code: 1, signal: null, expected: false });
    assert.match(e.error ?? '', /^ERR_BACKEND: --backend native requested but unavailable: native addon "\/nonexistent\/pets_dnnl.node" \(PETS_NATIVE_ADDON\) does not exist/);
    const [loss] = await lost;
    assert.equal(loss.reason, `process ${pid} exited with code 1: ${e.error}`);
  } finally {
    await workers.close();
  }
});

test('a local worker loaded from another build than the coordinator\'s refuses to run, and says so', { timeout: 120_000 }, async () => {
  // The coordinator's build as a dist/ rebuilt since it started would leave it: this worker (from the sources, no
  // build) is not of it. It must stop before its backend or sockets start, exit 1 and tell the coordinator why.
  const workers = new LocalWorkers({ endpoint: NOBODY, args: ['--backend', 'cpu'], gpus: 0, stdio: 'ignore', build: '0123456789abcdef' });
  try {
    const exit = once(workers, 'exit') as Promise<[WorkerExit]>;
    workers.start(1);
    const [e] = await exit;
    assert.deepEqual({ code: e.code, signal: e.signal }, { code: 1, signal: null });
    assert.match(e.error ?? '', /^ERR_STALE_BUILD: this worker's code \(build unstamped\) is not its coordinator's \(build 0123456789abcdef\)/);
  } finally {
    await workers.close();
  }
});

test('retire(pid) frees the slot at once (a replacement can start before the old process is reaped) and its exit is expected: no loss reported', { timeout: 120_000 }, async () => {
  // Review P9: a member the coordinator marks lost while its process still runs (a hung worker) must not keep its
  // slot until its exit is reaped; the exit, whenever it comes, is no loss and no crash before joining.
  const workers = new LocalWorkers({ endpoint: NOBODY, args: ['--backend', 'cpu'], gpus: 0, stdio: 'ignore' });
  const losses: WorkerLoss[] = [];
  const exits: WorkerExit[] = [];
  workers.on('lost', (l) => losses.push(l));
  workers.on('exit', (e) => exits.push(e));
  try {
    workers.start(1);
    const old = workers.pids().get(0)!;
    assert.equal(workers.retire(process.pid), false, 'not a process of this set');
    const exited = once(workers, 'exit') as Promise<[WorkerExit]>;
    assert.equal(workers.retire(old), true);
    assert.equal(workers.isRunning(old), false, 'the slot is free in the same turn');
    assert.deepEqual([...workers.pids()], []);
    assert.equal(workers.retire(old), false, 'idempotent');
    workers.respawn(0);
    const replacement = workers.pids().get(0)!;
    assert.notEqual(replacement, old, 'the replacement starts without waiting for the old exit');
    const [exit] = await exited;
    assert.equal(exit.pid, old);
    assert.equal(exit.expected, true);
    assert.equal(exit.signal, 'SIGKILL');
    assert.equal(workers.isRunning(replacement), true, 'the old exit does not free the replacement\'s slot');
  } finally {
    await workers.close();
  }
  assert.deepEqual(losses, [], 'a retired process is not reported lost');
});
