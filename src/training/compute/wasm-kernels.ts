/**
 * Training kernels for the WASM backend that tfjs-backend-wasm 4.22 lacks (`Conv2DBackpropFilter`) or runs slowly
 * (`Conv2DBackpropInput`, ~12x the forward time), re-expressed as XNNPACK forward convolutions (see
 * `kernels/conv2d-backprop.ts` and `kernels/conv-geometry.ts`), and the fused training-mode BatchNorm kernels used
 * by `batch-norm.ts` (see `kernels/batch-norm.ts`), and a faster `MaxPoolGrad` (`kernels/max-pool-grad.ts`).
 */
import '@tensorflow/tfjs-backend-wasm';
import { getKernel, registerKernel, unregisterKernel, type KernelFunc } from '@tensorflow/tfjs-core';
import {
  BN_TRAIN_GRAD_KERNEL, BN_TRAIN_KERNEL, batchNormTrainGradWasm, batchNormTrainWasm,
} from './kernels/batch-norm.js';
import { conv2DBackpropFilterWasm, conv2DBackpropInputWasm } from './kernels/conv2d-backprop.js';
import { maxPoolGradWasm } from './kernels/max-pool-grad.js';

/** The kernels this module installs on the `wasm` backend, by tfjs kernel name. */
export const WASM_TRAINING_KERNELS: Readonly<Record<string, KernelFunc>> = Object.freeze({
  Conv2DBackpropFilter: conv2DBackpropFilterWasm,
  Conv2DBackpropInput: conv2DBackpropInputWasm,
  MaxPoolGrad: maxPoolGradWasm,
  [BN_TRAIN_KERNEL]: batchNormTrainWasm,
  [BN_TRAIN_GRAD_KERNEL]: batchNormTrainGradWasm,
});

/**
 * Registers the WASM training kernels, replacing tfjs-backend-wasm's own where it has one. Idempotent: a kernel
 * already installed by this module is left alone. Takes effect for later kernel calls even when the wasm backend
 * is already active (tfjs looks kernels up per call).
 */
export function registerWasmTrainingKernels(): void {
  for (const [kernelName, kernelFunc] of Object.entries(WASM_TRAINING_KERNELS)) {
    const existing = getKernel(kernelName, 'wasm');
    if (existing?.kernelFunc === kernelFunc) continue;
    if (existing !== undefined) unregisterKernel(kernelName, 'wasm');
    registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
  }
}

/** True when every kernel of {@link WASM_TRAINING_KERNELS} is the one registered for `wasm` now. */
export function wasmTrainingKernelsRegistered(): boolean {
  return Object.entries(WASM_TRAINING_KERNELS).every(([name, fn]) => getKernel(name, 'wasm')?.kernelFunc === fn);
}
