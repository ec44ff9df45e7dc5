/**
 * Compute backend selection: tfjs-node-gpu (CUDA) → tfjs-node (libtensorflow on CPU) → native (oneDNN kernels on
 * the tfjs cpu backend, `native/`) → WASM (XNNPACK, SIMD) → cpu.
 *
 * The native backends are optional dependencies: their install script downloads libtensorflow, which fails
 * offline and which npm ≥ 11 does not run for dependencies unless allowed. So `auto` tries each in turn and
 * reports why the others were not used.
 */
import { existsSync, readdirSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { TrainerError } from '../errors.js';
import { registerTfjsGradients } from './kernels/gradients.js';

/** What the user may ask for with `--backend`. */
export type BackendRequest = 'auto' | 'tensorflow' | 'native' | 'wasm' | 'cpu';

/** The backends this module can activate. */
export type BackendKind = 'tensorflow-gpu' | 'tensorflow' | 'native' | 'wasm' | 'cpu';

/** All valid `--backend` values, for validation messages. */
export const BACKEND_REQUESTS: readonly BackendRequest[] = Object.freeze(['auto', 'tensorflow', 'native', 'wasm', 'cpu']);

/** The outcome of {@link initBackend}. */
export interface BackendChoice {
  /** Which backend is active now. */
  readonly kind: BackendKind;
  /** tfjs's own backend name (`tensorflow`, `wasm` or `cpu`). */
  readonly tfName: string;
  /** One entry per backend tried and not chosen, with the reason. */
  readonly rejected: readonly string[];
  /** The single log line: which backend was chosen and why the others were not. */
  readonly summary: string;
}

/** Validates a `--backend` value. @throws TrainerError ERR_BAD_FLAG naming the flag and the allowed values. */
export function parseBackendRequest(value: string): BackendRequest {
  if ((BACKEND_REQUESTS as readonly string[]).includes(value)) return value as BackendRequest;
  throw new TrainerError('ERR_BAD_FLAG', `--backend must be one of ${BACKEND_REQUESTS.join('|')}, got ${JSON.stringify(value)}`);
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

async function tryNative(pkg: string): Promise<string | null> {
  try {
    await import(pkg);
    if (!tf.findBackend('tensorflow')) return `${pkg} loaded but registered no 'tensorflow' backend`;
    return null;
  } catch (err) {
    return `${pkg} not usable (${firstLine(err)})`;
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

/**
 * Activates a compute backend and returns what was chosen and why.
 *
 * @param request - `auto` tries tfjs-node-gpu (only when a GPU is visible), tfjs-node, native (oneDNN), WASM, then cpu;
 *   any other value insists on that backend.
 * Also registers tfjs-core's gradient definitions (missing from its Node bundle), so `tf.grad` works after it.
 *
 * @throws TrainerError ERR_BACKEND when an explicitly requested backend cannot be activated.
 */
export async function initBackend(request: BackendRequest): Promise<BackendChoice> {
  const rejected: string[] = [];
  // tfjs-core's Node bundle ships without gradient definitions; every training backend needs them.
  await registerTfjsGradients();
  const done = (kind: BackendKind): BackendChoice => {
    const tfName = tf.getBackend();
    const why = rejected.length ? `; not used: ${rejected.join('; ')}` : '';
    return { kind, tfName, rejected, summary: `backend: ${kind} (requested ${request})${why}` };
  };
  if (request === 'auto' || request === 'tensorflow') {
    if (gpuVisible()) {
      const err = await tryNative('@tensorflow/tfjs-node-gpu');
      if (err === null && (await activate('tensorflow'))) return done('tensorflow-gpu');
      rejected.push(err ?? 'tfjs-node-gpu failed to activate');
    } else {
      rejected.push('tensorflow-gpu: no NVIDIA GPU visible');
    }
    const err = await tryNative('@tensorflow/tfjs-node');
    if (err === null && (await activate('tensorflow'))) return done('tensorflow');
    rejected.push(err ?? 'tfjs-node failed to activate');
    if (request === 'tensorflow') {
      throw new TrainerError('ERR_BACKEND', `--backend tensorflow requested but unavailable: ${rejected.join('; ')}. ` +
        'Install @tensorflow/tfjs-node(-gpu) and allow its install script (see README, "Running on GPUs").');
    }
  }
  if (request === 'auto' || request === 'native') {
    const err = await activateNative();
    if (err === null) return done('native');
    rejected.push(err);
    if (request === 'native') throw new TrainerError('ERR_BACKEND', `--backend native requested but unavailable: ${err}`);
  }
  if (request === 'auto' || request === 'wasm') {
    const err = await activateWasm();
    if (err === null) return done('wasm');
    rejected.push(err);
    if (request === 'wasm') throw new TrainerError('ERR_BACKEND', `--backend wasm requested but unavailable: ${err}`);
  }
  await import('@tensorflow/tfjs-backend-cpu');
  if (await activate('cpu')) return done('cpu');
  throw new TrainerError('ERR_BACKEND', `no tfjs backend could be activated: ${rejected.join('; ')}`);
}
