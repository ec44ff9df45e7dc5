/**
 * What Linux says of a process by its pid (`/proc/<pid>/stat`, proc(5)), for the places that must tell a live owner
 * from a dead one: lock files (`contract/lock-file.ts`: the run directory's, a download's), the ring's Unix socket files
 * (`worker/allreduce/ring.ts`), checkpoint writers' temporary entries (`contract/checkpoint-format.ts`), and bench:scaling's per-thread CPU (`scripts/proc-cpu.ts`).
 */
import { readFileSync } from 'node:fs';

/**
 * The fields of a `/proc/<pid>/stat` (or `/proc/<pid>/task/<tid>/stat`) line after the command name, which is in
 * parentheses and may hold spaces and parentheses itself, so the fields are counted from its last `)`: element 0 is
 * field 3 (state), element k is field k + 3 (utime 14 → 11, stime 15 → 12, starttime 22 → 19).
 * @param stat - the whole line, `pid (comm) state …`
 */
export function procStatFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * Whether a process with this pid runs: signal 0 reaches it (EPERM: it does, as another user's), and it is not a
 * zombie — a killed process whose parent has not reaped it yet is reached by signal 0 but holds nothing any more.
 * Without procfs (not Linux) the signal alone decides.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    return procStatFields(readFileSync(`/proc/${pid}/stat`, 'utf8'))[0] !== 'Z';
  } catch {
    return true; // no procfs: trust the signal
  }
}

/** Start time of process `pid` in clock ticks after boot (`/proc/<pid>/stat` field 22), or null without procfs. */
export function processStartTicks(pid: number): number | null {
  try {
    const ticks = Number(procStatFields(readFileSync(`/proc/${pid}/stat`, 'utf8'))[19]);
    return Number.isSafeInteger(ticks) ? ticks : null;
  } catch {
    return null;
  }
}
