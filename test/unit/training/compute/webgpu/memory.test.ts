/**
 * The WebGPU device-memory high-water mark (`compute/webgpu/memory.ts`, printed by bench:compute): it must keep the
 * largest amount in use at once after the buffers are released, count the pool separately, start again on `reset`,
 * and leave the backend as it was on `stop`. Runs on any WebGPU adapter (lavapipe in CI); skipped where none exists.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { trackDeviceMemory } from '../../../../../src/training/compute/webgpu/memory.js';
import { webgpuOrSkip } from './support.js';

test('trackDeviceMemory is null off webgpu', async () => {
  await tf.setBackend('cpu');
  assert.equal(trackDeviceMemory(), null);
});

test('trackDeviceMemory keeps the peak of GPU buffers in use at once, and the pool peak apart', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  const tracker = trackDeviceMemory()!;
  assert.ok(tracker !== null);
  const base = (tf.memory() as tf.MemoryInfo & { numBytesInGPU: number }).numBytesInGPU;
  // 3 live tensors of 1 MiB (+ 1 KiB: a size no earlier test left in the pool) at once, each read back (uploaded).
  const n = 262144 + 256;
  const live = [1, 2, 3].map((k) => tf.add(tf.fill([n], k), 0));
  await Promise.all(live.map((x) => x.data()));
  tf.dispose(live);
  await tf.zeros([4]).data();
  const p = tracker.peak();
  assert.ok(p.peakInUseBytes >= base + 3 * 4 * n, `in use ${p.peakInUseBytes} ≥ ${base} + 3 MiB`);
  assert.ok(p.peakAllocatedBytes >= p.peakInUseBytes, 'the pool holds at least what was in use');
  const inUseNow = (tf.memory() as tf.MemoryInfo & { numBytesInGPU: number }).numBytesInGPU;
  assert.ok(inUseNow < p.peakInUseBytes, `in use now ${inUseNow} is below the peak after disposing`);
  tracker.reset();
  assert.ok(tracker.peak().peakInUseBytes < p.peakInUseBytes, 'reset starts again from the current use');
  tracker.stop();
  const bm = (tf.backend() as unknown as { bufferManager: object }).bufferManager;
  assert.ok(!Object.prototype.hasOwnProperty.call(bm, 'acquireBuffer'), 'stop restores the prototype method');
  const before = tracker.peak().peakInUseBytes;
  const big = tf.add(tf.fill([4 * n], 1), 0);
  await big.data();
  big.dispose();
  assert.equal(tracker.peak().peakInUseBytes, before, 'a stopped tracker records nothing');
});
