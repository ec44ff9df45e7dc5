/**
 * Worker-thread side of {@link HeartbeatThread}: a DEALER of its own that sends heartbeats to the coordinator
 * every interval and watches the coordinator's heartbeats. It runs beside the main thread, whose synchronous WASM
 * compute can block its event loop for seconds, so liveness never depends on the step length.
 *
 * When the coordinator is silent for longer than the timeout, it tells the main thread and, if the process is still
 * alive after a grace period (the main thread may be stuck in compute), terminates the process: no orphans.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as zmq from 'zeromq';
import { decode, encode } from '../shared/protocol.js';

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
/** Thread → main. */
export type HeartbeatEvent = { readonly kind: 'coordinator-lost'; readonly silentMs: number } | { readonly kind: 'stopped' };

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
let lastHeardMs = Date.now();
let stopping = false;

port.on('message', (msg: HeartbeatControl) => {
  if (msg.kind === 'rank') rank = msg.rank;
  else void stop();
});

const timer = setInterval(() => {
  const silentMs = Date.now() - lastHeardMs;
  if (silentMs > data.timeoutMs && !stopping) {
    stopping = true;
    port.postMessage({ kind: 'coordinator-lost', silentMs } satisfies HeartbeatEvent);
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), data.graceMs).unref();
    return;
  }
  socket.send(encode({ type: 'heartbeat', sender: 'worker', rank, seq: seq++, sentAtMs: Date.now() })).catch(() => undefined);
}, data.intervalMs);

async function receive(): Promise<void> {
  try {
    for await (const parts of socket) {
      try {
        if (decode(parts).message.type === 'heartbeat') lastHeardMs = Date.now();
      } catch {
        // Malformed frames are ignored here; the main socket logs protocol errors.
      }
    }
  } catch {
    // Socket closed.
  }
}

async function stop(): Promise<void> {
  clearInterval(timer);
  socket.close();
  port.postMessage({ kind: 'stopped' } satisfies HeartbeatEvent);
  port.close();
}

void receive();
