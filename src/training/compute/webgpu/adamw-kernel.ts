/**
 * One AdamW update of one parameter tensor on WebGPU in **one dispatch**: a single WGSL kernel reads the gradient and
 * updates the parameter, m and v in place, with every hyper-parameter in one small uniform buffer. The earlier
 * version took 3 dispatches per tensor (new m, new v, new parameter: tfjs programs have one output each); tfjs's own
 * ops take ~14 element-wise dispatches and ~8 scalar uploads per tensor (the H200 probe counted 1,624 dispatches and
 * 928 uploads in the optimizer of one ResNet34 step). For ResNet34's 116 trainable tensors: 116 dispatches per step.
 *
 * Why one dispatch per tensor and not one over all parameters: the parameters are separate tfjs variables, each its
 * own GPUBuffer, and a WebGPU dispatch binds at most `maxStorageBuffersPerShaderStage` buffers (8, the WebGPU default
 * that tfjs-backend-webgpu's device keeps). A single kernel over every element needs the model's weights (and their
 * gradients) in one flat buffer with an offsets table, i.e. a model that holds its variables as views of one buffer,
 * which tfjs has no notion of. m and v are the optimizer's own, but with per-tensor p and g in separate buffers a flat
 * m/v buffer would only save bindings, not dispatches.
 *
 * Formula (fastai v1 true_wd AdamW, as `learner/adamw.ts`; PyTorch `AdamW`):
 * `m' = β1·m + (1 − β1)·g`, `v' = β2·v + (1 − β2)·g²`,
 * `p' = p·(1 − lr·wd) − (lr / bc1) · m' / (√v' / √bc2 + eps)`, with `bc1 = 1 − β1^t`, `bc2 = 1 − β2^t`.
 *
 * The gradient may be one flat gradient of all parameters, read at an element offset (`gOffset` in the uniform
 * buffer; a storage binding's own offset would have to be a multiple of 256 bytes): `learner/adamw.ts`'s `stepFlat`
 * updates every parameter from the step's one uploaded flat gradient, with no split into per-parameter tensors (it
 * took 118 `SplitV` dispatches per ResNet34 step).
 *
 * The kernel writes into its inputs, so it is a tfjs kernel with no outputs (registered by `kernels.ts`, so it shows
 * by name in `tf.profile`). It encodes its dispatch into tfjs-backend-webgpu's current command encoder through the
 * backend's internals (4.22: `commandEncoder`, `computePassEncoder`, `bufferManager`, `tensorMap`, …; see
 * {@link WebgpuInternals}), exactly as the backend's `recordAndSubmit` does for its own programs.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';

/**
 * tfjs kernel name of the in-place AdamW update: inputs `p, g, m, v` (float32; `p`, `m`, `v` of one number of
 * elements n and each owning its buffer, see {@link ownBuffer}; `g` holds the gradient at elements
 * `[gOffset, gOffset + n)`, so one flat gradient of all parameters serves every update without a split); no
 * outputs: `p`, `m`, `v` are overwritten.
 */
export const ADAMW_KERNEL = 'PetsAdamWUpdate';

/** Attributes of {@link ADAMW_KERNEL}. */
export interface AdamWAttrs {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  /** `1 − lr·wd`. */
  readonly decay: number;
  /** `lr / bc1`. */
  readonly stepSize: number;
  /** `√bc2`. */
  readonly sqrtBc2: number;
  /** Element offset of this parameter's gradient in `g` (0 when `g` is the parameter's own gradient). Default 0. */
  readonly gOffset?: number;
}

/** Threads per workgroup; the kernel loops with a grid stride, so any size fits in ≤ 65,535 workgroups. */
const WG = 256;
const MAX_WORKGROUPS = 65535;

const SHADER = /* wgsl */ `
struct Hyper { beta1 : f32, beta2 : f32, eps : f32, decay : f32, stepSize : f32, sqrtBc2 : f32, n : u32, gOffset : u32 };
@group(0) @binding(0) var<storage, read_write> p : array<f32>;
@group(0) @binding(1) var<storage, read_write> m : array<f32>;
@group(0) @binding(2) var<storage, read_write> v : array<f32>;
@group(0) @binding(3) var<storage, read> g : array<f32>;
@group(0) @binding(4) var<uniform> h : Hyper;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < h.n; i = i + stride) {
    let gi = g[h.gOffset + i];
    let mi = h.beta1 * m[i] + (1.0 - h.beta1) * gi;
    let vi = h.beta2 * v[i] + (1.0 - h.beta2) * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * h.decay - h.stepSize * (mi / (sqrt(vi) / h.sqrtBc2 + h.eps));
  }
}`;

