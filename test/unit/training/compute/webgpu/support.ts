/** Test support for the WebGPU backend (not a test file). */
import type { TestContext } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendChoice } from '../../../../../src/training/compute/backend.js';

let cached: Promise<BackendChoice | string> | null = null;

/**
 * Activates `--backend webgpu` (a software adapter such as Mesa's lavapipe is fine) and returns the choice, or skips
 * the test with the reason when no WebGPU adapter is available. With `PETS_REQUIRE_WEBGPU=1` (set by `.ci/run` after
 * it installed lavapipe) a missing adapter fails the test instead of skipping it.
 */
export async function webgpuOrSkip(t: TestContext): Promise<BackendChoice | null> {
  cached ??= initBackend('webgpu').catch((err: unknown) => String(err instanceof Error ? err.message : err));
  const r = await cached;
  if (typeof r === 'string') {
    if (process.env.PETS_REQUIRE_WEBGPU === '1') throw new Error(`PETS_REQUIRE_WEBGPU=1 but WebGPU is unavailable: ${r}`);
    t.skip(`no WebGPU adapter: ${r}`);
    return null;
  }
  if (tf.getBackend() !== 'webgpu') await tf.setBackend('webgpu');
  return r;
}

/** Runs `f` on `backend` and returns its outputs' values (read asynchronously); disposes the outputs. */
export async function valuesOn(backend: string, f: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const out = tf.tidy(f);
  const list = Array.isArray(out) ? out : [out];
  try {
    return await Promise.all(list.map(async (t) => Float32Array.from(await t.data() as Float32Array)));
  } finally {
    tf.dispose(list);
  }
}
