/**
 * The launchers' open-files check (bin/open-files.js). Seen by the breaker: under `ulimit -n 64` (or 128) the
 * coordinator failed before its first line with `Error: Cannot find package '…/node_modules/d3-array/index.js'`
 * (Node's module loader reporting an EMFILE as a missing package), under 24 with a bare EMFILE stack; 192 ran a
 * 2-worker run. Expected: one line naming the limit, the minimum and how to raise it, exit 1, nothing loaded.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MIN_OPEN_FILES, openFilesProblem, softOpenFiles } from '../../../bin/open-files.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

const limits = (soft: string, hard: string): string =>
  `Limit                     Soft Limit           Hard Limit           Units     \nMax processes             63408                63408                processes \n` +
  `Max open files            ${soft.padEnd(21)}${hard.padEnd(21)}files     \nMax locked memory         8388608              8388608              bytes     \n`;

test('the soft limit is read from /proc/<pid>/limits; unlimited or absent is no limit', () => {
  assert.equal(softOpenFiles(limits('1024', '1048576')), 1024);
  assert.equal(softOpenFiles(limits('unlimited', 'unlimited')), null);
  assert.equal(softOpenFiles('Max processes 5 5 processes\n'), null);
});

test('below the minimum: a message naming the limit, the minimum and the fix; at or above it, or unreadable: none', () => {
  assert.equal(openFilesProblem('coordinator', limits('64', '4096')),
    `the open-files limit of this shell is 64 (ulimit -n), below the ${MIN_OPEN_FILES} coordinator needs (loading its modules alone takes about 190); ` +
    'raise it, e.g. `ulimit -n 4096` (in a container: --ulimit nofile=4096, or LimitNOFILE= in a systemd unit), and start again');
  assert.equal(openFilesProblem('worker', limits(String(MIN_OPEN_FILES), '4096')), null);
  assert.equal(openFilesProblem('worker', null), null, 'not Linux: nothing to check');
});

test('the launchers stop with exit 1 and that line under ulimit -n 64, before loading dist/', { skip: process.platform !== 'linux' && 'reads /proc' }, () => {
  for (const name of ['coordinator', 'worker']) {
    const r = spawnSync('bash', ['-c', `ulimit -n 64 && exec "${process.execPath}" bin/${name}.js --help`], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trim(), `${name}: ${openFilesProblem(name, limits('64', '64'))}`);
  }
});
