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
 * Counters: `sentBytesTotal` counts the bytes this rank copies into the segment (its whole buffer, once per call:
 * 4·n, where the ring sends 2(N−1)/N · 4n), `receivedBytesTotal` the bytes it reads from its peers' slots
 * ((N−1)/N · 4n summing its part plus (N−1)/N · 4n gathering theirs).
 */
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TrainerError, type TrainerErrorCode } from '../../contract/errors.js';
import type { WireDtype } from '../../contract/protocol/index.js';
import { nativeSourceHash, REBUILD_COMMAND } from '../../training/compute/native/addon.js';
import type {
  AllReduceCallOptions,
  AllReducer,
  AllReduceStats,
  AllReduceTag,
  Membership,
} from '../../training/allreduce/types.js';
import { SerialQueue } from './mailbox.js';
import { isLocalSocket } from './ring.js';

/** An opened segment, owned by the native module. */
declare const segmentBrand: unique symbol;
/** Opaque handle of a mapped segment (a N-API external). */
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
   * Reduces `buffer` in place with the other ranks of the segment, on a thread-pool thread.
   * @returns '' on success, else `'<ERR_CODE> <message>'` (ERR_TIMEOUT, ERR_WORKER_LOST, ERR_PROTOCOL)
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
 * else `native/build/pets_shm.node` above this module (from `src/` under tsx and from `dist/`).
 */
export function shmAddonPath(env: NodeJS.ProcessEnv = process.env): string | null {
  const forced = env.PETS_SHM_ADDON;
  if (forced !== undefined && forced !== '') return existsSync(forced) ? forced : null;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const path = join(dir, 'native', 'build', SHM_ADDON_FILE);
    if (existsSync(path)) return path;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return null;
}

let loaded: ShmLoad | undefined;

/**
 * Loads the shared-memory module once per process (later calls return the same result) and checks that it was built
 * from the sources `native/` holds now (the stamp rule of the oneDNN addon). Never throws.
 * @param env - environment (`PETS_SHM_ADDON`); a non-default one bypasses the per-process cache (tests)
 */
export function loadShmModule(env: NodeJS.ProcessEnv = process.env): ShmLoad {
  const cache = env === process.env;
  if (cache && loaded !== undefined) return loaded;
  const result = loadFrom(shmAddonPath(env), env);
  if (cache) loaded = result;
  return result;
}

