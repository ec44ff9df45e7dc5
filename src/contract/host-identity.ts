/**
 * Which running kernel a process is on, for the checks that must not take another machine for this one: a run
 * lock's owner (`lock-file.ts`), and a ring peer's same-host socket (`worker/allreduce/ring.ts`: a Unix socket file
 * found in a `/tmp` shared over NFS is another host's, and connecting to it reaches nobody). A Unix socket connects
 * exactly when both processes run on one kernel, whatever their host names: containers of one kernel get distinct
 * host names (Docker: the container id) and, sharing `/tmp`, reach each other's sockets.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';

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

/** This process's pid namespace (`pid:[4026531836]`, the link `/proc/self/ns/pid`), or null without procfs. */
export function pidNamespace(): string | null {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return null;
  }
}

function digest16(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/**
 * This host's identity: the first 16 hex digits of SHA-256 over the kernel's boot id — the part of NCCL's host hash
 * (`getHostHash`: host name + boot id) that tells one running kernel, hence where a Unix socket connects. Two hosts
 * differ in boot id even where they share a host name or a file system; containers of one kernel share it whatever
 * their host names. Null without a boot id (no procfs, e.g. macOS): then no peer is taken for a same-host one and
 * the ring uses TCP (a host name proves nothing: two hosts of one name sharing /tmp over NFS would each take the
 * other's socket file for a local one, and every all-reduce with that peer would time out).
 * @param bootId - the boot id (default {@link kernelBootId})
 */
export function hostIdentity(bootId: string | null = kernelBootId()): string | null {
  return bootId === null ? null : digest16(`boot\n${bootId}`);
}

/**
 * The identity of the processes whose pids this one can see (one kernel and one pid namespace): 16 hex digits of
 * SHA-256 over the host identity and the pid namespace; null when either is unknown. A file that names its writer's
 * pid (a ring's socket) may be removed as stale only by a process of the same pid-space identity: a container of
 * the same kernel that shares `/tmp` has its own pid namespace, where a live writer's pid does not run.
 * @param hostId - the host identity (default {@link hostIdentity}); @param namespace - the pid namespace (default {@link pidNamespace})
 */
export function pidSpaceIdentity(hostId: string | null = hostIdentity(), namespace: string | null = pidNamespace()): string | null {
  return hostId === null || namespace === null ? null : digest16(`${hostId}\n${namespace}`);
}
