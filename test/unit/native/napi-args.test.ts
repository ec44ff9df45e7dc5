/**
 * native/napi_args.h, the argument reader of the native modules, through a probe addon built here
 * (napi-args-probe.cc: two handle types, Fig and Pear, and an untagged external): a handle is read back only by the
 * reader of its own type (napi_type_tag_object / napi_check_object_type_tag), anything else is a TypeError naming the
 * argument and the kind it must be, never a pointer cast to the wrong type; integers are JavaScript's safe integers
 * (`Number.isSafeInteger`), anything else a TypeError instead of a truncated value; booleans are booleans. Across
 * modules: a probe handle passed to the shared-memory module and a segment handle passed to the probe are refused.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadShmModule } from '../../../src/worker/allreduce/shm.js';

/** The probe's functions (napi-args-probe.cc). */
interface Probe {
  makeFig(value: number): object;
  makePear(value: number): object;
  makeUntagged(): object;
  readFig(handle: unknown): number;
  readPear(handle: unknown): number;
  i64(x: unknown): number;
  flag(x: unknown): boolean;
}

// Node's headers where scripts/build-native.mjs looks for them (the product's addons are built the same way).
const nodeInclude = [join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node']
  .find((d) => existsSync(join(d, 'node_api.h')));
const cxx = process.env.CXX ?? 'g++';
const hasCompiler = spawnSync(cxx, ['--version']).error === undefined;
const skip = nodeInclude === undefined ? 'Node headers (node_api.h) not found' : !hasCompiler ? `no C++ compiler (${cxx})` : false;

let probe: Probe;

before(() => {
  if (skip !== false) return;
  const dir = mkdtempSync(join(tmpdir(), 'pets-napi-args-'));
  try {
    const out = join(dir, 'probe.node');
    const res = spawnSync(cxx, ['-std=c++17', '-O1', '-fPIC', '-shared', '-Wall', '-Werror', '-DNODE_GYP_MODULE_NAME=probe',
      `-I${nodeInclude}`, join(import.meta.dirname, 'napi-args-probe.cc'), '-o', out], { encoding: 'utf8' });
    // A compiler that is there but fails is a fault of the header (or the probe), not a reason to skip.
    assert.equal(res.status, 0, `${cxx} failed:\n${res.stderr}`);
    probe = createRequire(import.meta.url)(out) as Probe;
  } finally {
    rmSync(dir, { recursive: true, force: true }); // the loaded library stays mapped
  }
});

/** Asserts that `f` throws a TypeError of code `code` whose message is exactly `message`. */
function throwsType(f: () => unknown, message: string, code = 'ERR_PROBE'): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof TypeError, `a TypeError, got ${String(e)}`);
    assert.equal((e as { code?: string }).code, code);
    assert.equal(e.message, message);
    return true;
  });
}

test('a handle is read back by the reader of its own type', { skip }, () => {
  assert.equal(probe.readFig(probe.makeFig(2.5)), 2.5);
  assert.equal(probe.readPear(probe.makePear(-7)), -7);
});

test('another type\'s handle, an untagged external, or no external at all is a TypeError naming the argument and the kind', { skip }, () => {
  throwsType(() => probe.readFig(probe.makePear(1)), 'handle must be a fig handle, got an external of another kind');
  throwsType(() => probe.readPear(probe.makeFig(1)), 'handle must be a pear handle, got an external of another kind');
  throwsType(() => probe.readFig(probe.makeUntagged()), 'handle must be a fig handle, got an external of another kind');
  const others: [unknown, string][] = [[{}, 'an object'], [new Float32Array(2), 'an object'], [3, '3'], [null, 'null'],
    [undefined, 'undefined'], ['fig', 'a string'], [true, 'a boolean'], [() => 0, 'a function'], [1n, 'a bigint']];
  for (const [value, got] of others) throwsType(() => probe.readFig(value), `handle must be a fig handle, got ${got}`);
});

test('an integer argument is a safe integer: fractions, NaN, ±Infinity, beyond 2^53 - 1 and non-numbers are TypeErrors', { skip }, () => {
  // Accepted exactly (Number.isSafeInteger's range), -0 read as 0.
  for (const x of [0, 1, -5, 4096, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]) assert.equal(probe.i64(x), x);
  assert.equal(Object.is(probe.i64(-0), 0), true);
  // Before, napi_get_value_int64 read 2.5 as 2, NaN and ±Infinity as 0 / INT64 bounds and 2^53 + 2 as itself rounded.
  const refused: [unknown, string][] = [[2.5, '2.5'], [-0.5, '-0.5'], [Number.NaN, 'NaN'], [Infinity, 'Infinity'],
    [-Infinity, '-Infinity'], [2 ** 53, '9007199254740992'], [-(2 ** 53), '-9007199254740992'], [1e300, '1e+300'],
    ['3', 'a string'], [true, 'a boolean'], [undefined, 'undefined'], [null, 'null'], [3n, 'a bigint']];
  for (const [x, got] of refused) throwsType(() => probe.i64(x), `count must be an integer (Number.isSafeInteger), got ${got}`);
});

test('a boolean argument is a boolean, not a silent false for 1 or \'true\'', { skip }, () => {
  assert.equal(probe.flag(true), true);
  assert.equal(probe.flag(false), false);
  for (const [x, got] of [[1, '1'], [0, '0'], ['true', 'a string'], [undefined, 'undefined'], [null, 'null']] as const) {
    throwsType(() => probe.flag(x), `enabled must be a boolean, got ${got}`);
  }
});

test('across modules: a probe handle passed to the shared-memory module, and a segment handle passed to the probe, are TypeErrors', { skip }, (t) => {
  const load = loadShmModule();
  if ('reason' in load) {
    t.skip(load.reason);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'pets-napi-args-shm-'));
  try {
    const segment = load.module.open(join(dir, 'pets-shm-probe'), 2, 0, 1024);
    const fig = probe.makeFig(1) as never;
    const expected = 'handle must be a shared-memory segment handle (from open()), got an external of another kind';
    throwsType(() => load.module.close(fig), `close: ${expected}`, 'ERR_SHM');
    throwsType(() => load.module.abort(fig, 'x'), `abort: ${expected}`, 'ERR_SHM');
    throwsType(() => load.module.reduce(fig, new Float32Array(4), false, 0, 0, 1000), `reduce: ${expected}`, 'ERR_SHM');
    throwsType(() => probe.readFig(segment), 'handle must be a fig handle, got an external of another kind');
    assert.equal(load.module.close(segment), true, 'the segment itself is still a segment');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
