/**
 * Same-host all-reduce through shared memory (what NCCL's SHM transport and MPI's intra-node collectives do): when
 * every rank of the ring runs on this host, the ranks map one file of `/dev/shm` (a "segment", one per ring
 * generation) and reduce through it instead of through sockets: each rank copies its buffer into its slot, sums its
 * 1/N of every slot (reduce-scatter), then copies every rank's sums back (all-gather), in pieces of a fixed size,
 * with barriers on a futex in the segment. The native side is `native/pets_shm.cc` (its header comment gives the
 * algorithm and the barrier); this module loads it, names the segment, and fulfils the {@link AllReducer} contract.
 *
 * Results are bit-identical to the ring's ({@link RingAllReduce} in `ring.ts`): each element is summed in the ring's
 * order (starting at the rank that owns its chunk in the ring schedule), each addition rounded to float32, then ÷ N.
 * So a run may switch between ring and shm (e.g. after a worker moved to another host) without its replicas
 * diverging, and `--allreduce ring` and `--allreduce auto` train the same bits.
 *
 * Counters: `sentBytesTotal` counts the bytes this rank writes into the segment (4·n per call: its buffer but its
 * own part, then its own part's sums; the ring sends 2(N−1)/N · 4n), `receivedBytesTotal` the bytes it reads from
 * its peers' slots ((N−1)/N · 4n summing its part plus (N−1)/N · 4n gathering theirs).
 */
import { createHash } from 'node:crypto';
import { accessSync, constants, statSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TrainerError, type TrainerErrorCode } from '../../contract/errors.js';
import { nativeBuildFile, REBUILD_COMMAND, requireNative } from '../../training/compute/native/addon.js';
import type {
  AllReduceCallOptions,
  AllReducer,
  AllReduceStats,
  AllReduceTag,
  Membership,
} from '../../training/allreduce/types.js';
import { SerialQueue } from './mailbox.js';
import { checkCallArguments, checkMembership, DEFAULT_ALLREDUCE_TIMEOUT_MS, MembershipGetters, ZERO_STATS } from './reducer-checks.js';

/** An opened segment, owned by the native module. */
declare const segmentBrand: unique symbol;
/**
 * Opaque handle of a mapped segment: a N-API external tagged as a segment (napi_type_tag_object); the module's
 * functions refuse any other value (another module's handle, a plain object) with a `TypeError`, code `ERR_SHM`.
 */
export type SegmentHandle = { readonly [segmentBrand]: true };

/** The functions of `native/build/pets_shm.node` (`native/pets_shm.cc`). */
export interface ShmModule {
  /**
   * Creates or opens the segment file `path` (sized for `worldSize` ranks × 2 slots × `capacity` float32), maps it
   * and registers this process's pid in rank `rank`'s header entry.
   * @throws Error when the file cannot be created, sized (a full tmpfs) or mapped, or the arguments are out of range
   */
  open(path: string, worldSize: number, rank: number, capacity: number): SegmentHandle;
  /**
   * Reduces `buffer` in place with the other ranks of the segment. The waits run on a libuv thread-pool thread, which
   * the call holds until it ends (at most `timeoutMs`; the pool, `UV_THREADPOOL_SIZE`, default 4, also serves sharp's
   * decodes, fs and crypto). The module keeps `buffer` alive and writes into its memory from that thread: it must not be
   * detached or transferred (e.g. to a worker thread) until the promise settles. One call per segment at a time.
   * @param timeoutMs - deadline in milliseconds, finite, in (0, 1e12], counted from this call (not from when a pool
   *   thread picks it up)
   * @param step - @param bucket - the call's tag; every rank must pass the same (a mismatch is ERR_PROTOCOL)
   * @returns '' on success, else `'<ERR_CODE> <message>'`: ERR_TIMEOUT (this rank's deadline passed, or a peer's did),
   *   ERR_WORKER_LOST (aborted here or by a peer, or a peer's process exited), ERR_PROTOCOL (ranks' calls differ)
   * @throws TypeError at once (no promise, code `ERR_SHM`) for an argument of the wrong type (`step`/`bucket` not safe
   *   integers), Error for a value out of range, a closed segment, or a call already running on it
   */
  reduce(handle: SegmentHandle, buffer: Float32Array, average: boolean, step: number, bucket: number, timeoutMs: number): Promise<string>;
  /** Ends this rank's wait in flight and marks the segment broken, so the other ranks' waits end too. */
  abort(handle: SegmentHandle, reason: string): void;
  /** Unmaps the segment and removes its file if still named; false while a call runs (nothing is done then). */
  close(handle: SegmentHandle): boolean;
  /** Removes `pets-shm-*` files of `dir` older than `minAgeMs` whose registered processes are all gone. */
  sweep(dir: string, minAgeMs: number): string[];
  /** Largest world size a segment holds. */
  readonly maxRanks: number;
  /** {@link nativeSourceHash} of the sources it was built from. */
  readonly sourceHash?: string;
}

