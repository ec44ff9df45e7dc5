/**
 * One GPU per local worker, without GPUs: the environment each worker slot gets from a faked
 * /proc/driver/nvidia/gpus listing (CUDA index and Mesa device-select's PCI tag, both in PCI order), and the log line
 * a worker prints with that environment (its adapter and the GPU it asked for). The real GPU choice through Vulkan
 * needs a multi-GPU machine; see docs/performance-gpu.md, "One process per GPU".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectGpuBusIds, driPrimeTag, workerEnv } from '../../../src/coordinator/local-workers.js';
import { describeAdapter } from '../../../src/training/compute/webgpu/dawn.js';

/** A faked driver listing: one folder per GPU named by PCI address (as the driver), created out of order. */
function fakeListing(busIds: readonly string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'nvidia-gpus-'));
  for (const id of busIds) {
    mkdirSync(join(dir, id));
    writeFileSync(join(dir, id, 'information'), 'Model: NVIDIA H200\n');
  }
  return dir;
}

const H200 = { vendor: 'nvidia', architecture: '', device: 'nvidia-h200', description: 'NVIDIA: 580.159.04', isFallbackAdapter: false };

test('4 workers on a faked 4-GPU listing get 4 different GPUs, in PCI order (CUDA index and DRI_PRIME tag agree)', () => {
  const dir = fakeListing(['0000:c1:00.0', '0000:1b:00.0', '0000:9a:00.0', '0000:3b:00.0']);
  try {
    const ids = detectGpuBusIds(dir);
    assert.deepEqual(ids, ['0000:1b:00.0', '0000:3b:00.0', '0000:9a:00.0', '0000:c1:00.0']);
    const envs = [0, 1, 2, 3].map((slot) => workerEnv(slot, ids.length, { PATH: '/usr/bin' }, ids));
    assert.deepEqual(envs.map((e) => e.CUDA_VISIBLE_DEVICES), ['0', '1', '2', '3']);
    assert.deepEqual(envs.map((e) => e.DRI_PRIME), ['pci-0000_1b_00_0', 'pci-0000_3b_00_0', 'pci-0000_9a_00_0', 'pci-0000_c1_00_0']);
    assert.ok(envs.every((e) => e.MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE === '1'), 'each worker sees only its GPU');
    assert.deepEqual(envs.map((e) => e.PETS_WORKER_SLOT), ['0', '1', '2', '3']);
    assert.ok(envs.every((e) => e.PATH === '/usr/bin'), 'the rest of the environment is passed on');
    // The log line of each worker names its adapter and the GPU it asked for.
    envs.forEach((e, slot) => {
      const line = describeAdapter(H200, e);
      assert.equal(line, `nvidia nvidia-h200 (NVIDIA: 580.159.04), asked for GPU ${driPrimeTag(ids[slot]!)} (DRI_PRIME)`);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('more workers than GPUs share them round-robin; no GPU listed: CUDA hidden, no DRI_PRIME; a DRI_PRIME set by the user is kept', () => {
  const dir = fakeListing(['0000:3b:00.0', '0000:1b:00.0']);
  const empty = mkdtempSync(join(tmpdir(), 'nvidia-none-'));
  try {
    const ids = detectGpuBusIds(dir);
    const envs = [0, 1, 2, 3, 4].map((slot) => workerEnv(slot, ids.length, {}, ids));
    assert.deepEqual(envs.map((e) => `${e.CUDA_VISIBLE_DEVICES} ${e.DRI_PRIME}`),
      ['0 pci-0000_1b_00_0', '1 pci-0000_3b_00_0', '0 pci-0000_1b_00_0', '1 pci-0000_3b_00_0', '0 pci-0000_1b_00_0']);
    assert.deepEqual(detectGpuBusIds(empty), []);
    assert.deepEqual(detectGpuBusIds(join(empty, 'absent')), [], 'no driver: no GPUs, no error');
    const cpu = workerEnv(0, 0, {}, []);
    assert.equal(cpu.CUDA_VISIBLE_DEVICES, '-1');
    assert.equal(cpu.DRI_PRIME, undefined);
    assert.equal(describeAdapter(H200, cpu), 'nvidia nvidia-h200 (NVIDIA: 580.159.04)');
    const user = workerEnv(1, ids.length, { DRI_PRIME: 'pci-0000_1b_00_0' }, ids);
    assert.equal(user.DRI_PRIME, 'pci-0000_1b_00_0', 'the user\'s choice wins');
    assert.equal(user.MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE, undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(empty, { recursive: true, force: true });
  }
});

/** Runs the backend choice a worker makes (`--backend webgpu`) in a child process with `env`; returns its log line. */
async function workerBackendLine(env: NodeJS.ProcessEnv): Promise<string> {
  const backend = new URL('../../../src/training/compute/backend.ts', import.meta.url).href;
  const code = `const { initBackend } = await import(${JSON.stringify(backend)});` +
    "try { console.log((await initBackend('webgpu')).brief); } catch (e) { console.log('UNAVAILABLE ' + e.message); }" +
    'process.exit(0);';
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  await new Promise((resolve) => child.on('close', resolve));
  return out.split('\n').find((l) => l.startsWith('backend:') || l.startsWith('UNAVAILABLE')) ?? out;
}

test('the log line of a worker started with its slot environment names its WebGPU adapter and the GPU it asked for', { timeout: 600_000 }, async (t) => {
  const ids = ['0000:1b:00.0', '0000:3b:00.0'];
  const lines: string[] = [];
  for (const slot of [0, 1]) {
    const line = await workerBackendLine(workerEnv(slot, ids.length, process.env, ids));
    if (line.startsWith('UNAVAILABLE')) {
      if (process.env.PETS_REQUIRE_WEBGPU === '1') assert.fail(line);
      t.skip(`no WebGPU adapter: ${line}`);
      return;
    }
    lines.push(line);
  }
  // On lavapipe (CI) the device-select layer finds no such PCI device and falls back to llvmpipe, which names itself.
  lines.forEach((l, slot) => {
    assert.match(l, /^backend: webgpu on \S+ \S+/, l);
    assert.ok(l.endsWith(`, asked for GPU ${driPrimeTag(ids[slot]!)} (DRI_PRIME) (requested webgpu)`), l);
  });
});
