/**
 * Which classes can be learned, decided before any worker starts. Per case, fastai v1's behaviour or a clear
 * error (docs/data.md, "Classes that cannot be learned"):
 * - a class with validation items but no training item: fastai v1 (`CategoryList` on the valid set) warns "Your
 *   valid set contained the following unknown labels, the corresponding items have been discarded" and drops them;
 *   so do we (reason `unknown label`, counted and listed);
 * - a class whose every item failed to decode: dropped like the above, with a warning naming it and its files — the
 *   project's rule for bad files is that training goes on and every skip is reported (`../shared/datasets/bad-inputs`);
 *   fastai has no such case (it crashes on the first bad file);
 * - a class with a single usable item, or with no validation item: trained as fastai does, with a warning.
 */
import { basename } from 'node:path';
import type { ClassCount } from './accounting.js';
import { compareCodePoints, sortClasses } from './split.js';
import { logText } from '../../contract/log-text.js';

/** Inputs of {@link checkClasses}: item labels and the split after the verify pass. */
export interface ClassCheckInput {
  /** Label name of every item. */
  readonly labels: readonly string[];
  /** Training / validation item indices that decoded. */
  readonly train: Int32Array;
  readonly valid: Int32Array;
  /** Item indices (in either split) that failed to decode, with the file's path for messages. */
  readonly bad: readonly { readonly index: number; readonly path: string; readonly reason: string }[];
  /**
   * How the user of this command changes the validation split, ending the no-validation-image warning. Default
   * `raise --valid-pct` (training, show-batch, learn); `interpret` evaluates a trained model on its run's split,
   * which it cannot change, and says so.
   */
  readonly splitHint?: string;
}

/** What {@link checkClasses} decided. */
export interface ClassCheck {
  /** The model's classes: the training labels in Python `sorted()` order (fastai `data.classes`). */
  readonly classes: readonly string[];
  /** Validation items kept (their class has training items). */
  readonly valid: Int32Array;
  /** Validation items discarded because their class has no training item (fastai's behaviour). */
  readonly discarded: Int32Array;
  /** Classes whose validation items were discarded that way, in code-point order. */
  readonly unknownClasses: readonly string[];
  /** Per class found by the label rule: counts per split, bad and discarded. */
  readonly counts: readonly ClassCount[];
  /** One line per kind of weak class (all files bad; single item; no validation item). */
  readonly warnings: readonly string[];
}

function listNames(names: readonly string[], max = 5): string {
  return names.slice(0, max).map(logText).join(', ') + (names.length > max ? ` (+${names.length - max} more)` : '');
}

/** Decides which classes the model gets (those with a usable training image) and which validation items it scores. */
export function checkClasses(input: ClassCheckInput): ClassCheck {
  const count = (idx: ArrayLike<number>): Map<string, number> => {
    const m = new Map<string, number>();
    for (let k = 0; k < idx.length; k++) { const l = input.labels[idx[k]!]!; m.set(l, (m.get(l) ?? 0) + 1); }
    return m;
  };
  const train = count(input.train);
  const valid = count(input.valid);
  const bad = count(input.bad.map((b) => b.index));
  const all = sortClasses([...train.keys(), ...valid.keys(), ...bad.keys()]);
  const allBad = all.filter((c) => !train.has(c) && !valid.has(c));
  const warnings: string[] = [];
  if (allBad.length > 0) {
    const detail = allBad.map((c) => {
      const files = input.bad.filter((b) => input.labels[b.index] === c).sort((x, y) => compareCodePoints(x.path, y.path));
      return `${logText(c)} (${files.length}: ${files.slice(0, 3).map((b) => logText(`${basename(b.path)}: ${b.reason}`)).join(', ')}${files.length > 3 ? ', …' : ''})`;
    });
    warnings.push(`${allBad.length} class(es) dropped, every image failed to decode: ${detail.join('; ')}; repair or replace these files to train them`);
  }
  const classes = sortClasses(train.keys());
  const unknown = new Set(all.filter((c) => !train.has(c)));
  const unknownClasses = all.filter((c) => unknown.has(c) && valid.has(c));
  const keep: number[] = [];
  const discarded: number[] = [];
  for (const i of input.valid) (unknown.has(input.labels[i]!) ? discarded : keep).push(i);
  const counts = all.map((name) => ({
    name, train: train.get(name) ?? 0, valid: unknown.has(name) ? 0 : valid.get(name) ?? 0, bad: bad.get(name) ?? 0,
    discarded: unknown.has(name) ? valid.get(name) ?? 0 : 0,
  }));
  const single = counts.filter((c) => c.train === 1 && c.valid === 0);
  if (single.length > 0) {
    warnings.push(`${single.length} class(es) have a single image, in train: ${listNames(single.map((c) => c.name))}; the model learns each from one example and never validates it — add images`);
  }
  const noValid = counts.filter((c) => c.train > 1 && c.valid === 0);
  if (noValid.length > 0) {
    warnings.push(`${noValid.length} class(es) have no validation image: ${listNames(noValid.map((c) => c.name))}; error_rate does not measure them — add images or ${input.splitHint ?? 'raise --valid-pct'}`);
  }
  return { classes, valid: Int32Array.from(keep), discarded: Int32Array.from(discarded), unknownClasses, counts, warnings };
}
