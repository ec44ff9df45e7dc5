/**
 * An optional fused AdamW kernel: backends that register `PetsAdamW` (the native backend, `native/kernels.ts`) run
 * a parameter's whole AdamW update in one pass instead of ~14 element-wise ops with their full-size intermediates.
 * `learner/adamw.ts` uses it when the active backend has it and no in-place update (`PetsAdamWUpdate`, which the
 * native backend also has and AdamW prefers: no new arrays per step); the formula and its rounding are the same.
 *
 * ```
 * m' = m·β1 + g·(1−β1);  v' = v·β2 + g²·(1−β2);  p' = p·(1−lr·wd) − (m' / (√v'/√bc2 + eps))·(lr/bc1)
 * ```
 * (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019; bias corrections bc1 = 1 − β1^t,
 * bc2 = 1 − β2^t as in PyTorch's `AdamW`.)
 */
import * as tf from '@tensorflow/tfjs-core';

/** tfjs kernel name of the fused step. */
export const FUSED_ADAMW_KERNEL = 'PetsAdamW';

/** Attributes of {@link FUSED_ADAMW_KERNEL}: the step's scalars, each used as a float32 as the tfjs ops do. */
export interface FusedAdamWAttrs {
  readonly beta1: number;
  readonly beta2: number;
  /** √(1 − β2^t). */
  readonly sqrtBc2: number;
  readonly eps: number;
  /** 1 − lr·weightDecay. */
  readonly decay: number;
  /** lr / (1 − β1^t). */
  readonly stepSize: number;
}

/**
 * Runs the fused kernel when the active backend has one.
 *
 * @param p - parameter, @param g - its gradient, @param m - first moment, @param v - second moment: same shape, float32
 * @returns `[p', m', v']` (new tensors, the caller assigns and disposes them), or null when the backend has no such
 *   kernel (the caller then uses tfjs ops)
 */
export function fusedAdamWStep(p: tf.Tensor, g: tf.Tensor, m: tf.Tensor, v: tf.Tensor,
  attrs: FusedAdamWAttrs): [tf.Tensor, tf.Tensor, tf.Tensor] | null {
  if (tf.getKernel(FUSED_ADAMW_KERNEL, tf.getBackend()) === undefined) return null;
  return tf.engine().runKernel(FUSED_ADAMW_KERNEL, { p, g, m, v },
    attrs as unknown as tf.NamedAttrMap) as unknown as [tf.Tensor, tf.Tensor, tf.Tensor];
}
