/**
 * Which data-plane transport a ring generation uses under `--allreduce auto|shm`: the shared-memory all-reduce
 * ({@link ShmAllReduce}) when every rank is on this host and every rank can use it, else the ZeroMQ ring. Every rank
 * must pick the same one (a rank on the ring and its peers on shared memory would each wait for the other until the
 * all-reduce timeout), so the choice is made from facts all ranks share: each worker announces in `hello` whether its
 * shared-memory module loads ({@link sharedMemorySupport}), the coordinator passes the announcements on in `welcome`,
 * and {@link chooseTransport} reads them alike on every rank.
 */
import { TrainerError } from '../../contract/errors.js';
import type { SharedMemorySupport, WireDtype } from '../../contract/protocol/index.js';
import type { AllReducer, AllReduceStats, Membership } from '../../training/allreduce/types.js';
import { ZERO_STATS } from './reducer-checks.js';
import { hostIdentity } from '../../contract/host-identity.js';
import { isLocalSocket, sameHostAddress } from './ring.js';
import { segmentDirectory, type ShmAllReduce, type ShmLoad } from './shm.js';
import { probeName, probeVisible } from './shm-probe.js';

/** Longest reason announced, in UTF-16 code units: well under the protocol's string limit (a long module path). */
const MAX_REASON_LENGTH = 1000;

/**
 * What this worker announces in `hello` about the shared-memory all-reduce, from {@link loadShmModule}'s result; the
 * reason is cut to 1000 characters, so a long path cannot make the `hello` exceed the protocol's string limit.
 */
export function sharedMemorySupport(load: ShmLoad): SharedMemorySupport {
  return 'reason' in load ? { usable: false, reason: load.reason.slice(0, MAX_REASON_LENGTH) } : { usable: true };
}

/** Which data-plane transport a generation uses, and why (for the log line). */
export interface TransportChoice {
  readonly transport: 'shm' | 'ring';
  readonly why: string;
}

/**
 * Decides between the shared-memory all-reduce and the ZeroMQ ring for one ring generation (`--allreduce auto|shm`):
 * shm when the wire dtype is float32, every rank announced that it can use shared memory, this rank's module holds
 * that many ranks, every rank runs on this host — decided as the ring decides "same host": the rank's host identity
 * is this one's and its `ipc://` socket file exists on this host's file system — and every rank maps the same segment directory: its probe file
 * (`shm-probe.ts`, written before it joined) is in this rank's. The announcements are the same on every rank (they
 * come in `welcome`), and every rank of one host sees the same socket files, so all ranks decide alike; a ring
 * spanning hosts has a rank whose socket no rank sees everywhere, so every rank picks the ring. Likewise ranks in
 * containers that share a hostname or `/tmp` (so each other's sockets) but not `/dev/shm`: each misses a probe, so
 * every rank picks the ring.
 * @param membership - the generation's membership (`localPeers` from `welcome`)
 * @param dtype - the run's wire dtype: float16 keeps the ring (its Horovod compression rounds each partial sum
 *   through float16; shared memory moves no bytes over a wire, so there is nothing to compress)
 * @param announced - each rank's {@link SharedMemorySupport} from `welcome` (undefined: it announced nothing, a worker
 *   that predates the field), indexed by rank
 * @param load - this process's {@link loadShmModule} result (for the segment's largest world size)
 * @param isLocal - whether an `ipc://` address is a socket on this host (default: {@link isLocalSocket})
 * @param segmentDir - this process's segment directory, where every rank's probe must be (default: `segmentDirectory()`
 *   of `shm.ts`, `/dev/shm`; tests pass a directory of their own to stand for a container's)
 * @param hostId - this process's host identity: every rank's (`membership.hostIds`) must equal it, as the ring
 *   requires of a same-host socket ({@link sameHostAddress}; default {@link hostIdentity})
 */
