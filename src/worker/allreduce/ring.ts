/**
 * Ring all-reduce over ZeroMQ (the Horovod / gloo / NCCL ring; Patarasuk & Yuan 2009): each rank binds one PULL
 * socket and PUSHes to its right neighbour; reduce-scatter in N−1 steps then all-gather in N−1 steps, each step
 * moving 1/N of the buffer, so every rank sends 2(N−1)/N × bytes. The schedule is in
 * `src/training/allreduce/ring-schedule.ts`; every chunk is summed once along a fixed path then copied, so all
 * ranks end with bit-identical buffers.
 *
 * Pipelined (as NCCL's and gloo's rings): a chunk travels as slices of `sliceBytes`, one message each, and a rank
 * forwards each slice as soon as it has added (or copied) it, since the chunk a rank sends at ring step k + 1 is the
 * one it received at step k. The next slice is then on the wire while this one is added, and the 2(N−1) steps
 * overlap instead of running one after the other. Each element still sees the same float32 operations in the same
 * order as with whole chunks. The PULL socket also binds a Unix socket (`ipc://`), which a left neighbour on the
 * same host connects to instead of TCP loopback. Slices go zero-copy (ZeroMQ sends views of the caller's buffer);
 * calls ≥ 4 MiB end with receipt tokens so that none returns while its sends may still read the buffer.
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pull, Push } from 'zeromq';
import { isTrainerError, TrainerError } from '../../contract/errors.js';
import { processAlive } from '../../contract/process.js';
import { hostIdentity, pidSpaceIdentity } from '../../contract/host-identity.js';
import { decode, encode, type ChunkMessage, type ReducePhase, type WireDtype } from '../../contract/protocol/index.js';
import { defaultRingMath, type AddInto, type DivideBy } from '../../training/allreduce/add.js';
import { chunkBounds, receiveChunk, sendChunk } from '../../training/allreduce/ring-schedule.js';
import type {
  AllReduceCallOptions,
  AllReducer,
  AllReduceStats,
  AllReduceTag,
  Membership,
} from '../../training/allreduce/types.js';
import { Mailbox, SerialQueue, withDeadline } from './mailbox.js';
import { checkCallArguments, checkMembership, DEFAULT_ALLREDUCE_TIMEOUT_MS, MembershipGetters, ZERO_STATS } from './reducer-checks.js';
import { assertLittleEndian, fromFrame, roundThroughWire, toFrame } from './wire.js';

/** Options of {@link RingAllReduce}; all optional. */
export interface RingOptions {
  /** Data-plane bind address; `*` as port picks an ephemeral one. Default `tcp://127.0.0.1:*`. */
  readonly bindAddress?: string;
  /** Default deadline of one all-reduce call, in milliseconds (> 0). Default 30 000. */
  readonly timeoutMs?: number;
  /** Wire dtype: `float32`, or `float16` (Horovod fp16 compression: divide by N, sum, round). Default float32. */
  readonly dtype?: WireDtype;
  /** Most received messages parked while waiting for their call (integer ≥ 1). Default 4096. */
  readonly maxPendingMessages?: number;
  /**
   * How long `close()` lets queued sends drain, in milliseconds (≥ 0). Default 0: `close()` aborts every call first,
   * so what is still queued belongs to an aborted all-reduce that no peer will complete; lingering on it only keeps
   * the process from exiting when the peer is gone (zeromq then prints "Waiting for queued ZeroMQ messages").
   */
  readonly closeTimeoutMs?: number;
  /** Called for every rejected or stale message; default: one line on stderr. */
  readonly onWarning?: (warning: TrainerError) => void;
  /**
   * Bytes of float32 values per message (a slice of a chunk; a multiple of 4, ≥ 4096). Default 1 MiB: small enough
   * to pipeline a 25 MiB bucket, large enough that the per-message cost (≈ 20 µs) stays under 1 %. Every rank of a
   * ring must use the same value (a mismatch fails the call with `ERR_PROTOCOL`).
   */
  readonly sliceBytes?: number;
  /**
   * Also bind a Unix socket (`ipc://` in the temporary directory) for left neighbours on the same host, announced
   * as {@link RingAllReduce.localAddress}. Default true; it is skipped when `bindAddress` is not `tcp://`.
   */
  readonly ipc?: boolean;
  /**
   * This process's host identity (`contract/host-identity.ts`); a peer's same-host socket is used only when the
   * membership gives that peer the same one ({@link sameHostAddress}). Default: {@link hostIdentity}(); null: none
   * (every peer over `tcp://`).
   */
  readonly hostId?: string | null;
  /**
   * The reduce-scatter's float32 add; default: the native addon's when it loads, else JavaScript (`add.ts`, which
   * also gives the owner's ÷ N).
   */
  readonly add?: AddInto;
}
/** {@link RingOptions} with every field set. */
export type ResolvedRingOptions = Required<Omit<RingOptions, 'add'>> & Pick<RingOptions, 'add'>;
/** Defaults of {@link RingAllReduce}. */
export const DEFAULT_RING: ResolvedRingOptions = Object.freeze({
  sliceBytes: 1024 * 1024,
  ipc: true,
  hostId: hostIdentity(),
  bindAddress: 'tcp://127.0.0.1:*',
  timeoutMs: DEFAULT_ALLREDUCE_TIMEOUT_MS,
  dtype: 'float32',
  maxPendingMessages: 4096,
  closeTimeoutMs: 0,
  onWarning: (w: TrainerError) => process.stderr.write(`[ring ${hostname()}:${process.pid}] ${w.code}: ${w.message}\n`),
});

