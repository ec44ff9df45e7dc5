/**
 * The in-place one-dispatch AdamW update on WebGPU (`compute/webgpu/adamw-kernel.ts`, used by `learner/adamw.ts`)
 * against the same optimizer on tfjs `cpu` (tfjs element-wise ops) and against the fastai/PyTorch AdamW formula
 * written out here in float32 arithmetic.
 *
 * Covers what an in-place kernel can get wrong: a parameter whose buffer is shared with another tensor (must be
 * left alone), a CPU copy cached by an earlier read (must not be returned stale), several layer groups with their own
 * lr, a parameter without gradient (decay only), per-parameter step counts after `importState`, the grid-stride loop
 * past 65,535 workgroups, `tf.time` (timestamp-query path), one dispatch per tensor, and flat tensor counts.
 * Runs on any WebGPU adapter (lavapipe in CI); skipped, saying why, where none exists (required with
 * PETS_REQUIRE_WEBGPU=1). Tolerance: relative error 1e-5 (float32 both sides, same formula).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { AdamW, type AdamWState } from '../../../../../src/training/learner/adamw.js';
import { ADAMW_KERNEL } from '../../../../../src/training/compute/webgpu/adamw-kernel.js';
import { lcg, relError } from '../numeric.js';
import { webgpuOrSkip } from './support.js';

const TOL = 1e-5;
const f32 = Math.fround;

/** fastai v1 true_wd AdamW (PyTorch Adam with decoupled decay), one step, float32 arithmetic; updates in place. */
function adamwRef(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, lr: number, beta1: number, t: number,
  beta2 = 0.99, eps = 1e-8, wd = 0.1): void {
  const bc1 = 1 - beta1 ** t, sqrtBc2 = Math.sqrt(1 - beta2 ** t);
  for (let i = 0; i < p.length; i++) {
    m[i] = f32(beta1 * m[i]! + (1 - beta1) * g[i]!);
    v[i] = f32(beta2 * v[i]! + (1 - beta2) * g[i]! * g[i]!);
    p[i] = f32(p[i]! * (1 - lr * wd) - (lr / bc1) * (m[i]! / (Math.sqrt(v[i]!) / sqrtBc2 + eps)));
  }
}

const read = async (t: tf.Tensor): Promise<Float32Array> => Float32Array.from(await t.data() as Float32Array);

interface Outcome { params: Float32Array[]; state: AdamWState; untouched: Float32Array }

/**
 * 4 steps on `backend`: groups [a, c] and [b] with their own lr, `c` never has a gradient, `a` is made from a tensor
 * that stays alive (shared buffer), and all state is read between steps 2 and 3 (CPU caches).
 */
async function scenario(backend: string): Promise<Outcome> {
  await tf.setBackend(backend);
  const aInit = tf.tensor2d(lcg(12, 1), [3, 4]);
  const params = new Map<string, tf.Variable>([['a', tf.variable(aInit)], ['b', tf.variable(tf.tensor1d(lcg(700, 2)))],
    ['c', tf.variable(tf.tensor1d(lcg(3, 3)))]]);
  const opt = new AdamW(params, [['a', 'c'], ['b']], { weightDecay: 0.1 });
  for (let step = 0; step < 4; step++) {
    const grads = new Map<string, tf.Tensor>([['a', tf.tensor2d(lcg(12, 10 + step), [3, 4])], ['b', tf.tensor1d(lcg(700, 20 + step))]]);
    opt.step(grads, { lrs: [1e-2, 3e-3], momentum: 0.95 - 0.05 * step });
    tf.dispose([...grads.values()]);
    if (step === 1) {
      await opt.exportState();
      await Promise.all([...params.values()].map(read));
    }
  }
  const out = { params: await Promise.all([...params.values()].map(read)), state: await opt.exportState(), untouched: await read(aInit) };
  opt.dispose();
  tf.dispose([...params.values(), aInit]);
  return out;
}

test('in-place AdamW on webgpu matches AdamW on cpu and the written-out formula (groups, decay-only, shared buffer, cached reads)', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  const ref = await scenario('cpu');
  const got = await scenario('webgpu');
  // The formula by hand for b (group 1, lr 3e-3) over the 4 steps.
  const p = Float32Array.from(lcg(700, 2)), m = new Float32Array(700), v = new Float32Array(700);
  for (let step = 0; step < 4; step++) adamwRef(p, Float32Array.from(lcg(700, 20 + step)), m, v, 3e-3, 0.95 - 0.05 * step, step + 1);
  assert.ok(relError(got.params[1]!, p) <= TOL, `b vs formula: ${relError(got.params[1]!, p)}`);
  assert.ok(relError(got.state.params.find((e) => e.name === 'b')!.expAvgSq, v) <= TOL, 'v of b vs formula');
  ref.params.forEach((r, i) => assert.ok(relError(got.params[i]!, r) <= TOL, `param ${i}: ${relError(got.params[i]!, r)}`));
  assert.deepEqual(got.state.params.map((e) => [e.name, e.step]), [['a', 4], ['b', 4]]);
  ref.state.params.forEach((e, i) => {
    assert.ok(relError(got.state.params[i]!.expAvg, e.expAvg) <= TOL, `m of ${e.name}`);
    assert.ok(relError(got.state.params[i]!.expAvgSq, e.expAvgSq) <= TOL, `v of ${e.name}`);
  });
  assert.deepEqual(got.untouched, Float32Array.from(lcg(12, 1)), 'the tensor a was made from is not written');
});

