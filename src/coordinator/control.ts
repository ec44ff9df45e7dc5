/**
 * The coordinator's control plane: a ZeroMQ ROUTER that admits workers, tracks their liveness from heartbeats
 * (each worker has a main socket `<id>` and a heartbeat socket `<id>/hb`), assigns ranks, announces the ring
 * (`welcome`, with a generation that grows on every membership change), and offers request/response helpers with
 * timeouts to the driver. Malformed frames are rejected and logged; they never crash the coordinator.
 */
import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { makeDirs } from './make-dir.js';
import { join } from 'node:path';
import * as zmq from 'zeromq';
import { TrainerError, type TrainerErrorCode } from '../contract/errors.js';
import { loadedBuild } from '../contract/build-stamp.js';
import { curveKeyProblem } from '../contract/curve-key.js';
import {
  MAX_FRAME_BYTES, PROTOCOL_VERSION, decode, encode, peekHeader, type HelloMessage, type Message,
} from '../contract/protocol/index.js';

/** A CURVE keypair (Z85 strings, 40 characters each; Curve25519, ZeroMQ RFC 26). */
export interface CurveKeys {
  readonly publicKey: string;
  readonly secretKey: string;
}

/** File names of the coordinator's keypair in a `--curve-keys` directory. */
export const CURVE_KEY_FILES = Object.freeze({ publicKey: 'coordinator.key', secretKey: 'coordinator.key_secret' });

/**
 * Loads the coordinator's CURVE keypair from `dir`, or creates it on first use (directory 0700, files 0600, so
 * only this user can read the secret). Workers join with `worker --curve-server-key <public key>`.
 * @param dir - the `--curve-keys` directory
 * @throws TrainerError ERR_BAD_FLAG when the files exist but are not 40-character Z85 keys, or cannot be written
 */
export function loadOrCreateCurveKeys(dir: string): CurveKeys {
  const pub = join(dir, CURVE_KEY_FILES.publicKey), sec = join(dir, CURVE_KEY_FILES.secretKey);
  try {
    if (!existsSync(pub) || !existsSync(sec)) {
      // Not mkdirSync(…, { recursive: true }): in Node 20 it loops forever, deaf to SIGTERM, where mkdir(2) answers
      // ENOENT though the parent exists (`--curve-keys /proc/keys` hung the coordinator at 100 % CPU), and names ENOENT
      // for EROFS (make-dir.ts). The folders it creates are made 0700.
      for (const made of makeDirs(dir, '--curve-keys')) chmodSync(made, 0o700);
      const keys = zmq.curveKeyPair();
      writeFileSync(sec, `${keys.secretKey}\n`, { mode: 0o600 });
      writeFileSync(pub, `${keys.publicKey}\n`, { mode: 0o600 });
      chmodSync(sec, 0o600);
      chmodSync(pub, 0o600);
    }
    const keys = { publicKey: readFileSync(pub, 'utf8').trim(), secretKey: readFileSync(sec, 'utf8').trim() };
    const problem = curveKeyProblem(keys.publicKey) ?? curveKeyProblem(keys.secretKey);
    if (problem !== null) {
      throw new TrainerError('ERR_BAD_FLAG', `--curve-keys ${dir}: ${CURVE_KEY_FILES.publicKey} and ${CURVE_KEY_FILES.secretKey} must each hold a 40-character Z85 key (${problem}); delete both to create a new pair`);
    }
    return keys;
  } catch (err) {
    if (err instanceof TrainerError) throw err;
    throw new TrainerError('ERR_BAD_FLAG', `--curve-keys ${dir}: cannot read or create the keypair (${(err as Error).message})`, { cause: err });
  }
}

/** A worker known to the coordinator. */
export interface Member {
  /** Routing id of its main socket. */
  readonly id: string;
  readonly hello: HelloMessage;
  rank: number;
  /** Wall time of the last message or heartbeat, ms since the epoch (for metrics and logs). */
  lastSeenMs: number;
  /**
   * The same moment on the monotonic clock (`performance.now()`, ms), from which silence is timed: a wall clock
   * stepped back (NTP, `date -s`) hid a dead remote worker for as long as the step.
   */
  lastSeenMonoMs: number;
  state: 'joining' | 'ready' | 'lost';
}

