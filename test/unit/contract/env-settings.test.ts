/**
 * The `PETS_*` tuning settings (contract/env-settings.ts): each one's default when unset or blank, the values it
 * takes, and every other value refused with ERR_BAD_CONFIG naming the variable, its rule and the value. Before,
 * `PETS_NATIVE_THREADS=abc` ran on 1 thread and `PETS_NATIVE_POOL_MIB=-5` kept 1024 MiB, saying nothing; the readers
 * (native addon, array pool, ring sums, WebGPU kernel) use these rules, and both commands check them first.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTrainerError } from '../../../src/contract/errors.js';
import { checkInt } from '../../../src/contract/config.js';
import { shownValue } from '../../../src/contract/shown-value.js';
import {
  checkEnvSettings, inputGradTfjsSetting, nativePoolMibSetting, nativeRetainHeapSetting, nativeThreadsSetting, ringAddJsSetting,
} from '../../../src/contract/env-settings.js';
import { nativeThreads } from '../../../src/training/compute/native/addon.js';
import { poolBytes } from '../../../src/training/compute/native/array-pool.js';
import { JS_RING_MATH, defaultRingMath } from '../../../src/training/allreduce/add.js';

function refused(message: string): (e: unknown) => boolean {
  return (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && e.message === message;
}

test('PETS_NATIVE_THREADS: an integer ≥ 1, unset or blank 1; abc, 0, -2, 1.5 refused naming it and the rule', () => {
  for (const env of [{}, { PETS_NATIVE_THREADS: '' }, { PETS_NATIVE_THREADS: '  ' }]) assert.equal(nativeThreadsSetting(env), 1);
  assert.equal(nativeThreadsSetting({ PETS_NATIVE_THREADS: '4' }), 4);
  assert.equal(nativeThreads({ PETS_NATIVE_THREADS: '2' }), 2, 'the addon reads it through the rule');
  // Numbers unquoted, other text quoted, as the flag and config checks show them (contract/shown-value.ts).
  for (const [value, got] of [['abc', '"abc"'], ['0', '0'], ['-2', '-2'], ['1.5', '1.5'], ['1e3', '1e3'], ['4 threads', '"4 threads"']]) {
    const message = `PETS_NATIVE_THREADS must be an integer ≥ 1 (oneDNN threads per process; unset: 1), got ${got}`;
    assert.throws(() => nativeThreadsSetting({ PETS_NATIVE_THREADS: value }), refused(message), value);
    assert.throws(() => nativeThreads({ PETS_NATIVE_THREADS: value }), refused(message), value);
    assert.throws(() => checkEnvSettings({ PETS_NATIVE_THREADS: value }), refused(message), value);
  }
});

test('PETS_NATIVE_POOL_MIB: an integer ≥ 0 (0: no reuse), unset 1024; -5 and abc refused (they meant 1024)', () => {
  assert.equal(nativePoolMibSetting({}), 1024);
  assert.equal(poolBytes({ PETS_NATIVE_POOL_MIB: '0' }), 0);
  assert.equal(poolBytes({ PETS_NATIVE_POOL_MIB: '64' }), 64 * 2 ** 20);
  for (const [value, got] of [['-5', '-5'], ['abc', '"abc"'], ['0.5', '0.5']]) {
    const message = `PETS_NATIVE_POOL_MIB must be an integer ≥ 0 (MiB of free arrays the native backend keeps for reuse, 0: none; unset: 1024), got ${got}`;
    assert.throws(() => poolBytes({ PETS_NATIVE_POOL_MIB: value }), refused(message), value);
    assert.throws(() => checkEnvSettings({ PETS_NATIVE_POOL_MIB: value }), refused(message), value);
  }
});

test('PETS_NATIVE_RETAIN_HEAP: 0 or 1, unset 1; false and no refused (they meant on)', () => {
  assert.equal(nativeRetainHeapSetting({}), true);
  assert.equal(nativeRetainHeapSetting({ PETS_NATIVE_RETAIN_HEAP: '1' }), true);
  assert.equal(nativeRetainHeapSetting({ PETS_NATIVE_RETAIN_HEAP: '0' }), false);
  for (const [value, got] of [['false', '"false"'], ['no', '"no"'], ['2', '2']]) {
    assert.throws(() => checkEnvSettings({ PETS_NATIVE_RETAIN_HEAP: value }),
      refused(`PETS_NATIVE_RETAIN_HEAP must be 0 (glibc's default malloc settings) or 1 (keep freed heap for reuse; unset: 1), got ${got}`), value);
  }
});

test('PETS_RING_ADD: js or unset; JS and native refused (they ran the native sums)', () => {
  assert.equal(ringAddJsSetting({}), false);
  assert.equal(ringAddJsSetting({ PETS_RING_ADD: 'js' }), true);
  assert.equal(defaultRingMath({ PETS_RING_ADD: 'js' }), JS_RING_MATH);
  for (const value of ['JS', 'native']) {
    const message = `PETS_RING_ADD must be js (the ring's sums in JavaScript; unset: native where built) or unset, got "${value}"`;
    assert.throws(() => defaultRingMath({ PETS_RING_ADD: value }), refused(message), value);
    assert.throws(() => checkEnvSettings({ PETS_RING_ADD: value }), refused(message), value);
  }
});

test('PETS_WEBGPU_INPUT_GRAD: tfjs or unset; TFJS refused (it ran the tiled kernel)', () => {
  assert.equal(inputGradTfjsSetting({}), false);
  assert.equal(inputGradTfjsSetting({ PETS_WEBGPU_INPUT_GRAD: 'tfjs' }), true);
  assert.throws(() => checkEnvSettings({ PETS_WEBGPU_INPUT_GRAD: 'TFJS' }),
    refused('PETS_WEBGPU_INPUT_GRAD must be tfjs (tfjs\'s own WebGPU kernel; unset: this project\'s tiled one) or unset, got "TFJS"'));
});

test('a PETS_* setting and a flag show a refused value alike: numbers unquoted, other text quoted', () => {
  // env-settings showed `got abc`, the flag and config checks `got "abc"`; one formatter now serves both.
  const envGot = (value: string) => {
    try { checkEnvSettings({ PETS_NATIVE_THREADS: value }); } catch (e) { return (e as Error).message.replace(/^.*, got /, ''); }
    throw new Error(`${value} was not refused`);
  };
  const configGot = (value: unknown) => {
    try { checkInt('workers', value, 1); } catch (e) { return (e as Error).message.replace(/^.*, got /, ''); }
    throw new Error(`${String(value)} was not refused`);
  };
  for (const [value, shown] of [['abc', '"abc"'], ['-5', '-5'], ['1.5', '1.5'], ['4 threads', '"4 threads"']]) {
    assert.equal(envGot(value), shown, value);
    assert.equal(configGot(value), shown, value);
    assert.equal(shownValue(value), shown, value);
  }
});

test('checkEnvSettings passes an environment of good or absent settings', () => {
  checkEnvSettings({});
  checkEnvSettings({ PETS_NATIVE_THREADS: '2', PETS_NATIVE_POOL_MIB: '0', PETS_NATIVE_RETAIN_HEAP: '0', PETS_RING_ADD: 'js', PETS_WEBGPU_INPUT_GRAD: 'tfjs', PETS_DAWN_FLAGS: 'anything' });
});

test('both commands refuse a bad setting before they start anything: exit 2 and the one line naming it', async () => {
  // Read only where it is used, PETS_NATIVE_THREADS=abc went unnoticed (and, refused inside a worker's backend
  // set-up, would have ended it as a lost worker).
  const { main: coordinator } = await import('../../../src/coordinator/cli.js');
  const { main: worker } = await import('../../../src/worker/cli.js');
  const saved = process.env.PETS_NATIVE_THREADS;
  const { error } = console;
  const lines: string[] = [];
  process.env.PETS_NATIVE_THREADS = 'abc';
  console.error = (line: string) => { lines.push(line); };
  try {
    // predict of a model that does not exist: the setting is refused before the command looks for it.
    assert.equal(await coordinator(['predict', '/nonexistent/run', '/nonexistent.jpg']), 2);
    assert.equal(await worker(['--connect', 'tcp://127.0.0.1:9']), 2);
  } finally {
    console.error = error;
    if (saved === undefined) delete process.env.PETS_NATIVE_THREADS;
    else process.env.PETS_NATIVE_THREADS = saved;
  }
  const rule = 'PETS_NATIVE_THREADS must be an integer ≥ 1 (oneDNN threads per process; unset: 1), got "abc"';
  assert.deepEqual(lines, [`coordinator: ERR_BAD_CONFIG: ${rule}`, `worker: ERR_BAD_CONFIG: ${rule}`]);
  // --help and --version answer whatever the environment holds (they start nothing).
  const out = console.log;
  console.log = () => undefined;
  process.env.PETS_NATIVE_THREADS = 'abc';
  try {
    assert.equal(await coordinator(['--help']), 0);
    assert.equal(await coordinator(['predict', '--help']), 0);
    assert.equal(await coordinator(['--version']), 0);
  } finally {
    console.log = out;
    if (saved === undefined) delete process.env.PETS_NATIVE_THREADS;
    else process.env.PETS_NATIVE_THREADS = saved;
  }
});
