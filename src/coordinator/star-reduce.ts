/**
 * Coordinator side of the "star" all-reduce baseline: every worker sends its whole float32 buffer to the
 * coordinator's ROUTER socket, which sums them in rank order (so the result is deterministic) and sends the result
 * back to every worker. The coordinator moves N × bytes in and N × bytes out per call, versus 2(N−1)/N × bytes per
 * worker for the ring: it exists for benchmarks and N = 2 comparisons, never on the training hot path.
 */
import { hostname } from 'node:os';
import { Router } from 'zeromq';
import { isTrainerError, TrainerError } from '../contract/errors.js';
import { decode, encode, type StarPushMessage } from '../contract/protocol/index.js';

/** Options of {@link StarReduceServer}; all optional. */
export interface StarReduceOptions {
  /** Bind address of the ROUTER socket; `*` as port picks an ephemeral one. Default `tcp://127.0.0.1:*`. */
  readonly bindAddress?: string;
  /** A round still missing contributions after this many milliseconds (> 0) is dropped. Default 60 000. */
  readonly roundTimeoutMs?: number;
  /** Called for every rejected, stale or expired message; default: one line on stderr. */
  readonly onWarning?: (warning: TrainerError) => void;
}
/** {@link StarReduceOptions} with every field set. */
export type ResolvedStarReduceOptions = Required<StarReduceOptions>;
/** Defaults of {@link StarReduceServer}. */
export const DEFAULT_STAR_REDUCE: ResolvedStarReduceOptions = Object.freeze({
  bindAddress: 'tcp://127.0.0.1:*',
  roundTimeoutMs: 60_000,
  onWarning: (w: TrainerError) => process.stderr.write(`[star ${hostname()}:${process.pid}] ${w.code}: ${w.message}\n`),
});

/** Counters of the star server (monotonic). */
export interface StarReduceStats {
  readonly roundsTotal: number;
  readonly receivedBytesTotal: number;
  readonly sentBytesTotal: number;
  readonly rejectedMessagesTotal: number;
  readonly expiredRoundsTotal: number;
}

interface Round {
  readonly startedMs: number;
  readonly average: boolean;
  readonly length: number;
  readonly buffers: (Float32Array | undefined)[];
  readonly identities: Buffer[];
  received: number;
}

/**
 * Sums float32 buffers in rank order: `((x0 + x1) + x2) + …`, then optionally divides by N.
 *
 * @param buffers - N arrays `[length] float32`, indexed by rank
 * @returns a new `[length] float32`
 */
export function sumInRankOrder(buffers: readonly Float32Array[], average: boolean): Float32Array {
  const acc = buffers[0].slice();
  for (let r = 1; r < buffers.length; r++) {
    const x = buffers[r];
    for (let i = 0; i < acc.length; i++) acc[i] += x[i];
  }
  if (average) for (let i = 0; i < acc.length; i++) acc[i] /= buffers.length;
  return acc;
}

/** The coordinator's star all-reduce endpoint (see the module comment). */
export class StarReduceServer {
  private readonly options: ResolvedStarReduceOptions;
  private router: Router | undefined;
  private boundAddress = '';
  private closed = false;
  private worldSize = 1;
  private generation = -1;
  private readonly rounds = new Map<string, Round>();
  private counters = { roundsTotal: 0, receivedBytesTotal: 0, sentBytesTotal: 0, rejectedMessagesTotal: 0, expiredRoundsTotal: 0 };

  /** @throws TrainerError `ERR_BAD_CONFIG` when `roundTimeoutMs` is not > 0 */
  constructor(options: StarReduceOptions = {}) {
    this.options = { ...DEFAULT_STAR_REDUCE, ...options };
    const t = this.options.roundTimeoutMs;
    if (!(Number.isFinite(t) && t > 0)) throw new TrainerError('ERR_BAD_CONFIG', `star roundTimeoutMs must be > 0, got ${t}`);
  }

  /** Bound address (empty before {@link start}). */
  get address(): string {
    return this.boundAddress;
  }

  /**
   * Binds the ROUTER socket and starts serving. Idempotent.
   *
   * @returns the bound address, e.g. `tcp://127.0.0.1:40500`
   * @throws TrainerError `ERR_PORT_IN_USE` when the address cannot be bound, `ERR_INTERNAL` after close
   */
  async start(): Promise<string> {
    if (this.closed) throw new TrainerError('ERR_INTERNAL', 'star server start() called after close()');
    if (this.router !== undefined) return this.boundAddress;
    const router = new Router({ linger: 0 });
    try {
      await router.bind(this.options.bindAddress);
    } catch (err) {
      router.close();
      throw new TrainerError('ERR_PORT_IN_USE', `cannot bind star server on ${this.options.bindAddress}`, { cause: err });
    }
    this.router = router;
    this.boundAddress = router.lastEndpoint ?? this.options.bindAddress;
    void this.serve(router);
    return this.boundAddress;
  }

