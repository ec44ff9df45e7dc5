/**
 * A world of one rank on WebGPU keeps the gradient on the device (`Replica.takeGradientsOnDevice` →
 * `applyGradients` with the tensor): the all-reduce is the identity, so the weights must be those of the round trip
 * (`takeGradients` read to the CPU, uploaded again by `applyGradients`) bit for bit: the same kernels run on the same
 * sums, and the mean over micro-batches is one correctly rounded float32 division either way (on lavapipe; WGSL
 * allows 2.5 ULP elsewhere). Checked over steps of 1 and 2 micro-batches, with the GPU reads (by size) and uploads
 * of the step, and flat memory (tfjs tensors and webgpu buffers before = after). A mean over more micro-batches than
 * ran (a worker's micro-batch whose items all failed to decode) is the trainer's host scaling within float32
 * rounding. Skipped, saying why, where no WebGPU adapter exists (required with PETS_REQUIRE_WEBGPU=1).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { Replica } from '../../../../../src/training/learner/replica.js';
import { ADAMW_KERNEL } from '../../../../../src/training/compute/webgpu/adamw-kernel.js';
import { countDispatches } from '../../../../../src/training/compute/webgpu/dispatch-count.js';
import { lcg } from '../numeric.js';
import { webgpuOrSkip } from './support.js';

const N = 2, SIZE = 32;
const HYPER = { lrs: [1e-3, 1e-3, 1e-2], momentum: 0.9 };
const y = Int32Array.from({ length: N }, (_, i) => i);
const batch = (seed: number): Float32Array => lcg(N * SIZE * SIZE * 3, seed);
const make = (): Promise<Replica> => Replica.create({ arch: { block: 'basic', layers: [1, 1, 1, 1] }, numClasses: 7, seed: 3,
  pretrained: null, frozen: false, head: { hidden: 16, ps: [0, 0] } });

/** The two ways a world of one applies its gradient. */
const roundTrip = async (r: Replica): Promise<void> => r.applyGradients(await r.takeGradients(), HYPER);
const onDevice = (r: Replica, over?: number): void => {
  const g = r.takeGradientsOnDevice(over);
  try {
    r.applyGradients(g, HYPER);
  } finally {
    g.dispose();
  }
};

/** Byte sizes of the GPU buffers read (`GPUBuffer.mapAsync`) while `work` runs. */
async function readSizes(work: () => Promise<void>): Promise<number[]> {
  const proto = (globalThis as unknown as { GPUBuffer: { prototype: { mapAsync: (...a: unknown[]) => Promise<unknown> } } }).GPUBuffer.prototype;
  const own = Object.hasOwn(proto, 'mapAsync');
  const mapAsync = proto.mapAsync;
  const sizes: number[] = [];
  proto.mapAsync = function (this: { size: number }, ...args: unknown[]) {
    sizes.push(this.size);
    return mapAsync.apply(this, args);
  };
  try {
    await work();
  } finally {
    if (own) proto.mapAsync = mapAsync; else delete (proto as Partial<typeof proto>).mapAsync;
  }
  return sizes;
}