/**
 * Validates and fills ring options.
 *
 * @throws TrainerError `ERR_BAD_CONFIG` naming the field and the rule
 */
export function resolveRingOptions(options: RingOptions = {}): ResolvedRingOptions {
  const r = { ...DEFAULT_RING, ...options };
  const bad = (field: string, rule: string, got: unknown): never => {
    throw new TrainerError('ERR_BAD_CONFIG', `ring ${field} must be ${rule}, got ${JSON.stringify(got)}`);
  };
  if (!(Number.isFinite(r.timeoutMs) && r.timeoutMs > 0)) bad('timeoutMs', 'a number > 0', r.timeoutMs);
  if (r.dtype !== 'float32' && r.dtype !== 'float16') bad('dtype', 'float32|float16', r.dtype);
  if (!Number.isInteger(r.maxPendingMessages) || r.maxPendingMessages < 1) {
    bad('maxPendingMessages', 'an integer ≥ 1', r.maxPendingMessages);
  }
  if (!(Number.isFinite(r.closeTimeoutMs) && r.closeTimeoutMs >= 0)) bad('closeTimeoutMs', 'a number ≥ 0', r.closeTimeoutMs);
  if (!Number.isInteger(r.sliceBytes) || r.sliceBytes < 4096 || r.sliceBytes % 4 !== 0) {
    bad('sliceBytes', 'an integer multiple of 4, ≥ 4096', r.sliceBytes);
  }
  if (typeof r.ipc !== 'boolean') bad('ipc', 'a boolean', r.ipc);
  return r;
}

/** One slice of a chunk: elements `[start, end)` of the buffer, `offset` = start − the chunk's start. */
interface Slice {
  readonly start: number;
  readonly end: number;
  readonly offset: number;
}

interface Call {
  readonly buffer: Float32Array;
  readonly tag: AllReduceTag;
  readonly average: boolean;
  readonly deadlineMs: number;
  readonly signal: AbortSignal;
}

type State = 'new' | 'unconfigured' | 'ready' | 'broken' | 'closed';

/** Ring all-reduce of float32 buffers between processes; see the module comment. */
export class RingAllReduce extends MembershipGetters implements AllReducer {
  private readonly options: ResolvedRingOptions;
  private readonly mailbox: Mailbox<{ message: ChunkMessage; frame: Buffer }>;
  private readonly queue = new SerialQueue();
  private readonly add: AddInto;
  private readonly divide: DivideBy;
  private pull: Pull | undefined;
  private push: Push | undefined;
  private boundAddress = '';
  private boundLocalAddress = '';
  private right = '';
  private state: State = 'new';
  private brokenReason = '';
  private controller = new AbortController();
  private counters = { ...ZERO_STATS };

  /** @throws TrainerError `ERR_BAD_CONFIG` on invalid options */
  constructor(options: RingOptions = {}) {
    super();
    this.options = resolveRingOptions(options);
    this.mailbox = new Mailbox(this.options.maxPendingMessages);
    const math = defaultRingMath();
    this.add = this.options.add ?? math.add;
    this.divide = math.divide;
    this.wireDtype = this.options.dtype;
  }

