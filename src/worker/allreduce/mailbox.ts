/**
 * Plumbing shared by the worker-side all-reducers: a keyed mailbox that matches received data-plane messages to
 * the waiting call (with deadline and abort), and a serial call queue.
 */
import { TrainerError } from '../../contract/errors.js';

/** A message parked in the mailbox, tagged with its generation so stale ones can be purged. */
export interface Parked<T> {
  readonly generation: number;
  readonly value: T;
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(err: unknown): void;
}

/**
 * Keyed rendezvous between a socket's receive loop (`put`) and the all-reduce call waiting for that message
 * (`take`). Messages may arrive before or after their taker; the mailbox holds at most `capacity` of them.
 */
export class Mailbox<T> {
  private readonly parked = new Map<string, Parked<T>>();
  private readonly waiters = new Map<string, Waiter<T>>();

  /** @param capacity - most parked messages (integer ≥ 1); more are refused */
  constructor(private readonly capacity: number) {}

  /** Number of parked messages. */
  get size(): number {
    return this.parked.size;
  }

  /**
   * Delivers a message to its waiter, or parks it.
   *
   * @returns `false` (message dropped) when the key is already parked or the mailbox is full
   */
  put(key: string, generation: number, value: T): boolean {
    const waiter = this.waiters.get(key);
    if (waiter !== undefined) {
      this.waiters.delete(key);
      waiter.resolve(value);
      return true;
    }
    if (this.parked.has(key) || this.parked.size >= this.capacity) return false;
    this.parked.set(key, { generation, value });
    return true;
  }

  /**
   * Waits for the message with `key`.
   *
   * @param deadlineMs - time on the monotonic clock (`performance.now()`) after which the wait fails
   * @param signal - aborts the wait
   * @param what - description used in the timeout message (e.g. "chunk 2 from rank 1")
   * @throws TrainerError `ERR_TIMEOUT` past the deadline; the signal's reason when aborted
   */
  take(key: string, deadlineMs: number, signal: AbortSignal, what: string): Promise<T> {
    const ready = this.parked.get(key);
    if (ready !== undefined) {
      this.parked.delete(key);
      return Promise.resolve(ready.value);
    }
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const waitMs = Math.max(0, Math.round(deadlineMs - performance.now()));
      const finish = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.waiters.delete(key);
      };
      const onAbort = (): void => {
        finish();
        reject(signal.reason);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new TrainerError('ERR_TIMEOUT', `timed out after waiting ${waitMs} ms for ${what}`));
      }, waitMs);
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.set(key, {
        resolve: (v) => {
          finish();
          resolve(v);
        },
        reject,
      });
    });
  }

  /** Drops parked messages of generations older than `generation`; returns how many were dropped. */
  dropOlderThan(generation: number): number {
    let dropped = 0;
    for (const [key, p] of this.parked) {
      if (p.generation < generation) {
        this.parked.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  /** Drops every parked message. */
  clear(): void {
    this.parked.clear();
  }
}

/**
 * Races `promise` against a deadline on the monotonic clock (`performance.now()`: a wall clock stepped forward by NTP
 * or `date -s` timed out every wait at once; one stepped back made them an hour longer).
 *
 * @throws TrainerError `ERR_TIMEOUT` naming `what` when the deadline passes first; the signal's reason when aborted
 */
export function withDeadline<T>(promise: Promise<T>, deadlineMs: number, signal: AbortSignal, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const waitMs = Math.max(0, Math.round(deadlineMs - performance.now()));
    const onAbort = (): void => done(() => reject(signal.reason));
    const timer = setTimeout(
      () => done(() => reject(new TrainerError('ERR_TIMEOUT', `timed out after ${waitMs} ms: ${what}`))),
      waitMs,
    );
    const done = (settle: () => void): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      settle();
    };
    if (signal.aborted) return done(() => reject(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => done(() => resolve(v)),
      (err: unknown) => done(() => reject(err)),
    );
  });
}

/**
 * Runs async jobs one at a time in submission order; a failed job does not stop the next.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** Enqueues `job`; resolves or rejects with its result. */
  run<T>(job: () => Promise<T>): Promise<T> {
    const result = this.tail.then(job, job);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves once every job submitted so far has settled. */
  drain(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}
