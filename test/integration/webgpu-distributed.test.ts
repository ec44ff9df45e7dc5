// A real coordinator with 2 local workers trains resnet10 (32 px, bs 2) for a few steps on --backend webgpu (Mesa's
// lavapipe in CI), and again on --backend wasm; the final weights and BatchNorm statistics must agree.
// Expected values: the wasm run (the project's reference backend, itself checked against a single-process replay
// in distributed-correctness.test.ts). Tolerance: 1e-3 relative per tensor (max|a − b| / max|b|). Why not 1e-6 as
// between two wasm runs: the two backends sum in other orders (≈ 1e-6 relative per kernel, see the webgpu kernel
// tests), and AdamW divides by √v, so a gradient component near float32 rounding can move its weight by up to ≈ lr
// (1e-3 … 1e-2 here) in either direction; over a few steps that stays well under 1e-3 of each tensor's largest
// entry, while a wrong kernel, a lost bucket or a stale gradient gives O(1) differences.
// Skipped, saying why, where no WebGPU adapter exists; required with PETS_REQUIRE_WEBGPU=1 (set by .ci/run).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadLatestCheckpoint } from '../../src/shared/checkpoint.js';
import { initBackend } from '../../src/shared/compute/backend.js';
import { decodeReplicaState } from '../../src/shared/learner/state-codec.js';
import type { CheckpointMeta } from '../../src/coordinator/checkpoints.js';
import { killAll, makePhotoDir, startProc, tinyRunFlags } from './distributed-harness.js';
import { maxRelativeDiff } from './distributed-compare.js';

const STAGES = [{ kind: 'one_cycle', name: 'stage-1', epochs: 1, maxLr: 'slice(1e-3,1e-2)', frozen: false }];
let dataDir: string, tmp: string;
let webgpuError: string | null = null;

before(async () => {
  try {
    await initBackend('webgpu');
  } catch (err) {
    webgpuError = String(err instanceof Error ? err.message : err);
  }
  dataDir = makePhotoDir(3, 4);
  tmp = mkdtempSync(join(tmpdir(), 'webgpu-dist-'));
});

after(async () => {
  await killAll();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
});

/** Runs the 2-worker job on `backend`; returns its output and its final checkpoint. */
async function run(backend: string): Promise<{ out: string; ckpt: NonNullable<ReturnType<typeof loadLatestCheckpoint<CheckpointMeta>>> }> {
  const runDir = join(tmp, backend);
  const cfg = join(tmp, 'stages.json');
  writeFileSync(cfg, JSON.stringify({ stages: STAGES }));
  // lavapipe compiles every shader with LLVM on first use: a generous all-reduce limit keeps a loaded machine from
  // timing out a step while one worker still compiles.
  const flags = tinyRunFlags(dataDir, runDir, ['--workers', '2', '--config', cfg, '--allreduce-timeout-ms', '600000']);
  flags[flags.indexOf('--backend') + 1] = backend;
  const coord = startProc('coordinator', flags);
  const code = await coord.exited;
  const out = coord.output();
  assert.equal(code, 0, out.slice(-4000));
  const ckpt = loadLatestCheckpoint<CheckpointMeta>(runDir);
  assert.ok(ckpt, `${backend}: no checkpoint in ${runDir}`);
  return { out, ckpt };
}

test('2 workers on webgpu end with the weights of 2 workers on wasm (a few steps of resnet10)', { timeout: 900_000 }, async (t) => {
  if (webgpuError !== null) {
    if (process.env.PETS_REQUIRE_WEBGPU === '1') throw new Error(`PETS_REQUIRE_WEBGPU=1 but WebGPU is unavailable: ${webgpuError}`);
    t.skip(`no WebGPU adapter: ${webgpuError}`);
    return;
  }
  const gpu = await run('webgpu');
  // Every worker names its backend and adapter; the reasons for rejected backends are said once.
  assert.equal((gpu.out.match(/backend: webgpu on /g) ?? []).length, 2, gpu.out.slice(-4000));
  assert.ok((gpu.out.match(/not used:/g) ?? []).length <= 1, gpu.out.slice(-4000));
  const cpu = await run('wasm');
  const steps = gpu.ckpt.manifest.meta.history.position.globalStep;
  assert.equal(steps, cpu.ckpt.manifest.meta.history.position.globalStep);
  assert.ok(steps >= 2, `steps ${steps}`);
  const diff = maxRelativeDiff(decodeReplicaState(gpu.ckpt.files.get('state.safetensors')!), decodeReplicaState(cpu.ckpt.files.get('state.safetensors')!));
  t.diagnostic(`${steps} steps; max relative difference webgpu vs wasm ${diff.worst.toExponential(2)} (${diff.name})`);
  assert.ok(diff.worst <= 1e-3, `max relative difference ${diff.worst} in ${diff.name}`);
});
