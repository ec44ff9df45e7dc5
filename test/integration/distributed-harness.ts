/**
 * Test harness of the distributed integration tests (not a test file itself): a small photo folder made of
 * symlinks to the shared sample photos, and coordinator / worker processes started from dist/ (or the sources under tsx, support/entry.ts) with
 * their output captured, a way to wait for a line, and a kill that leaves no orphan behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { commandModule } from './support/entry.js';

/** The shared sample photos (8 per breed), read in place, never copied. */
export const SHARED_PHOTOS = resolve(process.cwd(), '../shared/datasets/oxford-iiit-pet-sample/images');

/**
 * A folder `<tmp>/images/` of symlinks to the first `perBreed` photos of the first `breeds` breeds.
 * @returns the folder to pass as `--data`
 */
export function makePhotoDir(breeds: number, perBreed: number): string {
  const root = mkdtempSync(join(tmpdir(), 'dist-photos-'));
  mkdirSync(join(root, 'images'));
  const byBreed = new Map<string, string[]>();
  for (const f of readdirSync(SHARED_PHOTOS).sort()) {
    const breed = f.replace(/_\d+\.jpg$/, '');
    byBreed.set(breed, [...(byBreed.get(breed) ?? []), f]);
  }
  for (const files of [...byBreed.values()].slice(0, breeds)) {
    for (const f of files.slice(0, perBreed)) symlinkSync(join(SHARED_PHOTOS, f), join(root, 'images', f));
  }
  return root;
}

/** A child process with captured output. */
export interface Proc {
  readonly child: ChildProcess;
  /** stdout and stderr, interleaved as received. */
  output(): string;
  /** Resolves with the first match of `re` in the output (waits for it), rejects after `timeoutMs` or on exit. */
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code (signal exits give 128 + n style: null code → -1). */
  readonly exited: Promise<number>;
  /** SIGKILL to the process group (the process and the workers it spawned). Idempotent. */
  kill(): void;
}

/** How each command ends once `main` resolves (as `bin/coordinator.js` and the harness always did). */
const ENDINGS = {
  coordinator: 'process.exitCode = await m.main(process.argv.slice(1));',
  worker: 'process.exit(await m.main(process.argv.slice(1)));',
} as const;

const started = new Set<Proc>();

/**
 * Starts `coordinator` or `worker` in its own process group: `dist/`'s `main` when dist/ holds the current sources'
 * build, else the sources' under tsx (support/entry.ts).
 * @param env - extra environment variables
 */
export function startProc(which: keyof typeof ENDINGS, args: readonly string[], env: Record<string, string> = {}): Proc {
  const m = commandModule(which);
  const code = `const m = await import(${JSON.stringify(pathToFileURL(m.file).href)}); ${ENDINGS[which]}`;
  const child = spawn(process.execPath, [...m.execArgv, '--input-type=module', '-e', code, '--', ...args], {
    cwd: process.cwd(), env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer): void => {
    out += d.toString('utf8');
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let exitCode: number | null = null;
  const exited = new Promise<number>((res) => child.once('exit', (code) => {
    exitCode = code ?? -1;
    for (const l of listeners) l();
    res(exitCode);
  }));
  const proc: Proc = {
    child,
    output: () => out,
    exited,
    waitFor: (re, timeoutMs) => new Promise((res, rej) => {
      const check = (): void => {
        const m = out.match(re);
        if (m) done(() => res(m));
        else if (exitCode !== null) done(() => rej(new Error(`${which} exited (${exitCode}) before printing ${re}:\n${out.slice(-3000)}`)));
      };
      const timer = setTimeout(() => done(() => rej(new Error(`${which} did not print ${re} within ${timeoutMs} ms:\n${out.slice(-3000)}`))), timeoutMs);
      const done = (f: () => void): void => { clearTimeout(timer); listeners.delete(check); f(); };
      listeners.add(check);
      check();
    }),
    kill: () => {
      started.delete(proc);
      if (exitCode !== null || child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    },
  };
  started.add(proc);
  return proc;
}

/** Kills every process started by {@link startProc} that is still running (for `after` hooks). */
export async function killAll(): Promise<void> {
  const all = [...started];
  for (const p of all) p.kill();
  await Promise.all(all.map((p) => p.exited));
}

/** Flags of a tiny, fast run: resnet10, no pretrained weights, no metrics endpoint, ephemeral port, WASM. */
export function tinyRunFlags(dataDir: string, runDir: string, extra: readonly string[] = []): string[] {
  return [
    '--data', dataDir, '--arch', 'resnet10', '--pretrained', 'none', '--size', '32', '--bs', '2', '--backend', 'wasm',
    '--metrics-port', '-1', '--bind', 'tcp://127.0.0.1:0', '--run-dir', runDir, '--threads', '1', '--plain',
    '--heartbeat-interval-ms', '500', '--heartbeat-timeout-ms', '20000', ...extra,
  ];
}
