// Failure modes of the distributed runtime, with real processes on loopback: ports in use, an unreachable
// coordinator, a coordinator of another protocol version, and replicas that stop being bit-identical (the
// checksum compared at every epoch-end checkpoint must stop the run with a clear error).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import * as zmq from 'zeromq';
import { PROTOCOL_VERSION, decode } from '../../src/contract/protocol/index.js';
import { killAll, makePhotoDir, startProc, tinyRunFlags } from './distributed-harness.js';

let dataDir: string, tmp: string;

before(() => {
  dataDir = makePhotoDir(4, 5);
  tmp = mkdtempSync(join(tmpdir(), 'dist-fail-'));
});

after(async () => {
  await killAll();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
});

/** A TCP server holding a loopback port. */
async function holdPort(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const { port } = server.address() as net.AddressInfo;
  return { port, close: () => new Promise((res) => server.close(() => res())) };
}

test('ports in use: the coordinator and a worker say ERR_PORT_IN_USE, name the address and exit non-zero', { timeout: 120_000 }, async () => {
  const held = await holdPort();
  try {
    const flags = tinyRunFlags(dataDir, join(tmp, 'busy'), ['--workers', '0', '--expect', '1']).map((f) => (f === 'tcp://127.0.0.1:0' ? `tcp://127.0.0.1:${held.port}` : f));
    const coord = startProc('coordinator', flags);
    const worker = startProc('worker', ['--connect', 'tcp://127.0.0.1:1', '--backend', 'wasm', '--data-bind', `tcp://127.0.0.1:${held.port}`]);
    assert.equal(await coord.exited, 1, coord.output());
    assert.match(coord.output(), new RegExp(`ERR_PORT_IN_USE: --bind tcp://127.0.0.1:${held.port}: the port is already in use`));
    assert.equal(await worker.exited, 1, worker.output());
    assert.match(worker.output(), new RegExp(`ERR_PORT_IN_USE: cannot bind data plane on tcp://127.0.0.1:${held.port}`));
  } finally {
    await held.close();
  }
});

