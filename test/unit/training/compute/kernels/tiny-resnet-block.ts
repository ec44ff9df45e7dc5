/**
 * A tiny ResNet-shaped network used to check that every kernel a training step needs exists on a backend and
 * agrees with the cpu backend: stem conv 7x7/2 → batch-norm (training mode, batch statistics via moments) → relu →
 * max-pool 3x3/2 p1 → basic block (conv-bn-relu-conv-bn + identity) → downsampling block (conv 3x3/2 + 1x1/2
 * shortcut) → concat(global max, global avg) → dense → softmax cross-entropy, then one AdamW update
 * (fastai true_wd: p·(1 − lr·wd), then Adam with betas (0.9, 0.99)).
 */
import * as tf from '@tensorflow/tfjs-core';

/** Sizes of the tiny network; all values deterministic from `seed`. */
export interface TinyBlockParams {
  readonly seed: number;
  readonly batch: number;
  /** Input height = width, pixels (≥ 8, any parity). */
  readonly size: number;
  readonly classes: number;
}

const WIDTH = 8;
const BN_EPS = 1e-5;

function values(size: number, seed: number, scale: number): Float32Array {
  const out = new Float32Array(size);
  let s = seed >>> 0;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * scale;
  }
  return out;
}

function parameters(p: TinyBlockParams): tf.Tensor[] {
  const shapes: number[][] = [
    [7, 7, 3, WIDTH], [WIDTH], [WIDTH], // stem conv, bn gamma, bn beta
    [3, 3, WIDTH, WIDTH], [WIDTH], [WIDTH], [3, 3, WIDTH, WIDTH], [WIDTH], [WIDTH], // basic block
    [3, 3, WIDTH, 2 * WIDTH], [2 * WIDTH], [2 * WIDTH], [1, 1, WIDTH, 2 * WIDTH], // downsampling block
    [4 * WIDTH, p.classes], [p.classes], // head
  ];
  return shapes.map((shape, i) => {
    const n = tf.util.sizeFromShape(shape);
    const isGamma = shape.length === 1 && [1, 4, 7, 10].includes(i);
    const v = values(n, p.seed + 100 + i, shape.length === 1 ? 0.2 : 0.6);
    if (isGamma) for (let j = 0; j < n; j++) v[j] = 1 + v[j]!;
    return tf.tensor(v, shape);
  });
}

function batchNormTrain(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor): tf.Tensor4D {
  const { mean, variance } = tf.moments(x, [0, 1, 2]);
  return tf.batchNorm4d(x, mean as tf.Tensor1D, variance as tf.Tensor1D, beta as tf.Tensor1D, gamma as tf.Tensor1D, BN_EPS);
}

function forwardLoss(x: tf.Tensor4D, labels: tf.Tensor2D, w: tf.Tensor[]): tf.Scalar {
  const [c1, g1, b1, c2, g2, b2, c3, g3, b3, c4, g4, b4, c5, wd, bd] = w as [
    tf.Tensor4D, tf.Tensor, tf.Tensor, tf.Tensor4D, tf.Tensor, tf.Tensor, tf.Tensor4D, tf.Tensor, tf.Tensor,
    tf.Tensor4D, tf.Tensor, tf.Tensor, tf.Tensor4D, tf.Tensor2D, tf.Tensor1D];
  const stem = tf.relu(batchNormTrain(tf.conv2d(x, c1, 2, 3), g1, b1));
  const pooled = tf.maxPool(stem, 3, 2, 1) as tf.Tensor4D;
  const inner = tf.relu(batchNormTrain(tf.conv2d(pooled, c2, 1, 1), g2, b2));
  const block = tf.relu(tf.add(batchNormTrain(tf.conv2d(inner, c3, 1, 'same'), g3, b3), pooled)) as tf.Tensor4D;
  const down = batchNormTrain(tf.conv2d(block, c4, 2, 1), g4, b4);
  const shortcut = tf.conv2d(block, c5, 2, 0);
  const features = tf.relu(tf.add(down, shortcut));
  const pooledHead = tf.concat([tf.max(features, [1, 2]), tf.mean(features, [1, 2])], 1);
  const logits = tf.add(tf.matMul(pooledHead, wd), bd);
  return tf.neg(tf.mean(tf.sum(tf.mul(labels, tf.logSoftmax(logits)), 1)));
}

/** One AdamW step from zero moments (fastai true_wd then Adam, betas (0.9, 0.99), eps 1e-8, bias-corrected). */
function adamwStep(param: tf.Tensor, grad: tf.Tensor, lr: number, wd: number): tf.Tensor {
  const m = tf.mul(grad, 0.1);
  const v = tf.mul(tf.square(grad), 0.01);
  const mHat = tf.div(m, 1 - 0.9);
  const vHat = tf.div(v, 1 - 0.99);
  const decayed = tf.mul(param, 1 - lr * wd);
  return tf.sub(decayed, tf.mul(tf.div(mHat, tf.add(tf.sqrt(vHat), 1e-8)), lr));
}

/**
 * Loss, its gradient w.r.t. the input and every parameter, and the parameters after one AdamW step, on the
 * active backend. Input [batch, size, size, 3] float32 NHWC; labels one-hot [batch, classes].
 * Returns [loss, dL/dx, ...dL/dparams, ...updated params]; the caller owns (and disposes) them.
 */
export function tinyBlockGradients(p: TinyBlockParams): tf.Tensor[] {
  const x = tf.tensor4d(values(p.batch * p.size * p.size * 3, p.seed, 2), [p.batch, p.size, p.size, 3]);
  const classIds = tf.tensor1d(Array.from({ length: p.batch }, (_, i) => (i * 3) % p.classes), 'int32');
  const labels = tf.cast(tf.oneHot(classIds, p.classes), 'float32') as tf.Tensor2D;
  const params = parameters(p);
  const f = (...inputs: tf.Tensor[]): tf.Scalar => forwardLoss(inputs[0] as tf.Tensor4D, labels, inputs.slice(1));
  const { value, grads } = tf.valueAndGrads(f)([x, ...params]);
  const updated = params.map((param, i) => adamwStep(param, grads[i + 1]!, 1e-3, 1e-2));
  return [value, ...grads, ...updated];
}
