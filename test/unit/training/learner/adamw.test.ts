import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { AdamW, type AdamWOptions } from '../../../../src/training/learner/adamw.js';

before(async () => {
  await initBackend('auto'); // WASM here; cpu if WASM cannot start
});

/**
 * Float64 reference of one AdamW step, written from the formulas of fastai 1.0.61 OptimWrapper.step (true_wd)
 * and PyTorch 1.4 Adam.step, element by element.
 */
function refStep(p: number[], g: number[] | undefined, st: { t: number; m: number[]; v: number[] },
  lr: number, beta1: number, o: { beta2: number; eps: number; wd: number }): number[] {
  const decayed = p.map((x) => x * (1 - lr * o.wd));
  if (g === undefined) return decayed;
  st.t += 1;
  const bc1 = 1 - beta1 ** st.t;
  const bc2 = 1 - o.beta2 ** st.t;
  return decayed.map((x, i) => {
    st.m[i] = beta1 * st.m[i]! + (1 - beta1) * g[i]!;
    st.v[i] = o.beta2 * st.v[i]! + (1 - o.beta2) * g[i]! * g[i]!;
    const denom = Math.sqrt(st.v[i]!) / Math.sqrt(bc2) + o.eps;
    return x - (lr / bc1) * (st.m[i]! / denom);
  });
}

/** float32 vs float64: |got − ref| ≤ 2e-6·max(1, |ref|) (a few float32 ulps after ~10 float32 operations). */
function assertClose(got: ArrayLike<number>, ref: readonly number[], what: string): void {
  assert.equal(got.length, ref.length);
  for (let i = 0; i < ref.length; i += 1) {
    const tol = 2e-6 * Math.max(1, Math.abs(ref[i]!));
    assert.ok(Math.abs(got[i]! - ref[i]!) <= tol, `${what}[${i}]: expected ${ref[i]}, got ${got[i]}`);
  }
}

const A0 = [0.5, -1.25, 2, 0.75, -0.3, 1.1];
const B0 = [0.2, -0.4, 0.9, -1.5];
/** Per step: lrs for groups [a] and [b], momentum (a one-cycle-like sweep), gradients (b has none at step 2). */
const STEPS: ReadonlyArray<{ lrs: number[]; mom: number; ga: number[]; gb: number[] | undefined }> = [
  { lrs: [1e-2, 1e-1], mom: 0.95, ga: [0.3, -0.2, 0.5, 1.0, -0.7, 0.05], gb: [0.1, 0.2, -0.3, 0.4] },
  { lrs: [2e-2, 5e-2], mom: 0.9, ga: [-0.1, 0.4, 0.2, -0.6, 0.3, 0.2], gb: [-0.2, 0.1, 0.3, 0.1] },
  { lrs: [5e-2, 8e-2], mom: 0.85, ga: [0.2, 0.2, -0.4, 0.1, 0.9, -0.3], gb: undefined },
  { lrs: [1e-3, 1e-4], mom: 0.93, ga: [0.05, -0.02, 0.01, 0.3, -0.1, 0.6], gb: [0.3, -0.1, 0.2, -0.5] },
];

function makeParams(): Map<string, tf.Variable> {
  return new Map<string, tf.Variable>([
    ['a.weight', tf.variable(tf.tensor2d(A0, [2, 3]))],
    ['b.bias', tf.variable(tf.tensor1d(B0))],
  ]);
}

function runAgainstReference(options: AdamWOptions, ref: { beta2: number; eps: number; wd: number }): void {
  const params = makeParams();
  const opt = new AdamW(params, [['a.weight'], ['b.bias']], options);
  let [a, b] = [[...A0], [...B0]];
  const sa = { t: 0, m: A0.map(() => 0), v: A0.map(() => 0) };
  const sb = { t: 0, m: B0.map(() => 0), v: B0.map(() => 0) };
  STEPS.forEach((s, k) => {
    const grads = new Map<string, tf.Tensor>([['a.weight', tf.tensor2d(s.ga, [2, 3])]]);
    if (s.gb) grads.set('b.bias', tf.tensor1d(s.gb));
    opt.step(grads, { lrs: s.lrs, momentum: s.mom });
    tf.dispose([...grads.values()]);
    a = refStep(a, s.ga, sa, s.lrs[0]!, s.mom, ref);
    b = refStep(b, s.gb, sb, s.lrs[1]!, s.mom, ref);
    assertClose(params.get('a.weight')!.dataSync(), a, `step ${k} a`);
    assertClose(params.get('b.bias')!.dataSync(), b, `step ${k} b`);
  });
  assert.equal(opt.stepCount('a.weight'), 4);
  assert.equal(opt.stepCount('b.bias'), 3, 'b had no gradient at step 2: decayed only, no Adam step');
  opt.dispose();
  tf.dispose([...params.values()]);
}

test('AdamW matches a float64 hand reference over 4 steps with changing lr and momentum (fastai defaults)', () => {
  runAgainstReference({}, { beta2: 0.99, eps: 1e-8, wd: 1e-2 });
});

test('AdamW matches the reference where eps placement, wd order and beta1 bias correction all matter', () => {
  // eps 1e-1 is comparable to √v, so eps outside the √(1−β2^t) correction is visible; wd 0.5 with lr 0.1 makes
  // decay-before-step differ from decay-after-step by lr·wd·update ≈ 5e-3.
  runAgainstReference({ eps: 1e-1, weightDecay: 0.5, beta2: 0.9 }, { beta2: 0.9, eps: 1e-1, wd: 0.5 });
});

