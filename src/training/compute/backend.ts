/**
 * Compute backend selection: tfjs-node-gpu (CUDA) → WebGPU (Dawn over Vulkan, a hardware adapter) → tfjs-node
 * (libtensorflow on CPU) → native (oneDNN kernels on the tfjs cpu backend, `native/`) → WASM (XNNPACK, SIMD) → cpu.
 *
 * The native and WebGPU backends are optional dependencies: tfjs-node's install script downloads libtensorflow,
 * which fails offline and which npm ≥ 11 does not run for dependencies unless allowed; `webgpu` ships a prebuilt
 * `dawn.node` that needs a Vulkan loader at run time. So `auto` tries each in turn and reports, in one line, the
 * device it uses and why the others were not used (an optional package that is not installed is said calmly).
 */
import { existsSync, readdirSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { checkChoice } from '../../contract/config.js';
import { TrainerError } from '../../contract/errors.js';
import { registerTfjsGradients } from './kernels/gradients.js';
import { checkAddon } from './native/addon.js';
import { describeAdapter, initWebgpuBackend, isNotInstalled, type WebgpuAdapterInfo } from './webgpu/dawn.js';

/** What the user may ask for with `--backend`. */
export type BackendRequest = 'auto' | 'tensorflow' | 'webgpu' | 'native' | 'wasm' | 'cpu';

/** The backends this module can activate. */
export type BackendKind = 'tensorflow-gpu' | 'webgpu' | 'tensorflow' | 'native' | 'wasm' | 'cpu';

/** All valid `--backend` values, for validation messages. */
export const BACKEND_REQUESTS: readonly BackendRequest[] =
  Object.freeze(['auto', 'tensorflow', 'webgpu', 'native', 'wasm', 'cpu']);

/** The outcome of {@link initBackend}. */
export interface BackendChoice {
  /** Which backend is active now. */
  readonly kind: BackendKind;
  /** tfjs's own backend name (`tensorflow`, `webgpu`, `wasm` or `cpu`). */
  readonly tfName: string;
  /** The WebGPU adapter in use (kind `webgpu` only), else null. */
  readonly adapter: WebgpuAdapterInfo | null;
  /** One entry per backend tried and not chosen, with the reason. */
  readonly rejected: readonly string[];
  /** The chosen backend and its device, without the reasons (`backend: webgpu (nvidia nvidia-h200 (…))`). */
  readonly brief: string;
  /** The single log line: which backend was chosen, on which device, and why the others were not. */
  readonly summary: string;
}

/** Validates a `--backend` value. @throws TrainerError ERR_BAD_FLAG naming the flag and the allowed values. */
export function parseBackendRequest(value: string): BackendRequest {
  return checkChoice('--backend', value, BACKEND_REQUESTS);
}

/**
 * True when an NVIDIA GPU is visible to this process: the driver lists at least one GPU and
 * `CUDA_VISIBLE_DEVICES` does not hide them all.
 */
export function gpuVisible(env: NodeJS.ProcessEnv = process.env): boolean {
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (visible !== undefined && (visible.trim() === '' || visible.trim() === '-1')) return false;
  try {
    return readdirSync('/proc/driver/nvidia/gpus').length > 0 || existsSync('/dev/nvidia0');
  } catch {
    return existsSync('/dev/nvidia0');
  }
}

function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split('\n')[0]!.slice(0, 160);
}

/** Why an optional package could not be used: calm "not installed" when it is absent, else its error. */
async function tryNative(pkg: string): Promise<string | null> {
  try {
    await import(pkg);
    if (!tf.findBackend('tensorflow')) return `${pkg} loaded but registered no 'tensorflow' backend`;
    return null;
  } catch (err) {
    return isNotInstalled(err, pkg) ? `${pkg} not installed (optional)` : `${pkg} not usable (${firstLine(err)})`;
  }
}

async function activate(name: string): Promise<boolean> {
  try {
    return (await tf.setBackend(name)) && tf.getBackend() === name;
  } catch {
    return false;
  }
}

async function activateNative(): Promise<string | null> {
  try {
    const { registerNativeBackend, NATIVE_BACKEND } = await import('./native/backend.js');
    const reg = registerNativeBackend();
    if ('reason' in reg) return reg.reason;
    return (await activate(NATIVE_BACKEND)) ? null : 'native backend failed to initialise';
  } catch (err) {
    return `native backend not usable (${firstLine(err)})`;
  }
}

async function activateWasm(): Promise<string | null> {
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    const { registerWasmTrainingKernels } = await import('./wasm-kernels.js');
    registerWasmTrainingKernels();
    return (await activate('wasm')) ? null : 'WASM backend failed to initialise';
  } catch (err) {
    return `WASM backend not usable (${firstLine(err)})`;
  }
}

/** What one candidate's attempt produced: null when active, else why not. */
interface Attempt {
  readonly error: string | null;
  readonly adapter?: WebgpuAdapterInfo;
}

/**
 * One backend that `initBackend` can try. `auto` tries every candidate with `auto: true` in table order; an explicit
 * request tries the candidates whose `requests` include it. To add a backend, add one row.
 */
