/**
 * Membership of the ring as the driver sees it: admission of `expect` workers, rank assignment, the ring
 * announcement (`welcome` with a growing generation), and {@link Cluster.request}: the one primitive that sends a
 * request of the request → reply table to ranks and gathers their typed replies, failing fast when a member is lost.
 */
import { TrainerError, type TrainerErrorCode } from '../contract/errors.js';
import { logText } from '../contract/log-text.js';
import { isInputCode } from '../contract/cli-error.js';
import {
  isReplyTo, requestMessage, type ErrorMessage, type Message, type ReplyOf, type RequestKind, type RequestPayload,
} from '../contract/protocol/index.js';
import type { ControlServer, Member } from './control.js';

/** A reply from one rank. */
export interface Reply<M extends Message = Message> {
  readonly rank: number;
  readonly message: M;
  readonly frames: readonly Buffer[];
}

/** One rank's outcome of a gather that tolerates some worker errors ({@link GatherOptions.tolerate}). */
export type Outcome<M extends Message = Message> = Reply<M> | { readonly rank: number; readonly error: TrainerError };

/** Options of {@link Cluster.gather}. */
export interface GatherOptions<M extends Message> {
  /** Names the wait in timeout and loss errors (e.g. `step 4`). */
  readonly what: string;
  /** Longest wait for every reply, milliseconds. */
  readonly timeoutMs: number;
  readonly failed?: (m: M, rank: number) => TrainerError | null;
  readonly requestId?: number;
  readonly tolerate?: (err: TrainerError, rank: number) => boolean;
  readonly signal?: AbortSignal;
}

/** Options of {@link Cluster.request}. */
export interface RequestOptions {
  /** Longest wait for every reply, milliseconds. */
  readonly timeoutMs: number;
  /** Ranks asked; default: every rank in the ring. */
  readonly ranks?: readonly number[];
  /** Binary frames of the request (the `load-state` blob); the same frames go to every asked rank. */
  readonly frames?: Uint8Array[];
  /** Names the request in timeout and loss errors; default: the kind. */
  readonly what?: string;
}

/**
 * The coordinator's error for a worker's failure that ends the run (its `error` or `step-failed` reply): the worker's
 * code and message, except an input code (`ERR_BAD_FLAG`, `ERR_BAD_CONFIG`, `ERR_BAD_DATA`), which is the worker's
 * reported by a worker once workers ran: re-coded `ERR_WORKER_INPUT`, naming the worker's code, so that the coordinator
 * exits 1 (the run failed) and never 2 ("bad input; nothing was started"). The input may be the worker's (its
 * environment) or the run's (`--allreduce shm` on ranks that cannot share memory): the message says which.
 * @param code - the worker's code; @param message - the message, prefixed with the rank (`rank 1: setup: …`)
 */
export function fromWorker(code: TrainerErrorCode, message: string): TrainerError {
  if (!isInputCode(code)) return new TrainerError(code, message);
  return new TrainerError('ERR_WORKER_INPUT', `${message} (reported by the worker as ${code}, after the run had started)`);
}

/** Ring membership and collective requests over a {@link ControlServer}. */
export class Cluster {
  /** Ring epoch; grows on every membership change. */
  generation = 0;
  private requestSeq = 1;
  /** Worker error messages that ended a gather (the run's error names them), with the rank that sent each first. */
  private readonly gatherErrors = new Map<string, number>();
  /** Request ids whose late (stale) error was already said ({@link onUnclaimedError}): said once per request. */
  private readonly staleLogged = new Set<number>();
  private lostController = new AbortController();

  /**
   * @param onAnnounce - called with the new world size and generation before every `welcome` goes out (the star
   *   all-reduce server must serve the same group as the workers, also after respawns and elastic changes)
   */
  constructor(private readonly control: ControlServer, private readonly log: (line: string) => void,
    private readonly onAnnounce: (worldSize: number, generation: number) => void = () => undefined) {
    control.on('lost', (m, reason) => {
      log(`worker rank ${m.rank} (pid ${m.hello.pid} on ${m.hello.host}) lost: ${reason}`);
      if (m.rank >= 0) this.lostController.abort(`rank ${m.rank} lost: ${reason}`);
    });
    control.on('message', (m, msg) => {
      if (msg.type === 'error') this.onUnclaimedError(m, msg);
    });
  }

