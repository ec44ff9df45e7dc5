/**
 * Layer groups and the freeze rule of fastai v1's `cnn_learner` for a torchvision ResNet body + fastai head.
 *
 * - Groups (fastai `_resnet_split` = `(m[0][6], m[1])`: split the body before `layer3` and at the head):
 *   0 = conv1, bn1, layer1, layer2; 1 = layer3, layer4; 2 = head.
 * - `freeze()` (fastai `Learner.freeze_to(-1)` with `train_bn=True`): the last group trains, and in the other groups
 *   only BatchNorm parameters train. `unfreeze()`: everything trains.
 *
 * BatchNorm parameters are identified from torchvision's module structure, not guessed: `bn1`, every block's
 * `bn<k>` and `downsample.1` (the BN after the 1×1 downsample conv `downsample.0`), and the head's BatchNorm1d
 * modules at {@link HEAD_BN_INDICES}. Tests check this against the model's own layout for resnet18/34/50.
 */
import { TrainerError } from '../../contract/errors.js';
import { HEAD_BN_INDICES, HEAD_PREFIX } from './head.js';

/** Number of layer groups of a ResNet cnn_learner. */
export const RESNET_GROUP_COUNT = 3;

const BODY_GROUP_RE = /^(?:(conv1|bn1)|layer([1-4])\.\d+\.[a-z0-9.]+)\.(?:weight|bias|running_mean|running_var)$/;
const BODY_BN_RE = /^(?:bn1|layer[1-4]\.\d+\.(?:bn\d+|downsample\.1))\.(?:weight|bias)$/;
const HEAD_RE = /^head\.(\d+)\.(?:weight|bias|running_mean|running_var)$/;

/**
 * The layer group (0, 1 or 2) of a parameter or buffer name.
 *
 * @throws TrainerError ERR_BAD_CONFIG for a name outside a ResNet body (`conv1`, `bn1`, `layer1`..`layer4`) + head
 */
export function layerGroupOf(name: string): number {
  if (HEAD_RE.test(name)) return 2;
  const m = BODY_GROUP_RE.exec(name);
  if (m === null) {
    throw new TrainerError('ERR_BAD_CONFIG', `parameter ${name} belongs to no layer group (expected conv1, bn1, layer1-4 or head.*)`);
  }
  if (m[1] !== undefined) return 0;
  return Number(m[2]) <= 2 ? 0 : 1;
}

/**
 * Splits names into the three layer groups, keeping their order within each group.
 *
 * @returns `[group0Names, group1Names, headNames]`
 * @throws TrainerError ERR_BAD_CONFIG as {@link layerGroupOf}
 */
export function layerGroups(names: Iterable<string>): string[][] {
  const groups: string[][] = [[], [], []];
  for (const name of names) groups[layerGroupOf(name)]!.push(name);
  return groups;
}

/** True for a trainable BatchNorm parameter (weight or bias) of the body or the head. */
export function isBatchNormParam(name: string): boolean {
  if (BODY_BN_RE.test(name)) return true;
  const m = HEAD_RE.exec(name);
  return m !== null && HEAD_BN_INDICES.includes(Number(m[1])) && /\.(?:weight|bias)$/.test(name);
}

/** Options of {@link trainableNames}. */
export interface TrainableOptions {
  /** fastai `freeze()`: only the head and the body's BatchNorm parameters train. */
  readonly frozen: boolean;
  /** fastai `train_bn` (default true): BN parameters of frozen groups keep training. */
  readonly trainBn?: boolean;
}

/**
 * The parameters that train, in input order.
 *
 * @param names - parameter names of body + head (no buffers)
 * @throws TrainerError ERR_BAD_CONFIG as {@link layerGroupOf}
 */
export function trainableNames(names: Iterable<string>, options: TrainableOptions): string[] {
  const trainBn = options.trainBn ?? true;
  return [...names].filter((name) => {
    const group = layerGroupOf(name);
    if (!options.frozen || group === RESNET_GROUP_COUNT - 1) return true;
    return trainBn && isBatchNormParam(name);
  });
}

/** True when `name` is a head parameter or buffer. */
export function isHeadName(name: string): boolean {
  return name.startsWith(HEAD_PREFIX);
}
