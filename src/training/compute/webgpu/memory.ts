/**
 * Device-memory high-water mark of the tfjs WebGPU backend.
 *
 * `tf.memory()` on webgpu reports `numBytesInGPU` (bytes of the GPUBuffers in use right now) and
 * `numBytesAllocatedInGPU` (bytes of every GPUBuffer the backend created and has not destroyed: in use + its free
 * pool, which keeps released buffers by exact size for reuse). Neither is a peak: the first goes down after a step,
 * the second over-counts (a pooled buffer of one size never serves another). {@link trackDeviceMemory} records the
 * largest `numBytesInGPU` seen at any buffer acquisition — what the step needed at once, like PyTorch's
 * `torch.cuda.max_memory_allocated` — and the largest pool size (what the process holds on the device, the figure
 * `nvidia-smi` sees, minus the driver's own overhead).
 */
import * as tf from '@tensorflow/tfjs-core';

/** The part of tfjs-backend-webgpu 4.22's `BufferManager` used here. */
interface BufferManager {
  numBytesUsed: number;
  numBytesAllocated: number;
  acquireBuffer(...args: unknown[]): unknown;
}

/** High-water marks since {@link trackDeviceMemory} (or the last `reset`), bytes. */
export interface DeviceMemoryPeak {
  /** Largest sum of the GPUBuffers in use at once (tensors, uniforms, staging buffers). */
  readonly peakInUseBytes: number;
  /** Largest sum of all GPUBuffers the backend held (in use + free pool). */
  readonly peakAllocatedBytes: number;
}

/** A running device-memory tracker. */
export interface DeviceMemoryTracker {
  /** The high-water marks so far. */
  peak(): DeviceMemoryPeak;
  /** Starts the marks again from the current figures. */
  reset(): void;
  /** Stops tracking (restores the backend's own method). */
  stop(): void;
}

/**
 * Tracks the device-memory high-water marks of the active `webgpu` backend by wrapping its buffer manager's
 * `acquireBuffer` (the one place tfjs-backend-webgpu creates or reuses a GPUBuffer).
 *
 * @returns the tracker, or null when the active backend is not webgpu (or has no buffer manager)
 */
export function trackDeviceMemory(): DeviceMemoryTracker | null {
  if (tf.getBackend() !== 'webgpu') return null;
  const bm = (tf.backend() as unknown as { bufferManager?: BufferManager }).bufferManager;
  if (bm === undefined || typeof bm.acquireBuffer !== 'function' || typeof bm.numBytesUsed !== 'number') return null;
  let inUse = bm.numBytesUsed;
  let allocated = bm.numBytesAllocated;
  const own = Object.prototype.hasOwnProperty.call(bm, 'acquireBuffer') ? bm.acquireBuffer : undefined;
  const original = bm.acquireBuffer;
  bm.acquireBuffer = function (this: BufferManager, ...args: unknown[]): unknown {
    const buffer = original.apply(this, args);
    if (this.numBytesUsed > inUse) inUse = this.numBytesUsed;
    if (this.numBytesAllocated > allocated) allocated = this.numBytesAllocated;
    return buffer;
  };
  return {
    peak: () => ({ peakInUseBytes: inUse, peakAllocatedBytes: allocated }),
    reset: () => {
      inUse = bm.numBytesUsed;
      allocated = bm.numBytesAllocated;
    },
    stop: () => {
      if (own === undefined) delete (bm as Partial<BufferManager>).acquireBuffer;
      else bm.acquireBuffer = own;
    },
  };
}
