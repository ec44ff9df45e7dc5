/**
 * The all-reducer of a single process (PyTorch Lightning's `SingleDeviceStrategy`: reduce and broadcast are
 * identities on one device): a world of one rank, where the sum and the average of a buffer are the buffer itself.
 * The single-process `Learner` runs its step through it, so its step has the same shape as a worker's.
 */
import type { AllReduceCallOptions, AllReducer, AllReduceStats, AllReduceTag } from './types.js';

/** Identity all-reduce over one rank; never fails, sends nothing. */
export class LocalAllReducer implements AllReducer {
  readonly worldSize = 1;
  readonly rank = 0;
  readonly dtype = 'float32' as const;
  private calls = 0;

  /** Nothing to open. */
  start(): Promise<void> {
    return Promise.resolve();
  }

  /** Returns `buffer` unchanged: the sum over one rank, and its average (÷ 1). */
  allReduce(buffer: Float32Array, _tag: AllReduceTag, _options?: AllReduceCallOptions): Promise<Float32Array> {
    this.calls += 1;
    return Promise.resolve(buffer);
  }

  /** Nothing in flight to cancel. */
  abort(): void {}

  /** Calls served; no bytes ever travel. */
  stats(): AllReduceStats {
    return { callsTotal: this.calls, sentBytesTotal: 0, receivedBytesTotal: 0, staleMessagesTotal: 0, rejectedMessagesTotal: 0 };
  }

  /** Nothing to close. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
