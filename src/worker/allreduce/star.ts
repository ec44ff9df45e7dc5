/**
 * Worker side of the "star through the coordinator" all-reduce baseline (see `src/coordinator/star-reduce.ts`):
 * a DEALER socket sends the whole float32 buffer and waits for the rank-ordered sum. Same interface as the ring,
 * float32 only; for benchmarks and N = 2 comparisons.
 */
import { hostname } from 'node:os';
import { Dealer } from 'zeromq';
import { isTrainerError, TrainerError } from '../../contract/errors.js';
import { decode, encode } from '../../contract/protocol/index.js';
import type { AllReduceCallOptions, AllReducer, AllReduceStats, AllReduceTag } from '../../training/allreduce/types.js';
import { Mailbox, SerialQueue, withDeadline } from './mailbox.js';
import { checkCallArguments, DEFAULT_ALLREDUCE_TIMEOUT_MS, ZERO_STATS } from './reducer-checks.js';
import { assertLittleEndian, fromFrame, toFrame } from './wire.js';

/** Options of {@link StarAllReduce}; all optional. */
export interface StarOptions {
  /** Default deadline of one call in milliseconds (> 0). Default 30 000. */
  readonly timeoutMs?: number;
  /** Called for every rejected or stale message; default: one line on stderr. */
  readonly onWarning?: (warning: TrainerError) => void;
}
/** {@link StarOptions} with every field set. */
export type ResolvedStarOptions = Required<StarOptions>;
/** Defaults of {@link StarAllReduce}. */
export const DEFAULT_STAR: ResolvedStarOptions = Object.freeze({
  timeoutMs: DEFAULT_ALLREDUCE_TIMEOUT_MS,
  onWarning: (w: TrainerError) => process.stderr.write(`[star-client ${hostname()}:${process.pid}] ${w.code}: ${w.message}\n`),
});

/** Group membership for the star: no peer addresses, only rank, size and epoch. */
export interface StarMembership {
  readonly rank: number;
  readonly worldSize: number;
  readonly generation: number;
}

/** Star all-reduce client; see the module comment. */
export class StarAllReduce implements AllReducer {
  readonly dtype = 'float32' as const;
  private readonly options: ResolvedStarOptions;
  private readonly mailbox = new Mailbox<Buffer>(1024);
  private readonly queue = new SerialQueue();
  private dealer: Dealer | undefined;
  private closed = false;
  private membership: StarMembership = { rank: 0, worldSize: 1, generation: -1 };
  private controller = new AbortController();
  private counters = { ...ZERO_STATS };

  /**
   * @param coordinatorAddress - the star server's address, e.g. `tcp://127.0.0.1:40500`
   * @throws TrainerError `ERR_BAD_CONFIG` when `timeoutMs` is not > 0
   */
  constructor(private readonly coordinatorAddress: string, options: StarOptions = {}) {
    this.options = { ...DEFAULT_STAR, ...options };
    const t = this.options.timeoutMs;
    if (!(Number.isFinite(t) && t > 0)) throw new TrainerError('ERR_BAD_CONFIG', `star timeoutMs must be > 0, got ${t}`);
  }

  /** Number of ranks. */
  get worldSize(): number {
    return this.membership.worldSize;
  }
  /** This process's rank. */
  get rank(): number {
    return this.membership.rank;
  }

  /** Connects to the coordinator. Idempotent. @throws TrainerError `ERR_INTERNAL` after close */
  async start(): Promise<void> {
    if (this.closed) throw new TrainerError('ERR_INTERNAL', 'star client start() called after close()');
    if (this.dealer !== undefined) return;
    assertLittleEndian();
    this.dealer = new Dealer({ linger: 0, sendHighWaterMark: 0 });
    this.dealer.connect(this.coordinatorAddress);
    void this.receiveLoop(this.dealer);
  }

  /**
   * Sets rank, world size and generation; aborts the call in flight.
   *
   * @throws TrainerError `ERR_BAD_CONFIG` on an invalid membership or a non-increasing generation
   */
  async reconfigure(m: StarMembership): Promise<void> {
    if (!Number.isInteger(m.worldSize) || m.worldSize < 1 || !Number.isInteger(m.rank) || m.rank < 0 || m.rank >= m.worldSize) {
      throw new TrainerError('ERR_BAD_CONFIG', `star membership needs 0 ≤ rank < worldSize, got ${JSON.stringify(m)}`);
    }
    if (!Number.isInteger(m.generation) || m.generation <= this.membership.generation) {
      throw new TrainerError('ERR_BAD_CONFIG', `star generation must be an integer > ${this.membership.generation}, got ${m.generation}`);
    }
    this.abort(`re-forming for generation ${m.generation}`);
    await this.queue.drain();
    this.membership = { ...m };
    this.counters.staleMessagesTotal += this.mailbox.dropOlderThan(m.generation);
    this.controller = new AbortController();
  }

