/**
 * The flat gradient on WebGPU without splits or concat programs: `PetsFlatten` (`compute/webgpu/flatten.ts`, the
 * gradients copied into one flat buffer with `copyBufferToBuffer`) against tfjs `concat` on `cpu`, and
 * `AdamW.stepFlat` (each parameter's in-place update reading its gradient from the flat buffer at its offset)
 * against `AdamW.step` with per-parameter gradients on `cpu`; then a whole Replica step's exact dispatch counts.
 *
 * Covers what offsets and copies can get wrong: a layout in another order than the parameters, a part missing
 * (zeros) or empty, ordering against dispatches encoded just before and after in the same command encoder, bounds,
 * and flat memory (tfjs tensors and webgpu buffers before = after). Runs on any WebGPU adapter (lavapipe in CI);
 * skipped, saying why, where none exists (required with PETS_REQUIRE_WEBGPU=1). AdamW tolerance: relative error
 * 1e-5, as `adamw-kernel.test.ts` (float32 both sides, same formula); copies are exact.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { AdamW } from '../../../../../src/training/learner/adamw.js';
import { Replica } from '../../../../../src/training/learner/replica.js';
import { ADAMW_KERNEL, type AdamWAttrs } from '../../../../../src/training/compute/webgpu/adamw-kernel.js';
import { FLATTEN_KERNEL, flattenOnDevice } from '../../../../../src/training/compute/webgpu/flatten.js';
import { countDispatches, type DispatchCounts } from '../../../../../src/training/compute/webgpu/dispatch-count.js';
import { lcg, relError } from '../numeric.js';
import { webgpuOrSkip } from './support.js';

const TOL = 1e-5;
const read = async (t: tf.Tensor): Promise<Float32Array> => Float32Array.from(await t.data() as Float32Array);
const kernel = (c: DispatchCounts, name: string) => c.kernels.find((k) => k.name === name);

test('PetsFlatten on webgpu equals concat on cpu (4-D part, missing part as zeros, empty part), in order with the dispatches around it; copies only', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  const shapes: number[][] = [[3, 3, 2, 4], [5], [0], [7], [2, 3]];
  const sizes = shapes.map((s) => tf.util.sizeFromShape(s));
  const missing = 3;
  const raw = shapes.map((s, i) => tf.tensor(lcg(sizes[i]!, 30 + i), s));
  // The parts are computed by dispatches encoded just before the copies, and the flat result is used by a dispatch
  // encoded right after them, all in one command encoder: the copies must see the first and be seen by the second.
  const flatAndAfter = (): tf.Tensor[] => {
    const parts = raw.map((x, i) => (i === missing ? undefined : tf.mul(x, 2)));
    const flat = flattenOnDevice(parts, sizes) ?? tf.concat(parts.map((p, i) => (p === undefined ? tf.zeros([sizes[i]!]) : tf.reshape(p, [-1]))));
    return [flat, tf.neg(flat)];
  };
  await tf.setBackend('cpu');
  assert.equal(flattenOnDevice([], []), null, 'cpu has no PetsFlatten: the caller concatenates');
  const want = await Promise.all(tf.tidy(flatAndAfter).map(async (x) => { const v = await read(x); x.dispose(); return v; }));
  assert.equal(want[0]!.length, sizes.reduce((a, b) => a + b));

  await tf.setBackend('webgpu');
  tf.dispose(raw);
  raw.splice(0, raw.length, ...shapes.map((s, i) => tf.tensor(lcg(sizes[i]!, 30 + i), s)));
  flattenOnDevice(raw, sizes)!.dispose(); // moves the inputs to the device, so the ops below run as GPU dispatches
  let outs: tf.Tensor[] = [];
  const around = await countDispatches(() => { outs = tf.tidy(flatAndAfter); });
  assert.equal(kernel(around, 'Multiply')?.dispatches, 3, 'the parts are computed by dispatches');
  assert.equal(kernel(around, 'Neg')?.dispatches, 1, 'the flat result is used by a dispatch');
  const got = await Promise.all(outs.map(async (x) => { const v = await read(x); x.dispose(); return v; }));
  assert.deepEqual(got[0], want[0], 'flat values, exactly');
  assert.deepEqual(got[1], want[1], 'the dispatch after the copies read the copied values');

  // Counts and memory over a flatten of tensors already on the device.
  const parts = raw.map((x, i) => (i === missing ? undefined : tf.mul(x, 1)));
  const warm = flattenOnDevice(parts, sizes)!; // moves the parts to the device (small ops run on tfjs-webgpu's CPU path)
  await warm.data();
  warm.dispose();
  const tensors = tf.memory().numTensors;
  const buffers = tf.engine().backend.numDataIds();
  const counts = await countDispatches(async () => {
    const flat = flattenOnDevice(parts, sizes)!;
    await flat.data();
    flat.dispose();
  });
  assert.deepEqual(kernel(counts, FLATTEN_KERNEL), { name: FLATTEN_KERNEL, calls: 1, dispatches: 0, uploads: 0, copies: 4 },
    'one copy per non-empty part, one clear for the missing part, no dispatch');
  assert.equal(counts.dispatches, 0, 'no compute dispatch at all');
  assert.equal(tf.memory().numTensors, tensors, 'tensors after = before');
  assert.equal(tf.engine().backend.numDataIds(), buffers, 'webgpu buffers after = before');
  const empty = flattenOnDevice([undefined], [0])!;
  assert.deepEqual(empty.shape, [0]);
  empty.dispose();
  tf.dispose([...raw, ...parts.filter((p) => p !== undefined)]);
});

test('PetsFlatten refuses a part whose size is not its sizes entry, an int32 part and a bad input name', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  const x = tf.tensor1d([1, 2, 3]);
  const i = tf.tensor1d([1, 2, 3], 'int32');
  const before = tf.memory().numTensors;
  assert.throws(() => flattenOnDevice([x], [4]), /x0 has shape \[3\], sizes\[0\] is 4/);
  assert.throws(() => flattenOnDevice([i], [3]), /x0 must be float32, got int32/);
  assert.throws(() => flattenOnDevice([x, x], [3]), /input x1 is not x0 … x0/);
  assert.equal(tf.memory().numTensors, before, 'nothing left behind');
  tf.dispose([x, i]);
});

interface Run { params: Float32Array[]; m: Float32Array[]; steps: number[] }

/**
 * 3 steps on the active backend: groups [a, c] and [b, d], `c` decayed only (not in the layout), a layout in another
 * order than the parameters (b, a, d), `a` made from a tensor that stays alive. `flat` uses `stepFlat` with one flat
 * gradient, otherwise `step` with one gradient per parameter.
 */
