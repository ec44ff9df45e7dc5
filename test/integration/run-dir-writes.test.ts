/**
 * A run directory that takes no more bytes (a full disk, a quota, a file-size limit) when the run writes its first
 * files stops the real `coordinator` with one error naming the flag, the file and the system's reason, exit 2, before
 * any worker starts — not a bare `coordinator: ENOSPC: no space left on device, write` (exit 1) that said neither
 * which file nor what to do (seen by the breaker on a full tmpfs). The limit is the process's own file-size limit
 * (`ulimit -f`, RLIMIT_FSIZE: a write past it fails with EFBIG, as one past a full disk fails with ENOSPC), so the test
 * needs no root and no mount.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import { makePetsSubset, PROJECT_ROOT } from './support/coordinator.js';
import { commandModule } from './support/entry.js';

const tmp = mkdtempSync(join(tmpdir(), 'run-dir-writes-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const { data } = makePetsSubset(join(tmp, 'data'), 4);

/** `coordinator <args>` with a file-size limit of `kib` KiB (its output read through pipes, which the limit spares). */
function coordinatorWithFileLimit(kib: number, args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  const m = commandModule('coordinator');
  const code = `const m = await import(${JSON.stringify(pathToFileURL(m.file).href)}); process.exitCode = await m.main(process.argv.slice(1));`;
  const child = spawn('bash', ['-c', `ulimit -f ${kib}; exec "$@"`, 'bash', process.execPath, ...m.execArgv, '--input-type=module', '-e', code, '--', ...args],
    { cwd: PROJECT_ROOT, env: { ...process.env, PETS_TRAINER_CACHE_DIR: join(tmp, 'cache') }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  return new Promise((resolve) => child.once('close', (c) => resolve({ code: c, stderr })));
}

const RUN_ARGS = ['--data', data, '--workers', '1', '--arch', 'resnet10', '--size', '32', '--bs', '2', '--pretrained', 'none',
  '--bind', 'tcp://127.0.0.1:0', '--metrics-port', '-1', '--plain'];

// 0 KiB: the lock (its first file) cannot be written; 1 KiB: the lock can, config.json cannot (nor data.json, under a
// long TMPDIR: its root path is in it).
for (const [kib, file, what] of [[0, '.coordinator.lock', 'its lock'], [1, '(data|config).json', 'data.json or config.json']] as const) {
  test(`a run directory that cannot take ${what}: ERR_BAD_FLAG naming --run-dir, the file and the reason; exit 2; no worker`, { timeout: 300_000 }, async () => {
    const runDir = join(tmp, `run-${kib}`);
    const r = await coordinatorWithFileLimit(kib, [...RUN_ARGS, '--run-dir', runDir]);
    assert.equal(r.code, 2, r.stderr);
    const escaped = `${runDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/${file.replace('.', '\\.')}`;
    assert.match(r.stderr, new RegExp(`coordinator: ERR_BAD_FLAG: --run-dir \\S+: cannot write ${escaped} \\(EFBIG: file too large\\); free some space or lift the limit, or choose another folder with --run-dir`), r.stderr);
    assert.doesNotMatch(r.stderr, /worker process \d+/, 'no worker started');
    assert.ok(!existsSync(runDir) || !readdirSync(runDir).includes('.coordinator.lock'), 'the lock is not left behind');
  });
}
