/**
 * Heartbeats of a worker process, sent from a worker thread so that long synchronous compute on the main thread
 * (a WASM training step takes seconds) never looks like death to the coordinator.
 *
 * The thread holds a ZeroMQ socket, which must be closed inside the thread before the thread's environment goes
 * away (zeromq.js aborts the process otherwise: https://github.com/zeromq/zeromq.js/issues/411). So the thread is
 * not `unref()`ed (a process whose owner forgot `close()` stays up rather than aborting at exit), and
 * {@link HeartbeatThread.close} asks the thread to close its socket and waits for the thread's `exit` event; only a
 * thread that does not answer within the timeout is terminated. Never `process.exit()` before `close()` resolved.
 */
import type { Worker } from 'node:worker_threads';
import { startThread } from '../training/entry.js';
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
  /**
   * Time the main thread gets to close everything and exit after the coordinator went silent, before the thread
   * SIGKILLs the process (a main thread stuck in compute cannot act), milliseconds (default: max(10000, timeoutMs)).
   */
  readonly graceMs?: number;
  /** Coordinator's CURVE public key (Z85), or null for plain TCP. */
  readonly curveServerKey?: string | null;
  /**
   * Called on the main thread when the coordinator went silent (if its event loop is free); `heard`: whether it had
   * ever answered (else it never did: not running, unreachable, or another CURVE key).
   */
  readonly onCoordinatorLost?: (silentMs: number, heard: boolean) => void;
  /** Called on the main thread when the thread failed (it has exited; heartbeats stopped). */
  readonly onError?: (err: Error) => void;
}

/** A heartbeat worker thread; `start()`, `setRank()`, `close()` (idempotent). */
export class HeartbeatThread {
  private worker: Worker | null = null;
  private exited: Promise<void> = Promise.resolve();
  private closing: Promise<void> | null = null;
  /** The thread's exit code once it exited: 0 when it ended by itself, 1 when it was terminated; else null. */
  exitCode: number | null = null;

  constructor(private readonly options: HeartbeatOptions) {}

  /** Starts the thread. */
  start(): void {
    if (this.worker !== null || this.closing !== null) return;
    const workerData: HeartbeatThreadData = {
      endpoint: this.options.endpoint,
      routingId: this.options.routingId,
      intervalMs: this.options.intervalMs,
      timeoutMs: this.options.timeoutMs,
      graceMs: this.options.graceMs ?? Math.max(10_000, this.options.timeoutMs),
      curveServerKey: this.options.curveServerKey ?? null,
    };
    this.worker = startThread(import.meta.url, 'heartbeat-thread', { workerData });
    const w = this.worker;
    this.exited = new Promise((resolve) => w.once('exit', (code) => { this.exitCode = code; resolve(); }));
    w.on('message', (ev: HeartbeatEvent) => {
      if (ev.kind === 'coordinator-lost') this.options.onCoordinatorLost?.(ev.silentMs, ev.heard);
    });
    // An error thrown in the thread (it then exits) must not become an uncaught 'error' event of the process.
    w.on('error', (err) => this.options.onError?.(err));
  }

  /** Tells the thread the rank to put in heartbeats (−1 before admission). */
  setRank(rank: number): void {
    this.worker?.postMessage({ kind: 'rank', rank } satisfies HeartbeatControl);
  }

  /**
   * Stops the thread: it closes its socket and exits; resolves on its `exit` event. A thread that has not exited
   * after `timeoutMs` (milliseconds) is terminated. Idempotent: every call resolves with the same close.
   */
  close(timeoutMs = 10_000): Promise<void> {
    this.closing ??= (async () => {
      const w = this.worker;
      this.worker = null;
      if (w === null) return;
      w.postMessage({ kind: 'stop' } satisfies HeartbeatControl);
      const timer = setTimeout(() => void w.terminate(), timeoutMs);
      await this.exited;
      clearTimeout(timer);
    })();
    return this.closing;
  }
}