async function adamwRun(backend: string, flat: boolean, onStep?: (step: () => void) => Promise<void>): Promise<Run> {
  await tf.setBackend(backend);
  const aInit = tf.tensor2d(lcg(12, 1), [3, 4]);
  const params = new Map<string, tf.Variable>([['a', tf.variable(aInit)], ['b', tf.variable(tf.tensor1d(lcg(700, 2)))],
    ['c', tf.variable(tf.tensor1d(lcg(3, 3)))], ['d', tf.variable(tf.tensor2d(lcg(10, 4), [2, 5]))]]);
  const opt = new AdamW(params, [['a', 'c'], ['b', 'd']], { weightDecay: 0.1 });
  const layout = [{ name: 'b', size: 700 }, { name: 'a', size: 12 }, { name: 'd', size: 10 }];
  for (let s = 0; s < 3; s++) {
    const values = layout.map(({ size }, i) => lcg(size, 100 + 10 * s + i));
    const hyper = { lrs: [1e-2, 3e-3], momentum: 0.95 - 0.05 * s };
    const whole = tf.tensor1d(Float32Array.from(values.flatMap((v) => [...v])));
    const grads = new Map(layout.map(({ name }, i) => [name, tf.tensor(values[i]!, params.get(name)!.shape)] as const));
    const step = (): void => (flat ? opt.stepFlat(whole, layout, hyper) : opt.step(grads, hyper));
    if (onStep !== undefined && s === 2) await onStep(step);
    else step();
    tf.dispose([whole, ...grads.values()]);
  }
  const state = await opt.exportState();
  const out = { params: await Promise.all([...params.values()].map(read)), m: state.params.map((e) => e.expAvg), steps: state.params.map((e) => e.step) };
  assert.deepEqual(await read(aInit), Float32Array.from(lcg(12, 1)), 'the tensor a was made from is not written');
  opt.dispose();
  tf.dispose([...params.values(), aInit]);
  return out;
}

test('AdamW.stepFlat on webgpu (updates read the flat gradient at offsets) matches AdamW.step on cpu; cpu stepFlat = cpu step exactly', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  const ref = await adamwRun('cpu', false);
  assert.deepEqual(await adamwRun('cpu', true), ref, 'the split fallback of other backends is step itself');
  let counts: DispatchCounts | null = null;
  let tensors = 0, buffers = 0;
  const got = await adamwRun('webgpu', true, async (step) => {
    tensors = tf.memory().numTensors;
    buffers = tf.engine().backend.numDataIds();
    counts = await countDispatches(step);
    assert.equal(tf.memory().numTensors, tensors, 'tensors after = before');
    assert.equal(tf.engine().backend.numDataIds(), buffers, 'webgpu buffers after = before');
  });
  ref.params.forEach((r, i) => assert.ok(relError(got.params[i]!, r) <= TOL, `param ${'abcd'[i]}: ${relError(got.params[i]!, r)}`));
  ref.m.forEach((r, i) => assert.ok(relError(got.m[i]!, r) <= TOL, `m ${i}: ${relError(got.m[i]!, r)}`));
  assert.deepEqual(got.steps, [3, 3, 3]);
  const c = counts! as DispatchCounts;
  assert.equal(kernel(c, ADAMW_KERNEL)?.dispatches, 3, 'one dispatch per parameter in the layout');
  assert.equal(kernel(c, 'SplitV'), undefined, 'no split');
  // c's decay is a Multiply (on tfjs-webgpu's CPU path while c's 3 values are still in CPU memory: no dispatch).
  assert.equal(c.dispatches - (kernel(c, 'Multiply')?.dispatches ?? 0), 3, 'nothing but the 3 updates and the decay of c');
});