export function chooseTransport(membership: Membership, dtype: WireDtype, announced: readonly (SharedMemorySupport | undefined)[],
  load: ShmLoad, isLocal: (address: string) => boolean = isLocalSocket, segmentDir: string = segmentDirectory(),
  hostId: string | null = hostIdentity()): TransportChoice {
  const n = membership.peers.length;
  if (n <= 1) return { transport: 'ring', why: 'one rank: nothing to reduce' };
  if (dtype !== 'float32') return { transport: 'ring', why: `the ${dtype} wire dtype compresses what the ring sends; shared memory sends nothing` };
  for (let r = 0; r < n; r++) {
    const support = announced[r];
    if (support === undefined) return { transport: 'ring', why: `rank ${r} did not say whether it can use shared memory (a worker older than this one)` };
    if (!support.usable) return { transport: 'ring', why: `rank ${r} cannot use shared memory: ${support.reason ?? 'no reason given'}` };
  }
  if ('reason' in load) return { transport: 'ring', why: `rank ${membership.rank} cannot use shared memory: ${load.reason}` };
  if (n > load.module.maxRanks) return { transport: 'ring', why: `${n} ranks, more than a segment holds (${load.module.maxRanks})` };
  for (let r = 0; r < n; r++) {
    const local = membership.localPeers?.[r];
    if (local === undefined) return { transport: 'ring', why: `rank ${r} announced no same-host socket` };
    if (sameHostAddress(membership, r, hostId, () => true) === undefined) {
      return { transport: 'ring', why: `rank ${r} is on another host (its host identity ${membership.hostIds?.[r] ?? '(none)'} is not this one's ${hostId ?? '(none: no boot id or host name)'})` };
    }
    if (!isLocal(local)) return { transport: 'ring', why: `rank ${r} is on another host (its socket ${local} is not on this one)` };
  }
  for (let r = 0; r < n; r++) {
    const local = membership.localPeers![r]!;
    if (!probeVisible(local, segmentDir)) {
      return {
        transport: 'ring',
        why: `rank ${r} does not share this rank's ${segmentDir} (its probe ${probeName(local)} is not there): the ranks share a host name or /tmp `
          + 'but not the shared-memory directory (containers without a shared IPC namespace?), and shared memory needs every rank to map the same one',
      };
    }
  }
  return { transport: 'shm', why: `all ${n} ranks are on this host and share ${segmentDir}` };
}

/**
 * The reducer of a run that asked for `--allreduce shm` where shared memory cannot be used (ranks on several hosts,
 * a rank whose module is not built, float16): every call fails with `ERR_BAD_CONFIG` saying why, which ends the run
 * (the error is not one a retry can cure) instead of silently using another transport than the one asked for. Every
 * rank decides alike ({@link chooseTransport}), so every rank fails its first call instead of waiting for the others.
 */
export class RefusedAllReduce implements AllReducer {
  /** float32, as the shared-memory reducer it stands for. */
  readonly dtype: WireDtype = 'float32';
  /**
   * @param reason - why shared memory cannot be used (from {@link chooseTransport}), quoted in every call's error
   * @param worldSize - ranks of the generation (≥ 1)
   * @param rank - this process's rank in it
   * @param remedy - what the user can do, after the reason (default: another `--allreduce`)
   * @param mode - the `--allreduce` value the message names
   */
  constructor(private readonly reason: string, readonly worldSize: number, readonly rank: number, private readonly remedy = 'use --allreduce auto or ring',
    private readonly mode: 'auto' | 'shm' = 'shm') {}
  /** Nothing to open. */
  async start(): Promise<void> {}
  /** @throws TrainerError `ERR_BAD_CONFIG` always (the promise rejects), naming the reason */
  allReduce(): Promise<Float32Array> {
    return Promise.reject(new TrainerError('ERR_BAD_CONFIG', `--allreduce ${this.mode}: ${this.reason}; ${this.remedy}`));
  }
  /** Nothing is in flight: every call fails at once. */
  abort(): void {}
  /** All zero: no call ever completes. */
  stats(): AllReduceStats {
    return { ...ZERO_STATS };
  }
  /** Nothing to close. */
  async close(): Promise<void> {}
}

/**
 * System errors (the native module's `errnoName`) that mean the segment's directory has no room or no rights for it:
 * no later generation would do better. Others (ENOMEM from mmap, which can pass; a file of another membership's size)
 * leave the reducer broken and recovery re-forms the ring under a new segment name.
 */
const SEGMENT_ROOM = new Set(['ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EROFS']);

/** The system error name behind a failed segment open (`errnoName` of the error or of its cause), or null. */
function segmentErrno(err: unknown): string | null {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const name = (e as { errnoName?: unknown }).errnoName;
    if (typeof name === 'string') return name;
  }
  return null;
}

