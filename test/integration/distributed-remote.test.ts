// `coordinator --workers 0 --expect 3 --curve-keys <dir>` waits for 3 remote workers that the test starts with
// `worker --connect … --data … --curve-server-key <key>`; a worker without the key cannot join (the CURVE handshake
// fails, so it never hears from the coordinator and exits after its heartbeat timeout). The 3-worker run must
// equal the single-process replay of the same global batches (see distributed-reference.ts). Two workers run
// without the shared-memory module: all ranks agree on the ring (their `hello` says why), none waits for the others.
// Tolerances as in distributed-correctness.test.ts: weights ≤ 1e-6 relative per tensor, valid loss ≤ 1e-5
// relative, error rate exact.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../src/training/compute/backend.js';
import { loadLatestCheckpoint } from '../../src/contract/checkpoint-format.js';
import { ImagePool } from '../../src/training/data/pool.js';
import { decodeReplicaState } from '../../src/training/learner/state-codec.js';
import { CURVE_KEY_FILES } from '../../src/coordinator/control.js';
import type { CheckpointMeta } from '../../src/coordinator/checkpoint-store.js';
import { killAll, makePhotoDir, startProc, tinyRunFlags } from './distributed-harness.js';
import { referenceRun } from './distributed-reference.js';
import { maxRelativeDiff } from './distributed-compare.js';

const STAGES = [{ kind: 'one_cycle', name: 'stage-1', epochs: 1, maxLr: 'slice(1e-3,1e-2)', frozen: false }];
let dataDir: string, tmp: string, pool: ImagePool;

before(async () => {
  await initBackend('wasm');
  // 5 breeds × 7 photos = 35 items: 28 train (4 global steps of 3 × 2), 7 valid: 3 ranks × 3 with 2 padded
  // items that must not be counted twice.
  dataDir = makePhotoDir(5, 7);
  tmp = mkdtempSync(join(tmpdir(), 'dist-remote-'));
  pool = new ImagePool({ threads: 1 });
  pool.start();
});

after(async () => {
  await killAll();
  await pool.close();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
});

test('--workers 0 --expect 3 with CURVE: keyed remote workers join and train exactly, a worker without the key cannot join', { timeout: 240_000 }, async (t) => {
  const runDir = join(tmp, 'run3');
  const keys = join(tmp, 'keys');
  const cfg = join(tmp, 'stages.json');
  writeFileSync(cfg, JSON.stringify({ stages: STAGES }));
  const coord = startProc('coordinator', tinyRunFlags(dataDir, runDir, ['--workers', '0', '--expect', '3', '--config', cfg, '--curve-keys', keys]));
  const key = (await coord.waitFor(/--curve-server-key '(\S{40})'/, 60_000))[1]!;
  const endpoint = (await coord.waitFor(/coordinator listening on (tcp:\/\/\S+);/, 60_000))[1]!;
  // The coordinator starts none of the 3 workers: it prints the command that starts one (it printed none before).
  const joinLine = `start 3 more worker(s), here or on other machines, with: npx worker --connect ${endpoint} --curve-server-key '${key}' --data <its copy of the data>`;
  await coord.waitFor(new RegExp(joinLine.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')), 60_000);
  for (const f of Object.values(CURVE_KEY_FILES)) assert.equal(statSync(join(keys, f)).mode & 0o777, 0o600, f);

  const common = ['--connect', endpoint, '--data', dataDir, '--backend', 'wasm', '--heartbeat-interval-ms', '500'];
  const intruder = startProc('worker', [...common, '--heartbeat-timeout-ms', '3000']);
  // A fourth keyed worker is one too many: it waits as a spare and is sent shutdown at the end. Seen by the breaker:
  // a spare was never told anything, heard the coordinator go silent after the run and exited 3 saying the
  // coordinator 'never answered (is it running and reachable …?)'.
  // Two of them run as from a checkout whose shared-memory module is missing (PETS_SHM_ADDON names no file), so at
  // least one of the three that train cannot use shared memory: every rank must then pick the ring, as that rank's
  // `hello` announced (issue: ranks choosing shm alone waited for the others until --allreduce-timeout-ms).
  const noShm = { PETS_SHM_ADDON: join(tmp, 'no-such-pets_shm.node') };
  const workers = [0, 1, 2, 3].map((i) => startProc('worker', [...common, '--heartbeat-timeout-ms', '20000', '--curve-server-key', key], i < 2 ? noShm : {}));
  assert.equal(await intruder.exited, 3, intruder.output());
  assert.match(intruder.output(), /ERR_WORKER_LOST: coordinator never answered .*--curve-server-key/);

  const code = await coord.exited;
  const out = coord.output();
  assert.equal(code, 0, out.slice(-4000));
  assert.equal((out.match(/worker joined:/g) ?? []).length, 4, 'only the 4 keyed workers joined');
  assert.match(out, /the run has its 3 worker\(s\) \(--expect\), so it waits as a spare/);
  for (const w of workers) assert.equal(await w.exited, 0, w.output().slice(-2000));
  const spares = workers.filter((w) => !/ring generation 1/.test(w.output()));
  assert.equal(spares.length, 1, 'three trained, one waited');
  assert.match(spares[0]!.output(), /shutdown: run finished/);
  for (const w of workers.filter((x) => x !== spares[0])) {
    assert.match(w.output(), /generation 1: all-reduce through the ring \(--allreduce auto: rank \d cannot use shared memory: shared-memory module "[^"]*no-such-pets_shm.node" \(PETS_SHM_ADDON\) does not exist\)/,
      w.output().slice(-2000));
    assert.doesNotMatch(w.output(), /through shared memory/);
  }

  const ref = await referenceRun({ data: dataDir, arch: 'resnet10', size: 32, bs: 2, pretrained: 'none', stages: STAGES }, 3, pool);
  const ckpt = loadLatestCheckpoint<CheckpointMeta>(runDir)!;
  const diff = maxRelativeDiff(decodeReplicaState(ckpt.files.get('state.safetensors')!), ref.state);
  const row = ckpt.manifest.meta.history.stages[0]!.epochs[0]!;
  t.diagnostic(`${ref.steps} steps; max relative weight difference ${diff.worst.toExponential(2)} (${diff.name}); valid loss ${row.validLoss} vs ${ref.validLoss}`);
  assert.ok(ref.steps >= 3, `steps ${ref.steps}`);
  assert.ok(diff.worst <= 1e-6, `max relative difference ${diff.worst} in ${diff.name}`);
  assert.ok(Math.abs(row.validLoss - ref.validLoss) <= 1e-5 * ref.validLoss, `valid loss ${row.validLoss} vs ${ref.validLoss}`);
  assert.equal(row.errorRate, ref.errorRate);
});
