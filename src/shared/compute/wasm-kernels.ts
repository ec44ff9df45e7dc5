/**
 * Training kernels for the WASM backend that tfjs-backend-wasm lacks or runs slowly
 * (`Conv2DBackpropFilter`, `Conv2DBackpropInput`). Work in progress: filled in by the compute-core work.
 */

/** Registers the WASM training kernels (idempotent). */
export function registerWasmTrainingKernels(): void {
  // Filled in by the compute-core work (issue 2).
}