  /**
   * Changes the wire dtype (e.g. to the run's `--allreduce-dtype`, known only after `hello` announced this
   * socket's addresses) between calls: it takes effect after the calls already queued. Every rank must switch
   * before its next call; a chunk of the other dtype is rejected.
   *
   * @throws TrainerError `ERR_BAD_CONFIG` for a dtype other than float32|float16
   */
  async setDtype(dtype: WireDtype): Promise<void> {
    if (dtype !== 'float32' && dtype !== 'float16') {
      throw new TrainerError('ERR_BAD_CONFIG', `ring dtype must be float32|float16, got ${JSON.stringify(dtype)}`);
    }
    await this.queue.run(async () => {
      this.wireDtype = dtype;
    });
  }
  /** Bound data-plane address, e.g. `tcp://127.0.0.1:40123` (empty before {@link start}). */
  get address(): string {
    return this.boundAddress;
  }
  /** The same socket's `ipc://` endpoint for peers on this host (empty when none is bound). */
  get localAddress(): string {
    return this.boundLocalAddress;
  }
  /** The address this rank's PUSH is connected to (its right neighbour's; empty when world size is 1). */
  get rightAddress(): string {
    return this.right;
  }

  /**
   * Binds the data-plane socket and starts receiving. Idempotent.
   *
   * @returns the bound address (to announce in `hello`)
   * @throws TrainerError `ERR_PORT_IN_USE` when the address cannot be bound, `ERR_INTERNAL` after close
   */
  async start(): Promise<string> {
    if (this.state === 'closed') throw new TrainerError('ERR_INTERNAL', 'ring.start() called after close()');
    if (this.state !== 'new') return this.boundAddress;
    assertLittleEndian();
    const pull = new Pull({ linger: 0 });
    try {
      await pull.bind(this.options.bindAddress);
    } catch (err) {
      pull.close();
      throw new TrainerError('ERR_PORT_IN_USE', `cannot bind data plane on ${this.options.bindAddress}`, { cause: err });
    }
    this.pull = pull;
    this.boundAddress = pull.lastEndpoint ?? this.options.bindAddress;
    if (this.options.ipc && this.boundAddress.startsWith('tcp://')) await this.bindLocal(pull);
    this.state = 'unconfigured';
    void this.receiveLoop(pull);
    return this.boundAddress;
  }

  /**
   * Binds the Unix socket for same-host peers (libzmq removes its file when the socket closes). A failure (e.g. a
   * temporary directory path too long for a socket address) is a warning: peers then use TCP.
   */
  private async bindLocal(pull: Pull): Promise<void> {
    const space = pidSpaceIdentity(this.options.hostId);
    sweepStaleRingSockets(tmpdir(), space);
    const address = `ipc://${join(tmpdir(), ringSocketName(process.pid, randomBytes(6).toString('hex'), space))}`;
    try {
      await pull.bind(address);
      this.boundLocalAddress = address;
    } catch (err) {
      this.warn(new TrainerError('ERR_PORT_IN_USE', `cannot bind the same-host data plane on ${address}; peers use TCP`, { cause: err }));
    }
  }

  /**
   * (Re-)forms the ring: aborts the call in flight, connects to the new right neighbour, drops parked messages of
   * older generations.
   *
   * @param membership - peers' data addresses by rank, this rank, and a generation greater than the current one;
   *   the right neighbour's `localPeers` entry is used instead of its `peers` one when it is proven on this host
   *   ({@link sameHostAddress})
   * @throws TrainerError `ERR_BAD_CONFIG` on an invalid membership or a non-increasing generation
   */
  async reconfigure(membership: Membership): Promise<void> {
    checkMembership('ring', membership, this.membership.generation);
    if (this.state === 'new' || this.state === 'closed') {
      throw new TrainerError('ERR_INTERNAL', `ring.reconfigure() needs a started ring, state is ${this.state}`);
    }
    this.abort(`ring re-forming for generation ${membership.generation}`);
    await this.queue.drain();
    this.push?.close();
    this.push = undefined;
    this.membership = { peers: [...membership.peers], rank: membership.rank, generation: membership.generation };
    this.counters.staleMessagesTotal += this.mailbox.dropOlderThan(membership.generation);
    const n = membership.peers.length;
    this.right = '';
    if (n > 1) {
      const r = (membership.rank + 1) % n;
      this.right = sameHostAddress(membership, r, this.options.hostId) ?? membership.peers[r]!;
      this.push = new Push({ linger: 0, sendHighWaterMark: 0 });
      this.push.connect(this.right);
    }
    this.controller = new AbortController();
    this.state = 'ready';
  }


