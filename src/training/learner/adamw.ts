/**
 * AdamW as fastai v1 trains with it: PyTorch's `torch.optim.Adam` (betas (0.9, 0.99), eps 1e-8) wrapped by
 * fastai's `OptimWrapper` with `true_wd=True, bn_wd=True`, which decays every trainable parameter as
 * `p ← p·(1 − lr·wd)` BEFORE the Adam step, with the Adam step's own weight_decay set to 0.
 *
 * Per parameter, for one step with group learning rate lr and beta1 = the scheduled momentum:
 * ```
 * p    ← p·(1 − lr·wd)                          (fastai OptimWrapper.step, true_wd)
 * t    ← t + 1                                  (per-parameter step count, PyTorch state['step'])
 * m    ← beta1·m + (1 − beta1)·g
 * v    ← beta2·v + (1 − beta2)·g²
 * p    ← p − (lr / (1 − beta1^t)) · m / (√v / √(1 − beta2^t) + eps)   (PyTorch ≥ 1.3 Adam.step)
 * ```
 * Sources: fastai 1.0.61 `callback.py` (OptimWrapper.step), PyTorch 1.4 `torch/optim/adam.py`; Loshchilov &
 * Hutter, "Decoupled Weight Decay Regularization" (arXiv:1711.05101). As PyTorch, m and v are created lazily
 * on a parameter's first gradient, and a trainable parameter without a gradient in a step is decayed (fastai
 * decays every parameter of its groups) but not Adam-stepped (PyTorch skips `p.grad is None`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { TrainerError } from '../../contract/errors.js';
import type { StepHyper } from '../../contract/plan/schedule.js';
import { ADAMW_KERNEL, ownBuffer, type AdamWAttrs } from '../compute/webgpu/adamw-kernel.js';

/** Options of {@link AdamW}; all optional. */
export interface AdamWOptions {
  /** Decay of the squared-gradient average, in [0, 1) (fastai 0.99). */
  readonly beta2?: number;
  /** Added to the bias-corrected √v, > 0 (PyTorch 1e-8). */
  readonly eps?: number;
  /** Decoupled weight decay factor, ≥ 0 (fastai `wd` 1e-2), applied as p·(1 − lr·wd). */
  readonly weightDecay?: number;
  /** Names of the parameters that train (fastai `requires_grad`); default all names in the groups. */
  readonly trainable?: Iterable<string>;
}

/** Resolved {@link AdamWOptions} without the trainable set. */
export interface ResolvedAdamWOptions {
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
}

/** fastai v1 defaults: betas (·, 0.99), eps 1e-8, wd 1e-2. */
export const DEFAULT_ADAMW: ResolvedAdamWOptions = Object.freeze({ beta2: 0.99, eps: 1e-8, weightDecay: 1e-2 });

/** The optimizer state of one parameter, as plain arrays (checkpoints, hand-over to a replacement worker). */
export interface AdamWParamState {
  /** Parameter name (torch-style). */
  readonly name: string;
  /** Number of Adam steps taken by this parameter (PyTorch `state['step']`). */
  readonly step: number;
  /** First moment m, same element order as the parameter. */
  readonly expAvg: Float32Array;
  /** Second moment v, same element order as the parameter. */
  readonly expAvgSq: Float32Array;
}

/** Whole optimizer state: one entry per parameter that has taken at least one Adam step. */
export interface AdamWState {
  readonly version: 1;
  readonly params: readonly AdamWParamState[];
}

interface Slot {
  step: number;
  m: tf.Variable;
  v: tf.Variable;
}

/** A non-trainable variable initialised from `init`, without leaking the initial tensor. */
function newVariable(init: () => tf.Tensor): tf.Variable {
  return tf.tidy(() => tf.variable(init(), false));
}

