/**
 * This project's WebGPU training kernels, installed over tfjs-backend-webgpu's where they are faster. Each one is
 * checked against tfjs `cpu` in test/unit/training/compute/webgpu/ (webgpu-kernels.test.ts; the input gradient in
 * conv-input-grad.test.ts, the BatchNorm kernels in batch-norm-webgpu.test.ts).
 */
import { getKernel, registerKernel, unregisterKernel, type KernelFunc } from '@tensorflow/tfjs-core';
import { ADAMW_KERNEL, adamwWebgpu } from './adamw-kernel.js';
import { conv2DBackpropFilterWebgpu } from './conv-filter-grad.js';
import { conv2DBackpropInputWebgpu } from './conv-input-grad.js';
import { FLATTEN_KERNEL, flattenWebgpu } from './flatten.js';
import { BN_INFER_KERNEL, BN_RUNNING_UPDATE_KERNEL, BN_TRAIN_GRAD_KERNEL, BN_TRAIN_KERNEL } from '../kernels/batch-norm.js';
import { batchNormInferWebgpu, batchNormRunningUpdateWebgpu, batchNormTrainGradWebgpu, batchNormTrainWebgpu } from './batch-norm.js';

/** tfjs-backend-webgpu kernels this project replaces, with the factory that wraps tfjs's as the fallback. */
const REPLACED: ReadonlyArray<readonly [string, (fallback: KernelFunc) => KernelFunc]> = [
  ['Conv2DBackpropFilter', conv2DBackpropFilterWebgpu], ['Conv2DBackpropInput', conv2DBackpropInputWebgpu]];

/** Marks the kernel functions installed here, so a second call leaves them alone. */
const OURS = new WeakSet<KernelFunc>();

/**
 * Installs the WebGPU training kernels (after `@tensorflow/tfjs-backend-webgpu` has registered its own). Idempotent.
 * Each replaced tfjs kernel stays the fallback for the cases the new one does not cover.
 */
export function registerWebgpuTrainingKernels(): void {
  for (const [kernelName, kernelFunc] of [[ADAMW_KERNEL, adamwWebgpu], [FLATTEN_KERNEL, flattenWebgpu],
    [BN_TRAIN_KERNEL, batchNormTrainWebgpu], [BN_TRAIN_GRAD_KERNEL, batchNormTrainGradWebgpu], [BN_RUNNING_UPDATE_KERNEL, batchNormRunningUpdateWebgpu], [BN_INFER_KERNEL, batchNormInferWebgpu]] as const) {
    if (getKernel(kernelName, 'webgpu') === undefined) registerKernel({ kernelName, backendName: 'webgpu', kernelFunc });
  }
  // tfjs kernels replaced by ours, each given tfjs's as its fallback.
  for (const [kernelName, make] of REPLACED) {
    const existing = getKernel(kernelName, 'webgpu');
    if (existing === undefined || OURS.has(existing.kernelFunc)) continue;
    const ours = make(existing.kernelFunc);
    OURS.add(ours);
    unregisterKernel(kernelName, 'webgpu');
    registerKernel({ kernelName, backendName: 'webgpu', kernelFunc: ours });
  }
}

/** True when this project's WebGPU kernels are the registered ones. */
export function webgpuTrainingKernelsRegistered(): boolean {
  return REPLACED.every(([name]) => {
    const k = getKernel(name, 'webgpu');
    return k !== undefined && OURS.has(k.kernelFunc);
  }) && [ADAMW_KERNEL, FLATTEN_KERNEL, BN_TRAIN_KERNEL, BN_TRAIN_GRAD_KERNEL, BN_RUNNING_UPDATE_KERNEL, BN_INFER_KERNEL]
    .every((name) => getKernel(name, 'webgpu') !== undefined);
}