  /**
   * Sums (or averages) `buffer` across the ring, in place; every rank ends with bit-identical bytes.
   * World size 1 returns the buffer unchanged. Calls run one at a time in call order.
   *
   * @param buffer - `[n] float32`, the same n on every rank
   * @param tag - step and bucket, identical on every rank for the same call
   * @returns `buffer`
   * @throws TrainerError `ERR_TIMEOUT` past the deadline (the ring then needs {@link reconfigure});
   *   `ERR_WORKER_LOST` when aborted or when the ring is broken; `ERR_PROTOCOL` when ranks' lengths differ
   */
  allReduce(buffer: Float32Array, tag: AllReduceTag, options: AllReduceCallOptions = {}): Promise<Float32Array> {
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    checkCallArguments(timeoutMs, tag);
    const signal = this.controller.signal;
    return this.queue.run(async () => {
      const call = { buffer, tag, average: options.average ?? false, deadlineMs: performance.now() + timeoutMs, signal };
      this.checkReady(signal);
      try {
        if (this.worldSize > 1) await this.runRing(call);
        this.counters.callsTotal++;
        return buffer;
      } catch (err) {
        this.breakRing(err);
        throw err;
      }
    });
  }

  private checkReady(signal: AbortSignal): void {
    if (signal.aborted) throw signal.reason;
    if (this.state === 'ready') return;
    const why = this.state === 'broken' ? `: ${this.brokenReason}` : '';
    throw new TrainerError('ERR_WORKER_LOST', `ring is ${this.state}${why}; call reconfigure() with a new generation`);
  }

  private breakRing(err: unknown): void {
    if (this.state !== 'ready') return;
    this.state = 'broken';
    this.brokenReason = err instanceof Error ? err.message : String(err);
  }

  /**
   * The pipelined ring: ring steps k = 0 … 2(N−1)−1 (reduce-scatter then all-gather). Step 0 sends this rank's
   * chunk; then for each step, slice by slice, take the left neighbour's slice, add it (reduce-scatter) or copy it
   * (all-gather), finish it when it completes the owned chunk (÷ N, rounding through the wire dtype), and forward
   * it as the same slice of step k + 1.
   */
  private async runRing(call: Call): Promise<void> {
    const n = this.worldSize;
    const rank = this.rank;
    const { buffer, average } = call;
    const dtype = this.wireDtype;
    const fp16 = dtype === 'float16';
    if (fp16) for (let i = 0; i < buffer.length; i++) buffer[i] /= n; // Horovod fp16: divide before the sum
    const steps = 2 * (n - 1);
    // Large float32 calls send their all-gather slices zero-copy too, then wait for the receipt tokens; small ones
    // (the first bucket, BN statistics) copy them, which costs less than the tokens' N − 1 hops.
    const zeroCopy = dtype === 'float32' && buffer.byteLength >= ZERO_COPY_MIN_BYTES;
    for (const slice of this.slices(buffer.length, sendChunk('reduce-scatter', rank, 0, n))) await this.sendSlice(call, 0, slice);
    for (let k = 0; k < steps; k++) {
      const { phase, t } = ringStepOf(k, n);
      const recvIdx = receiveChunk(phase, rank, t, n);
      for (const slice of this.slices(buffer.length, recvIdx)) {
        const target = buffer.subarray(slice.start, slice.end);
        const values = await this.receiveSlice(call, k, recvIdx, slice);
        if (phase === 'all-gather') target.set(values);
        else this.add(target, values);
        if (k === n - 2) {
          // This slice of the owned chunk ((rank + 1) mod N) now holds the complete sum.
          if (average && !fp16) this.divide(target, n);
          roundThroughWire(target, dtype);
        }
        if (k + 1 < steps) await this.sendSlice(call, k + 1, slice, zeroCopy);
      }
    }
    if (zeroCopy) await this.awaitReceipts(call);
    if (fp16 && !average) for (let i = 0; i < buffer.length; i++) buffer[i] *= n;
  }

