/**
 * Resumable, verified file download with mirror fallback (used for the Pets tarballs and pretrained weights).
 *
 * Policy, in order: a destination that already exists (and matches `sha256` when given) is reused without any
 * network; otherwise each URL is tried in turn, each up to `retries + 1` times with exponential backoff; a partial
 * `<dest>.part` is resumed with an HTTP `Range: bytes=<size>-` request (a server answering 200 instead of 206
 * restarts the file); the finished `.part` is checksummed, fsynced and renamed onto `dest` atomically.
 *
 * One process at a time downloads a destination: it holds `<dest>.lock` (`contract/lock-file.ts`) while it writes
 * `.part`, and the others wait for it, then reuse its file (as huggingface_hub's `FileLock` around a cache entry).
 * Without it the local workers of one run, which all fetch the same ImageNet weights, wrote one `.part` together:
 * the first to finish renamed it and the others failed (`ENOENT … rename`), or one truncated the file under
 * another. A lock left by a process that died is taken over.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { finished, pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import got from 'got';
import { TrainerError } from '../contract/errors.js';
import { makeDirs, optionOrigin, type FolderOrigin } from '../contract/make-dir.js';
import { logText } from '../contract/log-text.js';
import {
  createLockFile, currentLockOwner, lockIsStale, readLockOwner, releaseLockFile, removeLockFile,
} from '../contract/lock-file.js';

/**
 * Where this project caches what it downloads (the dataset, the ImageNet weights): the environment variable `envVar`
 * when set and not blank (resolved), else `~/.cache/pets-trainer/<sub…>`, as PyTorch keeps its hub in
 * `~/.cache/torch`: never the current directory.
 * @param envVar - the override's name (`PETS_TRAINER_CACHE_DIR`, `PETS_TRAINER_WEIGHTS_DIR`)
 * @param sub - folders under `~/.cache/pets-trainer` (none: that folder itself)
 */
export function userCacheDir(env: NodeJS.ProcessEnv, envVar: string, ...sub: string[]): string {
  const fromEnv = env[envVar];
  return fromEnv && fromEnv.trim() !== '' ? resolve(fromEnv) : join(homedir(), '.cache', 'pets-trainer', ...sub);
}

/** Options of {@link downloadFile}. `urls` and `dest` are required; the rest default to {@link DEFAULT_DOWNLOAD}. */
export interface DownloadOptions {
  /** Mirrors of the same file, tried in order (http or https). At least one. */
  readonly urls?: readonly string[];
  /** Destination file path; the partial file is `<dest>.part`. */
  readonly dest?: string;
  /**
   * What named `dest`'s folder, for the error when it cannot be created (`envOrigin('PETS_TRAINER_WEIGHTS_DIR')`,
   * contract/make-dir.ts); default: the `dest` option.
   */
  readonly folderOrigin?: FolderOrigin;
  /** Expected SHA-256 of the whole file, 64 hex digits; omitted → no verification. */
  readonly sha256?: string;
  /** Extra attempts per URL after the first (integer ≥ 0). */
  readonly retries?: number;
  /** First backoff delay in ms, doubled per attempt (≥ 0). */
  readonly backoffMs?: number;
  /** Backoff ceiling in ms. */
  readonly maxBackoffMs?: number;
  /** Connect / idle-socket timeout in ms (> 0). */
  readonly timeoutMs?: number;
  /** No progress output at all. */
  readonly quiet?: boolean;
  /** Interval between plain progress lines when stderr is not a TTY, in ms. */
  readonly progressIntervalMs?: number;
  /** Where plain progress lines go (default: stderr). */
  readonly log?: (line: string) => void;
  /** How often a process waiting for another's download of the same `dest` looks again, in ms (> 0). */
  readonly lockPollMs?: number;
}

