/**
 * What travels over a local worker's control pipe (the IPC channel the coordinator opens when it spawns a worker on
 * its own host, `coordinator/local-workers.ts`). The pipe's main job is to be watched (it closes when either side
 * dies); the one message on it is the worker's last word: its exit code and the error it ends on, so that the
 * coordinator reports what the worker said rather than only how the process ended.
 */

/**
 * Sent by a local worker once it has closed everything and is about to exit (`worker/cli.ts`), so the coordinator
 * knows that the pipe closing next is an exit in progress (not a process to end) and can report why.
 */
export interface WorkerExitNotice {
  readonly type: 'worker-exit';
  /** The exit code the process ends with (docs/fault-tolerance.md, "Shutdown order and exit codes"). */
  readonly code: number;
  /** The error it ends on, `CODE: message` (e.g. `ERR_BACKEND: --backend webgpu requested but unavailable: …`), or null. */
  readonly error: string | null;
}

/** Whether a message received on the control pipe is a well-formed {@link WorkerExitNotice}. */
export function isWorkerExitNotice(m: unknown): m is WorkerExitNotice {
  if (typeof m !== 'object' || m === null) return false;
  const n = m as Record<string, unknown>;
  return n.type === 'worker-exit' && Number.isInteger(n.code) && (n.error === null || typeof n.error === 'string');
}
