/**
 * Heartbeats of a worker process, sent from a worker thread so that long synchronous compute on the main thread
 * (a WASM training step takes seconds) never looks like death to the coordinator.
 */
import type { Worker } from 'node:worker_threads';
import { startThread } from '../shared/entry.js';
import type { HeartbeatControl, HeartbeatEvent, HeartbeatThreadData } from './heartbeat-thread.js';

/** Options of {@link HeartbeatThread}. */
export interface HeartbeatOptions {
  /** Coordinator endpoint, e.g. `tcp://127.0.0.1:5555`. */
  readonly endpoint: string;
  /** ZeroMQ routing id of the heartbeat socket: the worker's id + `/hb`. */
  readonly routingId: string;
  /** Heartbeat period, milliseconds. */
  readonly intervalMs: number;
  /** Coordinator silence after which the process ends itself, milliseconds. */
  readonly timeoutMs: number;
  /** Time the main thread gets to exit cleanly before SIGKILL, milliseconds (default 3000). */
  readonly graceMs?: number;
  /** Coordinator's CURVE public key (Z85), or null for plain TCP. */
  readonly curveServerKey?: string | null;
  /** Called on the main thread when the coordinator went silent (if its event loop is free). */
  readonly onCoordinatorLost?: (silentMs: number) => void;
}

/** A heartbeat worker thread; `start()`, `setRank()`, `close()` (idempotent). */
export class HeartbeatThread {
  private worker: Worker | null = null;
  private closed = false;

  constructor(private readonly options: HeartbeatOptions) {}

  /** Starts the thread. */
  start(): void {
    if (this.worker !== null || this.closed) return;
    const workerData: HeartbeatThreadData = {
      endpoint: this.options.endpoint,
      routingId: this.options.routingId,
      intervalMs: this.options.intervalMs,
      timeoutMs: this.options.timeoutMs,
      graceMs: this.options.graceMs ?? 3000,
      curveServerKey: this.options.curveServerKey ?? null,
    };
    this.worker = startThread(import.meta.url, 'heartbeat-thread', { workerData });
    this.worker.on('message', (ev: HeartbeatEvent) => {
      if (ev.kind === 'coordinator-lost') this.options.onCoordinatorLost?.(ev.silentMs);
    });
    this.worker.unref();
  }

  /** Tells the thread the rank to put in heartbeats (−1 before admission). */
  setRank(rank: number): void {
    this.worker?.postMessage({ kind: 'rank', rank } satisfies HeartbeatControl);
  }

  /** Stops the thread; waits at most `timeoutMs` for it, then terminates it. */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const w = this.worker;
    this.worker = null;
    if (w === null) return;
    const done = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    w.postMessage({ kind: 'stop' } satisfies HeartbeatControl);
    const timer = setTimeout(() => void w.terminate(), timeoutMs);
    await done;
    clearTimeout(timer);
  }
}