  /**
   * Slices of chunk `c`: consecutive `sliceBytes / 4`-element ranges, at least one (an empty chunk is one empty
   * slice, so every ring step still carries a message).
   */
  private *slices(length: number, c: number): Generator<Slice> {
    const { start, end } = chunkBounds(length, this.worldSize, c);
    const size = this.options.sliceBytes / 4;
    let from = start;
    do {
      const to = Math.min(end, from + size);
      yield { start: from, end: to, offset: from - start };
      from = to;
    } while (from < end);
  }

  /**
   * Sends slice `slice` of the chunk that ring step k sends. Reduce-scatter slices of float32 go zero-copy (a view of
   * the caller's buffer): such a region is overwritten in this call only by its all-gather value, which cannot
   * arrive before the right neighbour has received this slice, and the call does not return before then.
   * All-gather slices go zero-copy when `zeroCopy` (the call then waits for {@link awaitReceipts} before it returns,
   * since the caller may write its buffer at once), else as copies.
   */
  private async sendSlice(call: Call, k: number, slice: Slice, zeroCopy = false): Promise<void> {
    const { rank, generation } = this.membership;
    const n = this.worldSize;
    const dtype = this.wireDtype;
    const { phase, t } = ringStepOf(k, n);
    const values = call.buffer.subarray(slice.start, slice.end);
    const frame = dtype === 'float32' && (phase === 'reduce-scatter' || zeroCopy)
      ? Buffer.from(values.buffer, values.byteOffset, values.byteLength)
      : toFrame(values, dtype);
    const message: ChunkMessage = {
      type: 'chunk', generation, step: call.tag.step, bucket: call.tag.bucket,
      phase, ringStep: t, chunk: sendChunk(phase, rank, t, n), offset: slice.offset, from: rank, dtype, byteLength: frame.byteLength,
    };
    const what = `${phase} step ${t} slice at ${slice.offset} of tag ${JSON.stringify(call.tag)}`;
    await withDeadline((this.push as Push).send(encode(message, [frame])), call.deadlineMs, call.signal, `sending ${what}`);
    this.counters.sentBytesTotal += frame.byteLength;
  }

  /**
   * Learns that the right neighbour has received every slice this rank sent (so the caller may write its buffer,
   * which zero-copy sends still reference while they are queued): each rank issues a receipt token once it has
   * received all its slices, and forwards the tokens of others; the token that reaches this rank after N − 1 hops
   * was issued by its right neighbour. N − 1 empty messages per rank and call.
   */
  private async awaitReceipts(call: Call): Promise<void> {
    const n = this.worldSize;
    await this.sendToken(call, 0, this.rank);
    for (let hop = 0; hop < n - 1; hop++) {
      const what = `receipt token hop ${hop} of tag ${JSON.stringify(call.tag)}`;
      const got = await this.mailbox.take(mailKey(this.generation, call.tag, 'done', hop, 0), call.deadlineMs, call.signal, what);
      const issuer = (this.rank + n - 1 - hop) % n;
      if (got.message.chunk !== issuer || got.frame.byteLength !== 0) {
        throw new TrainerError('ERR_PROTOCOL', `${what}: expected an empty token of rank ${issuer}, got rank ${got.message.chunk}'s of ${got.frame.byteLength} bytes`);
      }
      if (hop < n - 2) await this.sendToken(call, hop + 1, issuer);
    }
  }

  private async sendToken(call: Call, hop: number, issuer: number): Promise<void> {
    const message: ChunkMessage = {
      type: 'chunk', generation: this.generation, step: call.tag.step, bucket: call.tag.bucket,
      phase: 'done', ringStep: hop, chunk: issuer, offset: 0, from: this.rank, dtype: this.wireDtype, byteLength: 0,
    };
    const what = `sending receipt token hop ${hop} of tag ${JSON.stringify(call.tag)}`;
    await withDeadline((this.push as Push).send(encode(message, [Buffer.alloc(0)])), call.deadlineMs, call.signal, what);
  }

