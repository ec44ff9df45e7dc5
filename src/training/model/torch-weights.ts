/**
 * Converting between a PyTorch/torchvision ResNet `state_dict` (torch layouts, in safetensors) and a tfjs
 * {@link ResNet}: conv weight `[out, in, kh, kw]` (OIHW) ↔ `[kh, kw, in, out]` (HWIO), linear weight `[out, in]` ↔
 * `[in, out]`, BatchNorm weight/bias/running_mean/running_var unchanged, `num_batches_tracked` (int64 scalar)
 * optional on load and written on save.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TrainerError } from '../../contract/errors.js';
import { describeResNet, type ResNet } from './resnet.js';
import { describeConfig, layoutModules, resnetLayout, type ResNetArch, type ResNetConfig, type ResNetLayout } from '../../contract/resnet-spec.js';
import { readSafetensors, writeSafetensors, type SafetensorsTensor, type SafetensorsTensorInput } from './safetensors.js';

/** How a state dict's `fc.*` keys are treated by {@link loadTorchStateDict}. */
export type FcPolicy = 'auto' | 'load' | 'ignore';

/** Options of {@link loadTorchStateDict}. */
export interface LoadTorchWeightsOptions {
  /**
   * `load`: `fc.weight`/`fc.bias` must be present and fit (a model without classifier then rejects them as unknown).
   * `ignore`: `fc.*` is never loaded, whatever its shape or presence (the learner puts its own head; a 1000-class
   * ImageNet fc on a 37-class model). `auto` (default): `load` when the model has a classifier, else `ignore`.
   */
  fc?: FcPolicy;
  /** Name of the weights in error messages (a path). Default `state_dict`. */
  source?: string;
}

/** Defaults of {@link LoadTorchWeightsOptions}. */
export const DEFAULT_LOAD_TORCH_WEIGHTS: Readonly<Required<LoadTorchWeightsOptions>> = Object.freeze({ fc: 'auto', source: 'state_dict' });

/** What {@link loadTorchStateDict} did. */
export interface LoadTorchWeightsResult {
  /** Parameters and buffers assigned. */
  readonly loaded: number;
  /** Keys present in the file and deliberately skipped (`fc.*` under `ignore`, `num_batches_tracked`). */
  readonly ignored: readonly string[];
}

/** How a torch key maps onto the model. */
interface KeyPlan {
  readonly torchShape: number[];
  /** Permutation from torch layout to tfjs layout, or null when identical. */
  readonly perm: number[] | null;
  readonly kind: 'param' | 'buffer' | 'counter';
}

const OIHW_TO_HWIO = [2, 3, 1, 0];
const HWIO_TO_OIHW = [3, 2, 0, 1];

function layoutPlan(layout: ResNetLayout): Map<string, KeyPlan> {
  const plan = new Map<string, KeyPlan>();
  for (const m of layoutModules(layout)) {
    if (m.kind === 'conv') {
      plan.set(`${m.name}.weight`, { torchShape: [m.outChannels, m.inChannels, m.kernel, m.kernel], perm: OIHW_TO_HWIO, kind: 'param' });
      continue;
    }
    const c = [m.channels];
    plan.set(`${m.name}.weight`, { torchShape: c, perm: null, kind: 'param' });
    plan.set(`${m.name}.bias`, { torchShape: c, perm: null, kind: 'param' });
    plan.set(`${m.name}.running_mean`, { torchShape: c, perm: null, kind: 'buffer' });
    plan.set(`${m.name}.running_var`, { torchShape: c, perm: null, kind: 'buffer' });
    plan.set(`${m.name}.num_batches_tracked`, { torchShape: [], perm: null, kind: 'counter' });
  }
  if (layout.numClasses !== null) {
    plan.set('fc.weight', { torchShape: [layout.numClasses, layout.featureChannels], perm: [1, 0], kind: 'param' });
    plan.set('fc.bias', { torchShape: [layout.numClasses], perm: null, kind: 'param' });
  }
  return plan;
}

/**
 * Every key of the torchvision `state_dict` of an architecture with its torch-layout shape, in torch's order
 * (incl. `num_batches_tracked` as `[]`).
 *
 * @param arch - name or config
 * @param numClasses - `fc` outputs; default 1000 (torchvision's ImageNet models); null for no `fc`
 * @throws TrainerError ERR_BAD_CONFIG for a bad arch or numClasses
 */
export function torchStateDictShapes(arch: ResNetArch | ResNetConfig, numClasses: number | null = 1000): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const [k, p] of layoutPlan(resnetLayout(arch, numClasses))) out.set(k, p.torchShape);
  return out;
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function fcSkipped(key: string, policy: FcPolicy, model: ResNet): boolean {
  if (!key.startsWith('fc.')) return false;
  return policy === 'ignore' || (policy === 'auto' && model.numClasses === null);
}

