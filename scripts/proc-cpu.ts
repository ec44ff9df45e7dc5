/**
 * Process and thread CPU time from Linux `/proc` (for bench:scaling): what each worker process and each of its
 * threads (the tfjs main thread, piscina decode threads, the heartbeat thread, libzmq's `ZMQbg/*` I/O threads, V8's
 * GC/compiler helpers) used between two samples. Linux only: elsewhere {@link sampleThreads} returns null.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { procStatFields } from '../src/contract/process.js';

/** `/proc/<pid>/stat` counts utime/stime in clock ticks; USER_HZ is 100 on every Linux ABI (`getconf CLK_TCK`). */
const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system) of every thread of one process at one moment, by thread id. */
export interface ThreadSample {
  readonly pid: number;
  readonly threads: ReadonlyMap<number, { readonly name: string; readonly cpuSeconds: number }>;
}

/**
 * CPU seconds (utime + stime, fields 14 and 15) of one `/proc/<pid>/task/<tid>/stat` line, `tid (comm) state …`;
 * comm may hold spaces and parentheses, so the fields are counted from its last `)` (proc(5)).
 */
export function cpuSecondsOfStat(line: string): number {
  const fields = procStatFields(line); // utime (field 14) is fields[11], stime (15) fields[12]
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** CPU time of each thread of `pid` now, or null when `/proc` cannot be read (not Linux, process gone). */
export function sampleThreads(pid: number): ThreadSample | null {
  try {
    const threads = new Map<number, { name: string; cpuSeconds: number }>();
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        threads.set(Number(tid), { name, cpuSeconds: cpuSecondsOfStat(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')) });
      } catch {
        // the thread ended between the listing and the read
      }
    }
    return { pid, threads };
  } catch {
    return null;
  }
}

/** CPU seconds between two samples of one process: in all, on its main thread (tid = pid), and the rest by role. */
export interface CpuSplit {
  readonly totalSeconds: number;
  readonly mainSeconds: number;
  /** Other threads grouped by name (`node` = Node/V8 threads: worker threads, GC and compiler helpers). */
  readonly otherSeconds: Readonly<Record<string, number>>;
  /** The busiest thread other than the main one (in a worker: the decode thread), seconds. */
  readonly busiestOtherSeconds: number;
}

/**
 * What each thread used from `before` to `after`; a thread that started in between counts from zero, one that
 * ended is lost (its time is in neither sample: `/proc` only lists live threads).
 */
export function cpuBetween(before: ThreadSample, after: ThreadSample): CpuSplit {
  let totalSeconds = 0, mainSeconds = 0, busiestOtherSeconds = 0;
  const otherSeconds: Record<string, number> = {};
  for (const [tid, t] of after.threads) {
    const used = Math.max(0, t.cpuSeconds - (before.threads.get(tid)?.cpuSeconds ?? 0));
    totalSeconds += used;
    if (tid === after.pid) {
      mainSeconds = used;
      continue;
    }
    otherSeconds[t.name] = (otherSeconds[t.name] ?? 0) + used;
    busiestOtherSeconds = Math.max(busiestOtherSeconds, used);
  }
  return { totalSeconds, mainSeconds, otherSeconds, busiestOtherSeconds };
}

/** Machine-wide CPU time since boot, summed over all cores (`/proc/stat`'s `cpu` line), in seconds. */
export interface MachineSample {
  /** user + nice + system + irq + softirq + steal. */
  readonly busySeconds: number;
  /** idle + iowait. */
  readonly idleSeconds: number;
}

/** The machine's CPU time now (every process, ours and others'), or null when `/proc/stat` cannot be read. */
export function sampleMachine(): MachineSample | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith('cpu '));
    if (line === undefined) return null;
    // proc(5): cpu user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user)
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number);
    return {
      busySeconds: (user! + nice! + system! + irq! + softirq! + (steal ?? 0)) / TICKS_PER_SECOND,
      idleSeconds: (idle! + iowait!) / TICKS_PER_SECOND,
    };
  } catch {
    return null;
  }
}
