/**
 * The real `coordinator` command as a child process for integration tests: started from the sources in its own
 * process group (so that closing it also ends the workers it spawned), with its output collected and awaitable
 * lines; plus a small Pets fixture folder of symlinks to the shared photos.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { commandModule } from './entry.js';

/** Project root (three levels above this file). */
export const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** The shared Pets sample photos: 8 per breed, 37 breeds, `<breed>_<n>.jpg`. */
export const SHARED_PETS_IMAGES = path.resolve(PROJECT_ROOT, '../shared/datasets/oxford-iiit-pet-sample/images');

/**
 * Makes `<dir>/images/` with symlinks to every shared photo of the first `breeds` breeds (sorted by name).
 * @param breeds - number of breeds, 1..37
 * @returns `dir` (a `--data` value) and the linked files
 */
export function makePetsSubset(dir: string, breeds: number): { data: string; files: string[] } {
  const all = readdirSync(SHARED_PETS_IMAGES).filter((f) => f.endsWith('.jpg')).sort();
  const names = [...new Set(all.map((f) => f.replace(/_\d+\.jpg$/, '')))].sort().slice(0, breeds);
  const files = all.filter((f) => names.includes(f.replace(/_\d+\.jpg$/, '')));
  mkdirSync(path.join(dir, 'images'), { recursive: true });
  for (const f of files) symlinkSync(path.join(SHARED_PETS_IMAGES, f), path.join(dir, 'images', f));
  return { data: dir, files: files.map((f) => path.join(dir, 'images', f)) };
}

/** A finished command: exit code and everything it printed. */
export interface CommandResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A running `coordinator <args>`; `close()` kills its whole process group (idempotent). */
export class CoordinatorProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<CommandResult>;
  private readonly child: ChildProcess;
  private readonly watchers: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];

  /**
   * Starts `coordinator ...args` in the project root: `dist/coordinator/cli.js`'s `main`, as `npx coordinator` runs it,
   * when dist/ holds the current sources' build, else `src/coordinator/cli.ts`'s under tsx ({@link commandModule}).
   */
  constructor(args: readonly string[], env: NodeJS.ProcessEnv = process.env) {
    const m = commandModule('coordinator');
    const code = `const m = await import(${JSON.stringify(pathToFileURL(m.file).href)}); process.exitCode = await m.main(process.argv.slice(1));`;
    this.child = spawn(process.execPath, [...m.execArgv, '--input-type=module', '-e', code, '--', ...args], { cwd: PROJECT_ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (c: Buffer) => { this.stdout += c.toString(); this.check(); });
    this.child.stderr!.on('data', (c: Buffer) => { this.stderr += c.toString(); });
    this.exited = new Promise((resolve) => this.child.once('close', (code, signal) => resolve({ code, signal, stdout: this.stdout, stderr: this.stderr })));
  }

  /**
   * Resolves with the first stdout match of `re` (already printed or to come).
   * @throws Error when the process exits first or after `timeoutMs`
   */
  waitForLine(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const found = this.stdout.match(re);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${re} on stdout after ${timeoutMs} ms:\n${this.tail()}`)), timeoutMs);
      this.watchers.push({ re, resolve: (m) => { clearTimeout(timer); resolve(m); } });
      void this.exited.then(() => { clearTimeout(timer); reject(new Error(`coordinator exited before printing ${re}:\n${this.tail()}`)); });
    });
  }

  /** Whether any process of its group (the coordinator or a worker it spawned) is still alive. */
  groupAlive(): boolean {
    const pid = this.child.pid;
    if (pid === undefined) return false;
    try {
      process.kill(-pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Waits until no process of its group is left (exited children may linger a moment as zombies until they are
   * reaped by init after the coordinator exits).
   * @returns true when the group is gone within `timeoutMs`
   */
  async waitGroupGone(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.groupAlive()) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
    return true;
  }

  /** `ps` lines (pid, state, command) of the processes still in its group, for failure messages. */
  groupProcesses(): string[] {
    const pgid = String(this.child.pid);
    return execFileSync('ps', ['-eo', 'pid=,pgid=,stat=,args='], { encoding: 'utf8' }).split('\n')
      .filter((l) => l.trim().split(/\s+/)[1] === pgid);
  }

  /** Last lines of both streams, for failure messages. */
  tail(): string {
    return `--- stdout ---\n${this.stdout.slice(-4000)}\n--- stderr ---\n${this.stderr.slice(-4000)}`;
  }

  /** Kills the process group (SIGTERM, SIGKILL after 5 s) unless it has exited; then waits for the exit. */
  async close(): Promise<CommandResult> {
    const pid = this.child.pid;
    if (this.child.exitCode === null && this.child.signalCode === null && pid !== undefined) {
      try { process.kill(-pid, 'SIGTERM'); } catch { /* already gone */ }
      const timer = setTimeout(() => { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
      await this.exited;
      clearTimeout(timer);
    }
    // Workers may outlive a killed coordinator for a moment: end whatever is left in the group.
    if (pid !== undefined) try { process.kill(-pid, 'SIGKILL'); } catch { /* none left */ }
    return this.exited;
  }

  private check(): void {
    for (const w of [...this.watchers]) {
      const m = this.stdout.match(w.re);
      if (m) {
        this.watchers.splice(this.watchers.indexOf(w), 1);
        w.resolve(m);
      }
    }
  }
}

/** Runs `coordinator <args>` to completion. @throws Error after `timeoutMs` (the process group is killed) */
export async function runCoordinator(args: readonly string[], timeoutMs: number): Promise<CommandResult> {
  const p = new CoordinatorProcess(args);
  const timer = setTimeout(() => void p.close(), timeoutMs);
  try {
    const r = await p.exited;
    return r;
  } finally {
    clearTimeout(timer);
    await p.close();
  }
}
