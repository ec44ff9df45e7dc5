/**
 * The BatchNorm running-statistic update (`PetsBatchNormRunningUpdate`, see `compute/kernels/batch-norm.ts`) on the
 * `native` backend: one kernel call per statistic instead of tfjs's `mul`, `mul`, `add` and their two scalar
 * tensors (≈ 5 tensors and 3 kernel dispatches per statistic, 2 statistics per BatchNorm, 36 BatchNorms in a
 * ResNet34 step, more with micro-batch chunks). A `[C]` loop in JavaScript (C ≤ 2048): calling the addon would cost
 * more than the arithmetic.
 */
import { util, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { TrainerError } from '../../../contract/errors.js';
import type { RunningUpdateAttrs } from '../kernels/batch-norm.js';
import type { ArrayPool } from './array-pool.js';

/**
 * `running·(1 − momentum) + batch·(momentum·scale)`: inputs `running`, `batch` `[C] float32`, output `[C] float32`.
 * Bit-identical to the tfjs ops it replaces (`updateRunningStat`'s fallback): both factors are rounded to float32
 * as tfjs's scalar tensors are, each product of two float32 values is exact in float64 and rounded once to float32
 * (as tfjs's cpu `Multiply` stores it), and so is the sum.
 *
 * @throws TrainerError ERR_INTERNAL when the inputs are not two float32 `[C]` tensors of the same length
 */
export const batchNormRunningUpdateNative: KernelFunc = ({ inputs, backend, attrs }) => {
  const { running, batch } = inputs as Record<'running' | 'batch', TensorInfo>;
  const { momentum, scale } = attrs as unknown as RunningUpdateAttrs;
  if (running.shape.length !== 1 || batch.shape.length !== 1 || running.shape[0] !== batch.shape[0]) {
    throw new TrainerError('ERR_INTERNAL', `BatchNorm running update: [${running.shape}] and [${batch.shape}] must be the same [C]`);
  }
  const cpu = backend as MathBackendCPU;
  if (running.dtype !== 'float32' || batch.dtype !== 'float32') {
    throw new TrainerError('ERR_INTERNAL', `BatchNorm running update needs float32 inputs, got ${running.dtype} and ${batch.dtype}`);
  }
  // A float32 tensor cast from int32/bool shares that Int32Array/Uint8Array (tfjs cpu's Cast): read as numbers alike.
  const r = cpu.data.get(running.dataId).values as Float32Array | Int32Array | Uint8Array;
  const b = cpu.data.get(batch.dataId).values as Float32Array | Int32Array | Uint8Array;
  const n = util.sizeFromShape(running.shape);
  const pool = (cpu as { pool?: ArrayPool }).pool;
  const out = pool === undefined ? new Float32Array(n) : pool.take(n);
  const keep = Math.fround(1 - momentum);
  const take = Math.fround(momentum * scale);
  for (let i = 0; i < n; i++) out[i] = Math.fround(r[i]! * keep) + Math.fround(b[i]! * take);
  return cpu.makeTensorInfo([n], 'float32', out);
};
