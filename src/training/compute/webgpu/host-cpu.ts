/**
 * The host (JavaScript + Dawn encode) cost of work on the WebGPU backend, the figure that bounded the H200 probe's
 * training step (≈ 3,700 dispatches of ≈ 0.2 ms each while the GPU's kernels added up to a third of the step).
 *
 * What is measured: the CPU time of the process's **main thread** only (Linux `/proc/self/task/<pid>/schedstat`, ns;
 * `stat`'s utime + stime in clock ticks where schedstat is missing; Node 20 has no `process.threadCpuUsage`), during
 * `work`, less the main thread's CPU time while it waits for GPU results. Everything tfjs and Dawn do to issue work
 * runs on that thread: tfjs's shader keys, uniforms and bind groups, Dawn's validation and command encoding, the
 * queue submit, the copies of uploaded and read-back data. The GPU's work does not: on an H200 it runs on the GPU, and
 * on Mesa's lavapipe (the software Vulkan driver used without a GPU) on lavapipe's own queue and compute threads. So
 * on lavapipe this figure approximates the JavaScript-side cost the same step has on a GPU machine (measured on a
 * different CPU; an estimate).
 *
 * The waits are taken out because dawn.node polls for completed GPU work from the main thread while a `mapAsync` is
 * pending (a `setImmediate` loop calling the device's tick): CPU time spent there is waiting, not issuing, and on
 * lavapipe it grows with the software GPU's slowness. The wait windows are found by wrapping `GPUBuffer.mapAsync`
 * (every read of tfjs-backend-webgpu, data and timestamp queries alike, goes through it): from the first pending map
 * to the last one resolved, overlapping maps counted once.
 */
import { readFileSync } from 'node:fs';

/** Result of {@link measureHostCpu}; CPU times of the main thread in ms. */
export interface HostCpu {
  /** The main thread's CPU time over the whole of `work`. */
  readonly mainMs: number;
  /** Of `mainMs`, the part spent while at least one GPU read (`mapAsync`) was pending. */
  readonly waitMs: number;
  /** `mainMs − waitMs`: issuing the work (JavaScript, Dawn validation and encoding, submits, data copies). */
  readonly hostMs: number;
  /** Number of `mapAsync` calls (GPU reads) during `work`. */
  readonly reads: number;
}

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux architecture Node supports

/**
 * CPU time (user + system) of the calling process's main thread, ms; `null` where Linux's `/proc` is missing.
 * Resolution: nanoseconds from `schedstat`, else 10 ms from `stat`.
 */
export function mainThreadCpuMs(): number | null {
  const dir = `/proc/self/task/${process.pid}`;
  try {
    return Number(readFileSync(`${dir}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    try {
      // Fields after the parenthesised command name: state is field 3, utime 14 and stime 15 (proc(5)).
      const stat = readFileSync(`${dir}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
    } catch {
      return null;
    }
  }
}

interface MapAsyncHost { prototype: { mapAsync: (...args: unknown[]) => Promise<unknown> } }

/**
 * Runs `work` (on the `webgpu` backend, Dawn loaded) and measures the main thread's CPU time it took to issue it,
 * apart from the time it waited for GPU results (see the module comment).
 *
 * @param work - the computation; should end with a read (e.g. `await t.data()`) so that all its work is done
 * @returns the main thread's figures, or `null` where they cannot be measured (no `/proc`, or Dawn's `GPUBuffer`
 *   class is not loaded)
 */
export async function measureHostCpu(work: () => Promise<void>): Promise<HostCpu | null> {
  const buffer = (globalThis as { GPUBuffer?: MapAsyncHost }).GPUBuffer;
  if (mainThreadCpuMs() === null || typeof buffer?.prototype?.mapAsync !== 'function') {
    await work();
    return null;
  }
  const proto = buffer.prototype;
  const own = Object.hasOwn(proto, 'mapAsync');
  const mapAsync = proto.mapAsync;
  let pending = 0;
  let since = 0;
  let waitMs = 0;
  let reads = 0;
  proto.mapAsync = function (this: unknown, ...args: unknown[]): Promise<unknown> {
    reads++;
    if (pending++ === 0) since = mainThreadCpuMs()!;
    const done = (): void => {
      if (--pending === 0) waitMs += mainThreadCpuMs()! - since;
    };
    return mapAsync.apply(this, args).then((r) => { done(); return r; }, (err: unknown) => { done(); throw err; });
  };
  const start = mainThreadCpuMs()!;
  try {
    await work();
  } finally {
    if (own) proto.mapAsync = mapAsync; else delete (proto as Partial<typeof proto>).mapAsync;
  }
  const mainMs = mainThreadCpuMs()! - start;
  return { mainMs, waitMs, hostMs: mainMs - waitMs, reads };
}