function resolve(options: AdamWOptions): ResolvedAdamWOptions {
  const r = { ...DEFAULT_ADAMW, ...options };
  if (!(r.beta2 >= 0 && r.beta2 < 1)) throw new TrainerError('ERR_BAD_CONFIG', `beta2 must be in [0, 1), got ${r.beta2}`);
  if (!(r.eps > 0)) throw new TrainerError('ERR_BAD_CONFIG', `eps must be > 0, got ${r.eps}`);
  if (!(r.weightDecay >= 0)) throw new TrainerError('ERR_BAD_CONFIG', `weightDecay must be ≥ 0, got ${r.weightDecay}`);
  return Object.freeze({ beta2: r.beta2, eps: r.eps, weightDecay: r.weightDecay });
}

/**
 * AdamW over named `tf.Variable`s in layer groups, each group with its own learning rate per step.
 *
 * Owns its moment tensors; call {@link AdamW.dispose} (or {@link AdamW.reset}) to free them. Never disposes
 * the parameters or the gradients passed in.
 */
export class AdamW {
  /** Resolved hyper-parameters. */
  readonly options: ResolvedAdamWOptions;
  private readonly groupOf = new Map<string, number>();
  private readonly trainableSet: ReadonlySet<string>;
  private readonly slots = new Map<string, Slot>();

  /**
   * @param params - every model parameter by name (float32 variables; only the trainable ones are touched)
   * @param groups - parameter names per layer group; a name in no group cannot be trainable
   * @param options - see {@link AdamWOptions}
   * @throws TrainerError ERR_BAD_CONFIG on invalid options, a name in two groups, a group name missing from
   *   `params`, or a trainable name in no group
   */
  constructor(private readonly params: ReadonlyMap<string, tf.Variable>, readonly groups: readonly (readonly string[])[],
    options: AdamWOptions = {}) {
    this.options = resolve(options);
    groups.forEach((names, g) => names.forEach((name) => {
      if (!params.has(name)) throw new TrainerError('ERR_BAD_CONFIG', `layer group ${g} names unknown parameter ${name}`);
      if (this.groupOf.has(name)) throw new TrainerError('ERR_BAD_CONFIG', `parameter ${name} is in two layer groups`);
      this.groupOf.set(name, g);
    }));
    const trainable = options.trainable ? [...options.trainable] : [...this.groupOf.keys()];
    for (const name of trainable) {
      if (!this.groupOf.has(name)) throw new TrainerError('ERR_BAD_CONFIG', `trainable parameter ${name} is in no layer group`);
    }
    this.trainableSet = new Set(trainable);
  }

  /** Names of the parameters this optimizer updates. */
  get trainable(): ReadonlySet<string> {
    return this.trainableSet;
  }

  /** Adam step count of one parameter (0 before its first gradient). */
  stepCount(name: string): number {
    return this.slots.get(name)?.step ?? 0;
  }

  private checkHyper(hyper: StepHyper): void {
    if (hyper.lrs.length !== this.groups.length) {
      throw new TrainerError('ERR_INTERNAL', `step needs one lr per layer group (${this.groups.length}), got ${hyper.lrs.length}`);
    }
    hyper.lrs.forEach((lr, i) => {
      if (!(Number.isFinite(lr) && lr >= 0)) throw new TrainerError('ERR_INTERNAL', `lrs[${i}] must be finite and ≥ 0, got ${lr}`);
    });
    if (!(hyper.momentum >= 0 && hyper.momentum < 1)) {
      throw new TrainerError('ERR_INTERNAL', `momentum must be in [0, 1), got ${hyper.momentum}`);
    }
  }

  private checkStep(grads: ReadonlyMap<string, tf.Tensor>, hyper: StepHyper): void {
    this.checkHyper(hyper);
    for (const [name, g] of grads) {
      if (!this.trainableSet.has(name)) throw new TrainerError('ERR_INTERNAL', `gradient for non-trainable parameter ${name}`);
      const p = this.params.get(name)!;
      if (!tf.util.arraysEqual(g.shape, p.shape)) {
        throw new TrainerError('ERR_INTERNAL', `gradient of ${name} has shape [${g.shape}], parameter has [${p.shape}]`);
      }
    }
  }