  /**
   * Sets the group served from now on and drops unfinished rounds of older generations.
   *
   * @param worldSize - number of workers, integer ≥ 1
   * @param generation - ring epoch, integer greater than the current one
   * @throws TrainerError `ERR_BAD_CONFIG` on a bad world size or a non-increasing generation
   */
  reconfigure(worldSize: number, generation: number): void {
    if (!Number.isInteger(worldSize) || worldSize < 1) {
      throw new TrainerError('ERR_BAD_CONFIG', `star worldSize must be an integer ≥ 1, got ${worldSize}`);
    }
    if (!Number.isInteger(generation) || generation <= this.generation) {
      throw new TrainerError('ERR_BAD_CONFIG', `star generation must be an integer > ${this.generation}, got ${generation}`);
    }
    this.worldSize = worldSize;
    this.generation = generation;
    this.rounds.clear();
  }

  /** Counters since start. */
  stats(): StarReduceStats {
    return { ...this.counters };
  }

  private async serve(router: Router): Promise<void> {
    while (!router.closed) {
      let identity: Buffer;
      let parts: Buffer[];
      try {
        [identity, ...parts] = await router.receive();
      } catch (err) {
        if (router.closed) return;
        this.warn(new TrainerError('ERR_PROTOCOL', 'star receive failed', { cause: err }));
        continue;
      }
      const ready = this.accept(identity, parts);
      if (ready !== undefined) await this.reply(router, ready.key, ready.round);
    }
  }

  /** Validates and files one contribution; returns the round when it is complete. */
  private accept(identity: Buffer, parts: Buffer[]): { key: string; round: Round } | undefined {
    let m: StarPushMessage;
    let frame: Buffer;
    try {
      const d = decode(parts);
      if (d.message.type !== 'star-push') throw new TrainerError('ERR_PROTOCOL', `star server expects star-push, got ${d.message.type}`);
      [m, frame] = [d.message, d.frames[0]];
    } catch (err) {
      return void this.reject(isTrainerError(err) ? err : new TrainerError('ERR_PROTOCOL', String(err)));
    }
    if (m.generation !== this.generation || m.worldSize !== this.worldSize || m.rank >= this.worldSize) {
      return void this.reject(new TrainerError('ERR_PROTOCOL', `star-push must be generation ${this.generation} with ` +
        `worldSize ${this.worldSize}, got generation ${m.generation}, worldSize ${m.worldSize}, rank ${m.rank}`));
    }
    this.expireRounds();
    const key = `${m.generation}/${m.step}/${m.bucket}`;
    const length = m.byteLength / 4;
    const round = this.rounds.get(key) ?? this.newRound(key, m.average, length);
    if (round.buffers[m.rank] !== undefined || round.length !== length || round.average !== m.average) {
      return void this.reject(new TrainerError('ERR_PROTOCOL', `star-push ${key} from rank ${m.rank}: duplicate, or ` +
        `length ${length} / average ${m.average} differ from the round's ${round.length} / ${round.average}`));
    }
    const aligned = frame.byteOffset % 4 === 0 ? frame : Buffer.from(frame);
    round.buffers[m.rank] = new Float32Array(aligned.buffer, aligned.byteOffset, length);
    round.identities[m.rank] = identity;
    round.received++;
    this.counters.receivedBytesTotal += m.byteLength;
    return round.received === this.worldSize ? { key, round } : undefined;
  }

  private newRound(key: string, average: boolean, length: number): Round {
    const round: Round = { startedMs: performance.now(), average, length, buffers: new Array(this.worldSize), identities: [], received: 0 };
    this.rounds.set(key, round);
    return round;
  }

  private expireRounds(): void {
    const now = performance.now();
    for (const [key, round] of this.rounds) {
      if (now - round.startedMs > this.options.roundTimeoutMs) {
        this.rounds.delete(key);
        this.counters.expiredRoundsTotal++;
        this.warn(new TrainerError('ERR_TIMEOUT', `star round ${key} expired with ${round.received}/${this.worldSize} contributions`));
      }
    }
  }

  private async reply(router: Router, key: string, round: Round): Promise<void> {
    this.rounds.delete(key);
    const sum = sumInRankOrder(round.buffers as Float32Array[], round.average);
    const [generation, step, bucket] = key.split('/').map(Number);
    const frame = Buffer.from(sum.buffer, sum.byteOffset, sum.byteLength);
    const parts = encode({ type: 'star-result', generation, step, bucket, byteLength: frame.byteLength }, [frame]);
    for (const identity of round.identities) {
      try {
        await router.send([identity, ...parts]);
        this.counters.sentBytesTotal += frame.byteLength;
      } catch (err) {
        if (router.closed) return;
        this.warn(new TrainerError('ERR_WORKER_LOST', `star result ${key} could not be sent`, { cause: err }));
      }
    }
    this.counters.roundsTotal++;
  }

  private reject(err: TrainerError): void {
    this.counters.rejectedMessagesTotal++;
    this.warn(err);
  }

  private warn(w: TrainerError): void {
    try {
      this.options.onWarning(w);
    } catch {
      // A throwing warning sink must not stop the server.
    }
  }

  /** Closes the socket; unfinished rounds are dropped. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.router?.close();
    this.router = undefined;
    this.rounds.clear();
  }
}