/** The parts of a `GPUDevice` used here (typed locally: the WebGPU DOM types are not part of this build). */
interface Device {
  createShaderModule(d: { code: string }): unknown;
  createComputePipeline(d: { layout: 'auto'; compute: { module: unknown; entryPoint: string } }): Pipeline;
  createBindGroup(d: { layout: unknown; entries: { binding: number; resource: { buffer: unknown } }[] }): unknown;
  createQuerySet(d: { type: 'timestamp'; count: number }): unknown;
}
interface Pipeline { getBindGroupLayout(i: number): unknown }
interface Pass {
  setPipeline(p: Pipeline): void;
  setBindGroup(i: number, g: unknown): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
}
interface TensorData { resource: unknown; values: unknown; refCount: number }

/**
 * The members of tfjs-backend-webgpu 4.22's `WebGPUBackend` this project's in-place kernels use (runtime-public,
 * typed private or internal there). Checked at each call (see {@link webgpuInternals}); a tfjs upgrade that renames
 * them fails loudly.
 */
export interface WebgpuInternals {
  readonly device: Device;
  readonly queue: { writeBuffer(b: unknown, offset: number, data: ArrayBuffer): void };
  readonly bufferManager: { acquireBuffer(size: number, usage: number): unknown };
  readonly tensorMap: { get(dataId: object): TensorData };
  readonly uniformPendingDisposal: unknown[];
  readonly commandQueueOwnedIds: WeakSet<object>;
  commandEncoder: {
    beginComputePass(d: object): Pass & { end(): void };
    copyBufferToBuffer(src: unknown, srcOffset: number, dst: unknown, dstOffset: number, size: number): void;
    clearBuffer(b: unknown, offset: number, size: number): void;
  } | null;
  computePassEncoder: (Pass & { end(): void }) | null;
  dispatchCountInPass: number;
  activeTimers: { name: string; query: Promise<number> }[] | null;
  readonly supportTimestampQuery: boolean;
  querySet: unknown;
  readonly querySetCount: number;
  uploadToGPU(dataId: object): void;
  makeTensorInfo(shape: number[], dtype: 'float32'): TensorInfo;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  getQueryTime(): Promise<number>;
}

const REQUIRED = ['device', 'queue', 'bufferManager', 'tensorMap', 'uniformPendingDisposal', 'commandQueueOwnedIds',
  'uploadToGPU', 'makeTensorInfo', 'ensureCommandEncoderReady', 'endComputePassEncoder', 'submitQueue', 'getQueryTime'] as const;

/**
 * `backend` as {@link WebgpuInternals}.
 * @throws Error naming `kernel` and the missing members when the backend lacks one of them
 */
export function webgpuInternals(backend: unknown, kernel: string): WebgpuInternals {
  const be = backend as Record<string, unknown>;
  const missing = REQUIRED.filter((k) => be[k] === undefined);
  if (missing.length > 0) {
    throw new Error(`${kernel}: this tfjs-backend-webgpu lacks ${missing.join(', ')} (written against 4.22)`);
  }
  return backend as WebgpuInternals;
}

const pipelines = new WeakMap<object, Pipeline>();

/** GPUBufferUsage.UNIFORM | COPY_DST (WebGPU spec constants; the globals exist only once Dawn is loaded). */
const UNIFORM_USAGE = 0x0040 | 0x0008;

/**
 * The WebGPU kernel function of {@link ADAMW_KERNEL}: one dispatch, `p`, `m`, `v` updated in place.
 *
 * @throws Error when `p`, `g`, `m`, `v` are not float32, when `m` or `v` differs in size from `p`, when `gOffset` is
 *   not an integer ≥ 0 or `g` has fewer than `gOffset + n` elements, when two of them share a buffer, or when one of
 *   `p`, `m`, `v` shares its buffer with another tensor (an in-place write would change that tensor too)
 */