test('an unreachable coordinator: the worker exits with code 3 after its heartbeat timeout and says why', { timeout: 60_000 }, async () => {
  const held = await holdPort();
  await held.close();
  const started = Date.now();
  const worker = startProc('worker', ['--connect', `tcp://127.0.0.1:${held.port}`, '--backend', 'wasm', '--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '1500']);
  assert.equal(await worker.exited, 3, worker.output());
  assert.ok(Date.now() - started >= 1500, 'not before the timeout');
  assert.match(worker.output(), new RegExp(`ERR_WORKER_LOST: coordinator never answered \\(is it running and reachable at tcp://127.0.0.1:${held.port}\\?`));
});

test('a coordinator of another protocol version: the worker prints its refusal and exits 1', { timeout: 60_000 }, async () => {
  const router = new zmq.Router({ linger: 0 });
  await router.bind('tcp://127.0.0.1:*');
  const worker = startProc('worker', ['--connect', router.lastEndpoint!, '--backend', 'wasm', '--heartbeat-timeout-ms', '20000']);
  const packr = new Packr({ useRecords: false });
  const message = `protocol version mismatch: this coordinator speaks v${PROTOCOL_VERSION + 1}, the worker sent v${PROTOCOL_VERSION}`;
  for (;;) {
    const [id, head] = await router.receive();
    if (id!.toString().endsWith('/hb')) continue;
    assert.equal(decode([head!]).message.type, 'hello');
    await router.send([id!, packr.pack({ v: PROTOCOL_VERSION + 1, type: 'error', code: 'ERR_PROTOCOL', message, rank: -1, futureField: [1, 2] })]);
    break;
  }
  assert.equal(await worker.exited, 1, worker.output());
  router.close();
  assert.match(worker.output(), new RegExp(`coordinator refused this worker: ERR_PROTOCOL: ${message}`));
});

test('replicas that diverge (chaos hook on rank 1) stop the run at the epoch-end checksum with ERR_REPLICA_MISMATCH', { timeout: 180_000 }, async () => {
  const coord = startProc('coordinator', tinyRunFlags(dataDir, join(tmp, 'diverge'), ['--workers', '2', '--epochs', '1', '--no-lr-find', '--fine-tune-epochs', '1']), { TRAINER_TEST_DIVERGE_RANK: '1' });
  assert.equal(await coord.exited, 1, coord.output().slice(-3000));
  assert.match(coord.output(), /ERR_REPLICA_MISMATCH: replica checksums differ at step \d+: [0-9a-f]{64}, [0-9a-f]{64}; stopping/);
  assert.doesNotMatch(coord.output(), /saved .*stage-1/, 'nothing is saved from diverged replicas');
});

test('a run that fails before its first checkpoint (no images) leaves no empty run directory behind', { timeout: 120_000 }, async () => {
  const empty = join(tmp, 'no-images');
  mkdirSync(join(empty, 'images'), { recursive: true });
  const runDir = join(tmp, 'runs', 'failed');
  const coord = startProc('coordinator', tinyRunFlags(empty, runDir, ['--workers', '1']));
  // Data that cannot be trained is a bad input, found before any worker starts: exit 2 (docs/data.md).
  assert.equal(await coord.exited, 2, coord.output());
  assert.match(coord.output(), /ERR_BAD_DATA/);
  assert.doesNotMatch(coord.output(), /coordinator listening|^metrics:/m, 'nothing about ports is printed before a data error');
  assert.match(coord.output(), /removed \S+failed \(and \S+runs, which it created, now empty\): the run ended before its first checkpoint/);
  assert.equal(existsSync(runDir), false, 'no runs/<date-time> folder left');
  assert.equal(existsSync(join(tmp, 'runs')), false, 'nor the runs/ folder the run created for it');
});

test('a remote worker started with the wrong --data is refused and exits 1 saying why; the run waits for a worker with the right data and finishes', { timeout: 240_000 }, async () => {
  // What torchrun and Ray Train do with a bad node: the rendezvous goes on. The run used to end at its start
  // (ERR_DATA from that worker's setup), and the worker was left waiting for its coordinator.
  const wrong = join(tmp, 'wrong-data');
  mkdirSync(join(wrong, 'images'), { recursive: true });
  const coord = startProc('coordinator', tinyRunFlags(dataDir, join(tmp, 'refused'), ['--workers', '1', '--expect', '2', '--epochs', '1', '--no-lr-find', '--fine-tune-epochs', '1']));
  const endpoint = (await coord.waitFor(/coordinator listening on (tcp:\/\/\S+);/, 60_000))[1]!;
  const common = ['--connect', endpoint, '--backend', 'wasm', '--heartbeat-interval-ms', '500', '--heartbeat-timeout-ms', '20000'];
  const bad = startProc('worker', [...common, '--data', wrong]);
  assert.equal(await bad.exited, 1, bad.output().slice(-3000));
  assert.match(bad.output(), /coordinator refused this worker: ERR_DATA: the worker pid \d+ on \S+ cannot serve this run: its setup failed there \(setup: worker --data \S*wrong-data: item \S+ not found in \S*wrong-data or \S*wrong-data\/images; pass --data/);
  await coord.waitFor(/refused the worker pid \d+ on \S+ cannot serve this run: .*; waiting for another worker in its place: start one with npx worker --connect/, 60_000);
  const good = startProc('worker', [...common, '--data', dataDir]);
  assert.equal(await coord.exited, 0, coord.output().slice(-4000));
  assert.equal(await good.exited, 0, good.output().slice(-2000));
  assert.match(coord.output(), /saved \S+stage-2\.safetensors/);
});

/** Holds `port` on 127.0.0.1 if it is free; when another process holds it already, that serves the test as well. */
async function holdIfFree(port: number): Promise<() => Promise<void>> {
  const server = net.createServer();
  const ok = await new Promise<boolean>((res) => {
    server.once('error', () => res(false));
    server.listen(port, '127.0.0.1', () => res(true));
  });
  return ok ? () => new Promise((res) => server.close(() => res())) : async () => undefined;
}

/** `flags` without `--bind X` and `--metrics-port X`, as a user who never chose a port runs it. */
function withDefaultPorts(flags: readonly string[]): string[] {
  return flags.filter((f, i) => !['--bind', '--metrics-port'].includes(f) && !['--bind', '--metrics-port'].includes(flags[i - 1] ?? ''));
}

test('a second run on the host: the default ports 5555 and 9464 are taken, free ones are used and printed; a port asked for stays an error', { timeout: 120_000 }, async () => {
  const release = await Promise.all([holdIfFree(5555), holdIfFree(9464)]);
  try {
    const coord = startProc('coordinator', withDefaultPorts(tinyRunFlags(dataDir, join(tmp, 'second'), ['--workers', '0', '--expect', '1'])));
    const control = await coord.waitFor(/control: the default port 5555 is taken \(another run on this host\?\), so this run listens on (tcp:\/\/127\.0\.0\.1:(\d+)): remote workers join with npx worker --connect (\S+), or choose the port with --bind/, 60_000);
    assert.notEqual(control[2], '5555');
    assert.equal(control[3], control[1]);
    const metrics = await coord.waitFor(/metrics: the default port 9464 is taken \(another run on this host\?\), so this run serves \/metrics on the free port (\d+): add 127\.0\.0\.1:(\d+) to Prometheus's scrape targets/, 60_000);
    assert.equal(metrics[2], metrics[1]);
    assert.notEqual(metrics[1], '9464');
    await coord.waitFor(new RegExp(`coordinator listening on ${control[1]!.replace(/\./g, '\\.')};`), 60_000);
    const res = await fetch(`http://127.0.0.1:${metrics[1]}/metrics`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /^pets_/m);
    coord.kill();

    const asked = startProc('coordinator', [...withDefaultPorts(tinyRunFlags(dataDir, join(tmp, 'asked'), ['--workers', '0', '--expect', '1'])), '--metrics-port', '9464']);
    assert.equal(await asked.exited, 1, asked.output());
    assert.match(asked.output(), /ERR_PORT_IN_USE: --metrics-host 127\.0\.0\.1 --metrics-port 9464: port 9464 is already in use/);
  } finally {
    for (const r of release) await r();
  }
});