/** Fully resolved {@link DownloadOptions}. */
export interface ResolvedDownloadOptions {
  readonly urls: readonly string[];
  readonly dest: string;
  readonly sha256: string | undefined;
  readonly retries: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  readonly timeoutMs: number;
  readonly quiet: boolean;
  readonly progressIntervalMs: number;
  readonly log: (line: string) => void;
  readonly lockPollMs: number;
}

/** Defaults of {@link DownloadOptions}. */
export const DEFAULT_DOWNLOAD = Object.freeze({
  retries: 3,
  backoffMs: 500,
  maxBackoffMs: 8_000,
  timeoutMs: 30_000,
  quiet: false,
  progressIntervalMs: 5_000,
  lockPollMs: 500,
});

/** What {@link downloadFile} did. */
export interface DownloadResult {
  /** The destination path (same as `options.dest`). */
  readonly path: string;
  /** File size in bytes. */
  readonly bytes: number;
  /** SHA-256 of the file, lowercase hex (computed even when none was expected). */
  readonly sha256: string;
  /** True when an existing verified file was reused without network. */
  readonly reused: boolean;
  /** The mirror that served the file, or null when reused. */
  readonly url: string | null;
}

/**
 * An ERR_OFFLINE message a person can read in a terminal: a short first line, then the hint (what to do instead),
 * then every address tried, each on its own line.
 * @param summary - one short line, no URL
 * @param hint - what to do offline, or null
 * @param tried - `<url> (try n): <why>` per attempt
 */
export function offlineMessage(summary: string, hint: string | null, tried: readonly string[]): string {
  // Each part escaped (a newline in a path or a server's error text would add a line of its own); the lines are kept
  // when printed (contract/log-text.ts errorText).
  return [logText(summary), ...(hint === null ? [] : [`hint: ${logText(hint)}`]), 'tried:', ...tried.map((t) => `  ${logText(t)}`)].join('\n');
}

/** The `tried:` lines of an {@link offlineMessage} (to restate it with another summary and hint). */
export function offlineTried(message: string): string[] {
  const lines = message.split('\n');
  const at = lines.indexOf('tried:');
  return at < 0 ? [] : lines.slice(at + 1).map((l) => l.trim());
}

/** Network error codes meaning "host not reachable" (→ ERR_OFFLINE when every mirror fails this way). */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ETIMEDOUT', 'ENETDOWN', 'ECONNRESET',
]);

/**
 * Validates and fills in {@link DownloadOptions}.
 *
 * @throws TrainerError ERR_BAD_FLAG naming the field and the rule.
 */
