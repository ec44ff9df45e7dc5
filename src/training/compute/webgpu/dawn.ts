/**
 * WebGPU in Node through Dawn's Node bindings (npm `webgpu`, an optional dependency: it ships a prebuilt
 * `dawn.node` and loads `libvulkan.so.1` at run time) and `@tensorflow/tfjs-backend-webgpu`.
 *
 * tfjs-backend-webgpu asks `navigator.gpu` for its adapter, so {@link initWebgpuBackend} installs Dawn's GPU object
 * as `navigator.gpu` before importing the backend. Which physical GPU Dawn uses:
 * - Dawn enumerates every Vulkan physical device and takes the first one whose `info.device` contains the
 *   `adapter=` flag of `create([...])` (here: `PETS_WEBGPU_ADAPTER`), else the first one of the requested power
 *   preference. Identical GPUs (8 × "nvidia-h200") cannot be told apart by that name.
 * - The Vulkan loader decides the order of the physical devices and which drivers load: `VK_DRIVER_FILES`
 *   (older: `VK_ICD_FILENAMES`) picks the ICD json files. Mesa's device-select layer (an implicit layer installed
 *   with `mesa-vulkan-drivers`, for any driver) moves one device first: `MESA_VK_DEVICE_SELECT=vendorID:deviceID`,
 *   or `DRI_PRIME=pci-DDDD_BB_SS_F` (by PCI address: tells identical GPUs apart), and
 *   `MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1` hides the others. Local workers get their GPU that way.
 * See `docs/performance-gpu.md`, "One process per GPU".
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { diagnoseNoAdapter, gatherVulkanFacts } from './vulkan-diagnosis.js';

/** What Dawn reports about the adapter in use (WebGPU `GPUAdapterInfo`). */
export interface WebgpuAdapterInfo {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  /** True for a software adapter (Mesa lavapipe, SwiftShader): correct but about 1 GFLOP/s. */
  readonly isFallbackAdapter: boolean;
}

/** The outcome of {@link initWebgpuBackend}: the adapter, or why WebGPU cannot be used. */
export type WebgpuInit =
  | { readonly ok: true; readonly adapter: WebgpuAdapterInfo }
  | { readonly ok: false; readonly reason: string; readonly notInstalled: boolean };

/** Minimal typing of the parts of Dawn's GPU object used here. */
interface DawnGpu {
  requestAdapter(options?: { powerPreference?: string; forceFallbackAdapter?: boolean }): Promise<{
    readonly info: Partial<WebgpuAdapterInfo> & { isFallbackAdapter?: boolean };
  } | null>;
}

let dawnGpu: DawnGpu | null = null;

/** Dawn instance flags from the environment: `PETS_WEBGPU_ADAPTER` → `adapter=…`, `PETS_DAWN_FLAGS` (space-separated). */
export function dawnFlags(env: NodeJS.ProcessEnv = process.env): string[] {
  const flags = (env.PETS_DAWN_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const adapter = env.PETS_WEBGPU_ADAPTER?.trim();
  if (adapter) flags.push(`adapter=${adapter}`);
  return flags;
}

/**
 * True when `err` (from importing `pkg`) says that `pkg` itself is not installed, as opposed to installed but
 * broken (e.g. a missing native file inside it, which names that file instead).
 */
export function isNotInstalled(err: unknown, pkg: string): boolean {
  const code = (err as { code?: string } | null)?.code;
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return false;
  const msg = String(err instanceof Error ? err.message : err);
  return msg.includes(`Cannot find package '${pkg}'`) || msg.includes(`Cannot find module '${pkg}'`);
}

function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split('\n')[0]!.slice(0, 160);
}

/**
 * Describes an adapter for the log: `vendor device (description)[, software fallback][, asked for GPU pci-… (DRI_PRIME)]`
 * (the last part when a local worker was given its GPU, see `coordinator/local-workers.ts`). "Asked for": WebGPU's
 * adapter info has no PCI address, and Mesa's device-select layer falls back to the default GPU, silently, when the
 * address matches none (or is ignored when the layer is not installed), so the log cannot confirm it.
 */
export function describeAdapter(a: WebgpuAdapterInfo, env: NodeJS.ProcessEnv = process.env): string {
  const name = [a.vendor, a.device].filter(Boolean).join(' ') || 'unnamed adapter';
  const chosen = env.DRI_PRIME?.startsWith('pci-') ? `, asked for GPU ${env.DRI_PRIME} (DRI_PRIME)` : '';
  return `${name}${a.description ? ` (${a.description})` : ''}${a.isFallbackAdapter ? ', software fallback' : ''}${chosen}`;
}

/** Why there is no adapter, from what the machine has (loader, ICD manifests, NVIDIA GPUs, glvnd). */
const noAdapter = (): string => diagnoseNoAdapter(gatherVulkanFacts());

/** Loads Dawn once and installs it as `navigator.gpu` (kept for the life of the process). */
async function loadDawn(): Promise<DawnGpu> {
  if (dawnGpu !== null) return dawnGpu;
  const mod = (await import('webgpu')) as unknown as { create(flags: string[]): DawnGpu; globals: Record<string, unknown> };
  // tfjs-backend-webgpu uses the WebGPU enums (GPUBufferUsage, GPUMapMode, …) as globals, as in a browser.
  Object.assign(globalThis, mod.globals);
  const gpu = mod.create(dawnFlags());
  const old = (globalThis as { navigator?: { userAgent?: string; hardwareConcurrency?: number } }).navigator;
  Object.defineProperty(globalThis, 'navigator', {
    value: { gpu, userAgent: old?.userAgent ?? `Node.js/${process.version}`, hardwareConcurrency: old?.hardwareConcurrency },
    configurable: true, writable: true,
  });
  dawnGpu = gpu;
  return gpu;
}

