/**
 * The pure description of a torchvision ResNet (He et al., "Deep Residual Learning for Image Recognition",
 * CVPR 2016, https://arxiv.org/abs/1512.03385; layer structure and parameter names of torchvision 0.14
 * `torchvision/models/resnet.py`, i.e. "ResNet v1.5": the stride of a bottleneck sits on its 3x3 conv).
 * No tensors here: the model (`resnet.ts`) and the weight loader (`torch-weights.ts`) both derive from this layout.
 */
import { TrainerError } from './errors.js';

/** Named architectures, as torchvision's `resnet18/34/50`. */
export type ResNetArch = 'resnet18' | 'resnet34' | 'resnet50';

/** Any torchvision ResNet: block type and the number of blocks in layer1..layer4. */
export interface ResNetConfig {
  /** `basic` (two 3x3 convs, expansion 1) or `bottleneck` (1x1, 3x3, 1x1 convs, expansion 4). */
  readonly block: 'basic' | 'bottleneck';
  /** Blocks per stage, each ≥ 1, e.g. `[3, 4, 6, 3]` for resnet34. */
  readonly layers: readonly [number, number, number, number];
}

/** torchvision's configurations for the named architectures. */
export const RESNET_CONFIGS: Readonly<Record<ResNetArch, ResNetConfig>> = Object.freeze({
  resnet18: Object.freeze({ block: 'basic', layers: [2, 2, 2, 2] as const }),
  resnet34: Object.freeze({ block: 'basic', layers: [3, 4, 6, 3] as const }),
  resnet50: Object.freeze({ block: 'bottleneck', layers: [3, 4, 6, 3] as const }),
});

/** All named architectures, for validation messages. */
export const RESNET_ARCHS: readonly ResNetArch[] = Object.freeze(['resnet18', 'resnet34', 'resnet50']);

/** A convolution (no bias in a torchvision ResNet). Weight: torch `[out, in, k, k]`, tfjs `[k, k, in, out]` (HWIO). */
export interface ConvSpec {
  readonly kind: 'conv';
  /** Module path, e.g. `layer2.0.downsample.0`; the weight is `<name>.weight`. */
  readonly name: string;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernel: number;
  readonly stride: number;
  /** Symmetric zero padding, in pixels, on each side (as torch's `padding=`). */
  readonly pad: number;
}

/** A BatchNorm2d over `channels`: weight, bias, running_mean, running_var, num_batches_tracked. */
export interface BatchNormSpec {
  readonly kind: 'bn';
  readonly name: string;
  readonly channels: number;
}

/** One residual block: its convs and BNs in forward order, and the optional downsample (conv + BN). */
export interface BlockSpec {
  /** e.g. `layer3.1`. */
  readonly name: string;
  readonly convs: readonly ConvSpec[];
  readonly bns: readonly BatchNormSpec[];
  readonly downsample: readonly [ConvSpec, BatchNormSpec] | null;
}

/** The whole network: stem, blocks of layer1..layer4 in order, feature width and optional classifier. */
export interface ResNetLayout {
  readonly config: ResNetConfig;
  readonly stem: readonly [ConvSpec, BatchNormSpec];
  readonly blocks: readonly BlockSpec[];
  /** Channels of layer4's output: 512 for basic blocks, 2048 for bottlenecks. */
  readonly featureChannels: number;
  /** `fc` outputs, or null for a body without classifier. */
  readonly numClasses: number | null;
}

/**
 * Resolves an architecture name or config and validates it.
 *
 * @throws TrainerError ERR_BAD_CONFIG for an unknown name, an unknown block type, or layer counts that are not
 *   four integers ≥ 1
 */
export function resolveResNetConfig(arch: ResNetArch | ResNetConfig): ResNetConfig {
  if (typeof arch === 'string') {
    if (!Object.hasOwn(RESNET_CONFIGS, arch)) {
      throw new TrainerError('ERR_BAD_CONFIG', `arch must be one of ${RESNET_ARCHS.join('|')}, got ${JSON.stringify(arch)}`);
    }
    return RESNET_CONFIGS[arch];
  }
  if (arch.block !== 'basic' && arch.block !== 'bottleneck') {
    throw new TrainerError('ERR_BAD_CONFIG', `ResNet block must be basic|bottleneck, got ${JSON.stringify(arch.block)}`);
  }
  if (!Array.isArray(arch.layers) || arch.layers.length !== 4 || !arch.layers.every((n) => Number.isInteger(n) && n >= 1)) {
    throw new TrainerError('ERR_BAD_CONFIG', `ResNet layers must be four integers ≥ 1, got ${JSON.stringify(arch.layers)}`);
  }
  return arch;
}