export const adamwWebgpu: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = webgpuInternals(backend, ADAMW_KERNEL);
  const { p, g, m, v } = inputs as Record<'p' | 'g' | 'm' | 'v', TensorInfo>;
  const a = attrs as unknown as AdamWAttrs;
  const n = tf.util.sizeFromShape(p.shape);
  const gOffset = a.gOffset ?? 0;
  for (const [name, t] of [['p', p], ['g', g], ['m', m], ['v', v]] as const) {
    if (t.dtype !== 'float32') throw new Error(`${ADAMW_KERNEL}: ${name} must be float32, got ${t.dtype}`);
    if (t !== g && tf.util.sizeFromShape(t.shape) !== n) throw new Error(`${ADAMW_KERNEL}: ${name} has shape [${t.shape}], p has [${p.shape}]`);
  }
  if (!Number.isInteger(gOffset) || gOffset < 0 || gOffset > 0xffffffff) {
    throw new Error(`${ADAMW_KERNEL}: gOffset must be an integer in [0, 2^32), got ${gOffset}`);
  }
  if (tf.util.sizeFromShape(g.shape) < gOffset + n) {
    throw new Error(`${ADAMW_KERNEL}: g has ${tf.util.sizeFromShape(g.shape)} elements, needs gOffset + n = ${gOffset} + ${n}`);
  }
  if (new Set([p.dataId, g.dataId, m.dataId, v.dataId]).size !== 4) throw new Error(`${ADAMW_KERNEL}: p, g, m, v must be four distinct buffers`);
  for (const [name, t] of [['p', p], ['m', m], ['v', v]] as const) {
    if (be.tensorMap.get(t.dataId).refCount > 1) throw new Error(`${ADAMW_KERNEL}: ${name} shares its buffer with another tensor (see ownBuffer)`);
  }
  if (n === 0) return [];
  for (const t of [p, m, v, g]) {
    be.uploadToGPU(t.dataId);
    be.commandQueueOwnedIds.add(t.dataId);
  }
  let pipeline = pipelines.get(be.device);
  if (pipeline === undefined) {
    pipeline = be.device.createComputePipeline({ layout: 'auto', compute: { module: be.device.createShaderModule({ code: SHADER }), entryPoint: 'main' } });
    pipelines.set(be.device, pipeline);
  }
  const hyper = new ArrayBuffer(32);
  new Float32Array(hyper, 0, 6).set([a.beta1, a.beta2, a.eps, a.decay, a.stepSize, a.sqrtBc2]);
  new Uint32Array(hyper, 24, 2).set([n, gOffset]);
  const uniform = be.bufferManager.acquireBuffer(32, UNIFORM_USAGE);
  be.queue.writeBuffer(uniform, 0, hyper);
  be.uniformPendingDisposal.push(uniform); // released after the next submit, as the backend's own uniforms
  const buffers = [p, m, v, g].map((t) => be.tensorMap.get(t.dataId).resource);
  const bindGroup = be.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [...buffers, uniform].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  // The values written are on the GPU only now: drop any CPU copy a previous read cached.
  for (const t of [p, m, v]) be.tensorMap.get(t.dataId).values = null;

  be.ensureCommandEncoderReady();
  const timed = be.activeTimers != null && be.supportTimestampQuery; // inside tf.profile / tf.time: as recordAndSubmit
  if (timed) {
    be.endComputePassEncoder();
    be.querySet ??= be.device.createQuerySet({ type: 'timestamp', count: be.querySetCount });
    be.computePassEncoder = be.commandEncoder!.beginComputePass({
      timestampWrites: { querySet: be.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
    });
  } else {
    be.computePassEncoder ??= be.commandEncoder!.beginComputePass({});
  }
  const pass = be.computePassEncoder!;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(Math.min(Math.ceil(n / WG), MAX_WORKGROUPS));
  be.dispatchCountInPass++;
  if (timed) {
    be.endComputePassEncoder();
    be.activeTimers!.push({ name: 'AdamWProgram', query: be.getQueryTime() });
  } else if (tf.env().getNumber('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') <= be.dispatchCountInPass) {
    be.endComputePassEncoder();
    be.submitQueue();
  }
  return [];
};

/**
 * Makes `x` the only tensor on its buffer, so that {@link ADAMW_KERNEL} may write into it: a variable made with
 * `tf.variable(t)` shares `t`'s buffer while `t` lives, and so does a reshape of it. Copies (one dispatch) only then.
 */
export function ownBuffer(x: tf.Variable): void {
  if (tf.backend().refCount(x.dataId) <= 1) return;
  const copy = tf.tidy(() => tf.mul(x, tf.scalar(1, 'float32')));
  x.assign(copy);
  copy.dispose();
}
