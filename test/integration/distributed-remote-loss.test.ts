// A lost remote worker (one that joined with `worker --connect`) is replaced by a remote worker that joins, never
// by a local process on the coordinator's host; with --elastic the run shrinks instead and says its new
// accumulation and global batch. "Remote" workers are worker processes this test starts with --connect; the
// coordinator also has one local worker (--workers 1 --expect 3), which must stay the only local one.
// The killed remote worker is found by the coordinator's heartbeat timeout (10 s here: it cannot see a remote
// process); the surviving remote workers heartbeat from their own thread, and their own timeout is long, so the
// load of a shared machine cannot lose them. No assertion depends on how fast anything happens.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killAll, makePhotoDir, startProc, tinyRunFlags, type Proc } from './distributed-harness.js';
import { loadLatestCheckpoint } from '../../src/contract/checkpoint-format.js';

const RUN_TIMEOUT_MS = 400_000;
let dataDir: string, tmp: string;

before(() => {
  // 3 breeds × 8 photos: 19 train items, 3 global steps of 3 workers × bs 2 per epoch.
  dataDir = makePhotoDir(3, 8);
  tmp = mkdtempSync(join(tmpdir(), 'dist-remote-loss-'));
});

after(async () => {
  await killAll();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
});

/** Starts a coordinator with 1 local + 2 remote workers; resolves once all three joined and training began. */
async function startRun(name: string, extra: readonly string[]): Promise<{ coord: Proc; endpoint: string; remotes: Proc[] }> {
  const cfg = join(tmp, `${name}.json`);
  writeFileSync(cfg, JSON.stringify({ stages: [{ kind: 'one_cycle', name: 'stage-1', epochs: 2, maxLr: 'slice(1e-3)', frozen: false }] }));
  const coord = startProc('coordinator', tinyRunFlags(dataDir, join(tmp, name), ['--workers', '1', '--expect', '3', '--config', cfg, '--heartbeat-timeout-ms', '10000', ...extra]));
  const endpoint = (await coord.waitFor(/coordinator listening on (tcp:\/\/\S+);/, RUN_TIMEOUT_MS))[1]!;
  const remotes = [0, 1].map(() => remoteWorker(endpoint));
  await coord.waitFor(/^epoch 0: 1\/\d+ batches/m, RUN_TIMEOUT_MS);
  return { coord, endpoint, remotes };
}

function remoteWorker(endpoint: string): Proc {
  return startProc('worker', ['--connect', endpoint, '--data', dataDir, '--backend', 'wasm', '--heartbeat-interval-ms', '500', '--heartbeat-timeout-ms', '120000']);
}

const joinedPids = (out: string): number[] => [...out.matchAll(/worker joined: pid (\d+)/g)].map((m) => Number(m[1]));

test('a SIGKILLed remote worker is replaced by a remote worker that joins, not by a local respawn', { timeout: RUN_TIMEOUT_MS }, async () => {
  const { coord, endpoint, remotes } = await startRun('replace', []);
  const victim = remotes[0]!;
  victim.kill();
  const waiting = await coord.waitFor(/waiting for 1 remote worker\(s\) to join in place of rank\(s\) \d \(pid (\d+) on \S+, remote\): start one with (npx worker --connect \S+)/, RUN_TIMEOUT_MS);
  assert.equal(Number(waiting[1]), victim.child.pid);
  assert.equal(waiting[2], `npx worker --connect ${endpoint}`);
  const replacement = remoteWorker(endpoint);
  assert.equal(await coord.exited, 0, coord.output().slice(-4000));
  const out = coord.output();
  assert.doesNotMatch(out, /respawned local worker/, 'nothing is respawned on the coordinator\'s host');
  assert.match(out, /lost rank\(s\) \d \(pid \d+ on \S+, remote\)/);
  assert.match(out, /ring re-formed \(generation \d+, 3 workers: 3 worker\(s\) × bs 2 × accum 1 = global batch 6\)/);
  const pids = joinedPids(out);
  assert.equal(pids.length, 4, 'one local + two remote + the remote replacement joined');
  assert.equal(pids.at(-1), replacement.child.pid, 'the fourth to join is the remote replacement');
  for (const w of [remotes[1]!, replacement]) assert.equal(await w.exited, 0, w.output().slice(-2000));
});

test('--elastic: a lost remote worker shrinks the run; the log states the new accumulation and the kept global batch', { timeout: RUN_TIMEOUT_MS }, async () => {
  // Global batch 12 = 3 workers × bs 2 × accum 2, and = 2 × 2 × 3 after the loss.
  const { coord, remotes } = await startRun('elastic', ['--elastic', '--global-bs', '12']);
  assert.match(coord.output(), /plan: .*3 worker\(s\) × bs 2 × accum 2 = global batch 12; all-reduce: auto \(shared memory when every worker is on one host, else ring\)/);
  remotes[0]!.kill();
  assert.equal(await coord.exited, 0, coord.output().slice(-4000));
  const out = coord.output();
  assert.match(out, /elastic: continuing with 2 worker\(s\) \(lost ranks \d\); now 2 worker\(s\) × bs 2 × accum 3 = global batch 12/);
  assert.doesNotMatch(out, /respawned local worker|waiting for \d+ remote worker/);
  assert.equal(joinedPids(out).length, 3);
  assert.equal(await remotes[1]!.exited, 0, remotes[1]!.output().slice(-2000));
});

test('a lost remote worker that is never replaced: one wait of --rejoin-timeout-s, then a checkpoint and exit 1 (ERR_WORKER_LOST) with the resume command', { timeout: RUN_TIMEOUT_MS }, async () => {
  // torchrun's rendezvous join timeout / Horovod's --elastic-timeout: the job fails after one bounded wait, with its
  // progress saved; it neither waits again forever nor goes on quietly with fewer workers than its plan.
  const { coord, remotes } = await startRun('never', ['--rejoin-timeout-s', '3']);
  remotes[0]!.kill();
  assert.equal(await coord.exited, 1, coord.output().slice(-4000));
  const out = coord.output();
  const end = /ERR_WORKER_LOST: no replacement worker joined within 3 s \(--rejoin-timeout-s; .*\); 2 of 3 worker\(s\) left; checkpointed at global step (\d+) \((\S+)\); resume with: npx coordinator --resume (\S+) after fixing the cause/.exec(out);
  assert.ok(end, out.slice(-4000));
  assert.equal(end[3], join(tmp, 'never'));
  const latest = loadLatestCheckpoint<{ history: { position: { globalStep: number } } }>(end[3]!);
  assert.ok(latest && latest.skipped.length === 0, 'the checkpoint is intact');
  assert.equal(latest.dir, end[2]);
  assert.equal(latest.manifest.meta.history.position.globalStep, Number(end[1]));
  assert.equal((out.match(/waiting for 1 replacement worker\(s\)/g) ?? []).length, 1, 'one wait, not one per retry');
  assert.equal(await remotes[1]!.exited, 0, 'the surviving remote worker is told to shut down');
});