/**
 * Known noise of Dawn's native code on stderr: while it enumerates Mesa's software Vulkan device (llvmpipe, whose
 * limits are "unlimited"), it prints these two warnings at every start, whatever the program asked for.
 */
const DAWN_NOISE = /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;

/** `text` without the lines of Dawn's known noise ({@link DAWN_NOISE}); every other line is kept. */
export function withoutDawnNoise(text: string): string {
  return text.split('\n').filter((l) => !DAWN_NOISE.test(l.trimEnd())).join('\n');
}

/** The probe run in a child process: prints the adapter's info (or null) as one JSON line. */
const PROBE = `const [url, flags] = process.argv.slice(1);
const { create } = await import(url);
const a = await create(JSON.parse(flags)).requestAdapter({ powerPreference: 'high-performance' });
const i = a?.info;
process.stdout.write(JSON.stringify(i ? { vendor: i.vendor ?? '', architecture: i.architecture ?? '', device: i.device ?? '', description: i.description ?? '', isFallbackAdapter: i.isFallbackAdapter === true } : null));
process.exit(0);`;

/**
 * Asks Dawn, in a child process, which adapter it would give (`auto` only takes a hardware one). Dawn's native code
 * writes to the process's own stderr, which Node cannot filter; in a child it can: the known noise
 * ({@link DAWN_NOISE}) is dropped, anything else Dawn says is passed on to this process's stderr. So a machine with
 * only a software adapter (every CPU machine with Mesa) never loads Dawn in the training process and prints nothing.
 * @returns the adapter (null: none), or why the probe could not tell
 */
async function probeAdapter(): Promise<{ readonly adapter: WebgpuAdapterInfo | null } | { readonly error: string; readonly notInstalled: boolean }> {
  let url: string;
  try {
    url = pathToFileURL(createRequire(import.meta.url).resolve('webgpu')).href;
  } catch (err) {
    return isNotInstalled(err, 'webgpu')
      ? { error: 'webgpu (Dawn) not installed (optional)', notInstalled: true }
      : { error: `webgpu (Dawn) not usable (${firstLine(err)})`, notInstalled: false };
  }
  return new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', PROBE, url, JSON.stringify(dawnFlags())], { timeout: 120_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const rest = withoutDawnNoise(stderr).trim();
      if (rest !== '') process.stderr.write(`${rest}\n`);
      if (err) {
        resolve({ error: `webgpu: adapter probe failed (${err.killed ? 'timed out after 120 s' : firstLine(rest || err)})`, notInstalled: false });
        return;
      }
      try {
        resolve({ adapter: JSON.parse(stdout) as WebgpuAdapterInfo | null });
      } catch {
        resolve({ error: `webgpu: adapter probe gave no answer (${JSON.stringify(stdout.slice(0, 80))})`, notInstalled: false });
      }
    });
  });
}

/**
 * Loads Dawn and tfjs-backend-webgpu and activates the `webgpu` tfjs backend. Without `allowFallback` (`auto`) the
 * adapter is first probed in a child process ({@link probeAdapter}), and Dawn is loaded here only for a hardware one.
 *
 * @param allowFallback - accept a software adapter (lavapipe); `auto` does not, an explicit `--backend webgpu` does
 * @returns the adapter, or the reason it cannot be used (`notInstalled` when the `webgpu` package is absent)
 */
export async function initWebgpuBackend(allowFallback: boolean): Promise<WebgpuInit> {
  if (!allowFallback && dawnGpu === null) {
    const probe = await probeAdapter();
    if ('error' in probe) return { ok: false, reason: probe.error, notInstalled: probe.notInstalled };
    if (probe.adapter === null) return { ok: false, reason: noAdapter(), notInstalled: false };
    if (probe.adapter.isFallbackAdapter) return { ok: false, reason: `webgpu: only a software adapter (${describeAdapter(probe.adapter)})`, notInstalled: false };
  }
  let gpu: DawnGpu;
  try {
    gpu = await loadDawn();
  } catch (err) {
    return isNotInstalled(err, 'webgpu')
      ? { ok: false, reason: 'webgpu (Dawn) not installed (optional)', notInstalled: true }
      : { ok: false, reason: `webgpu (Dawn) not usable (${firstLine(err)})`, notInstalled: false };
  }
  let info: WebgpuAdapterInfo;
  try {
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (adapter === null) return { ok: false, reason: noAdapter(), notInstalled: false };
    const i = adapter.info;
    info = { vendor: i.vendor ?? '', architecture: i.architecture ?? '', device: i.device ?? '', description: i.description ?? '',
      isFallbackAdapter: i.isFallbackAdapter === true };
  } catch (err) {
    return { ok: false, reason: `webgpu: no adapter (${firstLine(err)})`, notInstalled: false };
  }
  if (info.isFallbackAdapter && !allowFallback) {
    return { ok: false, reason: `webgpu: only a software adapter (${describeAdapter(info)})`, notInstalled: false };
  }
  try {
    await import('@tensorflow/tfjs-backend-webgpu');
    const { registerWebgpuTrainingKernels } = await import('./kernels.js');
    registerWebgpuTrainingKernels();
    if (!((await tf.setBackend('webgpu')) && tf.getBackend() === 'webgpu')) {
      return { ok: false, reason: 'webgpu: tfjs-backend-webgpu failed to initialise', notInstalled: false };
    }
  } catch (err) {
    return { ok: false, reason: `webgpu: tfjs-backend-webgpu not usable (${firstLine(err)})`, notInstalled: isNotInstalled(err, '@tensorflow/tfjs-backend-webgpu') };
  }
  return { ok: true, adapter: info };
}
