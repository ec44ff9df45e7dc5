/**
 * Which machine (which running kernel) a process is on, for the checks that must not take another machine for this
 * one: a run lock's owner (`lock-file.ts`), and a ring peer's same-host socket (`worker/allreduce/ring.ts`: a Unix
 * socket file found in a `/tmp` shared over NFS is another host's, and connecting to it reaches nobody).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/** Path of the kernel's boot id: a random UUID drawn at each boot, the same in every container of that kernel. */
const BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id';

/** The running kernel's boot id (`/proc/sys/kernel/random/boot_id`), or null without procfs. */
export function kernelBootId(): string | null {
  try {
    return readFileSync(BOOT_ID_PATH, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

/**
 * This host's identity: the first 16 hex digits of SHA-256 over the host name and the kernel's boot id, as NCCL's
 * host hash (`getHostHash`: host name + boot id) tells which ranks share a machine. Two hosts differ in boot id
 * even where they share a host name or a file system; null when the boot id cannot be read (then no peer is taken
 * for a same-host one).
 * @param host - the host name (default `os.hostname()`); @param bootId - the boot id (default {@link kernelBootId})
 */
export function hostIdentity(host: string = hostname(), bootId: string | null = kernelBootId()): string | null {
  if (bootId === null) return null;
  return createHash('sha256').update(`${host}\n${bootId}`).digest('hex').slice(0, 16);
}