/** Functions a loaded module must have. */
const SHM_FUNCTIONS = ['open', 'reduce', 'abort', 'close', 'sweep'] as const;

/** File name of the built module, under `native/build/` of the project. */
export const SHM_ADDON_FILE = 'pets_shm.node';

/** The loaded module, or why it could not be loaded. */
export type ShmLoad = { readonly module: ShmModule } | { readonly reason: string };

/**
 * Where the module is: the file named by `PETS_SHM_ADDON` when that is set (so tests can point it at a missing file),
 * else `native/build/pets_shm.node` of the project ({@link nativeBuildFile}).
 */
export function shmAddonPath(env: NodeJS.ProcessEnv = process.env): string | null {
  return nativeBuildFile(SHM_ADDON_FILE, env.PETS_SHM_ADDON);
}

let loaded: ShmLoad | undefined;

/**
 * Loads the shared-memory module once per process (later calls return the same result) and checks that it was built
 * from the sources `native/` holds now (the stamp rule of the oneDNN addon, {@link requireNative}). Never throws.
 * @param env - environment (`PETS_SHM_ADDON`); a non-default one bypasses the per-process cache (tests)
 */
export function loadShmModule(env: NodeJS.ProcessEnv = process.env): ShmLoad {
  const cache = env === process.env;
  if (cache && loaded !== undefined) return loaded;
  const path = shmAddonPath(env);
  const result: ShmLoad = path !== null ? requireNative<ShmModule>(path, SHM_FUNCTIONS, 'shared-memory module') : {
    reason: env.PETS_SHM_ADDON
      ? `shared-memory module ${JSON.stringify(env.PETS_SHM_ADDON)} (PETS_SHM_ADDON) does not exist`
      : `shared-memory module not built: install g++, then run \`${REBUILD_COMMAND}\``,
  };
  if (cache) loaded = result;
  return result;
}

/**
 * The directory segments live in: `/dev/shm` (tmpfs: memory, never written back to a disk) when it is a writable
 * directory, else the temporary directory. Every rank of one host derives the same one.
 */
export function segmentDirectory(): string {
  try {
    if (statSync('/dev/shm').isDirectory()) {
      accessSync('/dev/shm', constants.W_OK);
      return '/dev/shm';
    }
  } catch {
    // no /dev/shm (not Linux, or a container without it)
  }
  return tmpdir();
}

/**
 * The segment's file name, which every rank derives alike from the membership: `pets-shm-` and 16 hex digits of
 * SHA-256 over the ranks' data addresses (their ephemeral ports and random socket names make it unique to this ring),
 * the generation and the piece size. A new generation (a re-formed ring) gets a new segment.
 */