  /** Waits for the left neighbour's slice `slice` of chunk `recvIdx` at ring step k; checks its place and length. */
  private async receiveSlice(call: Call, k: number, recvIdx: number, slice: Slice): Promise<Float32Array> {
    const { rank, generation } = this.membership;
    const n = this.worldSize;
    const { phase, t } = ringStepOf(k, n);
    const what = `${phase} step ${t} slice at ${slice.offset} of tag ${JSON.stringify(call.tag)}`;
    const left = (rank - 1 + n) % n;
    const got = await this.mailbox.take(mailKey(generation, call.tag, phase, t, slice.offset), call.deadlineMs, call.signal, `${what} from rank ${left}`);
    const values = fromFrame(got.frame, this.wireDtype);
    const length = slice.end - slice.start;
    if (got.message.chunk !== recvIdx || values.length !== length) {
      throw new TrainerError('ERR_PROTOCOL', `${what}: expected chunk ${recvIdx}, ${length} elements at offset ${slice.offset} ` +
        `(buffer length ${call.buffer.length}, slices of ${this.options.sliceBytes} bytes), got chunk ${got.message.chunk} ` +
        `of ${values.length}; do all ranks use the same buffer length and sliceBytes?`);
    }
    this.counters.receivedBytesTotal += got.frame.byteLength;
    return values;
  }

  private async receiveLoop(pull: Pull): Promise<void> {
    while (!pull.closed) {
      let parts: Buffer[];
      try {
        parts = await pull.receive();
      } catch (err) {
        if (pull.closed || this.state === 'closed') return;
        this.warn(new TrainerError('ERR_PROTOCOL', 'data-plane receive failed', { cause: err }));
        continue;
      }
      this.accept(parts);
    }
  }

  /** Routes one received multipart message: reject garbage, drop stale, park the rest for its call. */
  private accept(parts: Buffer[]): void {
    let decoded;
    try {
      decoded = decode(parts);
    } catch (err) {
      this.counters.rejectedMessagesTotal++;
      if (isTrainerError(err)) this.warn(err);
      return;
    }
    const m = decoded.message;
    if (m.type !== 'chunk') return this.reject(`data plane accepts only chunk messages, got ${m.type}`);
    const { generation, rank, peers } = this.membership;
    if (m.generation < generation) {
      this.counters.staleMessagesTotal++;
      return this.warn(new TrainerError('ERR_PROTOCOL', `dropped stale chunk of generation ${m.generation} < ${generation}`));
    }
    const left = (rank - 1 + peers.length) % Math.max(1, peers.length);
    if (m.generation === generation && m.from !== left) {
      return this.reject(`chunk must come from left neighbour rank ${left}, got rank ${m.from}`);
    }
    if (m.dtype !== this.wireDtype) return this.reject(`chunk dtype must be ${this.wireDtype}, got ${m.dtype}`);
    if (!this.mailbox.put(mailKey(m.generation, m, m.phase, m.ringStep, m.offset), m.generation, { message: m, frame: decoded.frames[0] })) {
      this.reject(`duplicate chunk or mailbox full (${this.mailbox.size} parked) for step ${m.step} bucket ${m.bucket}`);
    }
  }

  private reject(message: string): void {
    this.counters.rejectedMessagesTotal++;
    this.warn(new TrainerError('ERR_PROTOCOL', message));
  }

  private warn(w: TrainerError): void {
    try {
      this.options.onWarning(w);
    } catch {
      // A throwing warning sink must not kill the receive loop.
    }
  }

  /** Cancels the call in flight and queued ones (`ERR_WORKER_LOST`); the ring then needs {@link reconfigure}. */
  abort(reason = 'aborted'): void {
    if (this.controller.signal.aborted) return;
    this.controller.abort(new TrainerError('ERR_WORKER_LOST', `all-reduce aborted: ${reason}`));
    if (this.state === 'ready') {
      this.state = 'broken';
      this.brokenReason = reason;
    }
  }

  /** Counters since start. */
  stats(): AllReduceStats {
    return { ...this.counters };
  }

  /**
   * Aborts pending calls and closes both sockets. Idempotent. Queued outgoing chunks (of the aborted calls) are
   * dropped, or get `closeTimeoutMs` to drain when that is set.
   */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.abort('ring closed');
    this.state = 'closed';
    await this.queue.drain();
    if (this.push !== undefined) {
      this.push.linger = this.options.closeTimeoutMs;
      this.push.close();
    }
    this.pull?.close();
    this.push = undefined;
    this.pull = undefined;
    this.mailbox.clear();
  }
}

