import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTrainerError } from '../../../src/contract/errors.js';
import { parseWorkerArgs } from '../../../src/worker/cli.js';

test('worker flags: defaults, remote-worker flags, and bad values naming flag and rule', () => {
  const d = parseWorkerArgs(['--connect', 'tcp://10.0.0.5:5555']);
  assert.deepEqual(d, {
    connect: 'tcp://10.0.0.5:5555', backend: 'auto', dataRoot: null, rank: null, dataBind: 'tcp://127.0.0.1:*',
    heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 10000, curveServerKey: null,
  });
  const r = parseWorkerArgs(['--connect', 'tcp://h:1', '--data', '/pets', '--rank', '3', '--data-bind', 'tcp://10.0.0.6:*', '--curve-server-key', 'k'.repeat(40)]);
  assert.equal(r.dataRoot, '/pets');
  assert.equal(r.rank, 3);
  assert.equal(r.dataBind, 'tcp://10.0.0.6:*');
  assert.equal(r.curveServerKey, 'k'.repeat(40));
  const bad = (args: string[], re: RegExp): void => assert.throws(() => parseWorkerArgs(args), (e) => isTrainerError(e) && re.test(e.message));
  bad(['--connect', 'http://x:1'], /^--connect must be tcp:\/\/host:port or ipc:\/\/path, got "http:\/\/x:1"$/);
  bad(['--connect', 'tcp://x:1', '--data-bind', 'tcp://x'], /^--data-bind must be tcp:\/\/host:port or tcp:\/\/host:\*/);
  bad(['--connect', 'tcp://x:1', '--heartbeat-interval-ms', '500', '--heartbeat-timeout-ms', '900'], /^--heartbeat-timeout-ms must be an integer ≥ 1000, got "900"$/);
  bad(['--connect', 'tcp://x:1', '--rank', '-1'], /^--rank must be an integer ≥ 0/);
  // ZeroMQ would silently use 99999 mod 65536 = 34463 (measured with zeromq 6).
  bad(['--connect', 'tcp://127.0.0.1:99999'], /^--connect port must be an integer in \[0, 65535\], got 99999$/);
  bad(['--connect', 'tcp://x:1', '--data-bind', 'tcp://127.0.0.1:70000'], /^--data-bind port must be an integer in \[0, 65535\], got 70000$/);
});