export function segmentName(membership: Membership, pieceElements: number): string {
  const key = JSON.stringify({ peers: membership.peers, local: membership.localPeers ?? [], generation: membership.generation, pieceElements });
  return `pets-shm-${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}

/** Options of {@link ShmAllReduce}; all optional. */
export interface ShmOptions {
  /** Default deadline of one call, in milliseconds (> 0). Default 30 000 (the ring's). */
  readonly timeoutMs?: number;
  /**
   * Bytes of float32 per slot (a multiple of 4, ≥ 4096): calls are reduced in pieces of this size. Default 1 MiB: a
   * segment then takes 2 × N MiB of `/dev/shm` (a container's default 64 MiB holds 32 ranks), and a 25 MiB bucket
   * takes 25 pieces, 50 barriers of a few µs. Every rank must use the same value (it is part of the segment's name).
   */
  readonly pieceBytes?: number;
  /** Directory of the segments. Default {@link segmentDirectory}. */
  readonly directory?: string;
  /** The native module. Default {@link loadShmModule}'s; the constructor throws when it does not load. */
  readonly module?: ShmModule;
}

/** Defaults of {@link ShmAllReduce}. */
export const DEFAULT_SHM = Object.freeze({ timeoutMs: DEFAULT_ALLREDUCE_TIMEOUT_MS, pieceBytes: 1024 * 1024 });

/** Segments older than this whose processes are all gone are removed when a segment is opened. */
const STALE_SEGMENT_AGE_MS = 10_000;

type State = 'unconfigured' | 'ready' | 'broken' | 'closed';

/**
 * All-reduce of float32 buffers between processes of one host through a shared-memory segment; see the module
 * comment. Same contract and life cycle as {@link RingAllReduce}: {@link reconfigure} per generation, calls one at a
 * time in call order, a failed or aborted call breaks the segment until the next generation.
 */
export class ShmAllReduce extends MembershipGetters implements AllReducer {
  private readonly module: ShmModule;
  private readonly timeoutMs: number;
  private readonly pieceElements: number;
  private readonly directory: string;
  private readonly queue = new SerialQueue();
  private handle: SegmentHandle | null = null;
  private path = '';
  private state: State = 'unconfigured';
  private brokenReason = '';
  private controller = new AbortController();
  private counters = { ...ZERO_STATS };

  /** @throws TrainerError `ERR_BAD_CONFIG` on invalid options or when the native module does not load */
  constructor(options: ShmOptions = {}) {
    super();
    const timeoutMs = options.timeoutMs ?? DEFAULT_SHM.timeoutMs;
    const pieceBytes = options.pieceBytes ?? DEFAULT_SHM.pieceBytes;
    if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new TrainerError('ERR_BAD_CONFIG', `shm timeoutMs must be a number > 0, got ${timeoutMs}`);
    if (!Number.isInteger(pieceBytes) || pieceBytes < 4096 || pieceBytes % 4 !== 0 || pieceBytes > 2 ** 30) {
      throw new TrainerError('ERR_BAD_CONFIG', `shm pieceBytes must be an integer multiple of 4 in [4096, 2^30], got ${pieceBytes}`);
    }
    let module = options.module;
    if (module === undefined) {
      const load = loadShmModule();
      if ('reason' in load) throw new TrainerError('ERR_BAD_CONFIG', load.reason);
      module = load.module;
    }
    this.module = module;
    this.timeoutMs = timeoutMs;
    this.pieceElements = pieceBytes / 4;
    this.directory = options.directory ?? segmentDirectory();
  }

  /** The current segment's file (empty before {@link reconfigure}); removed once every rank has mapped it. */
  get segmentPath(): string {
    return this.path;
  }

  /** Nothing to open before the first membership. */
  async start(): Promise<void> {
    if (this.state === 'closed') throw new TrainerError('ERR_INTERNAL', 'shm.start() called after close()');
  }

  /**
   * Uses the segment of a new generation: aborts the call in flight, unmaps the old segment, removes stale segments of
   * dead processes, and creates or opens the new one (every rank derives its name from the membership,
   * {@link segmentName}). A membership of the same generation as the current one is a no-op.
   * @throws TrainerError `ERR_BAD_CONFIG` on an invalid membership or an older generation; `ERR_INTERNAL` when the
   *   segment cannot be created (e.g. `/dev/shm` is full)
   */
  async reconfigure(membership: Membership): Promise<void> {
    if (this.state === 'closed') throw new TrainerError('ERR_INTERNAL', 'shm.reconfigure() called after close()');
    if (membership.generation === this.membership.generation && this.state !== 'unconfigured') return;
    checkMembership('shm', membership, this.membership.generation, this.module.maxRanks);
    this.abort(`shared-memory all-reduce re-forming for generation ${membership.generation}`);
    await this.queue.drain();
    this.unmap();
    this.membership = { peers: [...membership.peers], localPeers: membership.localPeers, rank: membership.rank, generation: membership.generation };
    this.controller = new AbortController();
    if (membership.peers.length > 1) {
      this.module.sweep(this.directory, STALE_SEGMENT_AGE_MS);
      this.path = join(this.directory, segmentName(membership, this.pieceElements));
      try {
        this.handle = this.module.open(this.path, membership.peers.length, membership.rank, this.pieceElements);
      } catch (err) {
        this.state = 'broken';
        const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
        let free = '';
        try {
          const fs = statfsSync(this.directory);
          free = `, ${mib(fs.bavail * fs.bsize)} free in ${this.directory}`;
        } catch {
          // the directory itself is the problem; the native message says how
        }
        this.brokenReason = `cannot open the shared-memory segment: ${(err as Error).message} `
          + `(it needs about ${mib(2 * membership.peers.length * this.pieceElements * 4)} for ${membership.peers.length} ranks${free})`;
        throw new TrainerError('ERR_INTERNAL', this.brokenReason, { cause: err });
      }
    }
    this.state = 'ready';
  }

  /**
   * Sums (or averages) `buffer` across the ranks, in place; every rank ends with bit-identical bytes, the same as the
   * ring's. World size 1 returns the buffer unchanged. Calls run one at a time in call order.
   * @param buffer - `[n] float32`, the same n on every rank
   * @param tag - step and bucket, identical on every rank for the same call (checked: a mismatch is ERR_PROTOCOL)
   * @returns `buffer`
   * @throws TrainerError `ERR_TIMEOUT` past the deadline; `ERR_WORKER_LOST` when aborted, when a peer aborted or
   *   failed, or when a peer's process exited during the call; `ERR_PROTOCOL` when ranks' lengths or tags differ.
   *   After any of them the segment needs {@link reconfigure} with a new generation.
   */
  allReduce(buffer: Float32Array, tag: AllReduceTag, options: AllReduceCallOptions = {}): Promise<Float32Array> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    checkCallArguments(timeoutMs, tag);
    const signal = this.controller.signal;
    return this.queue.run(async () => {
      if (signal.aborted) throw signal.reason;
      if (this.state !== 'ready') {
        const why = this.state === 'broken' ? `: ${this.brokenReason}` : '';
        throw new TrainerError('ERR_WORKER_LOST', `shared-memory all-reduce is ${this.state}${why}; call reconfigure() with a new generation`);
      }
      const n = this.worldSize;
      if (n > 1) {
        // The deadline counts from this call's turn in the queue, as the ring's does: the native side fixes it when
        // reduce() is called, before the work waits for a thread-pool thread.
        const result = await this.module.reduce(this.handle!, buffer, options.average ?? false, tag.step, tag.bucket, timeoutMs);
        if (result !== '') {
          const space = result.indexOf(' ');
          const code = result.slice(0, space) as TrainerErrorCode;
          const err = new TrainerError(code, `shm all-reduce of tag ${JSON.stringify(tag)}: ${result.slice(space + 1)}`);
          this.breakSegment(err.message);
          throw signal.aborted && code === 'ERR_WORKER_LOST' ? signal.reason : err;
        }
        // Aborted after the last barrier (the native call had nothing left to wait for): the contract says an aborted
        // call rejects, as the ring's does, whatever its bytes became.
        if (signal.aborted) throw signal.reason;
        this.counters.sentBytesTotal += buffer.byteLength;
        this.counters.receivedBytesTotal += 2 * Math.round((buffer.byteLength * (n - 1)) / n);
      }
      this.counters.callsTotal++;
      return buffer;
    });
  }

  private breakSegment(reason: string): void {
    if (this.state !== 'ready') return;
    this.state = 'broken';
    this.brokenReason = reason;
  }

  /**
   * Cancels the call in flight and the queued ones (`ERR_WORKER_LOST`), and marks the segment broken so the other
   * ranks' calls end too; the reducer then needs {@link reconfigure}.
   */
  abort(reason = 'aborted'): void {
    if (this.controller.signal.aborted) return;
    this.controller.abort(new TrainerError('ERR_WORKER_LOST', `all-reduce aborted: ${reason}`));
    if (this.handle !== null) this.module.abort(this.handle, reason);
    this.breakSegment(reason);
  }

  /** Counters since construction (see the module comment for what the byte counters count). */
  stats(): AllReduceStats {
    return { ...this.counters };
  }

  /** Aborts pending calls and unmaps the segment (removing its file if still named). Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.abort('shared-memory all-reduce closed');
    this.state = 'closed';
    await this.queue.drain();
    this.unmap();
  }

  private unmap(): void {
    if (this.handle === null) return;
    if (!this.module.close(this.handle)) throw new TrainerError('ERR_INTERNAL', 'shared-memory segment still in use after its calls drained');
    this.handle = null;
  }
}
