/**
 * A piscina worker-thread pool that decodes and augments images (see pool-worker.ts). Loads both under tsx
 * (`.ts` sources, the tsx loader passed to each thread through `execArgv`) and from compiled `dist/` (`.js`).
 */
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { TrainerError } from '../../contract/errors.js';
import { loaderExecArgv, siblingEntry, type Entry } from '../entry.js';
import { DEFAULT_MAX_INPUT_PIXELS } from './decode.js';
import type { PoolResult, RenderTask, VerifyTask } from './pool-worker.js';

/** A task as callers submit it: `maxInputPixels` defaults to the pool's. */
export type PoolTaskInput =
  | (Omit<RenderTask, 'maxInputPixels'> & { readonly maxInputPixels?: number })
  | (Omit<VerifyTask, 'maxInputPixels'> & { readonly maxInputPixels?: number });

/** Options of {@link ImagePool}. */
export interface ImagePoolOptions {
  /** Worker threads (integer ≥ 1); default: available cores − 1, at least 1 (the main thread trains). */
  readonly threads?: number;
  /** Pixel ceiling per image, see DEFAULT_MAX_INPUT_PIXELS. */
  readonly maxInputPixels?: number;
  /** How long `close()` waits for running tasks before terminating threads, in ms. */
  readonly closeTimeoutMs?: number;
}

/** Resolved {@link ImagePoolOptions}. */
export interface ResolvedImagePoolOptions {
  readonly threads: number;
  readonly maxInputPixels: number;
  readonly closeTimeoutMs: number;
}

/** Defaults of {@link ImagePoolOptions} (threads computed from the machine). */
export const DEFAULT_IMAGE_POOL = Object.freeze({
  threads: Math.max(1, availableParallelism() - 1),
  maxInputPixels: DEFAULT_MAX_INPUT_PIXELS,
  closeTimeoutMs: 5_000,
});

/** Validates {@link ImagePoolOptions}. @throws TrainerError ERR_BAD_FLAG naming the field and rule. */
export function resolveImagePoolOptions(o: ImagePoolOptions = {}): ResolvedImagePoolOptions {
  const threads = o.threads ?? DEFAULT_IMAGE_POOL.threads;
  if (!Number.isInteger(threads) || threads < 1) throw new TrainerError('ERR_BAD_FLAG', `--data-threads must be an integer ≥ 1, got ${threads}`);
  const maxInputPixels = o.maxInputPixels ?? DEFAULT_IMAGE_POOL.maxInputPixels;
  if (!Number.isInteger(maxInputPixels) || maxInputPixels < 1) throw new TrainerError('ERR_BAD_FLAG', `maxInputPixels must be an integer ≥ 1, got ${maxInputPixels}`);
  return { threads, maxInputPixels, closeTimeoutMs: o.closeTimeoutMs ?? DEFAULT_IMAGE_POOL.closeTimeoutMs };
}

/** The pool's thread entry next to this module (`.ts` under tsx, `.js` in dist) and the execArgv its threads need. */
export function workerEntry(moduleUrl: string = import.meta.url): Entry {
  return siblingEntry(moduleUrl, 'pool-worker');
}

/** Re-exported for the pool's tests: the loader flags threads inherit (see `entry.ts`). */
export { loaderExecArgv };

/** Decode/augment pool; long-lived, `start()` then `close()` (idempotent). */
export class ImagePool {
  /** Resolved options. */
  readonly options: ResolvedImagePoolOptions;
  private pool: Piscina | null = null;
  private closing: Promise<void> | null = null;

  constructor(options: ImagePoolOptions = {}) {
    this.options = resolveImagePoolOptions(options);
  }

  /** Starts the threads (idempotent). @throws TrainerError ERR_DATA when already closed. */
  start(): void {
    if (this.closing) throw new TrainerError('ERR_DATA', 'ImagePool.start() after close()');
    if (this.pool) return;
    const { filename, execArgv } = workerEntry();
    this.pool = new Piscina({
      filename, execArgv, minThreads: this.options.threads, maxThreads: this.options.threads, idleTimeout: 60_000,
    });
  }

  /** Tasks waiting for a thread. */
  get queueSize(): number {
    return this.pool?.queueSize ?? 0;
  }

  /** Runs one task (the pool fills in `maxInputPixels`). @throws TrainerError ERR_DATA when not started. */
  async run(task: PoolTaskInput): Promise<PoolResult> {
    if (!this.pool || this.closing) throw new TrainerError('ERR_DATA', 'ImagePool.run() needs start() and no close()');
    return (await this.pool.run({ maxInputPixels: this.options.maxInputPixels, ...task })) as PoolResult;
  }

  /** Drains running tasks up to closeTimeoutMs, then terminates the threads. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const pool = this.pool;
      this.pool = null;
      if (!pool) return;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), this.options.closeTimeoutMs); });
      const drained = await Promise.race([pool.close().then(() => 'ok' as const), timeout]);
      clearTimeout(timer);
      if (drained === 'timeout') await pool.close({ force: true });
    })();
    return this.closing;
  }
}
