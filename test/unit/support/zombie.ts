/**
 * A zombie process for tests of "is this pid's owner alive" rules (run lock, checkpoint writers' leftovers): a pid
 * that signal 0 still reaches but that holds nothing any more.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * Runs `fn` with the pid of a zombie. The shell starts a background `sleep 30`, then execs `sleep 60`, which never
 * reaps children: once the exec is done, the background sleep killed here stays a zombie (no timing involved; the
 * deadline only bounds a hang). Linux only (reads `/proc`).
 * @throws AssertionError-like Error when the child does not become a zombie within 30 s
 */
export async function withZombie<T>(fn: (pid: number) => T | Promise<T>): Promise<T> {
  const parent = spawn('sh', ['-c', 'sleep 30 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const pid = Number(await new Promise<string>((res) => parent.stdout.once('data', (d: Buffer) => res(d.toString()))));
    const deadline = Date.now() + 30_000;
    const comm = (): string => readFileSync(`/proc/${parent.pid}/comm`, 'utf8').trim();
    while (comm() !== 'sleep' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    process.kill(pid, 'SIGKILL');
    const zombie = (): boolean => /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    while (!zombie() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    if (!zombie()) throw new Error(`pid ${pid} did not become a zombie`);
    return await fn(pid);
  } finally {
    parent.kill('SIGKILL'); // its zombie child goes with it (reparented to init and reaped)
  }
}
