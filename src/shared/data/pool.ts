/**
 * A piscina worker-thread pool that decodes and augments images (see pool-worker.ts). Loads both under tsx
 * (`.ts` sources, the tsx loader passed to each thread through `execArgv`) and from compiled `dist/` (`.js`).
 */
import { availableParallelism } from 'node:os';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { TrainerError } from '../errors.js';
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

/**
 * The worker file next to this module with this module's own extension (`.ts` under tsx, `.js` in dist), and the
 * execArgv its threads need: the parent's, plus `--import tsx` for `.ts` when the parent's does not load tsx.
 */
export function workerEntry(moduleUrl: string = import.meta.url): { filename: string; execArgv: string[] } {
  const here = fileURLToPath(moduleUrl);
  const ext = extname(here);
  const filename = join(dirname(here), `pool-worker${ext}`);
  const execArgv = loaderExecArgv(process.execArgv);
  if (ext === '.ts' && !execArgv.some((a) => a.includes('tsx'))) execArgv.push('--import', 'tsx');
  return { filename, execArgv };
}

const LOADER_FLAGS = new Set(['--import', '--require', '-r', '--loader', '--experimental-loader']);

/**
 * The module-loader flags of a process's execArgv (`--import X`, `--require X`, `--loader X`, their `=` forms,
 * `--enable-source-maps`), which worker threads need to load the same sources; everything else (`-e <script>`,
 * `--test`, inspector flags) is dropped.
 */
export function loaderExecArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (LOADER_FLAGS.has(a) && i + 1 < argv.length) out.push(a, argv[++i]!);
    else if ([...LOADER_FLAGS].some((f) => a.startsWith(`${f}=`)) || a === '--enable-source-maps') out.push(a);
  }
  return out;
}

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
