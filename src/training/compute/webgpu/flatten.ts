/**
 * Flattening many tensors into one on WebGPU with buffer-to-buffer copies instead of tfjs `concat` programs.
 *
 * A training step flattens its gradients (one per trainable parameter, 116 for ResNet34) into one flat tensor, the
 * one the step reads once. tfjs-backend-webgpu's `concat` splits a concat of many inputs into programs of at most
 * 7 inputs (WebGPU binds at most 8 storage buffers per shader stage), each a compute dispatch with its uniform
 * buffer, bind group and shader key built in JavaScript: 22 dispatches for ResNet34. Copying each tensor's buffer
 * into its place in the output needs none of that: one `copyBufferToBuffer` per tensor encoded into
 * tfjs-backend-webgpu's command encoder (as the backend's own `copyBuffer` and reads do), no pipeline, no bind group,
 * no uniforms. Missing parts (a parameter the loss does not reach) are zero-filled with `clearBuffer`.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { webgpuInternals } from './adamw-kernel.js';

/**
 * tfjs kernel name of the flatten: inputs named `x<i>` (float32, any shape; `x<i>` has `sizes[i]` elements, and a
 * missing `x<i>` stands for `sizes[i]` zeros); attribute `sizes` (number[]); one output `[Σ sizes]` float32 holding
 * the inputs' values one after the other in order `i` (row-major within each).
 */
export const FLATTEN_KERNEL = 'PetsFlatten';

/** Attributes of {@link FLATTEN_KERNEL}. */
export interface FlattenAttrs {
  /** Element count of each part, in output order. */
  readonly sizes: number[];
}

const BYTES = 4;

/**
 * The WebGPU kernel function of {@link FLATTEN_KERNEL}: no dispatch, one copy (or clear) per part.
 *
 * @throws Error when an input is not float32, its element count differs from its `sizes` entry, an input name is
 *   not `x<i>` for an `i` of `sizes`, or a size is not an integer ≥ 0
 */
export const flattenWebgpu: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = webgpuInternals(backend, FLATTEN_KERNEL);
  const { sizes } = attrs as unknown as FlattenAttrs;
  const parts: (TensorInfo | undefined)[] = sizes.map(() => undefined);
  for (const [name, t] of Object.entries(inputs as Record<string, TensorInfo>)) {
    const i = /^x(\d+)$/.exec(name) === null ? -1 : Number(name.slice(1));
    if (!(i >= 0 && i < sizes.length)) throw new Error(`${FLATTEN_KERNEL}: input ${name} is not x0 … x${sizes.length - 1}`);
    if (t.dtype !== 'float32') throw new Error(`${FLATTEN_KERNEL}: ${name} must be float32, got ${t.dtype}`);
    if (tf.util.sizeFromShape(t.shape) !== sizes[i]) {
      throw new Error(`${FLATTEN_KERNEL}: ${name} has shape [${t.shape}], sizes[${i}] is ${sizes[i]}`);
    }
    parts[i] = t;
  }
  let total = 0;
  for (const [i, n] of sizes.entries()) {
    if (!(Number.isInteger(n) && n >= 0)) throw new Error(`${FLATTEN_KERNEL}: sizes[${i}] must be an integer ≥ 0, got ${n}`);
    total += n;
  }
  const out = be.makeTensorInfo([total], 'float32');
  if (total === 0) {
    be.tensorMap.get(out.dataId).values = new Float32Array(0);
    return out;
  }
  be.uploadToGPU(out.dataId);
  be.commandQueueOwnedIds.add(out.dataId);
  for (const t of parts) {
    if (t === undefined || tf.util.sizeFromShape(t.shape) === 0) continue;
    be.uploadToGPU(t.dataId);
    be.commandQueueOwnedIds.add(t.dataId); // released only after the submit that reads it, as for a program's inputs
  }
  const dst = be.tensorMap.get(out.dataId).resource;
  be.ensureCommandEncoderReady();
  be.endComputePassEncoder();
  const encoder = be.commandEncoder!;
  let offset = 0;
  for (let i = 0; i < sizes.length; i++) { // a loop over indices: a missing part is a hole that forEach would skip
    const bytes = sizes[i]! * BYTES;
    if (bytes === 0) continue;
    const t = parts[i];
    if (t === undefined) encoder.clearBuffer(dst, offset, bytes);
    else encoder.copyBufferToBuffer(be.tensorMap.get(t.dataId).resource, 0, dst, offset, bytes);
    offset += bytes;
  }
  return out;
};