export function resolveDownloadOptions(options: DownloadOptions): ResolvedDownloadOptions {
  const urls = options.urls ?? [];
  if (urls.length === 0) throw new TrainerError('ERR_BAD_FLAG', 'download urls must hold at least one URL, got none');
  for (const u of urls) {
    if (!/^https?:\/\//.test(u)) throw new TrainerError('ERR_BAD_FLAG', `download url must start with http:// or https://, got ${JSON.stringify(u)}`);
  }
  if (!options.dest) throw new TrainerError('ERR_BAD_FLAG', 'download dest must be a file path, got none');
  const sha256 = options.sha256?.toLowerCase();
  if (sha256 !== undefined && !/^[0-9a-f]{64}$/.test(sha256)) {
    throw new TrainerError('ERR_BAD_FLAG', `download sha256 must be 64 hex digits, got ${JSON.stringify(options.sha256)}`);
  }
  const r = { ...DEFAULT_DOWNLOAD, ...stripUndefined(options) };
  if (!Number.isInteger(r.retries) || r.retries < 0) throw new TrainerError('ERR_BAD_FLAG', `download retries must be an integer ≥ 0, got ${r.retries}`);
  if (!(r.backoffMs >= 0)) throw new TrainerError('ERR_BAD_FLAG', `download backoffMs must be ≥ 0, got ${r.backoffMs}`);
  if (!(r.timeoutMs > 0)) throw new TrainerError('ERR_BAD_FLAG', `download timeoutMs must be > 0, got ${r.timeoutMs}`);
  if (!(r.lockPollMs > 0)) throw new TrainerError('ERR_BAD_FLAG', `download lockPollMs must be > 0, got ${r.lockPollMs}`);
  return {
    urls, dest: options.dest, sha256, retries: r.retries, backoffMs: r.backoffMs, maxBackoffMs: r.maxBackoffMs,
    timeoutMs: r.timeoutMs, quiet: r.quiet, progressIntervalMs: r.progressIntervalMs,
    log: options.log ?? ((line) => process.stderr.write(`${line}\n`)), lockPollMs: r.lockPollMs,
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** SHA-256 of a file, lowercase hex, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

async function fileSize(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch {
    return null;
  }
}

/** Backoff before attempt `attempt` (1-based retry number): backoffMs·2^(attempt−1), capped. */
export function backoffDelayMs(attempt: number, backoffMs: number, maxBackoffMs: number): number {
  return Math.min(maxBackoffMs, backoffMs * 2 ** Math.max(0, attempt - 1));
}

/** Progress reporting: a cli-progress bar on a TTY, periodic plain lines otherwise, nothing when quiet. */
class Progress {
  private bar: cliProgress.SingleBar | null = null;
  private lastLine = 0;
  private total = 0;

  constructor(private readonly o: ResolvedDownloadOptions, private readonly label: string) {}

  begin(done: number, total: number): void {
    this.total = total;
    if (this.o.quiet) return;
    if (process.stderr.isTTY) {
      this.bar ??= new cliProgress.SingleBar({ format: `${this.label} [{bar}] {percentage}% {value}/{total} B`, stream: process.stderr }, cliProgress.Presets.shades_classic);
      this.bar.start(Math.max(total, done), done);
    } else {
      this.o.log(`download ${this.label}: ${done > 0 ? `resuming at ${done} B` : 'starting'}${total > 0 ? ` of ${total} B` : ''}`);
      this.lastLine = Date.now();
    }
  }

  update(done: number): void {
    if (this.o.quiet) return;
    if (this.bar) {
      this.bar.update(done);
    } else if (Date.now() - this.lastLine >= this.o.progressIntervalMs) {
      this.lastLine = Date.now();
      const pct = this.total > 0 ? ` (${((100 * done) / this.total).toFixed(1)}%)` : '';
      this.o.log(`download ${this.label}: ${done} B${pct}`);
    }
  }

  end(): void {
    this.bar?.stop();
    this.bar = null;
  }
}

/** Outcome of one HTTP attempt. */
type AttemptOutcome = { ok: true } | { ok: false; retry: boolean; unreachable: boolean; error: unknown };

/** One request: resume `<dest>.part` from its current size. Never throws; classifies the failure. */
async function attempt(url: string, o: ResolvedDownloadOptions, progress: Progress): Promise<AttemptOutcome> {
  const part = `${o.dest}.part`;
  const have = (await fileSize(part)) ?? 0;
  const stream = got.stream(url, {
    headers: have > 0 ? { range: `bytes=${have}-` } : {},
    decompress: false,
    throwHttpErrors: false,
    retry: { limit: 0 },
    timeout: { connect: o.timeoutMs, socket: o.timeoutMs },
  });
  try {
    const response = await new Promise<{ statusCode: number; headers: Record<string, string | string[] | undefined> }>((resolve, reject) => {
      stream.once('response', resolve);
      stream.once('error', reject);
    });
    const status = response.statusCode;
    if (status === 416 && have > 0) {
      stream.destroy();
      const total = Number(String(response.headers['content-range'] ?? '').split('/')[1]);
      if (total === have) return { ok: true };
      await rm(part, { force: true });
      return { ok: false, retry: true, unreachable: false, error: new Error(`HTTP 416 for range ${have}- (server total ${total})`) };
    }
    if (status !== 200 && status !== 206) {
      stream.destroy();
      const transient = status >= 500 || status === 408 || status === 429;
      return { ok: false, retry: transient, unreachable: false, error: new Error(`HTTP ${status} from ${url}`) };
    }
    const resumed = status === 206 && have > 0;
    const length = Number(response.headers['content-length'] ?? 0);
    let done = resumed ? have : 0;
    progress.begin(done, length > 0 ? done + length : 0);
    // Every received byte reaches `.part`, also when the transfer is cut: the next attempt asks for the Range that
    // starts at the first byte not received, as `curl -C -` does. Hence no `pipeline(stream, …, writer)` (a cut
    // destroys the writer with received chunks still queued) and no pausing of the response (a cut destroys the
    // response with its buffered chunks): the response flows and the writer queues what the disk has not taken yet
    // (disks outpace the network); the writer is ended and flushed before the error is classified.
    const out = createWriteStream(part, { flags: resumed ? 'a' : 'w' });
    let writeError: unknown = null;
    out.on('error', (e) => {
      writeError ??= e;
      stream.destroy(e);
    });
    const cut = await new Promise<unknown>((resolve) => {
      stream.on('data', (chunk: Buffer) => {
        done += chunk.length;
        progress.update(done);
        out.write(chunk);
      });
      stream.once('end', () => resolve(null));
      stream.once('error', (e) => resolve(e));
    });
    if (writeError === null) {
      out.end();
      await finished(out);
    }
    if (writeError !== null) throw writeError;
    if (cut !== null) throw cut;
    return { ok: true };
  } catch (error) {
    stream.destroy();
    const code = (error as { code?: string }).code ?? '';
    const started = ((await fileSize(part)) ?? 0) > have;
    // A host name that does not resolve will not resolve a second later: go straight to the next mirror.
    return { ok: false, retry: code !== 'ENOTFOUND', unreachable: !started && UNREACHABLE_CODES.has(code), error };
  } finally {
    progress.end();
  }
}

/** Verifies `<dest>.part`, fsyncs and renames it to `dest`. @throws TrainerError ERR_CHECKSUM. */
async function finish(o: ResolvedDownloadOptions, url: string): Promise<DownloadResult> {
  const part = `${o.dest}.part`;
  const got256 = await sha256File(part);
  if (o.sha256 !== undefined && got256 !== o.sha256) {
    await rm(part, { force: true });
    throw new TrainerError('ERR_CHECKSUM', `checksum mismatch for ${o.dest} from ${url}: expected sha256 ${o.sha256}, got ${got256} (partial file deleted)`);
  }
  const fh = await open(part, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(part, o.dest);
  return { path: o.dest, bytes: (await fileSize(o.dest)) ?? 0, sha256: got256, reused: false, url };
}

/** Reuses an existing destination when it is present (and matches the expected checksum). */
async function reuseExisting(o: ResolvedDownloadOptions): Promise<DownloadResult | null> {
  const size = await fileSize(o.dest);
  if (size === null) return null;
  const digest = await sha256File(o.dest);
  if (o.sha256 !== undefined && digest !== o.sha256) {
    o.log(`download: existing ${o.dest} has sha256 ${digest}, expected ${o.sha256}; downloading again`);
    await rm(o.dest, { force: true });
    return null;
  }
  return { path: o.dest, bytes: size, sha256: digest, reused: true, url: null };
}

/**
 * Downloads one file from the first mirror that serves it, resuming partial transfers, verifying the checksum and
 * finishing atomically. Reuses a present (and verified) destination without touching the network. One process at a
 * time downloads `dest` (it holds `<dest>.lock`); another waits for it (polling every `lockPollMs`, saying once
 * whom it waits for), then reuses its file, or downloads itself when that one failed.
 *
 * @param options - see {@link DownloadOptions}; `urls` and `dest` are required.
 * @returns what happened ({@link DownloadResult}).
 * @throws TrainerError ERR_BAD_FLAG for invalid options; ERR_BAD_CONFIG (or ERR_BAD_FLAG, per `folderOrigin`) naming
 *   what named `dest`'s folder when that cannot be created or written; ERR_CHECKSUM when the finished file's SHA-256 differs from
 *   `sha256` (the partial file is deleted); ERR_OFFLINE when no mirror could be reached at all (the message ends
 *   with a sentence the caller may extend, e.g. "pass --data <dir>"); ERR_DOWNLOAD when mirrors answered but none
 *   delivered the file (HTTP errors, cut transfers past the retry budget); the file system's error when the lock
 *   cannot be created (EACCES, EROFS, ENOSPC in `dest`'s folder).
 */
export async function downloadFile(options: DownloadOptions): Promise<DownloadResult> {
  const o = resolveDownloadOptions(options);
  const existing = await reuseExisting(o);
  if (existing) return existing;
  makeDirs(dirname(o.dest), options.folderOrigin ?? optionOrigin('dest'));
  const release = await lockDestination(o);
  try {
    // Another process may have finished this file while this one waited for its lock.
    return await reuseExisting(o) ?? await download(o);
  } finally {
    release();
  }
}

/** An unreadable `<dest>.lock` older than this (milliseconds) is damaged, not being written. */
const UNREADABLE_LOCK_STALE_MS = 10_000;

/** Milliseconds since `path` was last modified (0 when it is gone). */
function lockAgeMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * Waits until this process holds `<dest>.lock`, saying once who holds it meanwhile; a lock whose owner died (this
 * host) is taken over with a line saying so. @returns the release function
 */
async function lockDestination(o: ResolvedDownloadOptions): Promise<() => void> {
  const path = `${o.dest}.lock`;
  const me = currentLockOwner();
  let told = false;
  while (!createLockFile(path, me)) {
    const owner = readLockOwner(path);
    if (lockIsStale(owner)) {
      o.log(`download: removed the stale lock ${path} of pid ${owner!.pid} (started ${owner!.since}, no longer running)`);
      // Only if it still names that dead owner: another waiter may have taken it over this instant.
      releaseLockFile(path, owner!);
      continue;
    }
    if (owner === null && lockAgeMs(path) > UNREADABLE_LOCK_STALE_MS) {
      // An owner writes its lock within microseconds of creating it: one unreadable for seconds is damaged (a process
      // killed between the two, a disk that filled) and would make every later download wait forever.
      o.log(`download: removed the unreadable lock ${path} (no owner recorded for over ${UNREADABLE_LOCK_STALE_MS / 1000} s)`);
      removeLockFile(path);
      continue;
    }
    if (!told && owner !== null) {
      told = true;
      o.log(`download: ${o.dest} is being downloaded by pid ${owner.pid} on ${owner.host} (since ${owner.since}); waiting for it`
        + (owner.host === me.host ? '' : ` (if no process downloads it any more, delete ${path})`));
    }
    await sleep(o.lockPollMs);
  }
  return () => releaseLockFile(path, me);
}

/** Tries every mirror in turn (the caller holds the destination's lock). */
async function download(o: ResolvedDownloadOptions): Promise<DownloadResult> {
  const progress = new Progress(o, o.dest.split('/').pop() ?? o.dest);
  const failures: string[] = [];
  let allUnreachable = true;
  for (const url of o.urls) {
    for (let i = 0; i <= o.retries; i++) {
      if (i > 0) await sleep(backoffDelayMs(i, o.backoffMs, o.maxBackoffMs));
      const outcome = await attempt(url, o, progress);
      if (outcome.ok) return finish(o, url);
      const why = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
      failures.push(`${url} (try ${i + 1}): ${why}`);
      if (!outcome.unreachable) allUnreachable = false;
      if (!outcome.retry) break;
    }
  }
  const detail = failures.slice(-4).join('; ');
  if (allUnreachable) {
    throw new TrainerError('ERR_OFFLINE', offlineMessage(`cannot reach any mirror of ${o.dest.split('/').pop() ?? o.dest}: the network looks offline`, null, failures.slice(-4)));
  }
  throw new TrainerError('ERR_DOWNLOAD', `download of ${o.dest} failed on every mirror: ${detail}`);
}
