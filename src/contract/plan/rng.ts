/**
 * Small, pure, seeded pseudo-random numbers: identical on every machine, process and thread (integer maths only,
 * no platform RNG). Used for the validation split, shard shuffles and per-item augmentation draws.
 */

/**
 * Mixes 32-bit integers into one 32-bit seed (MurmurHash3's fmix32 finaliser over a running combine; Appleby 2008).
 *
 * @param parts - integers (only their low 32 bits are used), e.g. `(seed, epoch, itemIndex)`.
 * @returns an unsigned 32-bit integer.
 */
export function hashSeed(...parts: readonly number[]): number {
  let h = 0x9e3779b9 ^ parts.length;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A stateful uniform generator; each call returns a float in [0, 1). */
export type Rng = () => number;

/**
 * Mulberry32 generator (Tommy Ettinger, public domain): 32-bit state, period 2^32, good enough for shuffles and
 * augmentation parameters.
 *
 * @param seed - any integer (low 32 bits used).
 */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A uniformly random permutation of `0..n-1` (Fisher–Yates, Durstenfeld's variant).
 *
 * @param n - length, integer ≥ 0.
 * @param seed - 32-bit seed; the same (n, seed) gives the same permutation everywhere.
 * @returns `[n]` int32 indices.
 */
export function permutation(n: number, seed: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  const rng = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = out[i]!;
    out[i] = out[j]!;
    out[j] = t;
  }
  return out;
}
