/**
 * The optional addon build (`scripts/build-native.mjs`, npm's install step): a failed build never fails the
 * install, says why in one line, and leaves an existing addon in place; `--strict` reports the failure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..', '..', '..');
const script = join(root, 'scripts', 'build-native.mjs');
const addon = join(root, 'native', 'build', 'pets_dnnl.node');

function build(args: string[], env: NodeJS.ProcessEnv): { status: number | null; stdout: string } {
  const res = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: res.status, stdout: res.stdout };
}

test('a missing compiler: exit 0, one line naming the cause and the fallback, existing addon untouched', () => {
  const before = existsSync(addon) ? statSync(addon).mtimeMs : null;
  const res = build([], { CXX: '/nonexistent/g++' });
  assert.equal(res.status, 0);
  const lines = res.stdout.trim().split('\n');
  assert.equal(lines.length, 1, res.stdout);
  assert.match(lines[0]!, /^native backend: not built \((.*g\+\+.*ENOENT|oneDNN headers not found|Node headers).*the trainer will use WASM/);
  assert.equal(existsSync(addon) ? statSync(addon).mtimeMs : null, before);
});

test('--strict turns a failed build into exit 1', () => {
  assert.equal(build(['--strict'], { CXX: '/nonexistent/g++' }).status, 1);
});
