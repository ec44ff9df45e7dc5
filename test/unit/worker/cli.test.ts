import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTrainerError } from '../../../src/contract/errors.js';
import * as zmq from 'zeromq';
import { curveKeyProblem } from '../../../src/contract/curve-key.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataBindWarning, main, parseWorkerArgs } from '../../../src/worker/cli.js';

test('worker flags: defaults, remote-worker flags, and bad values naming flag and rule', () => {
  const d = parseWorkerArgs(['--connect', 'tcp://10.0.0.5:5555']);
  assert.deepEqual(d, {
    connect: 'tcp://10.0.0.5:5555', backend: 'auto', dataRoot: null, rank: null, dataBind: 'tcp://127.0.0.1:*',
    heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 10000, curveServerKey: null,
  });
  const pets = mkdtempSync(join(tmpdir(), 'worker-cli-'));
  const r = parseWorkerArgs(['--connect', 'tcp://h:1', '--data', pets, '--rank', '3', '--data-bind', 'tcp://10.0.0.6:*', '--curve-server-key', 'k'.repeat(40)]);
  assert.equal(r.dataRoot, pets);
  assert.equal(r.rank, 3);
  assert.equal(r.dataBind, 'tcp://10.0.0.6:*');
  assert.equal(r.curveServerKey, 'k'.repeat(40));
  rmSync(pets, { recursive: true, force: true });
  const bad = (args: string[], re: RegExp): void => assert.throws(() => parseWorkerArgs(args), (e) => isTrainerError(e) && re.test(e.message));
  bad(['--connect', 'http://x:1'], /^--connect must be tcp:\/\/host:port or ipc:\/\/path, got "http:\/\/x:1"$/);
  // New-user tryout: the coordinator's address typed without its scheme is answered with the form to write.
  bad(['--connect', '10.0.0.5:5555'], /^--connect must be tcp:\/\/host:port or ipc:\/\/path, got "10\.0\.0\.5:5555" \(did you mean tcp:\/\/10\.0\.0\.5:5555\?\)$/);
  bad(['--connect', 'tcp://x:1', '--data-bind', 'tcp://x'], /^--data-bind must be tcp:\/\/host:port or tcp:\/\/host:\*/);
  bad(['--connect', 'tcp://x:1', '--heartbeat-interval-ms', '500', '--heartbeat-timeout-ms', '900'], /^--heartbeat-timeout-ms must be an integer in \[1000, 86400000\], got 900$/);
  // Beyond Node's timer range (2^31 − 1 ms) a timer fires after 1 ms: the worker would declare its coordinator lost at once.
  bad(['--connect', 'tcp://x:1', '--heartbeat-timeout-ms', '3000000000'], /^--heartbeat-timeout-ms must be an integer in \[2000, 86400000\], got 3000000000$/);
  bad(['--connect', 'tcp://x:1', '--heartbeat-interval-ms', '3000000000'], /^--heartbeat-interval-ms must be an integer in \[10, 86400000\], got 3000000000$/);
  bad(['--connect', 'tcp://x:1', '--rank', '-1'], /^--rank must be an integer ≥ 0/);
  // ZeroMQ would silently use 99999 mod 65536 = 34463 (measured with zeromq 6).
  bad(['--connect', 'tcp://127.0.0.1:99999'], /^--connect port must be an integer in \[0, 65535\], got 99999$/);
  bad(['--connect', 'tcp://x:1', '--data-bind', 'tcp://127.0.0.1:70000'], /^--data-bind port must be an integer in \[0, 65535\], got 70000$/);
});