/**
 * Concatenates `parts` (each flattened row-major) into one `[Σ sizes]` float32 tensor with {@link FLATTEN_KERNEL}
 * when the active backend has it (WebGPU: copies, no dispatches); `null` otherwise (the caller concatenates with
 * tfjs ops).
 *
 * @param parts - float32 tensors, `parts[i]` with `sizes[i]` elements, or `undefined` for `sizes[i]` zeros
 * @param sizes - element count of each part
 * @returns a new tensor (the caller disposes it), or null
 * @throws Error as {@link flattenWebgpu}
 */
export function flattenOnDevice(parts: readonly (tf.Tensor | undefined)[], sizes: readonly number[]): tf.Tensor1D | null {
  if (tf.getKernel(FLATTEN_KERNEL, tf.getBackend()) === undefined) return null;
  const inputs: tf.NamedTensorMap = {};
  parts.forEach((t, i) => { if (t !== undefined) inputs[`x${i}`] = t; });
  return tf.engine().runKernel(FLATTEN_KERNEL, inputs, { sizes: [...sizes] } as unknown as tf.NamedAttrMap) as tf.Tensor1D;
}

/**
 * The inverse on the device, for kernels that compute several small results in one program (tfjs programs have one
 * output): new float32 tensors holding `src`'s elements `[offset, offset + size)`, one `copyBufferToBuffer` each
 * (no dispatch). Call from inside a WebGPU kernel function; `src` is left as it is (the caller disposes it).
 *
 * @param backend - the tfjs-backend-webgpu backend (a kernel's `backend`)
 * @param src - float32 tensor info on that backend
 * @param parts - element ranges of `src`, each with the shape of its new tensor (product = size)
 * @returns one new tensor info per part, in order (owned by the caller)
 * @throws Error when a range lies outside `src` or a shape's size differs from its range's
 */
export function copySlices(backend: unknown, src: TensorInfo, parts: readonly { offset: number; shape: number[] }[]): TensorInfo[] {
  const be = webgpuInternals(backend, 'copySlices');
  const n = tf.util.sizeFromShape(src.shape);
  for (const { offset, shape } of parts) {
    const size = tf.util.sizeFromShape(shape);
    if (!(Number.isInteger(offset) && offset >= 0 && offset + size <= n)) {
      throw new Error(`copySlices: range [${offset}, ${offset + size}) lies outside a source of ${n} elements`);
    }
  }
  be.uploadToGPU(src.dataId);
  be.commandQueueOwnedIds.add(src.dataId);
  const outs = parts.map(({ shape }) => be.makeTensorInfo(shape, 'float32'));
  const from = be.tensorMap.get(src.dataId).resource;
  be.ensureCommandEncoderReady();
  be.endComputePassEncoder();
  parts.forEach(({ offset, shape }, i) => {
    const out = outs[i]!;
    const size = tf.util.sizeFromShape(shape);
    if (size === 0) {
      be.tensorMap.get(out.dataId).values = new Float32Array(0);
      return;
    }
    be.uploadToGPU(out.dataId);
    be.commandQueueOwnedIds.add(out.dataId);
    be.commandEncoder!.copyBufferToBuffer(from, offset * BYTES, be.tensorMap.get(out.dataId).resource, 0, size * BYTES);
  });
  return outs;
}