function loadFrom(path: string | null, env: NodeJS.ProcessEnv): ShmLoad {
  if (path === null) {
    return { reason: env.PETS_SHM_ADDON
      ? `shared-memory module ${JSON.stringify(env.PETS_SHM_ADDON)} (PETS_SHM_ADDON) does not exist`
      : `shared-memory module not built: install g++, then run \`${REBUILD_COMMAND}\`` };
  }
  try {
    const module = createRequire(import.meta.url)(path) as ShmModule;
    const missing = SHM_FUNCTIONS.filter((f) => typeof (module as unknown as Record<string, unknown>)[f] !== 'function');
    const sources = nativeSourceHash();
    if (missing.length > 0) return { reason: `shared-memory module ${path} lacks ${missing.join(', ')}; rebuild it with \`${REBUILD_COMMAND}\`` };
    if (sources !== null && module.sourceHash !== sources) {
      return { reason: `shared-memory module ${path} is stale: built from other sources (stamp ${module.sourceHash ?? 'none'}, native/ now ${sources}); rebuild it with \`${REBUILD_COMMAND}\`` };
    }
    return { module };
  } catch (err) {
    return { reason: `shared-memory module failed to load (${String(err instanceof Error ? err.message : err).split('\n')[0]!.slice(0, 160)})` };
  }
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

/** Which data-plane transport a generation uses, and why (for the log line). */
export interface TransportChoice {
  readonly transport: 'shm' | 'ring';
  readonly why: string;
}

/**
 * Decides between the shared-memory all-reduce and the ZeroMQ ring for one ring generation (`--allreduce auto|shm`):
 * shm when the module loads, the wire dtype is float32, and every rank runs on this host — decided as the ring decides
 * "same host": the rank's `ipc://` socket file exists on this host's file system. Every rank of one host sees the same
 * files, so all ranks decide alike; a ring spanning hosts has a rank whose socket no rank sees everywhere, so every
 * rank picks the ring.
 * @param membership - the generation's membership (`localPeers` from `welcome`)
 * @param dtype - the run's wire dtype: float16 keeps the ring (its Horovod compression rounds each partial sum
 *   through float16; shared memory moves no bytes over a wire, so there is nothing to compress)
 * @param load - {@link loadShmModule}'s result
 * @param isLocal - whether an `ipc://` address is a socket on this host (default: {@link isLocalSocket})
 */
export function chooseTransport(membership: Membership, dtype: WireDtype, load: ShmLoad, isLocal: (address: string) => boolean = isLocalSocket): TransportChoice {
  const n = membership.peers.length;
  if (n <= 1) return { transport: 'ring', why: 'one rank: nothing to reduce' };
  if (dtype !== 'float32') return { transport: 'ring', why: `the ${dtype} wire dtype compresses what the ring sends; shared memory sends nothing` };
  if ('reason' in load) return { transport: 'ring', why: load.reason };
  if (n > load.module.maxRanks) return { transport: 'ring', why: `${n} ranks, more than a segment holds (${load.module.maxRanks})` };
  for (let r = 0; r < n; r++) {
    const local = membership.localPeers?.[r];
    if (local === undefined) return { transport: 'ring', why: `rank ${r} announced no same-host socket` };
    if (!isLocal(local)) return { transport: 'ring', why: `rank ${r} is on another host (its socket ${local} is not on this one)` };
  }
  return { transport: 'shm', why: `all ${n} ranks are on this host` };
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
export const DEFAULT_SHM = Object.freeze({ timeoutMs: 30_000, pieceBytes: 1024 * 1024 });

/** Segments older than this whose processes are all gone are removed when a segment is opened. */
const STALE_SEGMENT_AGE_MS = 10_000;

type State = 'unconfigured' | 'ready' | 'broken' | 'closed';

/**
 * All-reduce of float32 buffers between processes of one host through a shared-memory segment; see the module
 * comment. Same contract and life cycle as {@link RingAllReduce}: {@link reconfigure} per generation, calls one at a
 * time in call order, a failed or aborted call breaks the segment until the next generation.
 */
export class ShmAllReduce implements AllReducer {
  private readonly module: ShmModule;
  private readonly timeoutMs: number;
  private readonly pieceElements: number;
  private readonly directory: string;
  private readonly queue = new SerialQueue();
  private handle: SegmentHandle | null = null;
  private path = '';
  private state: State = 'unconfigured';
  private brokenReason = '';
  private membership: Membership = { peers: [], rank: 0, generation: -1 };
  private controller = new AbortController();
  private counters = { callsTotal: 0, sentBytesTotal: 0, receivedBytesTotal: 0, staleMessagesTotal: 0, rejectedMessagesTotal: 0 };

  /** @throws TrainerError `ERR_BAD_CONFIG` on invalid options or when the native module does not load */
  constructor(options: ShmOptions = {}) {
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

  /** Number of ranks in the current membership (1 before {@link reconfigure}). */
  get worldSize(): number {
    return Math.max(1, this.membership.peers.length);
  }
  /** This process's rank. */
  get rank(): number {
    return this.membership.rank;
  }
  /** Current generation (−1 before the first {@link reconfigure}). */
  get generation(): number {
    return this.membership.generation;
  }
  /** Always float32: nothing goes over a wire. */
  get dtype(): WireDtype {
    return 'float32';
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
    checkMembership(membership, this.membership.generation, this.module.maxRanks);
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
        this.brokenReason = `cannot open the shared-memory segment: ${(err as Error).message}`;
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
    if (!(timeoutMs > 0)) throw new TrainerError('ERR_BAD_CONFIG', `timeoutMs must be > 0, got ${timeoutMs}`);
    if (!Number.isInteger(tag.step) || tag.step < 0 || !Number.isInteger(tag.bucket) || tag.bucket < 0) {
      throw new TrainerError('ERR_BAD_CONFIG', `tag step and bucket must be integers ≥ 0, got ${JSON.stringify(tag)}`);
    }
    const signal = this.controller.signal;
    return this.queue.run(async () => {
      if (signal.aborted) throw signal.reason;
      if (this.state !== 'ready') {
        const why = this.state === 'broken' ? `: ${this.brokenReason}` : '';
        throw new TrainerError('ERR_WORKER_LOST', `shared-memory all-reduce is ${this.state}${why}; call reconfigure() with a new generation`);
      }
      const n = this.worldSize;
      if (n > 1) {
        // The deadline counts from this call's turn in the queue, as the ring's does.
        const result = await this.module.reduce(this.handle!, buffer, options.average ?? false, tag.step, tag.bucket, timeoutMs);
        if (result !== '') {
          const space = result.indexOf(' ');
          const code = result.slice(0, space) as TrainerErrorCode;
          const err = new TrainerError(code, `shm all-reduce of tag ${JSON.stringify(tag)}: ${result.slice(space + 1)}`);
          this.breakSegment(err.message);
          throw signal.aborted && code === 'ERR_WORKER_LOST' ? signal.reason : err;
        }
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

function checkMembership(m: Membership, current: number, maxRanks: number): void {
  const n = m.peers.length;
  const fail = (rule: string): never => {
    throw new TrainerError('ERR_BAD_CONFIG', `shm membership ${rule}`);
  };
  if (n < 1 || n > maxRanks) fail(`must list 1 … ${maxRanks} peers, got ${n}`);
  if (!Number.isInteger(m.rank) || m.rank < 0 || m.rank >= n) fail(`rank must be an integer in [0, ${n - 1}], got ${m.rank}`);
  if (!Number.isInteger(m.generation) || m.generation <= current) fail(`generation must be an integer > ${current}, got ${m.generation}`);
}

/**
 * The reducer of a run that asked for `--allreduce shm` where shared memory cannot be used (ranks on several hosts,
 * the module not built, float16): every call fails with `ERR_BAD_CONFIG` saying why, which ends the run (the error is
 * not one a retry can cure) instead of silently using another transport than the one asked for.
 */
export class RefusedAllReduce implements AllReducer {
  readonly dtype: WireDtype = 'float32';
  /** @param reason - why shared memory cannot be used; @param worldSize - @param rank - of the generation */
  constructor(private readonly reason: string, readonly worldSize: number, readonly rank: number) {}
  async start(): Promise<void> {}
  /** @throws TrainerError `ERR_BAD_CONFIG` always */
  allReduce(): Promise<Float32Array> {
    return Promise.reject(new TrainerError('ERR_BAD_CONFIG', `--allreduce shm: ${this.reason}; use --allreduce auto or ring`));
  }
  abort(): void {}
  stats(): AllReduceStats {
    return { callsTotal: 0, sentBytesTotal: 0, receivedBytesTotal: 0, staleMessagesTotal: 0, rejectedMessagesTotal: 0 };
  }
  async close(): Promise<void> {}
}
