/**
 * A stale native addon (built before a `git pull` changed `native/*.cc`, not rebuilt since) is refused before its
 * first call: `--backend auto` falls back, saying why and how to rebuild, in its one backend line; an explicit
 * `--backend native` stops with ERR_BACKEND naming `npm run build:native`, in the worker and, before the data check,
 * in the coordinator. The stale addons are stubs named by `PETS_NATIVE_ADDON` (CommonJS modules, which `require`
 * loads like a `.node`): one without `reduce` (the function the last pull added), one with every function but
 * another source stamp. Their `init` throws, so a test would fail if the loader called it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADDON_FUNCTIONS, addonPath, addonProblem, nativeSourceHash, REBUILD_COMMAND } from '../../../../src/training/compute/native/addon.js';

const root = join(import.meta.dirname, '..', '..', '..', '..');

/** A stub addon with every function but those in `without`, and `stamp` as its source stamp (null: none). */
function stubAddon(dir: string, name: string, without: readonly string[], stamp: string | null): string {
  const fns = ADDON_FUNCTIONS.filter((f) => !without.includes(f)).map((f) => `exports.${f} = () => { throw new Error('stub ${f} called'); };`);
  const file = join(dir, `${name}.cjs`);
  writeFileSync(file, `${fns.join('\n')}\n${stamp === null ? '' : `exports.sourceHash = ${JSON.stringify(stamp)};\n`}`);
  return file;
}

/** Runs `script` (ES module source, run from the project root under tsx) with `PETS_NATIVE_ADDON=addon`. */
function runWith(addon: string, script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script],
    { cwd: root, env: { ...process.env, PETS_NATIVE_ADDON: addon }, timeout: 170_000 },
    (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr })));
}

const INIT = (request: string): string => `const m = await import('./src/training/compute/backend.ts');
try { const c = await m.initBackend('${request}'); console.log(JSON.stringify({ kind: c.kind, summary: c.summary })); }
catch (err) { console.log(JSON.stringify({ code: err.code, message: err.message })); }`;

test('nativeSourceHash: SHA-256 over name NUL content NUL of the .cc and .h files in name order, 16 hex digits', () => {
  const dir = mkdtempSync(join(tmpdir(), 'native-src-'));
  try {
    assert.equal(nativeSourceHash(dir), null, 'no sources: unknown');
    writeFileSync(join(dir, 'b.cc'), 'int b;\n');
    writeFileSync(join(dir, 'a.h'), '#pragma once\n');
    writeFileSync(join(dir, 'notes.txt'), 'not a source');
    // By hand, from the rule's statement (a.h sorts before b.cc).
    const expected = createHash('sha256').update('a.h\0#pragma once\n\0b.cc\0int b;\n\0').digest('hex').slice(0, 16);
    assert.equal(nativeSourceHash(dir), expected);
    writeFileSync(join(dir, 'notes.txt'), 'changed');
    assert.equal(nativeSourceHash(dir), expected, 'other files do not count');
    writeFileSync(join(dir, 'b.cc'), 'int b = 1;\n');
    assert.notEqual(nativeSourceHash(dir), expected, 'a changed source changes the stamp');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.match(nativeSourceHash() ?? '', /^[0-9a-f]{16}$/, 'the project\'s native/ is found above the module');
});

test('addonProblem names the missing functions, or the stamps, and the rebuild command', () => {
  const all = Object.fromEntries(ADDON_FUNCTIONS.map((f) => [f, () => undefined]));
  assert.equal(addonProblem({ ...all, sourceHash: 'abc' }, '/x.node', 'abc'), null);
  assert.equal(addonProblem(all, '/x.node', null), null, 'sources unknown: only the functions are checked');
  const { reduce: _r, compareStrided: _c, ...old } = all;
  assert.equal(addonProblem({ ...old, sourceHash: 'abc' }, '/x.node', 'abc'),
    'native addon /x.node is stale: it lacks compareStrided, reduce; rebuild it with `npm run build:native`');
  assert.equal(addonProblem({ ...all, sourceHash: 'abc' }, '/x.node', 'def'),
    'native addon /x.node is stale: it was built from other sources (stamp abc, native/ now def); rebuild it with `npm run build:native`');
  assert.match(addonProblem(all, '/x.node', 'def') ?? '', /stamp none, native\/ now def/);
  assert.equal(REBUILD_COMMAND, 'npm run build:native', 'the command the README and package.json name');
});

test('the addon that `npm run build:native` built carries the stamp of the sources beside it', (t) => {
  const built = addonPath({});
  if (built === null) {
    t.skip('native addon not built here (no libdnnl-dev or g++)');
    return;
  }
  const stamp = (createRequire(import.meta.url)(built) as { sourceHash?: string }).sourceHash;
  assert.equal(stamp, nativeSourceHash(), `${built} is older than native/*.cc: run npm run build:native`);
});

test('a stale addon under --backend auto: not used, and the one backend line says why and how to rebuild', { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stale-addon-'));
  try {
    const r = await runWith(stubAddon(dir, 'no-reduce', ['reduce'], nativeSourceHash()), INIT('auto'));
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { kind: string; summary: string };
    assert.notEqual(out.kind, 'native');
    assert.equal(out.summary.includes('\n'), false, 'one line');
    assert.ok(out.summary.includes(`native addon ${join(dir, 'no-reduce.cjs')} is stale: it lacks reduce; rebuild it with \`npm run build:native\``), out.summary);
    assert.doesNotMatch(r.stdout + r.stderr, /stub \w+ called|is not a function/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a stale addon under an explicit --backend native: ERR_BACKEND naming the rebuild command, nothing called', { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stale-addon-'));
  try {
    for (const [file, why] of [[stubAddon(dir, 'no-reduce', ['reduce'], nativeSourceHash()), 'it lacks reduce'],
      [stubAddon(dir, 'old-stamp', [], '0123456789abcdef'), `it was built from other sources (stamp 0123456789abcdef, native/ now ${nativeSourceHash()})`]] as const) {
      const r = await runWith(file, INIT('native'));
      const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { code: string; message: string };
      assert.equal(out.code, 'ERR_BACKEND');
      assert.equal(out.message, `--backend native requested but unavailable: native addon ${file} is stale: ${why}; rebuild it with \`npm run build:native\`.`);
      assert.doesNotMatch(r.stdout + r.stderr, /stub \w+ called/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the coordinator refuses --backend native with a stale addon before the data check and before any worker', { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stale-addon-'));
  try {
    const addon = stubAddon(dir, 'no-reduce', ['reduce'], nativeSourceHash());
    mkdirSync(join(dir, 'data'));
    const script = `const { main } = await import('./src/coordinator/cli.ts');
process.exitCode = await main(['--workers', '1', '--data', ${JSON.stringify(join(dir, 'data'))}, '--pretrained', 'none', '--backend', 'native',
  '--metrics-port', '-1', '--bind', 'tcp://127.0.0.1:0', '--run-dir', ${JSON.stringify(join(dir, 'run'))}, '--plain']);`;
    const r = await runWith(addon, script);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const text = r.stdout + r.stderr;
    assert.ok(text.includes(`ERR_BACKEND: --backend native requested but unavailable: native addon ${addon} is stale: it lacks reduce; rebuild it with \`npm run build:native\`.`), text);
    // Stopped before the data check (the empty data folder would be an error of its own) and before any worker.
    assert.doesNotMatch(text, /^data:|worker/m);
    assert.equal(existsSync(join(dir, 'run')), false, 'no run directory left behind');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
