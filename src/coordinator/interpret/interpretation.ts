/**
 * Classification interpretation from validation predictions, after fastai v1's `ClassificationInterpretation`
 * (fastai 1.0.61 `fastai/train.py`, `fastai/vision/learner.py`): per-item losses, top losses, confusion matrix,
 * most-confused pairs. Pure: takes plain arrays, no tfjs, no I/O.
 */
import { TrainerError } from '../../contract/errors.js';

/**
 * Smallest probability used inside `−log p`: the smallest positive normal float32 (FLT_MIN ≈ 1.1755e-38).
 * A softmax computed in float32 that yields p = 0 has underflowed, so its true loss is at least −log(FLT_MIN) ≈ 87.34;
 * clamping keeps losses finite and sortable (PyTorch's `cross_entropy` works from logits and is never infinite).
 */
export const MIN_PROBABILITY = 1.1754943508222875e-38;

/** What an interpretation is built from. */
export interface InterpretationInput {
  /** Validation probabilities after softmax, row-major `[n, classes]` float32, each row summing to ~1. */
  readonly probs: Float32Array;
  /** Actual class index per item, `[n]` int32, each in `[0, classes)`. */
  readonly targets: Int32Array;
  /** Class names, `classes` of them; index = class id (fastai's `data.classes`, sorted). */
  readonly classes: readonly string[];
  /** Item identifiers (image paths), `[n]`; optional, used by top-losses plots and the JSON export. */
  readonly items?: readonly string[];
}

/** One entry of {@link ClassificationInterpretation.topLosses}. */
export interface TopLoss {
  /** Index of the item in the validation set (0-based). */
  readonly index: number;
  /** Predicted class id (argmax of the probabilities; first maximum on ties). */
  readonly pred: number;
  /** Actual class id. */
  readonly actual: number;
  /** Cross-entropy loss of the item, nats: `−log(max(p[actual], MIN_PROBABILITY))`. */
  readonly loss: number;
  /** Probability the model gave the actual class, in [0, 1]. */
  readonly probActual: number;
  /** Item identifier (path) when the input had items. */
  readonly item?: string;
}

/** One entry of {@link ClassificationInterpretation.mostConfused}: `count` items of `actual` predicted as `predicted`. */
export interface ConfusedPair {
  /** Actual class name. */
  readonly actual: string;
  /** Predicted class name. */
  readonly predicted: string;
  /** Number of validation items, ≥ the `minVal` asked for. */
  readonly count: number;
}

/** JSON form of an interpretation, written beside the report's pictures. */
export interface InterpretationJson {
  readonly classes: readonly string[];
  /** Number of validation items. */
  readonly n: number;
  /** 1 − accuracy (argmax), in [0, 1]. */
  readonly errorRate: number;
  /** Rows = actual, columns = predicted, `[classes][classes]` counts. */
  readonly confusionMatrix: number[][];
  readonly mostConfused: ConfusedPair[];
  readonly topLosses: TopLoss[];
}

function dataError(message: string): TrainerError {
  return new TrainerError('ERR_DATA', `interpretation: ${message}`);
}

function validateInput(input: InterpretationInput): number {
  const c = input.classes.length;
  if (c < 1) throw dataError(`classes must list at least 1 class, got 0`);
  const n = input.targets.length;
  if (input.probs.length !== n * c) {
    throw dataError(`probs must have targets.length × classes = ${n} × ${c} = ${n * c} values, got ${input.probs.length}`);
  }
  if (input.items !== undefined && input.items.length !== n) {
    throw dataError(`items must have one entry per target (${n}), got ${input.items.length}`);
  }
  for (let i = 0; i < n; i++) {
    const t = input.targets[i];
    if (t < 0 || t >= c) throw dataError(`targets[${i}] must be a class id in [0, ${c}), got ${t}`);
  }
  for (let i = 0; i < input.probs.length; i++) {
    const p = input.probs[i];
    if (!(p >= 0 && p <= 1)) throw dataError(`probs[${i}] must be a probability in [0, 1], got ${p}`);
  }
  return n;
}

/** Argmax of row `row` of a row-major `[n, c]` matrix; the first maximum wins (as `torch.argmax` on CPU). */
function rowArgmax(probs: Float32Array, row: number, c: number): number {
  let best = 0;
  let bestValue = probs[row * c];
  for (let j = 1; j < c; j++) {
    const v = probs[row * c + j];
    if (v > bestValue) {
      best = j;
      bestValue = v;
    }
  }
  return best;
}

/**
 * Interpretation of a classifier's validation predictions (fastai v1 `ClassificationInterpretation`).
 *
 * @example
 * const interp = new ClassificationInterpretation({ probs, targets, classes, items });
 * interp.topLosses(9); interp.confusionMatrix(); interp.mostConfused(2);
 */