  /** Members in the ring, by rank. */
  ranks(): Member[] {
    return this.control.live().filter((m) => m.rank >= 0);
  }

  /** Number of ranks. */
  get worldSize(): number {
    return this.ranks().length;
  }

  /** A signal that fires when any ranked member is lost (reset by {@link announce}). */
  get lostSignal(): AbortSignal {
    return this.lostController.signal;
  }

  /**
   * Waits until `count` unranked workers have said hello, then gives them ranks (requested rank if free, else the
   * lowest free one).
   * @param abort - fires when joining can no longer succeed (a local worker process died before joining)
   * @throws TrainerError ERR_TIMEOUT after `timeoutMs` naming how many joined; ERR_WORKER_LOST when aborted
   */
  async admit(count: number, timeoutMs: number, abort?: AbortSignal): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.control.live().filter((m) => m.rank < 0).length < count) {
      if (abort?.aborted) throw new TrainerError('ERR_WORKER_LOST', String(abort.reason));
      if (performance.now() > deadline) {
        const have = this.control.live().filter((m) => m.rank < 0).length;
        throw new TrainerError('ERR_TIMEOUT', `waited ${timeoutMs} ms for ${count} worker(s) to join, ${have} did; check that workers can reach the coordinator (--bind, firewalls) and their logs`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const taken = new Set(this.ranks().map((m) => m.rank));
    const joining = this.control.live().filter((m) => m.rank < 0).slice(0, count);
    for (const m of joining) {
      const want = m.hello.rankRequest;
      if (want !== null && !taken.has(want)) m.rank = want;
    }
    for (const m of joining.filter((j) => j.rank < 0)) {
      let r = 0;
      while (taken.has(r) || joining.some((j) => j.rank === r)) r++;
      m.rank = r;
    }
    for (const m of joining) taken.add(m.rank);
    this.compactRanks();
  }

  /** Renumbers ranks 0…N−1 in rank order (after members left). */
  private compactRanks(): void {
    this.ranks().forEach((m, i) => { m.rank = i; });
  }

  /** Removes lost members and renumbers the survivors. */
  dropLost(): void {
    for (const m of this.control.all()) if (m.state === 'lost') this.control.forget(m.id);
    this.compactRanks();
  }

  /**
   * Refuses the member of rank `rank` (its setup failed on its own machine: `ControlServer.refuse`) and renumbers the
   * others; the caller announces the new ring.
   */
  async refuse(rank: number, code: TrainerErrorCode, message: string): Promise<void> {
    const m = this.ranks().find((x) => x.rank === rank);
    if (!m) return;
    await this.control.refuse(m, code, message);
    this.compactRanks();
  }

  /**
   * Returns the member of rank `rank` to the workers that joined and wait unranked (elastic growth that cannot keep
   * it: it waits for the next growth, keeping its setup) and renumbers the others; the caller announces the new ring.
   */
  unrank(rank: number): void {
    const m = this.ranks().find((x) => x.rank === rank);
    if (!m) return;
    m.rank = -1;
    this.compactRanks();
  }

  /**
   * Announces the ring (new generation) to every rank and resets the lost signal.
   * @throws TrainerError ERR_WORKER_LOST (retryable) when a ranked member is lost and not dropped yet: announcing
   *   would reset the signal its loss fired and leave a gap in the ranks, so the loss would go unseen (a loss during
   *   elastic growth or between a recovery's admission and its announcement); the caller recovers instead
   */
  async announce(): Promise<void> {
    const lost = this.control.all().filter((m) => m.state === 'lost' && m.rank >= 0);
    if (lost.length > 0) {
      throw new TrainerError('ERR_WORKER_LOST', `rank(s) ${lost.map((m) => `${m.rank} (pid ${m.hello.pid} on ${m.hello.host})`).join(', ')} lost while the ring was being re-formed`);
    }
    this.generation++;
    this.lostController = new AbortController();
    const members = this.ranks();
    const ring = members.map((m) => ({
      rank: m.rank, dataAddress: m.hello.dataAddress, localDataAddress: m.hello.localDataAddress, hostId: m.hello.hostId, sharedMemory: m.hello.sharedMemory,
    }));
    this.onAnnounce(members.length, this.generation);
    for (const m of members) {
      m.state = 'ready';
      await this.control.send(m, { type: 'welcome', rank: m.rank, worldSize: members.length, generation: this.generation, ring });
    }
  }

  /** Sends a message to one rank. */
  async send(rank: number, message: Message, frames: Uint8Array[] = []): Promise<void> {
    const m = this.ranks().find((x) => x.rank === rank);
    if (!m) throw new TrainerError('ERR_WORKER_LOST', `rank ${rank} is not in the ring`);
    await this.control.send(m, message, frames);
  }

  /** Sends to every rank (a function of the rank, or the same message). */
  async broadcast(message: Message | ((rank: number) => Message), frames: Uint8Array[] = []): Promise<void> {
    for (const m of this.ranks()) await this.control.send(m, typeof message === 'function' ? message(m.rank) : message, frames);
  }

  /**
   * The rank whose error with this exact message already ended a gather (so the run's own error carries it), or
   * null: a later rank failing the same way (every worker missing the same file) is then said in one line.
   */
  rankThatReported(message: string): number | null {
    return this.gatherErrors.get(message) ?? null;
  }

  /**
   * A worker's `error` that no gather took: said in one line, never failing anything. An error of a request that has
   * ended (another rank failed it first, or it timed out and was redone: a late `sync-bn` error used to fail the redo)
   * is stale: dropped, said once per request; an error about no request (a failed `commit`) is said as it is.
   */
  private onUnclaimedError(m: Member, e: ErrorMessage): void {
    const same = this.rankThatReported(e.message);
    const text = `${e.code}: ${same === null ? logText(e.message) : `the same error as rank ${same}`}`;
    if (e.requestId === null) {
      this.log(`worker rank ${m.rank}: ${text}`);
      return;
    }
    if (this.staleLogged.has(e.requestId)) return;
    this.staleLogged.add(e.requestId);
    if (this.staleLogged.size > 1024) this.staleLogged.delete(this.staleLogged.values().next().value!);
    this.log(`worker rank ${m.rank}: dropped a late error of ${e.command ?? 'a'} request ${e.requestId}, which had ended (${text})`);
  }

  /**
   * Waits for one reply per rank matching `match`.
   * @param o.failed - turns a matching reply into the error it reports (e.g. `step-failed`), which ends the gather at once
   * @param o.requestId - the request the replies answer: a worker's `error` ends the gather only when it names this
   *   request (`requestId`), so a late error of an earlier request (a `sync-bn` that timed out and was redone, a
   *   survivor's report of a validation a lost worker broke) is no reply here. Omitted (the step, which is keyed by
   *   step and generation): the errors that answer no request (a failed `commit`, `abort` or `welcome`).
   * @param o.tolerate - a worker error for which it returns true is the rank's outcome instead of ending the gather
   *   (e.g. a remote worker's own setup failure, refused while the others go on); default: none
   * @param o.signal - ends the gather early (ERR_WORKER_LOST naming its reason)
   * @throws TrainerError ERR_WORKER_LOST when a rank is lost first; ERR_TIMEOUT; the worker's own error when a
   *   rank answers with `error` (its code and message), or `o.failed`'s error
   */
  async gather<M extends Message>(ranks: readonly number[], match: (m: Message, rank: number) => m is M, o: Omit<GatherOptions<M>, 'tolerate'>): Promise<Reply<M>[]> {
    return (await this.gatherOutcomes(ranks, match, o)) as Reply<M>[];
  }

  /** As {@link gather}, where the errors `o.tolerate` accepts are a rank's outcome. */
  private gatherOutcomes<M extends Message>(ranks: readonly number[], match: (m: Message, rank: number) => m is M, o: GatherOptions<M>): Promise<Outcome<M>[]> {
    const byId = new Map(this.ranks().map((m) => [m.id, m.rank]));
    const requestId = o.requestId ?? null;
    // The first rank that fails ends the gather and the other ranks' waits (a step one rank failed is not waited on
    // for the others: one of them may be the hung worker that made it fail, silent until the step timeout).
    const ended = new AbortController();
    const signal = AbortSignal.any([this.lostSignal, ended.signal, ...(o.signal ? [o.signal] : [])]);
    const all = Promise.all(ranks.map((rank) => this.control.waitFor(
      (msg, id) => byId.get(id) === rank && (match(msg, rank) || (msg.type === 'error' && msg.requestId === requestId)), `${o.what} from rank ${rank}`, o.timeoutMs, signal,
    ).then(({ message, frames }): Outcome<M> => {
      if (message.type === 'error') {
        const err = new TrainerError(message.code, `rank ${rank}: ${message.message}`);
        if (o.tolerate?.(err, rank) === true) return { rank, error: err };
        if (!this.gatherErrors.has(message.message)) this.gatherErrors.set(message.message, rank);
        throw fromWorker(message.code, err.message);
      }
      const err = o.failed?.(message as M, rank);
      if (err) throw err;
      return { rank, message: message as M, frames };
    })));
    // A caller that fails before awaiting (e.g. its send throws) must not leave an unhandled rejection behind.
    all.catch(() => undefined).finally(() => ended.abort('the gather ended'));
    return all;
  }

  /**
   * Sends the request `kind` (with a fresh request id) to `o.ranks` (default every rank) and gathers one typed reply
   * per rank, as the request → reply table (`contract/protocol/requests.ts`) names it.
   * @param payload - the request's fields without `type` and `requestId`
   * @returns the replies in the order of the ranks asked
   * @throws TrainerError ERR_WORKER_LOST when an asked rank is lost or not in the ring; ERR_TIMEOUT after
   *   `o.timeoutMs`; the worker's own code when a rank answers with `error`
   */
  async request<K extends RequestKind>(kind: K, payload: RequestPayload<K>, o: RequestOptions): Promise<Reply<ReplyOf<K>>[]> {
    return (await this.requestSettled(kind, payload, o)) as Reply<ReplyOf<K>>[];
  }

  /**
   * As {@link request}, where the worker errors `o.tolerate` accepts are a rank's outcome (`{ rank, error }`) instead
   * of failing the whole request.
   * @throws TrainerError as {@link request}, for the errors not tolerated
   */
  async requestSettled<K extends RequestKind>(kind: K, payload: RequestPayload<K>, o: RequestOptions & Pick<GatherOptions<ReplyOf<K>>, 'tolerate'>): Promise<Outcome<ReplyOf<K>>[]> {
    const requestId = this.requestSeq++;
    const ranks = o.ranks ?? this.ranks().map((m) => m.rank);
    const waiting = this.gatherOutcomes(ranks, (m): m is ReplyOf<K> => isReplyTo(kind, requestId, m), { what: o.what ?? kind, timeoutMs: o.timeoutMs, requestId, tolerate: o.tolerate });
    const message = requestMessage(kind, requestId, payload);
    for (const rank of ranks) await this.send(rank, message, o.frames ?? []);
    return waiting;
  }

  /**
   * Every rank takes rank 0's BatchNorm running statistics (`sync-bn`: an all-reduce of rank 0's statistics with
   * zeros elsewhere, so the copy is exact). The one rank-0 broadcast, used before validation (every rank validates
   * with the same statistics) and before a checkpoint (the saved state is rank 0's). The two callers differ only in
   * when they may skip it (a checkpoint when nothing was trained since the newest one) and in their timeout.
   * @throws TrainerError as {@link request}
   */
  async syncBatchNorm(timeoutMs: number): Promise<void> {
    await this.request('sync-bn', { generation: this.generation }, { timeoutMs });
  }
}
