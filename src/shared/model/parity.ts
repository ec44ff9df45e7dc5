/**
 * Numerical parity of a tfjs {@link ResNet} against a case recorded with PyTorch: eval-mode logits, train-mode mean
 * cross-entropy loss and parameter gradients. Case file layout (safetensors, see `../shared/README.md`):
 * `input_nchw [b,3,h,w] F32`, `labels [b] I64`, `logits_eval [b,classes] F32`, `logits_train`, `loss_train [1]`,
 * `grad.<torch param name>` in torch layouts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TrainerError } from '../errors.js';
import { registerTfjsGradients } from '../compute/kernels/gradients.js';
import type { ResNet } from './resnet.js';
import type { SafetensorsTensor } from './safetensors.js';

/** Tolerances on the relative error `max|a − b| / max|b|` (the project's parity contract). */
export interface ParityTolerances {
  /** Eval logits and train logits. Default 1e-4. */
  logits?: number;
  /** Train-mode loss. Default 1e-5. */
  loss?: number;
  /** Each gradient. Default 1e-3. */
  grad?: number;
}

/** Default {@link ParityTolerances}. */
export const DEFAULT_PARITY_TOLERANCES: Readonly<Required<ParityTolerances>> = Object.freeze({ logits: 1e-4, loss: 1e-5, grad: 1e-3 });

/** One compared quantity. */
export interface ParityEntry {
  /** `logits_eval`, `logits_train`, `loss_train` or `grad.<param>`. */
  readonly name: string;
  /** `max|ours − torch| / max|torch|`. */
  readonly relError: number;
  readonly tolerance: number;
  readonly ok: boolean;
}

/** The outcome of {@link checkParity}. */
export interface ParityReport {
  readonly entries: readonly ParityEntry[];
  readonly ok: boolean;
}

/**
 * Relative error `max|a − b| / max|b|` (the parity metric; 0 when both are all zeros, Infinity when only `b` is).
 *
 * @throws TrainerError ERR_DATA when lengths differ
 */
export function maxRelativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new TrainerError('ERR_DATA', `maxRelativeError: lengths differ (${a.length} vs ${b.length})`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  if (Number.isNaN(diff)) return NaN;
  return diff === 0 ? 0 : diff / scale;
}

/**
 * Mean cross-entropy over the batch (PyTorch `F.cross_entropy`, reduction `mean`).
 *
 * @param logits - `[batch, classes] float32`
 * @param labels - `[batch] int32`, class indices
 * @returns scalar float32
 */
export function meanCrossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits);
    const picked = tf.sum(tf.mul(logp, tf.oneHot(labels, logits.shape[1])), 1);
    return tf.neg(tf.mean(picked));
  });
}

function need(c: ReadonlyMap<string, SafetensorsTensor>, key: string): SafetensorsTensor {
  const t = c.get(key);
  if (!t) throw new TrainerError('ERR_WEIGHTS', `parity case: missing key "${key}"`);
  return t;
}

/** Permutation taking a tfjs-layout parameter (HWIO conv, `[in, out]` fc) to torch layout, by rank. */
function tfjsToTorchPerm(rank: number): number[] | null {
  if (rank === 4) return [3, 2, 0, 1];
  if (rank === 2) return [1, 0];
  return null;
}

interface Computed {
  logitsEval: Float32Array;
  logitsTrain: Float32Array;
  loss: number;
  grads: Map<string, Float32Array>;
}