export class ClassificationInterpretation {
  /** Class names, index = class id. */
  readonly classes: readonly string[];
  /** Validation probabilities, `[n, classes]` float32 row-major (the input array, not copied). */
  readonly probs: Float32Array;
  /** Actual class ids, `[n]` int32. */
  readonly targets: Int32Array;
  /** Predicted class ids (argmax, first maximum on ties), `[n]` int32. */
  readonly preds: Int32Array;
  /** Per-item cross-entropy, nats, `[n]` float64: `−log(max(p[actual], MIN_PROBABILITY))` (fastai: loss, no reduction). */
  readonly losses: Float64Array;
  /** Item identifiers (paths), `[n]`, when given. */
  readonly items?: readonly string[];

  /**
   * @param input - probabilities, targets, class names and optional item paths; see {@link InterpretationInput}
   * @throws TrainerError `ERR_DATA` when shapes disagree, a target is out of range or a probability is outside [0, 1]
   */
  constructor(input: InterpretationInput) {
    const n = validateInput(input);
    const c = input.classes.length;
    this.classes = input.classes;
    this.probs = input.probs;
    this.targets = input.targets;
    this.items = input.items;
    this.preds = new Int32Array(n);
    this.losses = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      this.preds[i] = rowArgmax(input.probs, i, c);
      this.losses[i] = -Math.log(Math.max(input.probs[i * c + input.targets[i]], MIN_PROBABILITY));
    }
  }

  /** Number of validation items. */
  get n(): number {
    return this.targets.length;
  }

  /** Error rate = 1 − accuracy with argmax predictions (fastai `error_rate`), in [0, 1]; 0 when n = 0. */
  errorRate(): number {
    if (this.n === 0) return 0;
    let wrong = 0;
    for (let i = 0; i < this.n; i++) if (this.preds[i] !== this.targets[i]) wrong++;
    return wrong / this.n;
  }

  /**
   * The `k` largest per-item losses, descending (fastai `top_losses(k)`); equal losses keep item order.
   *
   * @param k - how many, integer in [0, n]; defaults to n (all items, sorted)
   * @throws TrainerError `ERR_DATA` when `k` is not an integer in [0, n]
   */
  topLosses(k: number = this.n): TopLoss[] {
    if (!Number.isInteger(k) || k < 0 || k > this.n) {
      throw dataError(`topLosses k must be an integer in [0, ${this.n}], got ${k}`);
    }
    const order = Array.from({ length: this.n }, (_, i) => i);
    order.sort((a, b) => this.losses[b] - this.losses[a] || a - b);
    const c = this.classes.length;
    return order.slice(0, k).map((index) => {
      const actual = this.targets[index];
      const entry: TopLoss = {
        index,
        pred: this.preds[index],
        actual,
        loss: this.losses[index],
        probActual: this.probs[index * c + actual],
      };
      return this.items === undefined ? entry : { ...entry, item: this.items[index] };
    });
  }

  /** Confusion matrix, `[classes][classes]` counts: rows = actual, columns = predicted (fastai `confusion_matrix`). */
  confusionMatrix(): number[][] {
    const c = this.classes.length;
    const cm = Array.from({ length: c }, () => new Array<number>(c).fill(0));
    for (let i = 0; i < this.n; i++) cm[this.targets[i]][this.preds[i]]++;
    return cm;
  }

  /**
   * Off-diagonal confusion-matrix cells with count ≥ `minVal`, as (actual, predicted, count), sorted by count
   * descending, ties in row-major order (fastai 1.0.61 `most_confused`: `np.where` order, then a stable sort).
   *
   * @param minVal - smallest count to report, a number > 0; default 1
   * @throws TrainerError `ERR_DATA` when `minVal` is not a finite number > 0
   */
  mostConfused(minVal = 1): ConfusedPair[] {
    if (!(Number.isFinite(minVal) && minVal > 0)) {
      throw dataError(`mostConfused minVal must be a finite number > 0, got ${minVal}`);
    }
    const cm = this.confusionMatrix();
    const pairs: ConfusedPair[] = [];
    cm.forEach((row, i) =>
      row.forEach((count, j) => {
        if (i !== j && count >= minVal) pairs.push({ actual: this.classes[i], predicted: this.classes[j], count });
      }),
    );
    // Array.prototype.sort is stable (ES2019), so equal counts keep the row-major order of the scan above.
    return pairs.sort((a, b) => b.count - a.count);
  }

  /**
   * JSON export (named so that `JSON.stringify`, which calls `toJSON(key)`, does not pick it up by accident):
   * classes, n, error rate, confusion matrix, most-confused pairs (minVal 1) and the top losses.
   *
   * @param topK - number of top losses to include, integer in [0, n]; default min(n, 25)
   * @throws TrainerError `ERR_DATA` when `topK` is out of range
   */
  toJsonReport(topK: number = Math.min(this.n, 25)): InterpretationJson {
    return {
      classes: this.classes,
      n: this.n,
      errorRate: this.errorRate(),
      confusionMatrix: this.confusionMatrix(),
      mostConfused: this.mostConfused(1),
      topLosses: this.topLosses(topK),
    };
  }
}
