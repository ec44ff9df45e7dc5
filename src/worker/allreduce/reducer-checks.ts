/**
 * The argument rules every {@link AllReducer} of this folder applies alike (ring, shared memory, star), so a call or
 * membership one accepts the others accept too, with the same messages.
 */
import { TrainerError } from '../../contract/errors.js';
import type { WireDtype } from '../../contract/protocol/index.js';
import type { AllReduceStats, AllReduceTag, Membership } from '../../training/allreduce/types.js';

/** Default deadline of one all-reduce call, in milliseconds, of every reducer (ring, shared memory, star). */
export const DEFAULT_ALLREDUCE_TIMEOUT_MS = 30_000;

/** Counters of a reducer that has done nothing yet (copy it: `{ ...ZERO_STATS }`). */
export const ZERO_STATS: AllReduceStats = Object.freeze({
  callsTotal: 0, sentBytesTotal: 0, receivedBytesTotal: 0, staleMessagesTotal: 0, rejectedMessagesTotal: 0,
});

/**
 * Checks one call's deadline and tag, before the call is queued.
 * @param timeoutMs - the call's deadline in milliseconds: finite and > 0 (Infinity would overflow a timer or the
 *   native side's nanosecond deadline)
 * @param tag - step and bucket, integers ≥ 0
 * @throws TrainerError `ERR_BAD_CONFIG` naming the rule broken
 */
export function checkCallArguments(timeoutMs: number, tag: AllReduceTag): void {
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new TrainerError('ERR_BAD_CONFIG', `timeoutMs must be a finite number > 0, got ${timeoutMs}`);
  if (!Number.isInteger(tag.step) || tag.step < 0 || !Number.isInteger(tag.bucket) || tag.bucket < 0) {
    throw new TrainerError('ERR_BAD_CONFIG', `tag step and bucket must be integers ≥ 0, got ${JSON.stringify(tag)}`);
  }
}

/**
 * Checks a new membership against the reducer's current generation.
 * @param what - the reducer's name for the message (`ring`, `shm`)
 * @param m - the new membership: 1 … `maxRanks` ZeroMQ endpoints, a rank among them, `localPeers` (when given) one
 *   `ipc://` endpoint or undefined per rank, `hostIds` (when given) one per rank, and a generation above `current`
 * @param current - the reducer's current generation (−1 before the first)
 * @param maxRanks - the largest world size the reducer holds (default unbounded)
 * @throws TrainerError `ERR_BAD_CONFIG` naming the rule broken
 */
export function checkMembership(what: string, m: Membership, current: number, maxRanks = Infinity): void {
  const n = m.peers.length;
  const fail = (rule: string): never => {
    throw new TrainerError('ERR_BAD_CONFIG', `${what} membership ${rule}`);
  };
  if (n < 1) fail('must list ≥ 1 peer, got 0');
  if (n > maxRanks) fail(`must list 1 … ${maxRanks} peers, got ${n}`);
  if (!Number.isInteger(m.rank) || m.rank < 0 || m.rank >= n) fail(`rank must be an integer in [0, ${n - 1}], got ${m.rank}`);
  if (!m.peers.every((p) => /^(tcp|ipc|inproc):\/\/\S+$/.test(p))) fail(`peers must be ZeroMQ endpoints, got ${m.peers}`);
  const local = m.localPeers;
  if (local !== undefined && (local.length !== n || !local.every((p) => p === undefined || /^ipc:\/\/\S+$/.test(p)))) {
    fail(`localPeers must list ${n} ipc:// endpoints or undefined, got ${JSON.stringify(local)}`);
  }
  const hosts = m.hostIds;
  if (hosts !== undefined && (hosts.length !== n || !hosts.every((h) => h === undefined || typeof h === 'string'))) {
    fail(`hostIds must list ${n} host identities or undefined, got ${JSON.stringify(hosts)}`);
  }
  if (!Number.isInteger(m.generation) || m.generation <= current) fail(`generation must be an integer > ${current}, got ${m.generation}`);
}

/**
 * What the ring (`RingAllReduce`, `ring.ts`) and the shared-memory reducer (`ShmAllReduce`, `shm.ts`) both derive from
 * their current membership and wire dtype: the `AllReducer` getters `worldSize`, `rank`, `generation`, `dtype`. A
 * subclass replaces {@link membership} on `reconfigure` and {@link wireDtype} where it can change (the ring's
 * `setDtype`).
 */
export abstract class MembershipGetters {
  /** The current membership; no peers and generation −1 before the first `reconfigure`. */
  protected membership: Membership = { peers: [], rank: 0, generation: -1 };
  /** Dtype of the payloads; float32 unless the subclass sets another. */
  protected wireDtype: WireDtype = 'float32';

  /** Number of ranks in the current membership (1 before the first `reconfigure`). */
  get worldSize(): number {
    return Math.max(1, this.membership.peers.length);
  }
  /** This process's rank in the current membership. */
  get rank(): number {
    return this.membership.rank;
  }
  /** Current generation, the ring epoch (−1 before the first `reconfigure`). */
  get generation(): number {
    return this.membership.generation;
  }
  /** Dtype of the payloads (the shared-memory reducer's is always float32: nothing goes over a wire). */
  get dtype(): WireDtype {
    return this.wireDtype;
  }
}