test('in-place AdamW on webgpu: one dispatch per tensor, per-parameter step counts after importState, flat memory, tf.time', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  const n = [5, 9, 4];
  const params = new Map(n.map((k, i) => [`w${i}`, tf.variable(tf.tensor1d(lcg(k, 40 + i)))] as const));
  const opt = new AdamW(params, [['w0', 'w1'], ['w2']], { weightDecay: 0.1 });
  // w1 resumes at step 7 with given moments; w0 and w2 start from zero state.
  const m1 = Float32Array.from(lcg(9, 50), (x) => x * 0.1), v1 = Float32Array.from(lcg(9, 51), (x) => x * x * 0.01);
  opt.importState({ version: 1, params: [{ name: 'w1', step: 7, expAvg: m1, expAvgSq: v1 }] });
  const refs = n.map((k, i) => ({ p: Float32Array.from(lcg(k, 40 + i)), m: i === 1 ? m1.slice() : new Float32Array(k), v: i === 1 ? v1.slice() : new Float32Array(k) }));
  const counts: number[] = [];
  const before = tf.memory().numTensors;
  for (let step = 0; step < 3; step++) {
    const gs = n.map((k, i) => tf.tensor1d(lcg(k, 60 + 10 * step + i)));
    const grads = new Map(gs.map((g, i) => [`w${i}`, g] as const));
    const lrs = [2e-2, 5e-3];
    const profile = await tf.profile(() => { opt.step(grads, { lrs, momentum: 0.9 }); });
    counts.push(profile.kernels.filter((k) => k.name === ADAMW_KERNEL).length);
    // Step 0 also zero-fills the new moments of w0 and w2; later steps run nothing but the update.
    if (step > 0) assert.deepEqual(profile.kernels.map((k) => k.name), [ADAMW_KERNEL, ADAMW_KERNEL, ADAMW_KERNEL], 'one kernel per tensor');
    if (step === 2) await tf.time(() => opt.step(grads, { lrs, momentum: 0.9 }));
    refs.forEach((r, i) => {
      adamwRef(r.p, Float32Array.from(lcg(n[i]!, 60 + 10 * step + i)), r.m, r.v, lrs[i < 2 ? 0 : 1]!, 0.9, [1, 8, 1][i]! + step);
      if (step === 2) adamwRef(r.p, Float32Array.from(lcg(n[i]!, 60 + 10 * step + i)), r.m, r.v, lrs[i < 2 ? 0 : 1]!, 0.9, [1, 8, 1][i]! + step + 1);
    });
    tf.dispose(gs);
    if (step === 0) assert.equal(tf.memory().numTensors, before + 4, 'new tensors: the moments of w0 and w2 only');
  }
  assert.equal(tf.memory().numTensors, before + 4, 'no tensor leaks over the steps');
  assert.deepEqual(counts, [3, 3, 3]);
  assert.deepEqual(['w0', 'w1', 'w2'].map((k) => opt.stepCount(k)), [4, 11, 4]);
  const state = await opt.exportState();
  for (const [i, r] of refs.entries()) {
    assert.ok(relError(await read(params.get(`w${i}`)!), r.p) <= TOL, `w${i} vs formula`);
    assert.ok(relError(state.params[i]!.expAvg, r.m) <= TOL, `m of w${i}`);
    assert.ok(relError(state.params[i]!.expAvgSq, r.v) <= TOL, `v of w${i}`);
  }
  opt.dispose();
  tf.dispose([...params.values()]);
});

test('in-place AdamW on webgpu covers every element past 65,535 workgroups of 256 (grid-stride loop)', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  const n = 65535 * 256 + 1000;
  const g = new Float32Array(n).fill(1), p0 = new Float32Array(n).fill(0.5);
  g[n - 1] = -2;
  const param = tf.variable(tf.tensor1d(p0));
  const grad = tf.tensor1d(g);
  const opt = new AdamW(new Map([['w', param]]), [['w']], { weightDecay: 0.1 });
  opt.step(new Map([['w', grad]]), { lrs: [1e-2], momentum: 0.9 });
  const got = await read(param);
  const want = (gi: number): Float32Array => {
    const p = Float32Array.of(0.5), m = new Float32Array(1), v = new Float32Array(1);
    adamwRef(p, Float32Array.of(gi), m, v, 1e-2, 0.9, 1);
    return p;
  };
  const w1 = want(1)[0]!, wLast = want(-2)[0]!;
  let bad = 0;
  for (let i = 0; i < n - 1; i++) if (Math.abs(got[i]! - w1) > 1e-6) bad++;
  assert.equal(bad, 0, 'every element updated once');
  assert.ok(Math.abs(got[n - 1]! - wLast) <= 1e-6, `last element ${got[n - 1]} vs ${wLast}`);
  opt.dispose();
  tf.dispose([param, grad]);
});