test('--curve-server-key: a key zeromq would refuse is a bad flag naming the flag and why (it crashed with a bare EINVAL stack)', () => {
  // Before: `worker --connect … --curve-server-key xyz` died in the socket's construction with
  // 'Error: Invalid argument … at Dealer.set' and exit 1. The rule is zeromq's own: each key below is checked against
  // a real socket's option setter, so the check refuses exactly what libzmq refuses.
  const good = zmq.curveKeyPair().publicKey;
  const keys = [good, 'k'.repeat(40), 'xyz', good.slice(0, 39), `${good.slice(0, 39)} `, '#'.repeat(40), `${'#'.repeat(5)}${good.slice(5)}`, `${'%nSia'}${good.slice(5)}`];
  const socket = new zmq.Dealer();
  try {
    for (const key of keys) {
      let zmqRefuses = false;
      try {
        socket.curveServerKey = key;
      } catch {
        zmqRefuses = true;
      }
      assert.equal(curveKeyProblem(key) !== null, zmqRefuses, `${JSON.stringify(key)}: ${curveKeyProblem(key)}`);
    }
  } finally {
    socket.close();
  }
  assert.equal(parseWorkerArgs(['--connect', 'tcp://h:1', '--curve-server-key', good]).curveServerKey, good);
  assert.throws(() => parseWorkerArgs(['--connect', 'tcp://h:1', '--curve-server-key', 'xyz']), (e) => isTrainerError(e, 'ERR_BAD_FLAG')
    && e.message === '--curve-server-key must be the coordinator\'s 40-character Z85 public key (the coordinator prints it; its --curve-keys folder holds it in coordinator.key), got "xyz": it has 3 characters, a Z85 key has 40');
  assert.throws(() => parseWorkerArgs(['--connect', 'tcp://h:1', '--curve-server-key', '#'.repeat(40)]), (e) => isTrainerError(e, 'ERR_BAD_FLAG')
    && /: characters 1-5 \(#####\) encode 4437053124, more than 32 bits$/.test(e.message));
});

test('worker --data naming no folder is a bad flag before the worker joins: exit 2 naming --data and the rule', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'worker-data-'));
  try {
    writeFileSync(join(dir, 'file.txt'), 'x');
    const rule = '--data must be this machine\'s copy of the coordinator\'s data, a folder of images or a folder holding images/, got ';
    const refused = (data: string, why: string): void => assert.throws(() => parseWorkerArgs(['--connect', 'tcp://h:1', '--data', data]),
      (e) => isTrainerError(e, 'ERR_BAD_FLAG') && e.message === `${rule}${JSON.stringify(data)}: ${why}`);
    refused('/nonexistent', 'no such folder');
    refused(join(dir, 'file.txt'), 'it is a file, not a folder');
    refused(join(dir, 'file.txt', 'images'), 'a part of the path is a file, not a folder');
    // The process: exit 2 before any connection (nothing listens on port 1; a worker that tried to join would wait).
    const lines: string[] = [];
    const original = console.error;
    console.error = (line: string) => { lines.push(line); };
    try {
      assert.equal(await main(['--connect', 'tcp://127.0.0.1:1', '--data', '/nonexistent']), 2);
    } finally {
      console.error = original;
    }
    assert.deepEqual(lines, [`worker: ERR_BAD_FLAG: ${rule}"/nonexistent": no such folder`]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a mistyped flag is reported as unknown before --connect is missed; a missing --connect is named with what it takes', () => {
  // New-user tryout: `worker --conect tcp://…` (and `worker --bogus`) said "required option '--connect <endpoint>' not
  // specified": commander checks required options before unknown ones.
  for (const args of [['--conect', 'tcp://127.0.0.1:5555'], ['--bogus']]) {
    assert.throws(() => parseWorkerArgs(args), (e: unknown) => (e as { code?: string }).code === 'commander.unknownOption', args.join(' '));
  }
  assert.throws(() => parseWorkerArgs([]), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /^--connect <endpoint> is required: the coordinator's address/.test(e.message));
});

test('dataBindWarning: a worker joining a coordinator on another machine with its data plane on loopback is told to pass --data-bind', () => {
  // New-user tryout: the printed join command (npx worker --connect tcp://10.0.0.5:5555 --data …), run as printed on
  // another machine, bound the ring on 127.0.0.1, which its neighbours on other machines cannot reach; nothing said so.
  assert.equal(dataBindWarning('tcp://10.0.0.5:5555', 'tcp://127.0.0.1:*', ['127.0.0.1', '10.0.0.7']),
    "--data-bind tcp://127.0.0.1:*: the ring's data plane listens on loopback, which workers on other machines cannot reach; the coordinator (tcp://10.0.0.5:5555) is on another machine, so pass --data-bind 'tcp://<this host's address>:*'");
  assert.match(dataBindWarning('tcp://coord.example:5555', 'tcp://localhost:7000', ['127.0.0.1']) ?? '', /^--data-bind tcp:\/\/localhost:7000: /);
  // A coordinator at one of this host's own addresses (the printed command, run on the coordinator's machine) is local.
  assert.equal(dataBindWarning('tcp://10.0.0.7:5555', 'tcp://127.0.0.1:*', ['127.0.0.1', '10.0.0.7']), null);
  // The coordinator on loopback (local workers), or a data plane on a reachable address: nothing to say.
  assert.equal(dataBindWarning('tcp://127.0.0.1:5555', 'tcp://127.0.0.1:*'), null);
  assert.equal(dataBindWarning('tcp://localhost:5555', 'tcp://127.0.0.1:*'), null);
  assert.equal(dataBindWarning('tcp://10.0.0.5:5555', 'tcp://10.0.0.7:*'), null);
  assert.equal(dataBindWarning('ipc:///tmp/coord', 'tcp://127.0.0.1:*'), null);
});
