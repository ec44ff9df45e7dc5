/**
 * Releases the tfjs engine at the end of a process: every tensor and variable, then every registered backend's own
 * resources (`KernelBackend.dispose()`: the WASM module's heap, a GPU device, libtensorflow handles). Kept apart
 * from backend choice (`backend.ts`) so that any backend added there is released the same way.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * Disposes all variables and tensors and the backends of the tfjs engine (`tf.engine().reset()`, which calls each
 * backend's `dispose()`). Call it last, once nothing computes any more; `tf.memory().numTensors` is 0 afterwards
 * and a later tfjs call would initialise a backend again. Idempotent.
 */
export function releaseBackend(): void {
  tf.disposeVariables();
  tf.engine().reset();
}
