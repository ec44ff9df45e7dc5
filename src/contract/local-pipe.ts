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

/**
 * The environment variable in which the coordinator names a local worker's slot (0-based) when it spawns it
 * (`coordinator/local-workers.ts`).
 */
export const WORKER_SLOT_ENV = 'PETS_WORKER_SLOT';

/**
 * The slot of this process as a local worker, or null for any other (a remote worker, started by hand). A local
 * worker is spawned by its coordinator with a control pipe and {@link WORKER_SLOT_ENV}; another parent's IPC channel
 * (a process manager) is not taken for a coordinator's, nor is the variable alone (copied into a shell by hand).
 * @param hasPipe - whether the process has an IPC channel to its parent (`process.channel !== undefined`)
 * @param env - the process's environment
 */
export function localWorkerSlot(hasPipe: boolean, env: NodeJS.ProcessEnv): number | null {
  const slot = env[WORKER_SLOT_ENV];
  if (!hasPipe || slot === undefined || !/^\d+$/.test(slot)) return null;
  return Number(slot);
}
