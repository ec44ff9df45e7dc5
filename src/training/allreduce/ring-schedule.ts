/**
 * Pure schedule of the ring all-reduce (Patarasuk & Yuan, "Bandwidth optimal all-reduce algorithms for clusters
 * of workstations", JPDC 2009; the algorithm of Horovod, gloo and NCCL rings).
 *
 * The buffer is split into N contiguous chunks. Reduce-scatter, ring step t = 0 … N−2: rank r sends chunk
 * (r − t) mod N to its right neighbour and adds the chunk (r − t − 1) mod N received from its left. Afterwards
 * rank r owns the complete sum of chunk (r + 1) mod N. All-gather, ring step t: rank r sends chunk (r + 1 − t)
 * mod N and overwrites chunk (r − t) mod N with the one received. Each chunk is summed exactly once, along a fixed
 * path starting at rank c, then only copied: every rank ends with bit-identical values.
 */
import type { ReducePhase } from '../../contract/protocol/index.js';

/** Non-negative modulo. */
function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

/**
 * Element range of chunk `c` of a buffer of `length` elements split in `n` chunks: `[start, end)`.
 * Chunk sizes differ by at most one element; with `length < n` some chunks are empty.
 *
 * @param length - buffer length in elements, integer ≥ 0
 * @param n - number of chunks (world size), integer ≥ 1
 * @param c - chunk index, 0 … n − 1
 */
export function chunkBounds(length: number, n: number, c: number): { start: number; end: number } {
  return { start: Math.floor((c * length) / n), end: Math.floor(((c + 1) * length) / n) };
}

/**
 * Chunk index that `rank` sends at ring step `t` of `phase`.
 *
 * @param phase - `'reduce-scatter'` or `'all-gather'`
 * @param rank - 0 … n − 1
 * @param t - ring step, 0 … n − 2
 * @param n - world size ≥ 2
 */
export function sendChunk(phase: ReducePhase, rank: number, t: number, n: number): number {
  return phase === 'reduce-scatter' ? mod(rank - t, n) : mod(rank + 1 - t, n);
}

/**
 * Chunk index that `rank` receives (from its left neighbour) at ring step `t` of `phase`.
 *
 * @param phase - `'reduce-scatter'` or `'all-gather'`
 * @param rank - 0 … n − 1
 * @param t - ring step, 0 … n − 2
 * @param n - world size ≥ 2
 */
export function receiveChunk(phase: ReducePhase, rank: number, t: number, n: number): number {
  return sendChunk(phase, mod(rank - 1, n), t, n);
}

/**
 * Chunk whose complete sum `rank` owns after the reduce-scatter: (rank + 1) mod n.
 *
 * @param rank - 0 … n − 1
 * @param n - world size ≥ 1
 */
export function ownedChunk(rank: number, n: number): number {
  return mod(rank + 1, n);
}

/**
 * Payload bytes each rank sends in one ring all-reduce of `bytes`: 2(N−1)/N × bytes (bandwidth optimal).
 * NCCL calls `bytes × 2(N−1)/N / time` the "bus bandwidth" of an all-reduce (nccl-tests, PERFORMANCE.md).
 *
 * @param bytes - buffer size in bytes
 * @param n - world size ≥ 1
 */
export function ringBytesPerRank(bytes: number, n: number): number {
  return (bytes * 2 * (n - 1)) / n;
}
