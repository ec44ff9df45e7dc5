/**
 * The `native` tfjs backend: tfjs's `cpu` backend (tensor values in plain Float32Arrays, every kernel available)
 * with the heavy training kernels replaced by oneDNN ones (`kernels.ts`, through the addon of `addon.ts`).
 *
 * Registration copies every `cpu` kernel to the `native` name and then installs the oneDNN kernels over them, so
 * any op works and only the covered ones change. The backend class is a `MathBackendCPU`: the `cpu` kernels
 * read `backend.data`, which is the same storage the oneDNN kernels hand to native code without copying.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { BackendValues, DataId, DataType } from '@tensorflow/tfjs-core';
import { loadAddon, type NativeInfo } from './addon.js';
import { ArrayPool, poolBytes } from './array-pool.js';
import { forgetDerived, NATIVE_BACKEND, nativeKernels } from './kernels.js';

export { NATIVE_BACKEND } from './kernels.js';

/** Outcome of {@link registerNativeBackend}: the oneDNN details, or why the backend is unavailable. */
export type NativeRegistration = { readonly info: NativeInfo } | { readonly reason: string };

let registered: NativeRegistration | undefined;

/**
 * `MathBackendCPU` without its first-use console banner ("looks like you are running TensorFlow.js in Node.js…
 * install our node backend"), which is wrong advice here: this backend is the native one.
 */
export class NativeBackend extends MathBackendCPU {
  /** The native kernels' reusable output arrays (see `array-pool.ts`). */
  readonly pool = new ArrayPool(poolBytes());

  constructor() {
    super();
    (this as unknown as { firstUse: boolean }).firstUse = false;
    this.pool.onRecycle = forgetDerived;
  }

  override write(values: BackendValues, shape: number[], dtype: DataType): DataId {
    this.pool.onWrite(values);
    return super.write(values, shape, dtype);
  }

  override move(dataId: DataId, values: BackendValues, shape: number[], dtype: DataType, refCount: number): void {
    this.pool.onMove(values);
    super.move(dataId, values, shape, dtype, refCount);
  }

  /** On this backend `readSync` hands out the storage array itself (`dataSync()`, `data()`): it leaves the pool. */
  override readSync(dataId: DataId): BackendValues {
    if (this.data.has(dataId)) this.pool.escape(this.data.get(dataId).values);
    return super.readSync(dataId);
  }

  override disposeData(dataId: DataId, force = false): boolean {
    const values = this.data.has(dataId) ? this.data.get(dataId).values : undefined;
    const released = super.disposeData(dataId, force);
    if (values !== undefined && !this.data.has(dataId)) this.pool.onDispose(values);
    return released;
  }

  override dispose(): void {
    this.pool.clear();
    super.dispose();
  }
}

/**
 * Registers the `native` backend with tfjs (once per process; later calls return the first result). Does not
 * activate it (`tf.setBackend('native')` does). Never throws: an unusable addon yields `{ reason }`.
 */
export function registerNativeBackend(): NativeRegistration {
  if (registered !== undefined) return registered;
  const load = loadAddon();
  if (!('addon' in load)) {
    registered = { reason: load.reason };
    return registered;
  }
  for (const config of tf.getKernelsForBackend('cpu')) {
    if (tf.getKernel(config.kernelName, NATIVE_BACKEND) === undefined) {
      tf.registerKernel({ ...config, backendName: NATIVE_BACKEND });
    }
  }
  for (const [kernelName, kernelFunc] of Object.entries(nativeKernels(load.addon))) {
    if (tf.getKernel(kernelName, NATIVE_BACKEND) !== undefined) tf.unregisterKernel(kernelName, NATIVE_BACKEND);
    tf.registerKernel({ kernelName, backendName: NATIVE_BACKEND, kernelFunc });
  }
  tf.registerBackend(NATIVE_BACKEND, () => new NativeBackend(), 1);
  registered = { info: load.info };
  return registered;
}
