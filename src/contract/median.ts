/** The median the benchmarks report, in one place (the step, scaling, all-reduce and GPU A/B benches). */
import { TrainerError } from './errors.js';

/**
 * Median of `xs` (the mean of the two middle values for an even count, as Python's `statistics.median` that
 * `scripts/bench-torch.py` uses: `--reps 2` must not compare the slower of two steps with the mean of two).
 *
 * @throws TrainerError ERR_INTERNAL for an empty list
 */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new TrainerError('ERR_INTERNAL', 'the median of no values');
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