  /**
   * One AdamW step on every trainable parameter.
   *
   * @param grads - gradient per trainable parameter name, same shape as the parameter (not disposed here)
   * @param hyper - learning rate per layer group and momentum (Adam beta1) for this step, e.g. from `oneCycle`
   * @throws TrainerError ERR_INTERNAL on a wrong number of rates, a rate < 0, momentum outside [0, 1), a gradient
   *   for a non-trainable parameter, or a shape mismatch — checked before anything is modified
   */
  step(grads: ReadonlyMap<string, tf.Tensor>, hyper: StepHyper): void {
    this.checkStep(grads, hyper);
    for (const name of this.trainableSet) {
      const lr = hyper.lrs[this.groupOf.get(name)!]!;
      const g = grads.get(name);
      if (g === undefined) this.decayOnly(name, lr);
      else this.update(name, g, lr, hyper.momentum);
    }
  }

  /**
   * One AdamW step from one flat gradient: what {@link step} does with the gradients cut from `flat` by `layout`.
   * On a backend with the in-place update kernel (WebGPU, native) each parameter's update reads its gradient straight from
   * `flat` at its element offset, so nothing is split (one dispatch per parameter in all); on the others `flat` is
   * split into per-parameter tensors for {@link step}. Trainable parameters not in `layout` are decayed only.
   *
   * @param flat - `[Σ layout sizes]` float32, the gradients one after the other in `layout` order (not disposed here)
   * @param layout - trainable parameter names and their element counts (e.g. `Replica.gradientLayout()`)
   * @param hyper - learning rate per layer group and momentum (Adam beta1) for this step
   * @throws TrainerError ERR_INTERNAL on a name that is not trainable or repeats, a size other than the parameter's,
   *   a `flat` that is not 1-D float32 of Σ sizes, and as {@link step} — checked before anything is modified
   */
  stepFlat(flat: tf.Tensor, layout: readonly { readonly name: string; readonly size: number }[], hyper: StepHyper): void {
    this.checkHyper(hyper);
    const offsets = new Map<string, number>();
    let total = 0;
    for (const { name, size } of layout) {
      if (!this.trainableSet.has(name)) throw new TrainerError('ERR_INTERNAL', `gradient for non-trainable parameter ${name}`);
      if (offsets.has(name)) throw new TrainerError('ERR_INTERNAL', `gradient layout names ${name} twice`);
      const p = this.params.get(name)!;
      if (size !== p.size) throw new TrainerError('ERR_INTERNAL', `gradient of ${name} has ${size} values, parameter has ${p.size}`);
      offsets.set(name, total);
      total += size;
    }
    if (flat.rank !== 1 || flat.dtype !== 'float32' || flat.size !== total) {
      throw new TrainerError('ERR_INTERNAL', `flat gradient must be [${total}] float32 (the layout's sizes), got [${flat.shape}] ${flat.dtype}`);
    }
    if (tf.getKernel(ADAMW_KERNEL, tf.getBackend()) === undefined) {
      const parts = tf.split(flat, layout.map((l) => l.size));
      const grads = new Map(layout.map(({ name }, i) => [name, tf.reshape(parts[i]!, this.params.get(name)!.shape)] as const));
      try {
        this.step(grads, hyper);
      } finally {
        tf.dispose([...parts, ...grads.values()]);
      }
      return;
    }
    for (const name of this.trainableSet) {
      const lr = hyper.lrs[this.groupOf.get(name)!]!;
      const offset = offsets.get(name);
      if (offset === undefined) this.decayOnly(name, lr);
      else this.update(name, flat, lr, hyper.momentum, offset);
    }
  }

  private decayOnly(name: string, lr: number): void {
    const p = this.params.get(name)!;
    tf.tidy(() => p.assign(tf.mul(p, 1 - lr * this.options.weightDecay)));
  }

  private slot(name: string): Slot {
    let s = this.slots.get(name);
    if (s === undefined) {
      const p = this.params.get(name)!;
      s = { step: 0, m: newVariable(() => tf.zerosLike(p)), v: newVariable(() => tf.zerosLike(p)) };
      this.slots.set(name, s);
    }
    return s;
  }

