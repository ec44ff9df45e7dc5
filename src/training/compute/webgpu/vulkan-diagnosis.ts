/**
 * Why Dawn found no WebGPU adapter, told from what the machine has: the Vulkan loader, the drivers' ICD manifests,
 * NVIDIA GPUs and glvnd. Only consulted after `requestAdapter` gave none (or the probe child saw none), so its cost
 * (one `ldconfig -p`, a few directory listings) is paid on the failure path only.
 *
 * The cases come from machines this project met: a CPU machine without `libvulkan1`; the NVIDIA H200 host of
 * 2026-11-30, where the container toolkit had mounted the driver's ICD (`libGLX_nvidia.so.0`) but the image had no
 * glvnd, and the Vulkan loader said "Could not get 'vkCreateInstance' via 'vk_icdGetInstanceProcAddr'"; and
 * containers started with `NVIDIA_DRIVER_CAPABILITIES=compute,utility`, where the toolkit mounts no ICD at all
 * (docs/performance-gpu.md, "Figures").
 */
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** What {@link diagnoseNoAdapter} needs to know about the machine (gathered by {@link gatherVulkanFacts}). */
export interface VulkanFacts {
  /** Whether `libvulkan.so.1` (the Vulkan loader Dawn opens) is found by the dynamic linker; null: unknown. */
  readonly loader: boolean | null;
  /** Whether glvnd's `libGLdispatch.so.0` is found (NVIDIA's Vulkan ICD lives in `libGLX_nvidia` and needs it); null: unknown. */
  readonly glvnd: boolean | null;
  /** PCI addresses of the GPUs the NVIDIA kernel driver lists (`/proc/driver/nvidia/gpus`); [] without one. */
  readonly nvidiaGpus: readonly string[];
  /** ICD manifest files the loader would read (`VK_DRIVER_FILES` / `VK_ICD_FILENAMES`, else the standard folders). */
  readonly icdFiles: readonly string[];
  /** The folders searched for ICD manifests, for the message. */
  readonly icdDirs: readonly string[];
}

/** The standard ICD manifest folders of the Vulkan loader on Linux (its `XDG_DATA_DIRS` / sysconf search). */
function icdDirsOf(env: NodeJS.ProcessEnv): string[] {
  const data = (env.XDG_DATA_DIRS ?? '/usr/local/share:/usr/share').split(':').filter(Boolean);
  const dirs = ['/etc/vulkan/icd.d', ...data.map((d) => join(d, 'vulkan', 'icd.d'))];
  if (env.XDG_DATA_HOME) dirs.push(join(env.XDG_DATA_HOME, 'vulkan', 'icd.d'));
  return [...new Set(dirs)];
}

/** The names in `dir`; [] when it cannot be read (absent, not a folder, no permission). */
function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

const listJson = (dir: string): string[] => entries(dir).filter((f) => f.endsWith('.json')).map((f) => join(dir, f));

/**
 * Reads the machine's facts for {@link diagnoseNoAdapter}.
 * @param env - the environment the loader sees (`VK_DRIVER_FILES`, `VK_ICD_FILENAMES`, `XDG_DATA_DIRS`, `LD_LIBRARY_PATH`)
 * @param opts - tests replace the sources: `ldconfig` (the output of `ldconfig -p`, null when it cannot run),
 *   `nvidiaDir` (the NVIDIA driver's GPU listing)
 */
export function gatherVulkanFacts(
  env: NodeJS.ProcessEnv = process.env,
  opts: { readonly ldconfig?: string | null; readonly nvidiaDir?: string } = {},
): VulkanFacts {
  let ld = opts.ldconfig;
  if (ld === undefined) {
    ld = null;
    for (const bin of ['ldconfig', '/sbin/ldconfig', '/usr/sbin/ldconfig']) {
      try {
        ld = execFileSync(bin, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
        break;
      } catch {
        // next candidate
      }
    }
  }
  const libDirs = (env.LD_LIBRARY_PATH ?? '').split(delimiter).filter(Boolean);
  const has = (name: string): boolean | null => {
    if (libDirs.some((d) => entries(d).includes(name))) return true;
    if (ld === null) return null;
    return ld.split('\n').some((l) => l.trim().startsWith(`${name} `));
  };
  const nvidiaGpus = entries(opts.nvidiaDir ?? '/proc/driver/nvidia/gpus').sort();
  const explicit = (env.VK_DRIVER_FILES ?? env.VK_ICD_FILENAMES ?? '').split(':').filter(Boolean);
  const icdDirs = explicit.length > 0 ? [] : icdDirsOf(env);
  const icdFiles = explicit.length > 0 ? explicit : icdDirs.flatMap(listJson);
  return { loader: has('libvulkan.so.1'), glvnd: has('libGLdispatch.so.0'), nvidiaGpus, icdFiles, icdDirs };
}

/**
 * The reason to report when Dawn found no adapter, naming what is missing and the remedy.
 * Checked in order: no Vulkan loader; NVIDIA GPUs without an NVIDIA ICD manifest (a container without the `graphics`
 * driver capability); NVIDIA's ICD without glvnd; otherwise the general requirements and how to see the loader's
 * own account (`VK_LOADER_DEBUG`).
 * @returns one line starting `webgpu: no adapter`
 */
export function diagnoseNoAdapter(f: VulkanFacts): string {
  const head = 'webgpu: no adapter';
  const debug = 'VK_LOADER_DEBUG=error,warn,driver shows what the Vulkan loader tried';
  if (f.loader === false) {
    return `${head}: the Vulkan loader libvulkan.so.1 is not installed (apt-get install libvulkan1; plus the GPU's driver, or mesa-vulkan-drivers for a software adapter)`;
  }
  const gpus = f.nvidiaGpus.length;
  if (gpus > 0) {
    const nvidiaIcd = f.icdFiles.some((p) => /nvidia/i.test(p));
    if (!nvidiaIcd) {
      const where = f.icdDirs.length > 0 ? `in ${f.icdDirs.join(', ')}` : 'among VK_DRIVER_FILES';
      return `${head}: ${gpus} NVIDIA GPU(s) present but no NVIDIA Vulkan driver manifest (nvidia_icd.json) ${where}; ` +
        'in a container, NVIDIA_DRIVER_CAPABILITIES must include graphics (e.g. compute,utility,graphics) for the toolkit to mount it; ' +
        `outside one, install the driver's Vulkan part (e.g. libnvidia-gl-<version>); ${debug}`;
    }
    if (f.glvnd === false) {
      return `${head}: NVIDIA's Vulkan driver (libGLX_nvidia) is there but glvnd's libGLdispatch.so.0 is not (apt-get install libglvnd0); ${debug}`;
    }
    return `${head}: ${gpus} NVIDIA GPU(s) and the NVIDIA Vulkan driver manifest are present but Vulkan gave no device; ${debug}`;
  }
  if (f.icdFiles.length === 0) {
    return `${head}: no Vulkan driver installed (no ICD manifest ${f.icdDirs.length > 0 ? `in ${f.icdDirs.join(', ')}` : 'among VK_DRIVER_FILES'}): ` +
      'install the GPU\'s driver, or mesa-vulkan-drivers (≥ 23) for a software adapter';
  }
  return `${head}: Vulkan found no usable device (drivers: ${f.icdFiles.map((p) => p.split('/').at(-1)).join(', ')}); ${debug}`;
}