/** Options of {@link ControlServer}. */
export interface ControlOptions {
  /** ROUTER endpoint, e.g. `tcp://127.0.0.1:5555` (port 0 = ephemeral). */
  readonly bind: string;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  /** CURVE secret key of the coordinator (Z85), or null. */
  readonly curveSecretKey?: string | null;
  /**
   * Whether a member's death is seen from its process (a local child: exit or closed pipe), so silence must not
   * declare it lost: a loaded machine delays heartbeats, it does not kill processes. Default: none is.
   */
  readonly watchedByProcess?: (m: Member) => boolean;
  /**
   * The build this coordinator runs (`contract/build-stamp.ts`); a worker announcing another build in `hello` is
   * refused with `ERR_STALE_BUILD`. Default: {@link loadedBuild}; null checks nothing (run from sources).
   */
  readonly build?: string | null;
  readonly log: (line: string) => void;
}

/**
 * Silence of a member that counts against it, milliseconds: time since it was last heard, minus the time this
 * process itself could not listen (its event loop was blocked, e.g. by a checkpoint hash, so heartbeats that had
 * arrived were not read yet). A pure policy, so it is tested without sleeping.
 * @param nowMs - current time on the monotonic clock (`performance.now()`), ms
 * @param lastHeardMs - when the member's last message was read, on the same clock
 * @param deafMs - how long this process was blocked since `lastHeardMs` (≥ 0)
 */
export function countedSilenceMs(nowMs: number, lastHeardMs: number, deafMs: number): number {
  return Math.max(0, nowMs - lastHeardMs - deafMs);
}

type Waiter = { match: (m: Message, id: string) => boolean; resolve: (v: { message: Message; frames: readonly Buffer[]; id: string }) => void };

