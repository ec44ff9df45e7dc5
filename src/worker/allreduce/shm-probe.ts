/**
 * Whether the ranks of a ring see one segment directory (`/dev/shm`): each worker writes a probe file there before it
 * joins, named after its same-host socket (`ipc://`, unique: pid and random bytes) and holding that address, and a
 * rank chooses shared memory only when it reads every rank's probe back from its own segment directory (as NCCL checks
 * that peers share `/dev/shm` before its SHM transport; Horovod and Gloo compare hostnames only, which fails here).
 *
 * Same host name, or a shared `/tmp` where the ring's sockets live, does not mean a shared `/dev/shm`: containers
 * started with one hostname, or sharing a `/tmp` volume, each have their own `/dev/shm` unless they share the IPC
 * namespace (`--ipc=host`, `--ipc=container:…`, one Kubernetes pod volume). Each would then map its own segment and
 * wait for peers that never come, until the all-reduce timeout. Seeing each other's probes is symmetric (the ranks that
 * share a directory see each other's files, and nobody else's), so every rank decides alike.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { processAlive } from '../../contract/process.js';
import { hostIdentity, pidNamespace } from '../../contract/host-identity.js';

/** File-name prefix of probe files in the segment directory. */
export const PROBE_PREFIX = 'pets-probe-';

/** Probe files older than this whose writer is gone (same pid namespace, no such process) are removed. */
const STALE_PROBE_AGE_MS = 10_000;

/** What a probe file holds (JSON). */
interface ProbeContent {
  /** The writer's same-host socket address (`ipc://…`): the probe's name is derived from it. */
  readonly address: string;
  readonly pid: number;
  /** The writer's pid namespace (`pid:[4026531836]`), so that only probes of processes this one can see are swept. */
  readonly pidNamespace: string | null;
  /**
   * The writer's host identity (`contract/host-identity.ts`): the pid namespace's id alone names no host (every
   * host's first namespace is `pid:[4026531836]`), and a segment directory that falls back to `/tmp` may be shared
   * with other hosts. Absent from probes of workers that predate it (never swept).
   */
  readonly hostId?: string | null;
}

/** The probe file name of a rank's same-host socket address: `pets-probe-` and 16 hex digits of its SHA-256. */
export function probeName(address: string): string {
  return `${PROBE_PREFIX}${createHash('sha256').update(address).digest('hex').slice(0, 16)}`;
}

function readProbe(path: string): ProbeContent | null {
  try {
    const content = JSON.parse(readFileSync(path, 'utf8')) as Partial<ProbeContent>;
    return typeof content.address === 'string' && typeof content.pid === 'number' ? content as ProbeContent : null;
  } catch {
    return null;
  }
}

/**
 * Whether the probe of the rank whose same-host socket is `address` is in `directory` and is that rank's (it holds
 * the address): then this process and that rank map the same files there.
 */
export function probeVisible(address: string, directory: string): boolean {
  return readProbe(join(directory, probeName(address)))?.address === address;
}

/**
 * Removes probes left by SIGKILLed workers: older than 10 s, written in this pid namespace on this host, by a process
 * that no longer exists. A probe of another pid namespace (a container sharing this `/dev/shm`) or of another host (a
 * segment directory that fell back to a `/tmp` shared with other hosts) is never removed: its writer cannot be seen
 * from here.
 * @param hostId - this host's identity ({@link hostIdentity}); null: nothing is removed
 */
export function sweepStaleProbes(directory: string, nowMs: number, hostId: string | null = hostIdentity()): void {
  const ours = pidNamespace();
  if (ours === null || hostId === null) return;
  let names: string[];
  try {
    names = readdirSync(directory).filter((n) => n.startsWith(PROBE_PREFIX));
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(directory, name);
    try {
      if (nowMs - statSync(path).mtimeMs < STALE_PROBE_AGE_MS) continue;
      const probe = readProbe(path);
      if (probe !== null && probe.pidNamespace === ours && probe.hostId === hostId && !processAlive(probe.pid)) rmSync(path, { force: true });
    } catch {
      // gone meanwhile, or not ours to remove
    }
  }
}

/**
 * This worker's probe file: written by {@link ShmProbe.write} before the worker says `hello`, removed by
 * {@link ShmProbe.remove} when it closes (a SIGKILLed worker's is swept by the next worker that writes one).
 */
export class ShmProbe {
  private written = false;

  /**
   * @param address - this worker's same-host socket (`ipc://…`, its ring's `localAddress`)
   * @param directory - the segment directory (`segmentDirectory()` of `shm.ts`)
   */
  constructor(readonly address: string, readonly directory: string) {}

  /** The probe's path. */
  get path(): string {
    return join(this.directory, probeName(this.address));
  }

  /**
   * Writes the probe (sweeping stale ones first).
   * @returns null, or why it could not be written (then no rank, this one included, sees it: every rank keeps the ring)
   */
  write(): string | null {
    sweepStaleProbes(this.directory, Date.now());
    const content: ProbeContent = { address: this.address, pid: process.pid, pidNamespace: pidNamespace(), hostId: hostIdentity() };
    try {
      writeFileSync(this.path, JSON.stringify(content), { mode: 0o644 });
      this.written = true;
      return null;
    } catch (err) {
      return `cannot write the shared-memory probe ${this.path}: ${(err as Error).message}`;
    }
  }

  /** Removes the probe. Idempotent; never throws. */
  remove(): void {
    if (!this.written) return;
    this.written = false;
    try {
      rmSync(this.path, { force: true });
    } catch {
      // the directory went away or changed hands: nothing left to clean
    }
  }
}
