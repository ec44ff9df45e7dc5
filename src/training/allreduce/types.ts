/**
 * The contract every all-reduce implementation (ring, star baseline) fulfils, so the trainer and the benchmarks
 * can swap them.
 */
import type { WireDtype } from '../../contract/protocol/index.js';

/** Identifies one all-reduce call; every rank must use the same tag for the same call. */
export interface AllReduceTag {
  /** Training step, integer ≥ 0. */
  readonly step: number;
  /** Gradient bucket id within the step, integer ≥ 0. */
  readonly bucket: number;
}

/** Per-call options of {@link AllReducer.allReduce}; all optional. */
export interface AllReduceCallOptions {
  /** Divide the sum by the world size (gradient averaging, as DDP). Default `false`: plain sum. */
  readonly average?: boolean;
  /**
   * Deadline of this call in milliseconds (finite, > 0), counted from the call's turn (calls run one at a time);
   * default: the reducer's `timeoutMs`.
   */
  readonly timeoutMs?: number;
}

/** Current ring membership, as sent by the coordinator in `welcome`. */
export interface Membership {
  /** Data-plane address of every member, indexed by rank (e.g. `tcp://127.0.0.1:40123`). */
  readonly peers: readonly string[];
  /**
   * Each member's same-host (`ipc://`) address, or undefined, indexed by rank; a rank uses its right neighbour's
   * when that member is proven on its own host ({@link hostIds}) and the socket exists there, else the `peers`
   * address. Optional.
   */
  readonly localPeers?: readonly (string | undefined)[];
  /**
   * Each member's host identity (`contract/host-identity.ts`), or undefined, indexed by rank: a `localPeers` entry is
   * used only where the member's host identity equals this process's (a socket file that exists here may be another
   * host's, in a `/tmp` shared over NFS). Absent: no member is taken for a same-host one.
   */
  readonly hostIds?: readonly (string | undefined)[];
  /** This process's rank, 0 … peers.length − 1. */
  readonly rank: number;
  /** Ring epoch (integer ≥ 0); must increase on every reconfiguration. */
  readonly generation: number;
}

/** Counters of an all-reducer, for metrics (all monotonic). */
export interface AllReduceStats {
  /** Completed all-reduce calls. */
  readonly callsTotal: number;
  /** Payload bytes sent on the data plane. */
  readonly sentBytesTotal: number;
  /** Payload bytes received on the data plane. */
  readonly receivedBytesTotal: number;
  /** Messages dropped because they belonged to an older generation. */
  readonly staleMessagesTotal: number;
  /** Messages rejected as malformed, wrong version or unexpected. */
  readonly rejectedMessagesTotal: number;
}

/**
 * A collective that sums (or averages) a float32 buffer across all ranks; every rank ends with the same bytes.
 *
 * Calls are served one at a time in call order; every rank must issue the same calls in the same order.
 */
export interface AllReducer {
  /** Number of ranks in the current membership. */
  readonly worldSize: number;
  /** This process's rank. */
  readonly rank: number;
  /** Wire dtype used for payloads. */
  readonly dtype: WireDtype;
  /** Opens sockets. Idempotent. */
  start(): Promise<unknown>;
  /**
   * Reduces `buffer` in place across all ranks.
   *
   * @param buffer - `[n] float32`, the same n on every rank; overwritten with the reduced values
   * @returns the same `buffer`
   * @throws TrainerError `ERR_BAD_CONFIG` (synchronously) on a deadline that is not finite and > 0 or a tag that is
   *   not integers ≥ 0; `ERR_TIMEOUT` past the deadline, also when a peer's deadline passed first (every rank of the
   *   call then reports a timeout, not a lost worker); `ERR_WORKER_LOST` after {@link abort} (even when the data had
   *   already been reduced: an aborted call never resolves) or when a peer aborted, failed or exited;
   *   `ERR_PROTOCOL` on a length mismatch between ranks
   */
  allReduce(buffer: Float32Array, tag: AllReduceTag, options?: AllReduceCallOptions): Promise<Float32Array>;
  /** Cancels the call in flight and the queued ones (they reject with `ERR_WORKER_LOST`). */
  abort(reason?: string): void;
  /** Counters since start. */
  stats(): AllReduceStats;
  /** Closes sockets; idempotent; pending calls reject. */
  close(): Promise<void>;
}
