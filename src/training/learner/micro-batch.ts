/**
 * How a micro-batch is cut into chunks that fit the compute backend's memory (policy only, no tensors).
 *
 * The WASM backend's heap is a 32-bit address space (≤ 4 GiB, and tfjs-backend-wasm fails on the fifth 1 GiB
 * tensor), and a training forward keeps every intermediate activation for the backward pass. The per-image
 * figure below was measured on this project's ResNet (`resnet.ts`, with the fused training-mode BatchNorm of
 * `compute/batch-norm.ts`, which keeps only its input and output for the backward pass) with tfjs-backend-wasm 4.22
 * via one `Replica.accumulate` + `applyGradients` of resnet34 at 128 px, unfrozen, in fresh processes: WASM heap
 * (`HEAPU8.byteLength`) 743 MB at 8 images, 1054 MB at 16, 1611 MB at 32, i.e. 35–36 MB per image (it was
 * ~100 MB/image with the textbook BatchNorm composition); the constant below rounds it up. Heap growth is chunky,
 * so this is an estimate, used with a margin.
 */
import { TrainerError } from '../../contract/errors.js';
import type { ResNetConfig } from '../../contract/resnet-spec.js';

/** Measured WASM heap bytes per image for one resnet34 training forward + backward at 128×128 (see module doc). */
export const RESNET34_128_BYTES_PER_IMAGE = 40e6;

/**
 * Activation budget per chunk on WASM, bytes: keeps a resnet34 worker at 224 px under 2 GB peak RSS (chunks of 8
 * images: measured 1.67 GB at bs 16; weights, AdamW moments and the flat gradients take ~0.5 GB more heap). Gives
 * the same chunk sizes as before the fused BatchNorm (8 at 224 px, 25 at 128 px), so BatchNorm statistics are
 * unchanged.
 */
export const WASM_ACTIVATION_BUDGET_BYTES = 1.0e9;

/**
 * Rough bytes of activations per image kept for the backward pass: the resnet34/128 measurement scaled by
 * pixels (activations grow with height × width) and by the number of residual-block convolutions relative to
 * resnet34's (bottleneck blocks have 3 convs and 4× wider outputs, counted as 2× per conv).
 */
export function activationBytesPerImage(config: ResNetConfig, size: number): number {
  const convs = config.layers.reduce((a, b) => a + b, 0) * (config.block === 'basic' ? 2 : 3 * 2);
  const resnet34Convs = (3 + 4 + 6 + 3) * 2;
  return RESNET34_128_BYTES_PER_IMAGE * (size / 128) ** 2 * (convs + 1) / (resnet34Convs + 1);
}

/**
 * Default largest chunk of images per forward/backward: on the `wasm` and `native` (oneDNN) backends, the budget
 * divided by {@link activationBytesPerImage} (at least 2, BatchNorm needs two items), which keeps a worker's peak
 * RSS under 2 GB at resnet34/224 on both; unlimited elsewhere (TensorFlow's own allocator; a GPU that runs out
 * reports it itself).
 *
 * Native uses the WASM budget on purpose (measured, docs/performance.md ninth pass): its activations take ≈ 46–60
 * MiB per image at resnet34/224 (peak RSS of one process, bs 16: 1243 / 1481 / 1848 MiB in chunks of 4 / 8 / 16),
 * about half of WASM's, on a larger base (≈ 1 GiB: weights, AdamW moments, flat gradients, reordered filters, the
 * array pool). Chunks of 16 at 224 px would run bs 16 unchunked (BatchNorm statistics over all 16, as PyTorch) for
 * ≈ 1.5 % less CPU per step, but put bs 64 at 2005 MiB (chunks of 8: 1501 MiB), over the 2 GB bound.
 *
 * @param backendName - `tf.getBackend()` (`wasm`, `native`, `cpu`, `tensorflow`, …)
 */
export function defaultMaxMicroBatch(config: ResNetConfig, size: number, backendName: string): number {
  if (backendName !== 'wasm' && backendName !== 'native') return Number.MAX_SAFE_INTEGER;
  return Math.max(2, Math.floor(WASM_ACTIVATION_BUDGET_BYTES / activationBytesPerImage(config, size)));
}

/**
 * Splits `n` items into the fewest balanced chunks of at most `max` items (sizes differ by at most 1, larger
 * first), never leaving a chunk of 1 item when `n ≥ 2` (training-mode BatchNorm needs 2): if balancing would,
 * fewer and slightly larger chunks are used.
 *
 * @returns `[start, end)` item ranges covering 0..n in order
 * @throws TrainerError ERR_INTERNAL when n is not an integer ≥ 1 or max not an integer ≥ 2
 */
export function splitChunks(n: number, max: number): [number, number][] {
  if (!Number.isInteger(n) || n < 1) throw new TrainerError('ERR_INTERNAL', `chunked batch size must be an integer ≥ 1, got ${n}`);
  if (!Number.isInteger(max) && max !== Number.MAX_SAFE_INTEGER) {
    throw new TrainerError('ERR_INTERNAL', `maxMicroBatch must be an integer ≥ 2, got ${max}`);
  }
  if (max < 2) throw new TrainerError('ERR_INTERNAL', `maxMicroBatch must be an integer ≥ 2, got ${max}`);
  let chunks = Math.ceil(n / max);
  while (chunks > 1 && Math.floor(n / chunks) < 2) chunks -= 1;
  const base = Math.floor(n / chunks);
  const extra = n % chunks;
  const out: [number, number][] = [];
  let start = 0;
  for (let c = 0; c < chunks; c++) {
    const end = start + base + (c < extra ? 1 : 0);
    out.push([start, end]);
    start = end;
  }
  return out;
}