  /**
   * Sums (or averages) `buffer` across ranks through the coordinator, in place.
   *
   * @param buffer - `[n] float32`, the same n on every rank
   * @returns `buffer`
   * @throws TrainerError `ERR_TIMEOUT` past the deadline, `ERR_WORKER_LOST` when aborted, `ERR_PROTOCOL` on a
   *   result of the wrong length, `ERR_INTERNAL` before start/reconfigure
   */
  allReduce(buffer: Float32Array, tag: AllReduceTag, options: AllReduceCallOptions = {}): Promise<Float32Array> {
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    checkCallArguments(timeoutMs, tag);
    const signal = this.controller.signal;
    return this.queue.run(async () => {
      if (signal.aborted) throw signal.reason;
      if (this.dealer === undefined || this.membership.generation < 0) {
        throw new TrainerError('ERR_INTERNAL', 'star allReduce() needs start() and reconfigure() first');
      }
      if (this.worldSize > 1) await this.exchange(this.dealer, buffer, tag, options.average ?? false, performance.now() + timeoutMs, signal);
      this.counters.callsTotal++;
      return buffer;
    });
  }

  private async exchange(dealer: Dealer, buffer: Float32Array, tag: AllReduceTag, average: boolean, deadlineMs: number, signal: AbortSignal): Promise<void> {
    const { rank, worldSize, generation } = this.membership;
    const frame = toFrame(buffer, 'float32');
    const parts = encode({ type: 'star-push', generation, ...pickTag(tag), rank, worldSize, average, byteLength: frame.byteLength }, [frame]);
    const what = `star all-reduce of step ${tag.step} bucket ${tag.bucket}`;
    await withDeadline(dealer.send(parts), deadlineMs, signal, `sending ${what}`);
    this.counters.sentBytesTotal += frame.byteLength;
    const result = await this.mailbox.take(`${generation}/${tag.step}/${tag.bucket}`, deadlineMs, signal, `result of ${what}`);
    const values = fromFrame(result, 'float32');
    if (values.length !== buffer.length) {
      throw new TrainerError('ERR_PROTOCOL', `${what}: expected ${buffer.length} elements, got ${values.length}`);
    }
    this.counters.receivedBytesTotal += result.byteLength;
    buffer.set(values);
  }

  private async receiveLoop(dealer: Dealer): Promise<void> {
    while (!dealer.closed) {
      let parts: Buffer[];
      try {
        parts = await dealer.receive();
      } catch (err) {
        if (dealer.closed) return;
        this.warn(new TrainerError('ERR_PROTOCOL', 'star receive failed', { cause: err }));
        continue;
      }
      this.accept(parts);
    }
  }

  private accept(parts: Buffer[]): void {
    try {
      const { message: m, frames } = decode(parts);
      if (m.type !== 'star-result') throw new TrainerError('ERR_PROTOCOL', `star client expects star-result, got ${m.type}`);
      if (m.generation < this.membership.generation) {
        this.counters.staleMessagesTotal++;
        return;
      }
      if (!this.mailbox.put(`${m.generation}/${m.step}/${m.bucket}`, m.generation, frames[0])) {
        throw new TrainerError('ERR_PROTOCOL', `duplicate star-result for step ${m.step} bucket ${m.bucket}`);
      }
    } catch (err) {
      this.counters.rejectedMessagesTotal++;
      this.warn(isTrainerError(err) ? err : new TrainerError('ERR_PROTOCOL', String(err)));
    }
  }

  private warn(w: TrainerError): void {
    try {
      this.options.onWarning(w);
    } catch {
      // A throwing warning sink must not stop the receive loop.
    }
  }

  /** Cancels the call in flight and queued ones with `ERR_WORKER_LOST`; {@link reconfigure} re-arms. */
  abort(reason = 'aborted'): void {
    if (!this.controller.signal.aborted) this.controller.abort(new TrainerError('ERR_WORKER_LOST', `all-reduce aborted: ${reason}`));
  }

  /** Counters since start. */
  stats(): AllReduceStats {
    return { ...this.counters };
  }

  /** Aborts pending calls and closes the socket. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort('star client closed');
    await this.queue.drain();
    this.dealer?.close();
    this.dealer = undefined;
    this.mailbox.clear();
  }
}

function pickTag(tag: AllReduceTag): AllReduceTag {
  return { step: tag.step, bucket: tag.bucket };
}
