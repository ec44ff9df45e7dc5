/**
 * Membership of the ring as the driver sees it: admission of `expect` workers, rank assignment, the ring
 * announcement (`welcome` with a growing generation), and {@link Cluster.request}: the one primitive that sends a
 * request of the request → reply table to ranks and gathers their typed replies, failing fast when a member is lost.
 */
import { TrainerError } from '../contract/errors.js';
import {
  isReplyTo, requestMessage, type Message, type ReplyOf, type RequestKind, type RequestPayload,
} from '../contract/protocol/index.js';
import type { ControlServer, Member } from './control.js';

/** A reply from one rank. */
export interface Reply<M extends Message = Message> {
  readonly rank: number;
  readonly message: M;
  readonly frames: readonly Buffer[];
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

/** Ring membership and collective requests over a {@link ControlServer}. */
export class Cluster {
  /** Ring epoch; grows on every membership change. */
  generation = 0;
  private requestSeq = 1;
  /** Worker error messages that ended a gather (the run's error names them), with the rank that sent each first. */
  private readonly gatherErrors = new Map<string, number>();
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

  /** Announces the ring (new generation) to every rank and resets the lost signal. */
  async announce(): Promise<void> {
    this.generation++;
    this.lostController = new AbortController();
    const members = this.ranks();
    const ring = members.map((m) => ({ rank: m.rank, dataAddress: m.hello.dataAddress, localDataAddress: m.hello.localDataAddress, sharedMemory: m.hello.sharedMemory }));
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
   * Waits for one reply per rank matching `match`.
   * @param failed - turns a matching reply into the error it reports (e.g. `step-failed`), which ends the gather at once
   * @param command - the command type the replies answer (e.g. `get-state`): a worker's `error` ends the gather only
   *   when it is about that command (a worker's error says `<command>: …`). A late error of an earlier command (a
   *   survivor's `sync-bn: … ERR_WORKER_LOST` from a validation a lost worker broke, sent after recovery began) is
   *   no reply here: it used to fail the state transfer to the replacement or the redo, and recovery started over.
   *   Omitted: any error of the rank.
   * @throws TrainerError ERR_WORKER_LOST when a rank is lost first; ERR_TIMEOUT; the worker's own error when a
   *   rank answers with `error` (its code and message), or `failed`'s error
   */
  async gather<M extends Message>(ranks: readonly number[], match: (m: Message, rank: number) => m is M, what: string, timeoutMs: number,
    failed?: (m: M, rank: number) => TrainerError | null, command?: string): Promise<Reply<M>[]> {
    const byId = new Map(this.ranks().map((m) => [m.id, m.rank]));
    // The first rank that fails ends the gather and the other ranks' waits (a step one rank failed is not waited on
    // for the others: one of them may be the hung worker that made it fail, silent until the step timeout).
    const ended = new AbortController();
    const signal = AbortSignal.any([this.lostSignal, ended.signal]);
    const all = Promise.all(ranks.map((rank) => this.control.waitFor(
      (msg, id) => byId.get(id) === rank && (match(msg, rank) || (msg.type === 'error' && (command === undefined || msg.message.startsWith(`${command}: `)))), `${what} from rank ${rank}`, timeoutMs, signal,
    ).then(({ message, frames }) => {
      if (message.type === 'error') {
        if (!this.gatherErrors.has(message.message)) this.gatherErrors.set(message.message, rank);
        throw new TrainerError(message.code, `rank ${rank}: ${message.message}`);
      }
      const err = failed?.(message as M, rank);
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
    const requestId = this.requestSeq++;
    const ranks = o.ranks ?? this.ranks().map((m) => m.rank);
    const waiting = this.gather(ranks, (m): m is ReplyOf<K> => isReplyTo(kind, requestId, m), o.what ?? kind, o.timeoutMs, undefined, kind);
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