/** Events: `hello` (a new worker), `lost` (a member went silent or reported its own death), `message`. */
export class ControlServer extends EventEmitter<{
  hello: [Member];
  lost: [Member, string];
  message: [Member, Message, readonly Buffer[]];
}> {
  // maxMessageSize (per part): ZeroMQ disconnects a peer that sends a bigger part before buffering it.
  private readonly socket = new zmq.Router({ linger: 0, handover: true, mandatory: false, maxMessageSize: MAX_FRAME_BYTES });
  private readonly members = new Map<string, Member>();
  private waiters: Waiter[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** When the previous heartbeat tick ran, and per member the time this process was blocked since it was heard. */
  private lastTickMs = 0;
  private readonly deafMs = new Map<string, number>();
  /** Process-watched members whose silence was already logged (logged once per silence). */
  private readonly silentLogged = new Set<string>();
  private seq = 0;
  private closed = false;
  /** Frames rejected as malformed (for tests and logs). */
  rejected = 0;
  /** The bound endpoint (with the real port when bound to port 0). */
  endpoint = '';

  constructor(private readonly o: ControlOptions) {
    super();
    if (o.curveSecretKey) {
      this.socket.curveServer = true;
      this.socket.curveSecretKey = o.curveSecretKey;
    }
  }

  /** Binds and starts the receive loop and heartbeats. @throws TrainerError ERR_PORT_IN_USE */
  async start(): Promise<string> {
    const bind = this.o.bind.replace(/:0$/, ':*');
    try {
      await this.socket.bind(bind);
    } catch (err) {
      const inUse = /in use/i.test((err as Error).message);
      throw new TrainerError(inUse ? 'ERR_PORT_IN_USE' : 'ERR_BAD_FLAG',
        inUse ? `--bind ${this.o.bind}: the port is already in use (another run on this host?); pick another with --bind tcp://127.0.0.1:<port> or port 0`
          : `--bind ${this.o.bind}: cannot bind (${(err as Error).message})`, { cause: err });
    }
    this.endpoint = (this.socket.lastEndpoint ?? bind).replace('0.0.0.0', '127.0.0.1');
    void this.receiveLoop();
    this.lastTickMs = performance.now();
    this.timer = setInterval(() => this.tick(), this.o.heartbeatIntervalMs);
    return this.endpoint;
  }

  /** Members by id (including lost ones until {@link forget}). */
  all(): Member[] {
    return [...this.members.values()];
  }

  /** Live members sorted by rank. */
  live(): Member[] {
    return this.all().filter((m) => m.state !== 'lost').sort((a, b) => a.rank - b.rank);
  }

  /** How long `m` has been silent, milliseconds (time this process was blocked not counted: {@link countedSilenceMs}). */
  silentMs(m: Member): number {
    return Math.round(countedSilenceMs(performance.now(), m.lastSeenMonoMs, this.deafMs.get(m.id) ?? 0));
  }

  /** Removes a member from the table. */
  forget(id: string): void {
    this.members.delete(id);
    this.deafMs.delete(id);
    this.silentLogged.delete(id);
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const [identity, ...parts] of this.socket) {
        this.onFrames(identity!, parts);
      }
    } catch (err) {
      if (!this.closed) this.o.log(`control socket failed: ${(err as Error).message}`);
    }
  }

  private onFrames(rawIdentity: Buffer, parts: Buffer[]): void {
    const identity = rawIdentity.toString();
    let message: Message, frames: readonly Buffer[];
    try {
      ({ message, frames } = decode(parts));
    } catch (err) {
      this.rejected++;
      this.o.log(`rejected a frame from peer ${rawIdentity.toString('hex').slice(0, 40)}: ${(err as Error).message}`);
      this.answerOtherVersion(rawIdentity, parts);
      return;
    }
    const id = identity.endsWith('/hb') ? identity.slice(0, -3) : identity;
    const member = this.members.get(id);
    if (message.type === 'hello') {
      if (member) return;
      if (this.refuseOtherBuild(rawIdentity, message)) return;
      const m: Member = { id, hello: message, rank: -1, lastSeenMs: Date.now(), lastSeenMonoMs: performance.now(), state: 'joining' };
      this.members.set(id, m);
      this.emit('hello', m);
      return;
    }
    if (!member) {
      if (message.type !== 'heartbeat') this.o.log(`ignored ${message.type} from unknown worker ${id.slice(0, 40)}`);
      return;
    }
    member.lastSeenMs = Date.now();
    member.lastSeenMonoMs = performance.now();
    this.deafMs.set(id, 0);
    this.silentLogged.delete(id);
    if (message.type === 'heartbeat') return;
    const i = this.waiters.findIndex((w) => w.match(message, id));
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      w!.resolve({ message, frames, id });
    } else {
      this.emit('message', member, message, frames);
    }
  }

  /**
   * A worker that runs other code than this coordinator (another checkout, or a `dist/` built from other sources)
   * would train a replica that computes differently, found only at the next weight checksum: it is refused at
   * `hello` with an `error` it prints, and never admitted. Workers that say nothing of their build (older ones, or
   * run from sources: null) and a coordinator run from sources are not checked.
   * @returns whether the worker was refused
   */
  private refuseOtherBuild(identity: Buffer, hello: HelloMessage): boolean {
    const ours = this.o.build === undefined ? loadedBuild() : this.o.build;
    const theirs = hello.capabilities.build;
    if (ours === null || theirs === undefined || theirs === null || theirs === ours) return false;
    const message = `the worker pid ${hello.pid} on ${hello.host} runs build ${theirs}, this coordinator build ${ours}: ` +
      'run the same sources on both (check out the same commit and run `npm run build` on the worker\'s machine)';
    this.o.log(`refused a worker: ${message}`);
    this.socket.send([identity, ...encode({ type: 'error', code: 'ERR_STALE_BUILD', message, rank: -1, command: 'hello', requestId: null })]).catch(() => undefined);
    return true;
  }

  /** A `hello` of another protocol version gets a readable `error` (which any version can peek) instead of silence. */
  private answerOtherVersion(identity: Buffer, parts: Buffer[]): void {
    const peek = peekHeader(parts);
    if (peek?.type !== 'hello' || peek.v === PROTOCOL_VERSION) return;
    const message = `protocol version mismatch: this coordinator speaks v${PROTOCOL_VERSION}, the worker sent v${JSON.stringify(peek.v)?.slice(0, 20)}; run the same trainer version on the coordinator and the workers`;
    this.socket.send([identity, ...encode({ type: 'error', code: 'ERR_PROTOCOL', message, rank: -1, command: 'hello', requestId: null })]).catch(() => undefined);
  }

  private tick(): void {
    // Monotonic: durations only (a wall clock stepped forward looked like a blocked process, one stepped back hid silence).
    const now = performance.now();
    // A tick much later than its period means this process was blocked: what arrived meanwhile is not read yet.
    const blocked = Math.max(0, now - this.lastTickMs - 2 * this.o.heartbeatIntervalMs);
    this.lastTickMs = now;
    for (const m of this.members.values()) {
      if (m.state === 'lost') continue;
      const deaf = (this.deafMs.get(m.id) ?? 0) + blocked;
      this.deafMs.set(m.id, deaf);
      const silent = Math.round(countedSilenceMs(now, m.lastSeenMonoMs, deaf));
      if (silent > this.o.heartbeatTimeoutMs) {
        if (this.o.watchedByProcess?.(m)) {
          if (!this.silentLogged.has(m.id)) this.o.log(`worker rank ${m.rank} (pid ${m.hello.pid}, local) silent for ${silent} ms; its process is alive, so it is not declared lost (a local worker's death is seen from its exit)`);
          this.silentLogged.add(m.id);
        } else {
          this.markLost(m, `no heartbeat for ${silent} ms (timeout ${this.o.heartbeatTimeoutMs} ms)`);
          continue;
        }
      }
      const hb = encode({ type: 'heartbeat', sender: 'coordinator', rank: -1, seq: this.seq, sentAtMs: Date.now() });
      this.socket.send([`${m.id}/hb`, ...hb]).catch(() => undefined);
    }
    this.seq++;
  }

  /**
   * Refuses a member that joined (its setup failed on its own machine, e.g. a wrong `--data`): it is sent an `error`
   * (`code`, `message`), which makes the worker print it and exit 1, and it leaves the table without being counted as
   * lost (it is no failure of the run: the rendezvous goes on with the workers that can serve it). Its later
   * heartbeats are those of an unknown worker (ignored).
   */
  async refuse(m: Member, code: TrainerErrorCode, message: string): Promise<void> {
    this.forget(m.id);
    await this.send(m, { type: 'error', code, message, rank: -1, command: null, requestId: null }).catch(() => undefined);
  }

  /** Declares a member lost (heartbeat timeout or its process exited). Idempotent. */
  markLost(m: Member, reason: string): void {
    if (m.state === 'lost') return;
    m.state = 'lost';
    this.emit('lost', m, reason);
  }

  /** Sends a message to a member's main socket. */
  async send(m: Member, message: Message, frames: Uint8Array[] = []): Promise<void> {
    if (this.closed) return;
    await this.socket.send([m.id, ...encode(message, frames)]);
  }

  /**
   * Waits for the first message matching `match`, or rejects after `timeoutMs` or when `abort` fires.
   * @throws TrainerError ERR_TIMEOUT naming `what`
   */
  waitFor(match: Waiter['match'], what: string, timeoutMs: number, abort?: AbortSignal): Promise<{ message: Message; frames: readonly Buffer[]; id: string }> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        match,
        resolve: (v) => { clearTimeout(timer); abort?.removeEventListener('abort', onAbort); resolve(v); },
      };
      const drop = (): void => { this.waiters = this.waiters.filter((w) => w !== waiter); };
      const timer = setTimeout(() => { drop(); reject(new TrainerError('ERR_TIMEOUT', `timed out after ${timeoutMs} ms waiting for ${what}`)); }, timeoutMs);
      const onAbort = (): void => { clearTimeout(timer); drop(); reject(new TrainerError('ERR_WORKER_LOST', `${what}: aborted (${String(abort?.reason ?? 'membership changed')})`)); };
      if (abort?.aborted) return onAbort();
      abort?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Stops heartbeats and closes the socket (idempotent). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.socket.close();
  }
}