/** Calls of at least this many bytes send all-gather slices zero-copy and exchange receipt tokens. */
const ZERO_COPY_MIN_BYTES = 4 * 1024 * 1024;

function mailKey(generation: number, tag: AllReduceTag, phase: ReducePhase | 'done', ringStep: number, offset: number): string {
  return `${generation}/${tag.step}/${tag.bucket}/${phase}/${ringStep}/${offset}`;
}

/** Phase and step within it of ring step k of 2(N−1) (reduce-scatter's N−1 steps, then all-gather's). */
function ringStepOf(k: number, n: number): { phase: ReducePhase; t: number } {
  return k < n - 1 ? { phase: 'reduce-scatter', t: k } : { phase: 'all-gather', t: k - (n - 1) };
}

/**
 * The file name of a ring's Unix socket: `pets-ring-<pid>-<12 hex digits>-<pid-space identity>`; without one (no
 * procfs), `pets-ring-<pid>-<12 hex digits>`, which no sweep removes. The pid-space identity (`pidSpaceIdentity`:
 * kernel and pid namespace) tells the files whose pids this process can check from those of other hosts that share
 * the directory (a `/tmp` over NFS) or of containers of this kernel that share it, whose pids mean nothing here.
 */
export function ringSocketName(pid: number, random: string, space: string | null): string {
  return `pets-ring-${pid}-${random}${space === null ? '' : `-${space}`}`;
}

/**
 * Removes the Unix socket files of ring processes of this pid space that are gone (`ringSocketName` with this
 * process's pid-space identity, whose pid no longer runs): libzmq unlinks its file when the socket closes, but a
 * worker killed with SIGKILL leaves it in the temporary directory, one per kill. Each ring sweeps before it binds its
 * own. Files of live pids, of other hosts or of other pid namespaces of this kernel (a shared `/tmp`, containers:
 * their pids do not run here, and removing a live peer's socket broke its same-host neighbours' reconnects), of
 * other names, or that cannot be removed (another user's) are left.
 * @param dir - the directory the ring binds its sockets in (`os.tmpdir()`)
 * @param space - this process's pid-space identity (default `pidSpaceIdentity()` of `contract/host-identity.ts`);
 *   null: nothing is removed
 * @returns the names removed
 */
export function sweepStaleRingSockets(dir: string, space: string | null = pidSpaceIdentity()): string[] {
  const removed: string[] = [];
  let names: string[];
  if (space === null) return removed;
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const match = /^pets-ring-(\d+)-[0-9a-f]{12}-([0-9a-f]{16})$/.exec(name);
    if (match === null || match[2] !== space || processAlive(Number(match[1]))) continue;
    try {
      if (!lstatSync(join(dir, name)).isSocket()) continue;
      unlinkSync(join(dir, name));
      removed.push(name);
    } catch {
      // gone meanwhile, or not ours to remove
    }
  }
  return removed;
}

/**
 * Rank `r`'s same-host (`ipc://`) address when the member is proven to be on this host, else undefined (use its
 * `tcp://` one). Proof: its host identity (hash of the kernel's boot id, from its `hello`; none, hence TCP, where
 * there is no boot id) equals this process's, and its socket file exists here. A socket file alone proved nothing: in
 * a `/tmp` shared over NFS (or a volume mounted on two machines) another host's socket file exists too, connecting to
 * it reaches nobody, and every all-reduce with that peer timed out. Ranks in containers of one kernel that share
 * `/tmp` keep the socket whatever their host names (one boot id; a Unix socket works across them).
 * @param ownHostId - this process's host identity (null: none proven, every peer over TCP)
 * @param isSocket - whether the address names a socket here (default {@link isLocalSocket})
 */
export function sameHostAddress(membership: Membership, r: number, ownHostId: string | null,
  isSocket: (address: string) => boolean = isLocalSocket): string | undefined {
  const local = membership.localPeers?.[r];
  if (local === undefined || ownHostId === null || membership.hostIds?.[r] !== ownHostId) return undefined;
  return isSocket(local) ? local : undefined;
}

/** Whether an `ipc://` endpoint names a Unix socket that exists on this host's file system (one half of {@link sameHostAddress}). */
export function isLocalSocket(address: string): boolean {
  if (!address.startsWith('ipc://')) return false;
  try {
    return statSync(address.slice('ipc://'.length)).isSocket();
  } catch {
    return false;
  }
}