/** Human name of a config for messages: `resnet34`, or `ResNet(basic, [1,1,1,1])`. */
export function describeConfig(config: ResNetConfig): string {
  const named = RESNET_ARCHS.find((a) => RESNET_CONFIGS[a].block === config.block && RESNET_CONFIGS[a].layers.join() === config.layers.join());
  return named ?? `ResNet(${config.block}, [${config.layers.join(',')}])`;
}

function conv(name: string, inChannels: number, outChannels: number, kernel: number, stride: number): ConvSpec {
  return { kind: 'conv', name, inChannels, outChannels, kernel, stride, pad: (kernel - 1) / 2 };
}

function bn(name: string, channels: number): BatchNormSpec {
  return { kind: 'bn', name, channels };
}

function blockSpec(config: ResNetConfig, name: string, inplanes: number, planes: number, stride: number): BlockSpec {
  const expansion = config.block === 'basic' ? 1 : 4;
  const out = planes * expansion;
  const convs = config.block === 'basic'
    ? [conv(`${name}.conv1`, inplanes, planes, 3, stride), conv(`${name}.conv2`, planes, planes, 3, 1)]
    : [conv(`${name}.conv1`, inplanes, planes, 1, 1), conv(`${name}.conv2`, planes, planes, 3, stride), conv(`${name}.conv3`, planes, out, 1, 1)];
  const bns = convs.map((c, i) => bn(`${name}.bn${i + 1}`, c.outChannels));
  const downsample = stride !== 1 || inplanes !== out
    ? [conv(`${name}.downsample.0`, inplanes, out, 1, stride), bn(`${name}.downsample.1`, out)] as const
    : null;
  return { name, convs, bns, downsample };
}

/**
 * The layer layout of a torchvision ResNet (`ResNet._make_layer`): stem conv 7x7/2 pad 3 + BN, maxpool 3x3/2 pad 1,
 * four stages of 64·2^i planes, first block of stages 2–4 with stride 2.
 *
 * @param arch - a name or config
 * @param numClasses - `fc` outputs (integer ≥ 1), or null for no classifier
 * @throws TrainerError ERR_BAD_CONFIG for a bad config or numClasses
 */
export function resnetLayout(arch: ResNetArch | ResNetConfig, numClasses: number | null): ResNetLayout {
  const config = resolveResNetConfig(arch);
  if (numClasses !== null && !(Number.isInteger(numClasses) && numClasses >= 1)) {
    throw new TrainerError('ERR_BAD_CONFIG', `numClasses must be an integer ≥ 1 or null, got ${numClasses}`);
  }
  const expansion = config.block === 'basic' ? 1 : 4;
  const blocks: BlockSpec[] = [];
  let inplanes = 64;
  config.layers.forEach((count, stage) => {
    const planes = 64 * 2 ** stage;
    for (let i = 0; i < count; i++) {
      blocks.push(blockSpec(config, `layer${stage + 1}.${i}`, inplanes, planes, i === 0 && stage > 0 ? 2 : 1));
      inplanes = planes * expansion;
    }
  });
  return { config, stem: [conv('conv1', 3, 64, 7, 2), bn('bn1', 64)], blocks, featureChannels: 512 * expansion, numClasses };
}

/** Every conv and BN of a layout, in forward order (stem, then per block: convs/BNs interleaved, downsample). */
export function layoutModules(layout: ResNetLayout): (ConvSpec | BatchNormSpec)[] {
  const out: (ConvSpec | BatchNormSpec)[] = [...layout.stem];
  for (const b of layout.blocks) {
    b.convs.forEach((c, i) => out.push(c, b.bns[i]));
    if (b.downsample) out.push(...b.downsample);
  }
  return out;
}