test('AdamW.stepFlat refuses a bad layout or flat gradient before modifying anything; the kernel checks gOffset bounds', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  const p = tf.variable(tf.tensor1d([1, 2, 3])), q = tf.variable(tf.tensor1d([4, 5]));
  const opt = new AdamW(new Map([['p', p], ['q', q]]), [['p', 'q']], { trainable: ['p'] });
  const flat = tf.tensor1d([0.1, 0.2, 0.3]);
  const hyper = { lrs: [1e-2], momentum: 0.9 };
  const internal = (re: RegExp) => (err: Error & { code?: string }) => err.code === 'ERR_INTERNAL' && re.test(err.message);
  assert.throws(() => opt.stepFlat(flat, [{ name: 'q', size: 2 }], hyper), internal(/non-trainable parameter q/));
  assert.throws(() => opt.stepFlat(flat, [{ name: 'p', size: 2 }], hyper), internal(/gradient of p has 2 values, parameter has 3/));
  assert.throws(() => opt.stepFlat(flat, [{ name: 'p', size: 3 }, { name: 'p', size: 3 }], hyper), internal(/names p twice/));
  const short = tf.tensor1d([1, 2]);
  assert.throws(() => opt.stepFlat(short, [{ name: 'p', size: 3 }], hyper), internal(/must be \[3\] float32/));
  short.dispose();
  assert.equal(opt.stepCount('p'), 0, 'no step taken');
  assert.deepEqual(await read(p), Float32Array.of(1, 2, 3), 'p untouched');
  const attrs: AdamWAttrs = { beta1: 0.9, beta2: 0.99, eps: 1e-8, decay: 1, stepSize: 1e-2, sqrtBc2: 0.1, gOffset: 1 };
  const m = tf.variable(tf.zeros([3])), v = tf.variable(tf.zeros([3]));
  assert.throws(() => tf.engine().runKernel(ADAMW_KERNEL, { p, g: flat, m, v }, attrs as unknown as tf.NamedAttrMap),
    /g has 3 elements, needs gOffset \+ n = 1 \+ 3/);
  assert.throws(() => tf.engine().runKernel(ADAMW_KERNEL, { p, g: flat, m, v }, { ...attrs, gOffset: -1 } as unknown as tf.NamedAttrMap),
    /gOffset must be an integer/);
  opt.dispose();
  tf.dispose([p, q, flat, m, v]);
});

test('a Replica step on webgpu: gradients flattened by copies (no concat), AdamW from the flat gradient (no split); exact counts, flat memory', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  const n = 2, size = 32;
  const x = lcg(n * size * size * 3, 11);
  const y = Int32Array.from({ length: n }, (_, i) => i);
  const r = await Replica.create({ arch: { block: 'basic', layers: [1, 1, 1, 1] }, numClasses: 7, seed: 3, pretrained: null, frozen: false,
    head: { hidden: 16, ps: [0, 0] } });
  try {
    const step = async (): Promise<void> => {
      await r.accumulate(x, y, null, 1);
      r.applyGradients(await r.takeGradients(), { lrs: [1e-3, 1e-3, 1e-2], momentum: 0.9 });
      await r.learner.params.values().next().value!.data();
    };
    await step(); // creates the AdamW moments and compiles the shaders
    const tensors = tf.memory().numTensors;
    const buffers = tf.engine().backend.numDataIds();
    const counts = await countDispatches(step);
    const trainable = r.gradientLayout().length;
    // The head's AdaptiveConcatPool2d (concat of max and average pool) and its gradient (a split) remain: one each.
    assert.equal(kernel(counts, 'Concat')?.calls, 1, 'no concat of the gradients');
    assert.equal(kernel(counts, 'SplitV')?.calls, 1, 'no split of the flat gradient');
    assert.deepEqual(kernel(counts, FLATTEN_KERNEL), { name: FLATTEN_KERNEL, calls: 1, dispatches: 0, uploads: 0, copies: trainable });
    assert.equal(kernel(counts, ADAMW_KERNEL)?.dispatches, trainable, 'one AdamW dispatch per trainable tensor');
    assert.equal(tf.memory().numTensors, tensors, 'tensors after = before');
    assert.equal(tf.engine().backend.numDataIds(), buffers, 'webgpu buffers after = before');
  } finally {
    r.dispose();
  }
});
