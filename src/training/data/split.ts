/**
 * Train/validation split and class ordering, as fastai v1 `ItemList.split_by_rand_pct` and `CategoryList` do.
 */
import { TrainerError } from '../../contract/errors.js';
import { hashSeed, permutation } from '../../contract/plan/rng.js';

/** A split of item indices. */
export interface Split {
  /** Training item indices, ascending. */
  readonly train: Int32Array;
  /** Validation item indices, ascending. */
  readonly valid: Int32Array;
}

/**
 * Random split: a seeded permutation of all `n` items, the first `int(validPct · n)` go to validation
 * (fastai v1 `split_by_rand_pct(valid_pct=0.2, seed)`: `rand_idx = np.random.permutation(n); cut = int(valid_pct*n)`).
 * Full Pets: n = 7390 → 5912 train / 1478 valid.
 *
 * @param n - number of items, integer ≥ 0.
 * @param validPct - fraction in [0, 1).
 * @param seed - integer seed; same on every machine and worker count.
 * @throws TrainerError ERR_BAD_FLAG when validPct is outside [0, 1).
 */
export function randomSplit(n: number, validPct: number, seed: number): Split {
  if (!(validPct >= 0 && validPct < 1)) {
    throw new TrainerError('ERR_BAD_FLAG', `--valid-pct must be a number in [0, 1), got ${validPct}`);
  }
  const perm = permutation(n, hashSeed(seed, 0x5e1f));
  const cut = Math.floor(validPct * n);
  const valid = perm.slice(0, cut).sort();
  const train = perm.slice(cut).sort();
  return { train, valid };
}

/**
 * Sorts class names the way Python's `sorted()` does on `str`: by Unicode code point, so upper-case names
 * ("Abyssinian") come before lower-case ones ("american_bulldog") — the order fastai gives `data.classes`.
 */
export function sortClasses(names: Iterable<string>): string[] {
  const unique = [...new Set(names)];
  return unique.sort(compareCodePoints);
}

/** Code-point comparison of two strings (Python's default string order). */
export function compareCodePoints(a: string, b: string): number {
  const ai = a[Symbol.iterator]();
  const bi = b[Symbol.iterator]();
  for (;;) {
    const x = ai.next();
    const y = bi.next();
    if (x.done || y.done) return x.done && y.done ? 0 : x.done ? -1 : 1;
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}