test('only trainable parameters change; gradients for frozen ones are rejected before any change', () => {
  const params = makeParams();
  const opt = new AdamW(params, [['a.weight'], ['b.bias']], { trainable: ['b.bias'] });
  const ga = tf.tensor2d(STEPS[0]!.ga, [2, 3]);
  const gb = tf.tensor1d(STEPS[0]!.gb!);
  assert.throws(() => opt.step(new Map<string, tf.Tensor>([['a.weight', ga], ['b.bias', gb]]), { lrs: [1e-2, 1e-2], momentum: 0.9 }),
    (e: unknown) => isTrainerError(e, 'ERR_INTERNAL') && /non-trainable parameter a.weight/.test(e.message));
  assert.deepEqual(Array.from(params.get('b.bias')!.dataSync()), Array.from(Float32Array.from(B0)), 'no partial update');
  opt.step(new Map([['b.bias', gb]]), { lrs: [1e-2, 1e-2], momentum: 0.9 });
  assert.deepEqual(Array.from(params.get('a.weight')!.dataSync()), Array.from(Float32Array.from(A0)));
  assert.notDeepEqual(Array.from(params.get('b.bias')!.dataSync()), Array.from(Float32Array.from(B0)));
  tf.dispose([ga, gb, ...params.values()]);
  opt.dispose();
});

test('step validates rates, momentum and shapes with named errors', () => {
  const params = makeParams();
  const opt = new AdamW(params, [['a.weight'], ['b.bias']]);
  const g = new Map<string, tf.Tensor>([['b.bias', tf.zeros([3])]]);
  const err = (hyper: { lrs: number[]; momentum: number }, grads: Map<string, tf.Tensor>, re: RegExp) =>
    assert.throws(() => opt.step(grads, hyper), (e: unknown) => isTrainerError(e, 'ERR_INTERNAL') && re.test(e.message));
  err({ lrs: [1e-3], momentum: 0.9 }, new Map(), /one lr per layer group \(2\), got 1/);
  err({ lrs: [1e-3, -1], momentum: 0.9 }, new Map(), /lrs\[1\] must be finite and ≥ 0, got -1/);
  err({ lrs: [1e-3, 1e-3], momentum: 1 }, new Map(), /momentum must be in \[0, 1\), got 1/);
  err({ lrs: [1e-3, 1e-3], momentum: 0.9 }, g, /gradient of b.bias has shape \[3\], parameter has \[4\]/);
  assert.throws(() => new AdamW(params, [['a.weight'], ['a.weight']]), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG'));
  assert.throws(() => new AdamW(params, [['nope']]), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG'));
  assert.throws(() => new AdamW(params, [['a.weight']], { trainable: ['b.bias'] }), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG'));
  tf.dispose([...g.values(), ...params.values()]);
});

test('exportState/importState round-trips exactly: a restored optimizer continues bit-identically', async () => {
  const [p1, p2] = [makeParams(), makeParams()];
  const groups = [['a.weight'], ['b.bias']];
  const [o1, o2] = [new AdamW(p1, groups), new AdamW(p2, groups)];
  const grads = (k: number) => new Map<string, tf.Tensor>([['a.weight', tf.tensor2d(STEPS[k]!.ga, [2, 3])],
    ['b.bias', tf.tensor1d(STEPS[k]!.gb ?? [0, 0, 0, 0])]]);
  for (const k of [0, 1]) {
    const g = grads(k);
    o1.step(g, { lrs: STEPS[k]!.lrs, momentum: STEPS[k]!.mom });
    o2.step(g, { lrs: [1, 1], momentum: 0.5 }); // different history on purpose: import must overwrite it
    tf.dispose([...g.values()]);
  }
  const state = await o1.exportState();
  assert.deepEqual(state.params.map((e) => [e.name, e.step]), [['a.weight', 2], ['b.bias', 2]]);
  o2.importState(structuredClone(state));
  assert.deepEqual(await o2.exportState(), state);
  for (const [name, v] of p1) p2.get(name)!.assign(v);
  const g = grads(3);
  o1.step(g, { lrs: STEPS[3]!.lrs, momentum: STEPS[3]!.mom });
  o2.step(g, { lrs: STEPS[3]!.lrs, momentum: STEPS[3]!.mom });
  for (const name of p1.keys()) assert.deepEqual(p2.get(name)!.dataSync(), p1.get(name)!.dataSync(), name);
  assert.throws(() => o2.importState({ version: 1, params: [{ ...state.params[0]!, expAvg: new Float32Array(2) }] }),
    (e: unknown) => isTrainerError(e, 'ERR_CHECKPOINT') && /has 2\/6 values, parameter has 6/.test(e.message));
  o2.reset();
  assert.equal(o2.stepCount('a.weight'), 0);
  assert.deepEqual((await o2.exportState()).params, []);
  tf.dispose([...g.values(), ...p1.values(), ...p2.values()]);
  o1.dispose();
  o2.dispose();
});

test('tensor count stays flat over steps (moments allocated once, on the first gradient)', () => {
  const params = makeParams();
  const opt = new AdamW(params, [['a.weight'], ['b.bias']]);
  const g = new Map<string, tf.Tensor>([['a.weight', tf.ones([2, 3])], ['b.bias', tf.ones([4])]]);
  opt.step(g, { lrs: [1e-3, 1e-3], momentum: 0.9 });
  const after1 = tf.memory().numTensors;
  for (let i = 0; i < 10; i += 1) opt.step(g, { lrs: [1e-3, 1e-3], momentum: 0.9 });
  assert.equal(tf.memory().numTensors, after1);
  opt.dispose();
  assert.equal(tf.memory().numTensors, after1 - 4, 'dispose frees the 2×2 moment tensors');
  tf.dispose([...g.values(), ...params.values()]);
});
