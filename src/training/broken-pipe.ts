/**
 * What a process does when nobody reads its output any more (the terminal or ssh session closed, `| head` exited,
 * a test runner killed): writes to stdout/stderr fail with EPIPE, asynchronously, as an `error` event of the stream.
 * Without a listener that event is an uncaught exception; the CLIs' uncaught handler then logs it, to the same
 * closed stream, which fails again: a process spinning forever at full CPU with no output (seen: two orphaned
 * coordinators for 2.5 h). As `nohup` would, a run keeps training (its log, checkpoints and report are files in the
 * run folder) and drops the lines nobody can read.
 */

/** True for the error of a write to a pipe or socket whose reader has gone (`EPIPE`). */
export function isBrokenPipe(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === 'EPIPE';
}

/**
 * Makes EPIPE on `process.stdout`/`process.stderr` (or the given streams) harmless: later writes are dropped instead of
 * raising uncaught errors. Any other stream error is re-thrown (it reaches the uncaught handler, as before).
 * Idempotent per stream.
 */
export function ignoreBrokenPipes(streams: readonly NodeJS.WriteStream[] = [process.stdout, process.stderr]): void {
  for (const s of streams) {
    if ((s as { petsPipeGuard?: boolean }).petsPipeGuard) continue;
    (s as { petsPipeGuard?: boolean }).petsPipeGuard = true;
    s.on('error', (err) => { if (!isBrokenPipe(err)) throw err; });
  }
}
