/**
 * Worker-thread side of {@link HeartbeatThread}: a DEALER of its own that sends heartbeats to the coordinator
 * every interval and watches the coordinator's heartbeats. It runs beside the main thread, whose synchronous WASM
 * compute can block its event loop for seconds, so liveness never depends on the step length.
 *
 * When the coordinator is silent for longer than the timeout, it tells the main thread (which then closes everything
 * and exits with code 3) and, if the process is still alive after a grace period (the main thread may be stuck in
 * compute), terminates the process with SIGKILL: no orphans.
 *
 * Lifetime: on `stop` the thread clears its timers, closes its socket itself (linger 0) and its port, and so leaves
 * its event loop empty: the thread exits by itself. A ZeroMQ socket must never outlive its thread's environment
 * (zeromq.js aborts the whole process with `terminate called after throwing an instance of 'Napi::Error'` when
 * it does: https://github.com/zeromq/zeromq.js/issues/411), so the main thread waits for this exit before the
 * process exits.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as zmq from 'zeromq';
import { decode, encode } from '../contract/protocol/index.js';

/** What the main thread passes to the heartbeat thread. */
export interface HeartbeatThreadData {
  readonly endpoint: string;
  readonly routingId: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Delay between telling the main thread and SIGKILL of the process, milliseconds. */
  readonly graceMs: number;
  readonly curveServerKey: string | null;
}

/** Main → thread. */
export type HeartbeatControl = { readonly kind: 'rank'; readonly rank: number } | { readonly kind: 'stop' };
/** Thread → main. `stopped`: the socket is closed; the thread exits next. */
/** `heard`: whether any heartbeat of the coordinator ever arrived (a coordinator that never answered vs one that went silent). */
export type HeartbeatEvent = { readonly kind: 'coordinator-lost'; readonly silentMs: number; readonly heard: boolean } | { readonly kind: 'stopped' };

const data = workerData as HeartbeatThreadData;
const port = parentPort!;
const socket = new zmq.Dealer({ routingId: data.routingId, linger: 0, sendHighWaterMark: 16, sendTimeout: 0 });
if (data.curveServerKey !== null) {
  const keys = zmq.curveKeyPair();
  socket.curveServerKey = data.curveServerKey;
  socket.curvePublicKey = keys.publicKey;
  socket.curveSecretKey = keys.secretKey;
}
socket.connect(data.endpoint);

let rank = -1;
let seq = 0;
// Silence is timed on the monotonic clock (performance.now(): CLOCK_MONOTONIC, which neither NTP steps, `date -s` nor
// a suspend move): with Date.now() a wall clock stepped forward past the timeout made every worker declare its live
// coordinator lost at once (exit 3), and one stepped back hid a dead coordinator that long.
let lastHeardMs = performance.now();
let heard = false;
let lost = false;
let killTimer: NodeJS.Timeout | null = null;

port.on('message', (msg: HeartbeatControl) => {
  if (msg.kind === 'rank') rank = msg.rank;
  else stop();
});

const timer = setInterval(() => {
  if (lost) return;
  const silentMs = Math.round(performance.now() - lastHeardMs);
  if (silentMs > data.timeoutMs) {
    lost = true;
    port.postMessage({ kind: 'coordinator-lost', silentMs, heard } satisfies HeartbeatEvent);
    // Last resort when the main thread cannot act (stuck in compute): a clean close sends `stop` well before.
    killTimer = setTimeout(() => process.kill(process.pid, 'SIGKILL'), data.graceMs);
    killTimer.unref();
    return;
  }
  if (!socket.closed) socket.send(encode({ type: 'heartbeat', sender: 'worker', rank, seq: seq++, sentAtMs: Date.now() })).catch(() => undefined);
}, data.intervalMs);

async function receive(): Promise<void> {
  try {
    for await (const parts of socket) {
      try {
        if (decode(parts).message.type === 'heartbeat') {
          lastHeardMs = performance.now();
          heard = true;
        }
      } catch {
        // Malformed frames are ignored here; the main socket logs protocol errors.
      }
    }
  } catch {
    // Socket closed while a receive was pending.
  }
}

/** Clears the timers, closes the socket here in its own thread, says so and closes the port: the thread then exits. */
function stop(): void {
  clearInterval(timer);
  if (killTimer !== null) clearTimeout(killTimer);
  if (!socket.closed) socket.close();
  port.postMessage({ kind: 'stopped' } satisfies HeartbeatEvent);
  port.close();
}

void receive();
