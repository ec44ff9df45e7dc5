/**
 * Resolves the entry file of a worker thread or child process that sits next to (or relative to) a module, so the
 * same code runs from TypeScript sources under tsx (tests, `npm run …` scripts) and from compiled `dist/`.
 */
import { dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/** A runnable entry: the file and the Node.js flags (execArgv) it needs. */
export interface Entry {
  /** Absolute path of the entry file, with the caller's own extension (`.ts` or `.js`). */
  readonly filename: string;
  /** The parent's loader flags ({@link loaderExecArgv}), plus `--import tsx` for a `.ts` entry when missing. */
  readonly execArgv: string[];
}

const LOADER_FLAGS = new Set(['--import', '--require', '-r', '--loader', '--experimental-loader']);

/**
 * The module-loader flags of a process's execArgv (`--import X`, `--require X`, `--loader X`, their `=` forms,
 * `--enable-source-maps`), which child processes and threads need to load the same sources; everything else
 * (`-e <script>`, `--test`, inspector flags) is dropped.
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

/**
 * The file `relativePath` + the extension of `moduleUrl`, resolved against `moduleUrl`'s directory.
 * @param moduleUrl - usually `import.meta.url` of the caller
 * @param relativePath - path without extension, e.g. `'heartbeat-thread'` or `'../worker/cli'`
 */
export function siblingEntry(moduleUrl: string, relativePath: string): Entry {
  const here = fileURLToPath(moduleUrl);
  const ext = extname(here);
  const filename = join(dirname(here), `${relativePath}${ext}`);
  const execArgv = loaderExecArgv(process.execArgv);
  if (ext === '.ts' && !execArgv.some((a) => a.includes('tsx'))) execArgv.push('--import', 'tsx');
  return { filename, execArgv };
}

/**
 * Starts a worker thread on the sibling entry `relativePath`. For a `.ts` entry (under tsx) the thread runs a small
 * ES-module bootstrap that registers tsx's loader in the thread, then imports the entry: in Node 20 the hooks that
 * `--import tsx` registers in a process are not active in its worker threads (a `.ts` entry would fail with
 * ERR_UNKNOWN_FILE_EXTENSION).
 */
export function startThread(moduleUrl: string, relativePath: string, options: Omit<WorkerOptions, 'execArgv' | 'eval'> = {}): Worker {
  const { filename, execArgv } = siblingEntry(moduleUrl, relativePath);
  if (extname(filename) !== '.ts') return new Worker(filename, { ...options, execArgv });
  const api = import.meta.resolve('tsx/esm/api');
  const code = `import { register } from ${JSON.stringify(api)}; register(); await import(${JSON.stringify(pathToFileURL(filename).href)});`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), { ...options });
}