  /**
   * One parameter's update; `gOffset` ≥ 0 (only with the in-place kernel): `g` is a flat gradient holding this
   * parameter's at that element offset.
   */
  private update(name: string, g: tf.Tensor, lr: number, beta1: number, gOffset = -1): void {
    const p = this.params.get(name)!;
    const s = this.slot(name);
    const { beta2, eps, weightDecay } = this.options;
    s.step += 1;
    const bc1 = 1 - beta1 ** s.step;
    const bc2 = 1 - beta2 ** s.step;
    if (tf.getKernel(ADAMW_KERNEL, tf.getBackend()) !== undefined) {
      // A backend with an in-place update (WebGPU, native): the same formula in one pass that overwrites p, m and v
      // (no new arrays per step; on native also the reordered filters are refilled in place).
      const attrs: AdamWAttrs = { beta1, beta2, eps, decay: 1 - lr * weightDecay, stepSize: lr / bc1, sqrtBc2: Math.sqrt(bc2),
        gOffset: Math.max(gOffset, 0) };
      for (const x of [p, s.m, s.v]) ownBuffer(x);
      tf.engine().runKernel(ADAMW_KERNEL, { p, g, m: s.m, v: s.v }, attrs as unknown as tf.NamedAttrMap);
      return;
    }
    tf.tidy(() => {
      const m = tf.add(tf.mul(s.m, beta1), tf.mul(g, 1 - beta1));
      const v = tf.add(tf.mul(s.v, beta2), tf.mul(tf.square(g), 1 - beta2));
      const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(bc2)), eps);
      const decayed = tf.mul(p, 1 - lr * weightDecay);
      p.assign(tf.sub(decayed, tf.mul(tf.div(m, denom), lr / bc1)));
      s.m.assign(m);
      s.v.assign(v);
    });
  }

  /** Forgets all moments and step counts (fastai rebuilds the optimizer on freeze/unfreeze). */
  reset(): void {
    for (const s of this.slots.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.slots.clear();
  }

  /** Frees the moment tensors; the optimizer can still be used and starts from zero state. */
  dispose(): void {
    this.reset();
  }

  /** Copies the state out as plain arrays (exact: float32 in, float32 out), in group order. */
  async exportState(): Promise<AdamWState> {
    const out: AdamWParamState[] = [];
    for (const names of this.groups) {
      for (const name of names) {
        const s = this.slots.get(name);
        if (s === undefined) continue;
        const [expAvg, expAvgSq] = await Promise.all([s.m.data(), s.v.data()]);
        out.push({ name, step: s.step, expAvg: Float32Array.from(expAvg), expAvgSq: Float32Array.from(expAvgSq) });
      }
    }
    return { version: 1, params: out };
  }

  /**
   * Replaces the whole state with `state` (parameters absent from it start from zero state).
   *
   * @throws TrainerError ERR_CHECKPOINT on an unknown version, an unknown or non-trainable parameter, a size
   *   mismatch or a step count that is not an integer ≥ 1 — checked before anything is modified
   */
  importState(state: AdamWState): void {
    if (state.version !== 1) throw new TrainerError('ERR_CHECKPOINT', `optimizer state version must be 1, got ${state.version}`);
    for (const e of state.params) {
      const p = this.params.get(e.name);
      if (p === undefined || !this.trainableSet.has(e.name)) {
        throw new TrainerError('ERR_CHECKPOINT', `optimizer state names ${e.name}, which is not a trainable parameter`);
      }
      if (e.expAvg.length !== p.size || e.expAvgSq.length !== p.size) {
        throw new TrainerError('ERR_CHECKPOINT', `optimizer state of ${e.name} has ${e.expAvg.length}/${e.expAvgSq.length} ` +
          `values, parameter has ${p.size}`);
      }
      if (!Number.isInteger(e.step) || e.step < 1) {
        throw new TrainerError('ERR_CHECKPOINT', `optimizer step of ${e.name} must be an integer ≥ 1, got ${e.step}`);
      }
    }
    this.reset();
    for (const e of state.params) {
      const shape = this.params.get(e.name)!.shape;
      this.slots.set(e.name, {
        step: e.step,
        m: newVariable(() => tf.tensor(e.expAvg, shape, 'float32')),
        v: newVariable(() => tf.tensor(e.expAvgSq, shape, 'float32')),
      });
    }
  }
}
