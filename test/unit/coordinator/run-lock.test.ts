// One coordinator per run directory (run-lock.ts). Expected behaviour: what git's index.lock and PostgreSQL's
// postmaster.pid do — an exclusive lock file naming its owner; a second user is refused with the owner named; a lock
// whose owner process is gone (same host) is stale and taken over; a lock from another host cannot be checked and is
// refused with the file to delete.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTrainerError } from '../../../src/contract/errors.js';
import { removeFailedRunDir } from '../../../src/coordinator/disk.js';
import { RUN_LOCK_FILE, lockRunDir } from '../../../src/coordinator/run-lock.js';
import { processStartTicks } from '../../../src/contract/process.js';
import { withZombie } from '../support/zombie.js';

function withDir(f: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'run-lock-'));
  try {
    f(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A pid that surely belongs to no running process: one of a child that has exited and been reaped. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

const refused = (re: RegExp) => (err: unknown): boolean => {
  assert.ok(isTrainerError(err), String(err));
  assert.equal(err.code, 'ERR_BAD_FLAG');
  assert.match(err.message, re);
  return true;
};

test('a second coordinator on a run directory in use is refused, naming the owner; after release the directory is free', () => withDir((dir) => {
  const logs: string[] = [];
  const lock = lockRunDir(dir, '--run-dir', (l) => logs.push(l));
  const owner = JSON.parse(readFileSync(join(dir, RUN_LOCK_FILE), 'utf8')) as { pid: number; host: string };
  assert.deepEqual([owner.pid, owner.host], [process.pid, hostname()]);
  // This process is alive: whoever asks next (here the same process, standing for a second coordinator) is refused.
  const other = { ...owner, pid: process.ppid, startTicks: processStartTicks(process.ppid) }; // a live process that is not this one
  writeFileSync(join(dir, RUN_LOCK_FILE), JSON.stringify({ ...other, since: '2026-11-30T08:00:00.000Z' }));
  assert.throws(() => lockRunDir(dir, '--resume', () => undefined),
    refused(new RegExp(`--resume ${dir}: this run directory is in use by coordinator train \\(pid ${process.ppid} on ${hostname()}, since 2026-11-30T08:00:00.000Z\\); two coordinators must not write one run`)));
  // release() removes only its own lock: the (pretend) other owner's file stays.
  lock.release();
  assert.equal(existsSync(join(dir, RUN_LOCK_FILE)), true);
  rmSync(join(dir, RUN_LOCK_FILE));
  const again = lockRunDir(dir, '--run-dir', () => undefined);
  again.release();
  again.release();
  assert.equal(existsSync(join(dir, RUN_LOCK_FILE)), false);
  assert.deepEqual(logs, []);
}));

test('a lock left by a coordinator that died (SIGKILL) is taken over, and the log says so', () => withDir((dir) => {
  const pid = deadPid();
  writeFileSync(join(dir, RUN_LOCK_FILE), JSON.stringify({ pid, host: hostname(), since: '2026-11-30T07:00:00.000Z' }));
  const logs: string[] = [];
  const lock = lockRunDir(dir, '--resume', (l) => logs.push(l));
  assert.equal(JSON.parse(readFileSync(join(dir, RUN_LOCK_FILE), 'utf8')).pid, process.pid);
  assert.deepEqual(logs, [`--resume ${dir}: removed the stale lock of pid ${pid} (started 2026-11-30T07:00:00.000Z, no longer running)`], 'a lock written before locks named their command');
  lock.release();
}));

test('a lock whose pid now names another process (a restarted container: pid 1 again; a reboot) is taken over', () => withDir((dir) => {
  const file = join(dir, RUN_LOCK_FILE);
  const lock = lockRunDir(dir, '--run-dir', () => undefined);
  const mine = JSON.parse(readFileSync(file, 'utf8')) as { pid: number; host: string; startTicks: number; bootId: string };
  assert.equal(mine.startTicks, processStartTicks(process.pid));
  assert.match(mine.bootId, /^[0-9a-f-]{36}$/);
  // The process holding the lock asks again (as a second coordinator with its pid would): refused, it is alive.
  assert.throws(() => lockRunDir(dir, '--run-dir', () => undefined), refused(new RegExp(`in use by coordinator train \\(pid ${process.pid} `)));
  lock.release();
  const stale = [
    // An earlier coordinator with this process's pid (a container restarted: both are pid 1), started earlier.
    { ...mine, startTicks: mine.startTicks - 1 },
    // The same, written before locks recorded the start time.
    { pid: process.pid, host: mine.host },
    // A live process that is not the one that wrote the lock (the pid was reused).
    { ...mine, pid: process.ppid, startTicks: processStartTicks(process.ppid)! + 1 },
    // A lock from before the last reboot, whatever runs under its pid now.
    { ...mine, pid: process.ppid, startTicks: processStartTicks(process.ppid), bootId: '00000000-0000-0000-0000-000000000000' },
  ];
  for (const owner of stale) {
    writeFileSync(file, JSON.stringify({ ...owner, since: '2026-11-30T07:00:00.000Z' }));
    const logs: string[] = [];
    const taken = lockRunDir(dir, '--resume', (l) => logs.push(l));
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).since === '2026-11-30T07:00:00.000Z', false, JSON.stringify(owner));
    assert.deepEqual(logs, [`--resume ${dir}: removed the stale lock of ${'command' in owner ? 'coordinator train ' : ''}pid ${owner.pid} (started 2026-11-30T07:00:00.000Z, no longer running; pid ${owner.pid} is now another process)`]);
    taken.release();
    assert.equal(existsSync(file), false);
  }
}));