test('world size 1 on webgpu: AdamW from the device-resident gradient = the read + upload round trip, bit for bit; no gradient read or upload; flat memory', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  const a = await make(), b = await make();
  try {
    assert.equal(a.keepsGradientsOnDevice, true);
    const gradientBytes = a.gradientSize * 4;
    // Step 1: one micro-batch (creates the AdamW moments, compiles the shaders). Step 2: two (mean = sum / 2).
    for (const r of [a, b]) await r.accumulate(batch(1), y, null, 1);
    await roundTrip(a);
    onDevice(b);
    for (const r of [a, b]) {
      await r.accumulate(batch(2), y, null, 2);
      await r.accumulate(batch(3), y, null, 3);
    }
    await roundTrip(a);
    onDevice(b);
    assert.equal(b.pendingMicroBatches, 0, 'the accumulator is reset');
    assert.equal(await b.weightsChecksum(), await a.weightsChecksum(), 'same weights and BatchNorm statistics, bit for bit');
    assert.deepEqual((await b.exportState()).optimizer, (await a.exportState()).optimizer, 'same AdamW moments and step counts');

    // Step 3, one micro-batch, counted: the round trip reads the whole gradient and uploads it; the device path neither.
    const tensors = tf.memory().numTensors;
    const buffers = tf.engine().backend.numDataIds();
    for (const r of [a, b]) await r.accumulate(batch(4), y, null, 4);
    const probe = async (r: Replica): Promise<void> => { await r.learner.params.values().next().value!.data(); };
    let hostReads: number[] = [], deviceReads: number[] = [];
    const host = await countDispatches(async () => { hostReads = await readSizes(async () => { await roundTrip(a); await probe(a); }); });
    const device = await countDispatches(async () => { deviceReads = await readSizes(async () => { onDevice(b); await probe(b); }); });
    assert.ok(hostReads.some((s) => s >= gradientBytes), `the round trip reads the gradient (${gradientBytes} bytes): ${hostReads}`);
    assert.ok(host.uploads >= 1, 'the round trip uploads it again');
    assert.ok(deviceReads.every((s) => s < gradientBytes) && deviceReads.length === 1, `only the probe is read: ${deviceReads}`);
    assert.equal(device.uploads, 0, 'nothing uploaded');
    const trainable = b.gradientLayout().length;
    assert.equal(device.kernels.find((k) => k.name === ADAMW_KERNEL)?.dispatches, trainable, 'one AdamW dispatch per trainable tensor');
    assert.equal(device.dispatches, trainable, 'nothing but the AdamW updates (and the probe, a read)');
    assert.equal(tf.memory().numTensors, tensors, 'tensors after a whole step = before');
    assert.equal(tf.engine().backend.numDataIds(), buffers, 'webgpu buffers after a whole step = before');
    assert.equal(await b.weightsChecksum(), await a.weightsChecksum(), 'still bit for bit after step 3');
  } finally {
    a.dispose();
    b.dispose();
  }
});

test('takeGradientsOnDevice: a mean over more micro-batches than ran is the trainer\'s host scaling within float32 rounding; zeros when none; bad counts refused', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  const a = await make(), b = await make();
  try {
    for (const r of [a, b]) {
      await r.accumulate(batch(5), y, null, 5);
      await r.accumulate(batch(6), y, null, 6);
    }
    // The trainer's round trip when 2 of 3 micro-batches ran: (sum / 2) · 2 / 3, rounded to float32 each time.
    const want = (await a.takeGradients()).map((g) => Math.fround(g * 2 / 3));
    assert.throws(() => b.takeGradientsOnDevice(1), (e: Error & { code?: string }) => e.code === 'ERR_INTERNAL' && /integer ≥ 2 micro-batches/.test(e.message));
    assert.equal(b.pendingMicroBatches, 2, 'a refused call changes nothing');
    const g = b.takeGradientsOnDevice(3);
    const got = await g.data() as Float32Array;
    g.dispose();
    let scale = 0, worst = 0;
    for (let i = 0; i < want.length; i++) {
      scale = Math.max(scale, Math.abs(want[i]!));
      worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / Math.max(Math.abs(want[i]!), 1e-30));
    }
    assert.ok(scale > 0, 'a non-zero gradient');
    assert.ok(worst <= 3e-7, `relative difference ${worst} (two float32 roundings against one)`);
    const before = tf.memory().numTensors;
    const zeros = b.takeGradientsOnDevice();
    assert.deepEqual([zeros.shape, zeros.dtype], [[b.gradientSize], 'float32']);
    assert.ok((await zeros.data() as Float32Array).every((v) => v === 0), 'nothing accumulated: zeros');
    zeros.dispose();
    assert.equal(tf.memory().numTensors, before);
    const short = tf.zeros([b.gradientSize - 1]) as tf.Tensor1D;
    assert.throws(() => b.applyGradients(short, HYPER), /flat gradient must have \d+ values/);
    short.dispose();
  } finally {
    a.dispose();
    b.dispose();
  }
});