async function trainPass(model: ResNet, x: tf.Tensor4D, labels: tf.Tensor1D, gradNames: string[]): Promise<Omit<Computed, 'logitsEval'>> {
  // The train logits are kept and read asynchronously afterwards (GPU backends cannot read synchronously).
  let kept: tf.Tensor | null = null;
  const trainLoss = (): tf.Scalar => {
    const logits = model.forward(x, true);
    kept = tf.keep(logits);
    return meanCrossEntropy(logits, labels);
  };
  const readLogits = async (): Promise<Float32Array> => {
    const t = kept!;
    try {
      return Float32Array.from(await t.data() as Float32Array);
    } finally {
      t.dispose();
    }
  };
  if (gradNames.length === 0) {
    const loss = tf.tidy(trainLoss);
    const value = (await loss.data())[0];
    loss.dispose();
    return { logitsTrain: await readLogits(), loss: value, grads: new Map() };
  }
  const vars = gradNames.map((n) => model.params.get(n)!);
  const { value, grads } = tf.variableGrads(trainLoss, vars);
  const logitsTrain = await readLogits();
  const out = new Map<string, Float32Array>();
  for (const [i, name] of gradNames.entries()) {
    const g = grads[vars[i].name];
    const perm = tfjsToTorchPerm(g.rank);
    const torchLayout = perm ? tf.transpose(g, perm) : g;
    out.set(name, (await torchLayout.data()) as Float32Array);
    if (torchLayout !== g) torchLayout.dispose();
  }
  const loss = (await value.data())[0];
  tf.dispose([value, ...Object.values(grads)]);
  return { logitsTrain, loss, grads: out };
}

async function compute(model: ResNet, c: ReadonlyMap<string, SafetensorsTensor>, gradNames: string[]): Promise<Computed> {
  const inp = need(c, 'input_nchw');
  if (inp.shape.length !== 4 || inp.shape[1] !== 3 || inp.dtype !== 'F32') {
    throw new TrainerError('ERR_WEIGHTS', `parity case: input_nchw must be [batch, 3, height, width] F32, got [${inp.shape}] ${inp.dtype}`);
  }
  const x = tf.tidy(() => tf.transpose(tf.tensor4d(inp.data as Float32Array, inp.shape as [number, number, number, number], 'float32'), [0, 2, 3, 1]));
  const labels = tf.tensor1d(Int32Array.from(need(c, 'labels').data as BigInt64Array, Number), 'int32');
  try {
    const evalT = model.forward(x, false);
    const logitsEval = (await evalT.data()) as Float32Array;
    evalT.dispose();
    return { logitsEval, ...(await trainPass(model, x, labels, gradNames)) };
  } finally {
    x.dispose();
    labels.dispose();
  }
}

/**
 * Runs the case through `model` (weights already loaded) and compares with PyTorch's recorded values.
 * Does not change the model (no BN running-stat update, no step).
 *
 * @param model - a ResNet with a classifier whose `numClasses` matches the case
 * @param caseTensors - the case file's tensors
 * @throws TrainerError ERR_WEIGHTS when the case lacks a required key or names a gradient of an unknown parameter
 */
export async function checkParity(
  model: ResNet, caseTensors: ReadonlyMap<string, SafetensorsTensor>, tolerances: ParityTolerances = {},
): Promise<ParityReport> {
  const tol = { ...DEFAULT_PARITY_TOLERANCES, ...tolerances };
  const gradNames = [...caseTensors.keys()].filter((k) => k.startsWith('grad.')).map((k) => k.slice(5));
  for (const n of gradNames) if (!model.params.has(n)) throw new TrainerError('ERR_WEIGHTS', `parity case: grad.${n} names no parameter of the model`);
  await registerTfjsGradients();
  const got = await compute(model, caseTensors, gradNames);
  const entries: ParityEntry[] = [];
  const add = (name: string, ours: ArrayLike<number>, tolerance: number): void => {
    const relError = maxRelativeError(ours, need(caseTensors, name).data as Float32Array);
    entries.push({ name, relError, tolerance, ok: relError <= tolerance });
  };
  add('logits_eval', got.logitsEval, tol.logits);
  if (caseTensors.has('logits_train')) add('logits_train', got.logitsTrain, tol.logits);
  add('loss_train', [got.loss], tol.loss);
  for (const n of gradNames) add(`grad.${n}`, got.grads.get(n)!, tol.grad);
  return { entries, ok: entries.every((e) => e.ok) };
}