function findProblems(model: ResNet, plan: Map<string, KeyPlan>, dict: ReadonlyMap<string, SafetensorsTensor>, policy: FcPolicy): string[] {
  const problems: string[] = [];
  for (const [key, t] of dict) {
    if (fcSkipped(key, policy, model)) continue;
    const p = plan.get(key);
    if (!p) problems.push(`unexpected key "${key}" ${fmt(t.shape)}`);
    else if (!sameShape(p.torchShape, t.shape)) problems.push(`key "${key}": expected shape ${fmt(p.torchShape)} (torch layout), got ${fmt(t.shape)}`);
    else if (p.kind === 'counter' ? !['I64', 'I32'].includes(t.dtype) : !['F32', 'F16', 'BF16', 'F64'].includes(t.dtype)) {
      problems.push(`key "${key}": expected a ${p.kind === 'counter' ? 'integer' : 'float'} dtype, got ${t.dtype}`);
    }
  }
  for (const [key, p] of plan) {
    if (p.kind !== 'counter' && !dict.has(key) && !fcSkipped(key, policy, model)) {
      problems.push(`missing key "${key}" (expected shape ${fmt(p.torchShape)})`);
    }
  }
  return problems;
}

/**
 * Loads a torchvision `state_dict` into `model` (all or nothing: everything is checked before anything is assigned).
 *
 * @param model - the target; its parameters and BN buffers are overwritten
 * @param dict - torch key → tensor in torch layout (e.g. `readSafetensors(path).tensors`)
 * @param options - see {@link LoadTorchWeightsOptions}
 * @throws TrainerError ERR_WEIGHTS naming every missing, unexpected or mis-shaped key with expected vs actual shape
 */
export function loadTorchStateDict(
  model: ResNet, dict: ReadonlyMap<string, SafetensorsTensor>, options: LoadTorchWeightsOptions = {},
): LoadTorchWeightsResult {
  const { fc, source } = { ...DEFAULT_LOAD_TORCH_WEIGHTS, ...options };
  if (!['auto', 'load', 'ignore'].includes(fc)) throw new TrainerError('ERR_BAD_CONFIG', `fc must be auto|load|ignore, got ${JSON.stringify(fc)}`);
  const plan = layoutPlan(model.layout);
  const problems = findProblems(model, plan, dict, fc);
  if (problems.length > 0) {
    const shown = problems.slice(0, 12).join('; ') + (problems.length > 12 ? `; and ${problems.length - 12} more` : '');
    throw new TrainerError('ERR_WEIGHTS', `${source}: weights do not fit ${describeResNet(model)}: ${shown}`);
  }
  const ignored: string[] = [];
  let loaded = 0;
  for (const [key, t] of dict) {
    const p = plan.get(key);
    if (!p || p.kind === 'counter' || fcSkipped(key, fc, model)) {
      if (p?.kind === 'counter' && key === `${model.layout.stem[1].name}.num_batches_tracked`) model.numBatchesTracked = Number(t.data[0]);
      ignored.push(key);
      continue;
    }
    const target = (p.kind === 'param' ? model.params : model.buffers).get(key)!;
    tf.tidy(() => {
      const values = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as Float64Array);
      const torchTensor = tf.tensor(values, p.torchShape, 'float32');
      target.assign(p.perm ? tf.transpose(torchTensor, p.perm) : torchTensor);
    });
    loaded += 1;
  }
  return { loaded, ignored };
}

/**
 * Reads a safetensors `state_dict` and loads it ({@link loadTorchStateDict}; `source` defaults to the path).
 *
 * @throws TrainerError ERR_WEIGHTS for an unreadable/malformed file or keys that do not fit
 */
export async function loadTorchWeightsFile(model: ResNet, path: string, options: LoadTorchWeightsOptions = {}): Promise<LoadTorchWeightsResult> {
  const file = await readSafetensors(path);
  return loadTorchStateDict(model, file.tensors, { source: path, ...options });
}

/**
 * The model as a torchvision `state_dict` in torch layouts and torch key order (float32 `F32`;
 * `num_batches_tracked` as `I64` scalars = {@link ResNet.numBatchesTracked}), ready for {@link writeSafetensors}.
 */
export async function exportTorchStateDict(model: ResNet): Promise<Map<string, SafetensorsTensorInput>> {
  const out = new Map<string, SafetensorsTensorInput>();
  for (const [key, p] of layoutPlan(model.layout)) {
    if (p.kind === 'counter') {
      out.set(key, { dtype: 'I64', shape: [], data: BigInt64Array.of(BigInt(model.numBatchesTracked)) });
      continue;
    }
    const v = (p.kind === 'param' ? model.params : model.buffers).get(key)!;
    const perm = p.perm === OIHW_TO_HWIO ? HWIO_TO_OIHW : p.perm; // [1, 0] is its own inverse
    const t = perm ? tf.transpose(v, perm) : v;
    const data = (await t.data()) as Float32Array;
    if (t !== v) t.dispose();
    out.set(key, { dtype: 'F32', shape: p.torchShape, data });
  }
  return out;
}

/**
 * Writes the model as a torchvision-compatible safetensors `state_dict` (crash-safe: temp file, fsync, rename).
 *
 * @throws TrainerError ERR_CHECKPOINT when the file cannot be written
 */
export async function saveTorchWeightsFile(model: ResNet, path: string, metadata: Record<string, string> = {}): Promise<void> {
  const dict = await exportTorchStateDict(model);
  await writeSafetensors(path, dict, { format: 'pt', arch: describeConfig(model.layout.config), ...metadata });
}
