/**
 * Classification loss and metrics of fastai v1's `cnn_learner`: mean softmax cross-entropy (PyTorch
 * `nn.CrossEntropyLoss`, fastai `CrossEntropyFlat`), per-item losses without reduction (`ClassificationInterpretation`)
 * and accuracy / error_rate counts (fastai `metrics.accuracy`, `error_rate = 1 − accuracy`).
 *
 * Cross-entropy of one item with logits z and label y: `CE = logsumexp(z) − z_y = −log softmax(z)_y`, computed with
 * tfjs's max-shifted `logSoftmax` so large logits do not overflow.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TrainerError } from '../../contract/errors.js';

/** Options of the cross-entropy functions. */
export interface LabelCheckOptions {
  /**
   * The caller has already checked every label against the class count (on its CPU array): skip the check here,
   * which reads the labels back synchronously — impossible on the WebGPU backend once they are on the GPU.
   */
  readonly labelsChecked?: boolean;
}

function checkLogitsLabels(logits: tf.Tensor, labels: tf.Tensor, options: LabelCheckOptions = {}): void {
  if (logits.rank !== 2 || logits.dtype !== 'float32') {
    throw new TrainerError('ERR_DATA', `logits must be [batch, classes] float32, got [${logits.shape}] ${logits.dtype}`);
  }
  if (labels.rank !== 1 || labels.dtype !== 'int32' || labels.shape[0] !== logits.shape[0]) {
    throw new TrainerError('ERR_DATA', `labels must be [${logits.shape[0]}] int32 to match the logits, got [${labels.shape}] ${labels.dtype}`);
  }
  if (options.labelsChecked === true) return;
  const classes = logits.shape[1]!;
  const bad = Array.from(labels.dataSync()).find((y) => y < 0 || y >= classes);
  if (bad !== undefined) throw new TrainerError('ERR_DATA', `labels must be in [0, ${classes}), got ${bad}`);
}

/**
 * Softmax cross-entropy per item, no reduction (fastai interpretation's `losses`).
 *
 * @param logits - `[batch, classes] float32`
 * @param labels - `[batch] int32`, each in [0, classes)
 * @param options - `labelsChecked`: the caller checked the labels' range already (no synchronous read here)
 * @returns `[batch] float32`, in nats; differentiable with respect to `logits`
 * @throws TrainerError ERR_DATA on wrong shapes/dtypes or a label outside [0, classes)
 */
export function perItemCrossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D, options: LabelCheckOptions = {}): tf.Tensor1D {
  checkLogitsLabels(logits, labels, options);
  return tf.tidy(() => {
    const onehot = tf.oneHot(labels, logits.shape[1]);
    return tf.neg(tf.sum(tf.mul(onehot, tf.logSoftmax(logits)), 1)) as tf.Tensor1D;
  });
}

/**
 * Mean softmax cross-entropy over the batch (PyTorch `F.cross_entropy`, reduction `mean`).
 *
 * @param logits - `[batch, classes] float32`
 * @param labels - `[batch] int32`, each in [0, classes)
 * @returns scalar float32, in nats; differentiable with respect to `logits`
 * @throws TrainerError ERR_DATA on wrong shapes/dtypes, an empty batch or a label outside [0, classes)
 */
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  if (logits.shape[0] === 0) throw new TrainerError('ERR_DATA', 'cross-entropy of an empty batch is undefined');
  return tf.tidy(() => tf.mean(perItemCrossEntropy(logits, labels)));
}

/** Correct predictions and items counted, summable across batches and workers. */
export interface AccuracyCounts {
  /** Items whose argmax equals the label (among the valid ones). */
  readonly correct: number;
  /** Valid items counted. */
  readonly total: number;
}

/**
 * Counts argmax hits, ignoring padded items. Ties go to the lowest class index (tfjs `argMax`).
 *
 * @param logits - `[batch, classes] float32` (or probabilities: argmax is the same)
 * @param labels - `[batch] int32`
 * @param valid - optional per-item validity (`batch` entries; falsy = padding, excluded); default all valid
 * @throws TrainerError ERR_DATA on wrong shapes/dtypes, a label outside [0, classes) or a mask of the wrong length
 */
export async function accuracyCounts(logits: tf.Tensor2D, labels: tf.Tensor1D,
  valid?: ArrayLike<number | boolean>): Promise<AccuracyCounts> {
  checkLogitsLabels(logits, labels);
  const batch = logits.shape[0];
  if (valid !== undefined && valid.length !== batch) {
    throw new TrainerError('ERR_DATA', `validity mask must have ${batch} entries, got ${valid.length}`);
  }
  const pred = tf.argMax(logits, 1);
  const [p, y] = await Promise.all([pred.data(), labels.data()]);
  pred.dispose();
  let correct = 0;
  let total = 0;
  for (let i = 0; i < batch; i += 1) {
    if (valid !== undefined && !valid[i]) continue;
    total += 1;
    if (p[i] === y[i]) correct += 1;
  }
  return { correct, total };
}

/**
 * fastai's error_rate over summed counts: `1 − correct/total` (the epoch value, weighted by batch size).
 *
 * @throws TrainerError ERR_DATA when `total` is 0 or `correct` is outside [0, total]
 */
export function errorRate(counts: AccuracyCounts): number {
  if (!(counts.total > 0) || counts.correct < 0 || counts.correct > counts.total) {
    throw new TrainerError('ERR_DATA', `error rate needs 0 ≤ correct ≤ total and total > 0, got ${counts.correct}/${counts.total}`);
  }
  return 1 - counts.correct / counts.total;
}

/** Adds two {@link AccuracyCounts} (for an epoch, or across workers). */
export function addCounts(a: AccuracyCounts, b: AccuracyCounts): AccuracyCounts {
  return { correct: a.correct + b.correct, total: a.total + b.total };
}