test('the lock names the command holding it: a run refused while interpret writes its report is told so (it said "the coordinator pid")', () => withDir((dir) => {
  const file = join(dir, RUN_LOCK_FILE);
  const lock = lockRunDir(dir, 'interpret', () => undefined);
  assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { command: string }).command, 'coordinator interpret');
  lock.release();
  // A live process that is not this one holds it as interpret.
  writeFileSync(file, JSON.stringify({ pid: process.ppid, host: hostname(), since: '2026-11-30T08:00:00.000Z', startTicks: processStartTicks(process.ppid), command: 'coordinator interpret' }));
  assert.throws(() => lockRunDir(dir, '--run-dir', () => undefined), refused(new RegExp(`^--run-dir ${dir}: this run directory is in use by coordinator interpret \\(pid ${process.ppid} on ${hostname()}, since 2026-11-30T08:00:00\\.000Z\\); it writes the run's report: wait for it to end, or choose another --run-dir$`)));
  assert.throws(() => lockRunDir(dir, '--resume', () => undefined), refused(/in use by coordinator interpret \(pid \d+ .*\); it writes the run's report: wait for it to end, or choose another run$/));
}));

test('a lock from another host, or an unreadable one, is refused with the file to delete', () => withDir((dir) => {
  const file = join(dir, RUN_LOCK_FILE);
  writeFileSync(file, JSON.stringify({ pid: deadPid(), host: 'elsewhere', since: '2026-11-30T07:00:00.000Z' }));
  assert.throws(() => lockRunDir(dir, '--run-dir', () => undefined), refused(new RegExp(`in use by pid \\d+ on elsewhere .*choose another --run-dir; if no coordinator uses it any more, delete ${file}$`)));
  writeFileSync(file, 'not json');
  assert.throws(() => lockRunDir(dir, '--run-dir', () => undefined), refused(new RegExp(`in use by an unreadable lock file ${file}; .*delete ${file}$`)));
}));

test('a run that fails before its first checkpoint still removes its directory, lock file included', () => withDir((root) => {
  const dir = join(root, 'run');
  mkdirSync(join(dir, 'checkpoints'), { recursive: true });
  writeFileSync(join(dir, 'config.json'), '{}');
  lockRunDir(dir, '--run-dir', () => undefined);
  assert.equal(removeFailedRunDir(dir), true);
  assert.equal(existsSync(dir), false);
}));

test('a lock whose owner is a zombie (killed, not yet reaped by its parent) is stale too', { skip: !existsSync('/proc/self/stat') && 'no procfs' }, async () => {
  await withZombie((pid) => withDir((dir) => {
    writeFileSync(join(dir, RUN_LOCK_FILE), JSON.stringify({ pid, host: hostname(), since: '2026-11-30T07:00:00.000Z' }));
    const logs: string[] = [];
    lockRunDir(dir, '--resume', (l) => logs.push(l)).release();
    assert.match(logs[0] ?? '', new RegExp(`removed the stale lock of pid ${pid} `));
  }));
});

test('taking the lock removes the temporary files of dead writers in the run directory and models/, never a live writer\'s', () => withDir((dir) => {
  // Seen by the breaker: a second Ctrl-C while the report was written left index.html.tmp-<pid> in the run for good;
  // a kill while a stage model was saved leaves models/<stage>.safetensors.tmp-<pid>, tens of MB, never removed.
  // Whoever holds the lock is the only writer of the run (coordinator or interpret), so a dead pid's temporary file
  // can go; one of a live process (another user's tool) stays.
  const dead = deadPid();
  const live = spawn('sleep', ['60'], { stdio: 'ignore' });
  try {
    mkdirSync(join(dir, 'models'));
    const files = [`index.html.tmp-${dead}`, `models/stage-1.safetensors.tmp-${dead}`, `training-curves.png.tmp-${live.pid}`, 'notes.tmp-x', 'index.html'];
    for (const f of files) writeFileSync(join(dir, f), 'x');
    const logs: string[] = [];
    const lock = lockRunDir(dir, '--run-dir', (l) => logs.push(l));
    try {
      assert.deepEqual(files.map((f) => existsSync(join(dir, f))), [false, false, true, true, true]);
      assert.deepEqual(logs, [`--run-dir ${dir}: removed 2 temporary file(s) of writers no longer running: index.html.tmp-${dead}, models/stage-1.safetensors.tmp-${dead}`]);
    } finally {
      lock.release();
    }
  } finally {
    live.kill();
  }
}));