/** What {@link TransportSelector.apply} needs of one generation. */
export interface GenerationFacts {
  /** `--allreduce`: only `auto` and `shm` choose; `ring` and `star` keep the ring (the star is chosen elsewhere). */
  readonly mode: 'auto' | 'ring' | 'shm' | 'star';
  readonly membership: Membership;
  readonly dtype: WireDtype;
  /** Each rank's announcement, from `welcome` (see {@link chooseTransport}). */
  readonly announced: readonly (SharedMemorySupport | undefined)[];
  /** This process's module ({@link loadShmModule}). */
  readonly load: ShmLoad;
  /** Whether an `ipc://` address is a socket on this host; default {@link isLocalSocket} (tests pass their own). */
  readonly isLocal?: (address: string) => boolean;
  /** Where every rank's probe must be (see {@link chooseTransport}); default `segmentDirectory()` (tests pass their own). */
  readonly segmentDir?: string;
}

/**
 * Holds the reducer a worker's steps use under `--allreduce auto|shm` and switches it per generation: the shared-memory
 * reducer (created on first use by `makeShm`) when {@link chooseTransport} says so, else the ring, or a
 * {@link RefusedAllReduce} under an explicit `shm`. A generation that leaves shared memory aborts and closes the
 * shared-memory reducer, so a call of the old generation still waiting on its segment ends at once (ERR_WORKER_LOST)
 * and the segment is unmapped.
 */
export class TransportSelector {
  private shm: ShmAllReduce | null = null;
  private chosen: AllReducer;

  /**
   * @param ring - the worker's ring reducer (already reconfigured for each generation by the worker)
   * @param makeShm - creates the shared-memory reducer (e.g. with the run's all-reduce timeout)
   * @param log - one line per generation: the transport and why
   */
  constructor(private readonly ring: AllReducer, private readonly makeShm: () => ShmAllReduce, private readonly log: (line: string) => void) {
    this.chosen = ring;
  }

  /** The reducer of the current generation. */
  get reducer(): AllReducer {
    return this.chosen;
  }

  /** The shared-memory reducer while a generation uses it, else null. */
  get sharedMemory(): ShmAllReduce | null {
    return this.shm;
  }

  /**
   * Chooses the transport of a new generation and readies it (see the class comment). A segment that cannot be opened
   * leaves the shared-memory reducer broken: its calls fail, as the ring's do with an unreachable peer, and recovery
   * re-forms the ring under a new generation.
   */
  async apply(g: GenerationFacts): Promise<void> {
    const { mode, membership } = g;
    const many = membership.peers.length > 1;
    const choice: TransportChoice = mode === 'auto' || mode === 'shm'
      ? chooseTransport(membership, g.dtype, g.announced, g.load, g.isLocal, g.segmentDir)
      : { transport: 'ring', why: `--allreduce ${mode}` };
    const prefix = `generation ${membership.generation}: all-reduce`;
    if (choice.transport === 'ring') {
      await this.closeShm();
      this.chosen = mode === 'shm' && many ? new RefusedAllReduce(choice.why, membership.peers.length, membership.rank) : this.ring;
      if (many && (mode === 'auto' || mode === 'shm')) this.log(`${prefix} ${mode === 'shm' ? 'refused' : 'through the ring'} (--allreduce ${mode}: ${choice.why})`);
      return;
    }
    this.shm ??= this.makeShm();
    this.chosen = this.shm;
    try {
      await this.shm.reconfigure(membership);
      this.log(`${prefix} through shared memory ${this.shm.segmentPath} (--allreduce ${mode}: ${choice.why})`);
    } catch (err) {
      const message = (err as Error).message;
      if (SEGMENT_ROOM.has(segmentErrno(err) ?? '')) {
        // The host has no room (or no right) for the segment: a new generation fails alike, and the step was redone
        // --max-restarts + 1 times, then blamed on a hung worker. As NCCL stops when it cannot create its /dev/shm
        // segment, the run stops at its first all-reduce, naming the directory, the room needed and the remedies.
        this.chosen = new RefusedAllReduce(message, membership.peers.length, membership.rank,
          'make room in /dev/shm (a container: docker run --shm-size, a Kubernetes emptyDir with medium: Memory) or use --allreduce ring', mode === 'shm' ? 'shm' : 'auto');
        this.log(`generation ${membership.generation}: ${message}; the run stops at its first all-reduce (--allreduce ${mode})`);
        return;
      }
      this.log(`generation ${membership.generation}: ${message}; this generation's all-reduces fail`);
    }
  }

  /** Closes the shared-memory reducer (its calls in flight end with ERR_WORKER_LOST). Idempotent. */
  async close(): Promise<void> {
    await this.closeShm();
  }

  private async closeShm(): Promise<void> {
    const shm = this.shm;
    if (shm === null) return;
    this.shm = null;
    await shm.close();
  }
}