interface Candidate {
  readonly kind: BackendKind;
  /** Explicit `--backend` values that try this candidate. */
  readonly requests: readonly BackendRequest[];
  /** Part of the `auto` order. */
  readonly auto: boolean;
  /** Activates it; `explicit` is true when the user asked for this backend by name. */
  readonly attempt: (explicit: boolean) => Promise<Attempt>;
}

const CANDIDATES: readonly Candidate[] = [
  {
    kind: 'tensorflow-gpu', requests: ['tensorflow'], auto: true,
    attempt: async () => {
      if (!gpuVisible()) return { error: 'tensorflow-gpu: no NVIDIA GPU visible' };
      const err = await tryNative('@tensorflow/tfjs-node-gpu');
      return { error: err ?? ((await activate('tensorflow')) ? null : 'tfjs-node-gpu failed to activate') };
    },
  },
  {
    kind: 'webgpu', requests: ['webgpu'], auto: true,
    attempt: async (explicit) => {
      // auto wants a real GPU; an explicit --backend webgpu also takes a software adapter (lavapipe in CI).
      const r = await initWebgpuBackend(explicit);
      return r.ok ? { error: null, adapter: r.adapter } : { error: r.reason };
    },
  },
  {
    kind: 'tensorflow', requests: ['tensorflow'], auto: true,
    attempt: async () => {
      const err = await tryNative('@tensorflow/tfjs-node');
      return { error: err ?? ((await activate('tensorflow')) ? null : 'tfjs-node failed to activate') };
    },
  },
  { kind: 'native', requests: ['native'], auto: true, attempt: async () => ({ error: await activateNative() }) },
  { kind: 'wasm', requests: ['wasm'], auto: true, attempt: async () => ({ error: await activateWasm() }) },
  {
    kind: 'cpu', requests: ['cpu'], auto: true,
    attempt: async () => {
      await import('@tensorflow/tfjs-backend-cpu');
      return { error: (await activate('cpu')) ? null : 'cpu backend failed to activate' };
    },
  },
];

/** How to get each explicitly requested backend working, for its error message. */
const HOW_TO: Partial<Record<BackendRequest, string>> = {
  tensorflow: 'Install @tensorflow/tfjs-node(-gpu) and allow its install script (see README, "Running on GPUs").',
  webgpu: 'It needs the optional package `webgpu` (Dawn) and a Vulkan driver: libvulkan1 and the GPU\'s driver (NVIDIA\'s also glvnd, libglvnd0), or Mesa ' +
    '(mesa-vulkan-drivers ≥ 23, e.g. from bookworm-backports) for a software adapter (see README, "Running on GPUs").',
};

/**
 * Checks what can be checked of an explicitly requested backend without activating it, so that the process that
 * starts local workers (the coordinator) stops before the run rather than after its data check: for `native`, that
 * the addon is built and current (a stale one names the rebuild command). Other requests are checked by
 * {@link initBackend} in each worker.
 * @throws TrainerError ERR_BACKEND as {@link initBackend} would
 */
export function checkBackendRequest(request: BackendRequest): void {
  if (request !== 'native') return;
  const check = checkAddon();
  if ('reason' in check) throw new TrainerError('ERR_BACKEND', `--backend native requested but unavailable: ${check.reason}.`);
}

/**
 * Activates a compute backend and returns what was chosen and why.
 *
 * @param request - `auto` tries tfjs-node-gpu (only when an NVIDIA GPU is visible), WebGPU (a hardware adapter
 *   only), tfjs-node, native (oneDNN), WASM, then cpu; any other value insists on that backend (`tensorflow` tries
 *   tfjs-node-gpu, then tfjs-node; `webgpu` also accepts a software adapter).
 * Also registers tfjs-core's gradient definitions (missing from its Node bundle), so `tf.grad` works after it.
 *
 * @throws TrainerError ERR_BACKEND when an explicitly requested backend cannot be activated.
 */
export async function initBackend(request: BackendRequest): Promise<BackendChoice> {
  const rejected: string[] = [];
  // tfjs-core's Node bundle ships without gradient definitions; every training backend needs them.
  await registerTfjsGradients();
  const explicit = request !== 'auto';
  for (const c of CANDIDATES) {
    if (explicit ? !c.requests.includes(request) : !c.auto) continue;
    const r = await c.attempt(explicit);
    if (r.error === null) {
      const adapter = r.adapter ?? null;
      const on = adapter ? ` on ${describeAdapter(adapter)}` : '';
      const brief = `backend: ${c.kind}${on} (requested ${request})`;
      const why = rejected.length ? `; not used: ${rejected.join('; ')}` : '';
      return { kind: c.kind, tfName: tf.getBackend(), adapter, rejected, brief, summary: `${brief}${why}` };
    }
    rejected.push(r.error);
  }
  if (explicit) {
    throw new TrainerError('ERR_BACKEND', `--backend ${request} requested but unavailable: ${rejected.join('; ')}.` +
      (HOW_TO[request] ? ` ${HOW_TO[request]}` : ''));
  }
  throw new TrainerError('ERR_BACKEND', `no tfjs backend could be activated: ${rejected.join('; ')}`);
}
