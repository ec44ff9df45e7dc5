/**
 * The worker process's actor: joins the coordinator over a ZeroMQ DEALER, binds its data-plane socket for the
 * ring, and executes the coordinator's commands one at a time (setup, stage, step, commit/abort, validate,
 * state transfer, BatchNorm sync, checksum, shutdown). Heartbeats run on their own thread (see `heartbeat.ts`).
 * A malformed or unexpected message is logged and answered with an `error`, never a crash.
 */
import { randomBytes } from 'node:crypto';
import { logText } from '../contract/log-text.js';
import { hostname } from 'node:os';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { availableParallelism } from 'node:os';
import * as zmq from 'zeromq';
import type { AllReducer } from '../training/allreduce/types.js';
import { initBackend, type BackendRequest } from '../training/compute/backend.js';
import { releaseBackend } from '../training/compute/release.js';
import { archModel } from '../contract/config.js';
import { ImagePool } from '../training/data/pool.js';
import { TrainerError, isTrainerError } from '../contract/errors.js';
import { loadedBuild } from '../contract/build-stamp.js';
import { Replica } from '../training/learner/replica.js';
import { resolvePretrainedWeights } from '../training/model/pretrained.js';
import {
  decode, encode, errorReply, peekHeader, replyMessage, type Message, type SetupMessage, type ReplyPayload, type RequestMessage, type SharedMemorySupport,
} from '../contract/protocol/index.js';
import { decodeRunSetup, type RunSetup } from '../contract/run-setup.js';
import { RingAllReduce } from './allreduce/ring.js';
import { loadShmModule, segmentDirectory, ShmAllReduce } from './allreduce/shm.js';
import { ShmProbe } from './allreduce/shm-probe.js';
import { sharedMemorySupport, TransportSelector } from './allreduce/transport.js';
import { StarAllReduce } from './allreduce/star.js';
import { HeartbeatThread } from './heartbeat.js';
import { decodeReplicaState, encodeReplicaState } from '../training/learner/state-codec.js';
import { WorkerTrainer } from './trainer.js';
import { hostIdentity } from '../contract/host-identity.js';

/** This host's identity, announced in `hello` (peers use this worker's `ipc://` socket only where theirs is the same). */
const HOST_ID = hostIdentity();

/** Options of {@link Worker}. */
export interface WorkerOptions {
  /** Coordinator endpoint, e.g. `tcp://127.0.0.1:5555`. */
  readonly connect: string;
  readonly backend: BackendRequest;
  /** Local data root overriding the coordinator's (remote workers). */
  readonly dataRoot: string | null;
  /** Rank to ask for (e.g. a respawn), or null. */
  readonly rank: number | null;
  /** Data-plane bind address (`tcp://<ip>:*` for remote workers so peers can reach it). */
  readonly dataBind: string;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  /** Coordinator's CURVE public key (Z85) or null. */
  readonly curveServerKey: string | null;
  /**
   * The slot of a local worker (`localWorkerSlot`, contract/local-pipe.ts), or null / absent for a remote worker. A local
   * worker's coordinator is its parent, whose death is seen from the control pipe closing: coordinator silence alone
   * then never ends the process, since a loaded machine delays heartbeats. Its errors reach the user from the
   * coordinator (same terminal), so it logs them in short; slot 0 alone explains the backend choice in full.
   */
  readonly localSlot?: number | null;
  readonly log: (line: string) => void;
}

/**
 * Where this worker finds the run's items: `--data` (as the coordinator's `--data`: the folder of images or one
 * holding `images/`), else the coordinator's own root. Every item of the run's listing must be there, so a wrong folder
 * fails the setup with a clear error (the coordinator then refuses this worker) instead of training on skipped files.
 * @throws TrainerError ERR_DATA naming the folders tried and the missing items
 */
export function localDataRoot(given: string | null, setup: Pick<RunSetup, 'dataRoot' | 'paths'>): string {
  const candidates = given === null ? [resolve(setup.dataRoot)] : [resolve(given), resolve(given, 'images')];
  const first = setup.paths[0];
  if (first === undefined) return candidates[0]!;
  const found = candidates.find((dir) => existsSync(join(dir, first)));
  const which = given === null ? 'data root (the coordinator\'s)' : `--data ${given}`;
  if (found === undefined) {
    throw new TrainerError('ERR_DATA', `worker ${which}: item ${first} not found in ${candidates.join(' or ')}; pass --data <this machine's copy of the coordinator's data folder>`);
  }
  // The whole listing, not its first item: another folder of the same kind (an older or partial copy) holds the first
  // item and lacks others, which the loader would skip as unreadable, step after step, on this worker alone.
  const missing = setup.paths.filter((p) => !existsSync(join(found, p)));
  if (missing.length > 0) {
    throw new TrainerError('ERR_DATA', `worker ${which}: ${missing.length} of the run's ${setup.paths.length} items are not in ${found} (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''}): it is not a copy of the coordinator's data; pass --data <this machine's copy of the coordinator's data folder>`);
  }
  return found;
}

/**
 * Exit codes of a worker process (`npx worker`, and local workers spawned by the coordinator), documented in
 * docs/fault-tolerance.md. Every ending closes everything first ({@link Worker.close}); a process killed by the
 * heartbeat thread's last resort (main thread stuck after the coordinator went silent) ends by SIGKILL instead.
 */
export const WORKER_EXIT = Object.freeze({
  /** The coordinator said `shutdown` (run finished, failed or stopped there). */
  ok: 0,
  /** Setup failed, the coordinator refused this worker, or an unexpected error. */
  failed: 1,
  /** A bad flag: nothing was started. */
  badFlag: 2,
  /** The coordinator went silent for longer than `--heartbeat-timeout-ms`. */
  coordinatorLost: 3,
  /** Stopped by SIGINT (128 + 2), for a worker started by hand; local workers leave SIGINT to the coordinator. */
  sigint: 130,
  /** Stopped by SIGTERM (128 + 15). */
  sigterm: 143,
});

/** A worker process's main actor; `run()` resolves with the exit code when the coordinator says shutdown. */
export class Worker {
  private readonly id = randomBytes(8).toString('hex');
  private readonly socket = new zmq.Dealer({ linger: 1000 });
  private readonly heartbeat: HeartbeatThread;
  private ring: RingAllReduce | null = null;
  private star: StarAllReduce | null = null;
  /** The reducer of the current generation under `--allreduce auto|ring|shm` (ring, shm, or one refusing every call). */
  private transport: TransportSelector | null = null;
  /** This worker's probe in the segment directory: peers choose shared memory only where they read it back. */
  private probe: ShmProbe | null = null;
  /** The generation whose transport was last chosen. */
  private transportGeneration = -1;
  private rank = -1;
  private worldSize = 0;
  private generation = -1;
  private peers: string[] = [];
  /** Same-host (`ipc://`) addresses of the ring members, by rank, from `welcome`. */
  private localPeers: (string | undefined)[] = [];
  /** Host identities of the ring members, by rank, from `welcome` (a same-host address counts only with this host's). */
  private hostIds: (string | undefined)[] = [];
  /** What each ring member announced about the shared-memory all-reduce, by rank, from `welcome`. */
  private sharedMemory: (SharedMemorySupport | undefined)[] = [];
  private setup: RunSetup | null = null;
  private replica: Replica | null = null;
  private pool: ImagePool | null = null;
  private trainer: WorkerTrainer | null = null;
  /** The one close in progress or done ({@link close} is idempotent: every caller awaits the same one). */
  private closing: Promise<void> | null = null;
  /** The command being processed and those queued behind it. Never rejects. */
  private chain: Promise<void> = Promise.resolve();
  private stopCode: number | null = null;
  private resolveStopped!: (code: number) => void;
  /** Resolves with the stop code when {@link stop} is called. */
  private readonly stopped = new Promise<number>((resolve) => { this.resolveStopped = resolve; });
  private inFlightStep: number | null = null;
  /** A BatchNorm sync (an all-reduce) is running: a new ring (`welcome`) must interrupt it too. */
  private inFlightSync = false;
  /** Newest ring generation announced (`welcome` seen by the receive loop, possibly not yet processed). */
  private announcedGeneration = -1;
  /** A step aborted while it was still queued, with the newest generation announced at that moment. */
  private abortedBeforeStart: { step: number; generation: number } | null = null;
  private refusal: string | null = null;

  constructor(private readonly o: WorkerOptions) {
    this.socket.routingId = this.id;
    if (o.curveServerKey) {
      const keys = zmq.curveKeyPair();
      this.socket.curveServerKey = o.curveServerKey;
      this.socket.curvePublicKey = keys.publicKey;
      this.socket.curveSecretKey = keys.secretKey;
    }
    this.heartbeat = new HeartbeatThread({
      endpoint: o.connect, routingId: `${this.id}/hb`, intervalMs: o.heartbeatIntervalMs,
      timeoutMs: this.isLocal() ? Number.MAX_SAFE_INTEGER : o.heartbeatTimeoutMs,
      curveServerKey: o.curveServerKey,
      onCoordinatorLost: (ms, heard) => {
        // A spare (joined a full ring) or a worker still waiting to be admitted has heard the coordinator: it did
        // answer, so 'never answered (is it running and reachable …?)' sent the user after the wrong problem.
        const why = this.rank >= 0 ? 'stopped answering (it exited or the network failed)'
          : heard ? 'stopped answering before it admitted this worker (it exited or the network failed; this worker was waiting to join, or as a spare)'
            : `never answered (is it running and reachable at ${o.connect}? with --curve-keys, pass its public key as --curve-server-key)`;
        o.log(`ERR_WORKER_LOST: coordinator ${why}: silent for ${ms} ms (--heartbeat-timeout-ms ${o.heartbeatTimeoutMs}); exiting`);
        this.stop(WORKER_EXIT.coordinatorLost);
      },
      onError: (err) => o.log(`heartbeat thread failed: ${err.message}; the coordinator will stop hearing this worker`),
    });
  }

  /** Why the coordinator refused this worker (`coordinator refused this worker: CODE: message`), or null. */
  get refused(): string | null {
    return this.refusal;
  }

  /**
   * Sends to the coordinator. Once the worker is stopping ({@link stop}: the coordinator said `shutdown`, a signal, a
   * lost coordinator, an error) the message is dropped: the coordinator reads nothing after its `shutdown` (it
   * closes its ROUTER), and otherwise it sees this worker leave from its exit or its silence. A reply sent then
   * (e.g. a `get-state` queued behind a step that waited for a dead peer) would only sit in the control socket for
   * a peer that is gone and hold the exit (zeromq's "Waiting for queued ZeroMQ messages to be delivered").
   */
  private async send(msg: Message, frames: Uint8Array[] = []): Promise<void> {
    if (this.stopCode !== null || this.socket.closed) return;
    await this.socket.send(encode(msg, frames));
  }

  /** Answers `request` with the reply the request → reply table names for it. */
  private reply<M extends RequestMessage>(request: M, payload: ReplyPayload<M['type']>, frames: Uint8Array[] = []): Promise<void> {
    return this.send(replyMessage(request, this.rank, payload), frames);
  }

  /**
   * Joins and serves commands until the coordinator says `shutdown`, {@link stop} is called (a signal, or the
   * coordinator went silent) or the coordinator refuses this worker; then closes everything ({@link close}).
   * @returns the exit code ({@link WORKER_EXIT}): 0 after `shutdown`, the code given to {@link stop}, 1 when refused
   * @throws whatever setup throws (backend, data-plane bind): the caller closes and exits 1
   */
  async run(): Promise<number> {
    try {
      return await Promise.race([this.serve(), this.stopped]);
    } finally {
      await this.close();
    }
  }

  /**
   * Asks the worker to stop: `run()` stops taking commands, closes everything and resolves with `code`. A later
   * call does not change the code. Safe before `run()` and during setup.
   */
  stop(code: number): void {
    if (this.stopCode !== null) return;
    this.stopCode = code;
    this.resolveStopped(code);
  }

  /** Whether this is a local worker (spawned by its coordinator: {@link WorkerOptions.localSlot}). */
  private isLocal(): boolean {
    return this.o.localSlot != null;
  }

  private async serve(): Promise<number> {
    const choice = await initBackend(this.o.backend);
    // Local workers of one machine reject the same backends for the same reasons: the first slot says why, every
    // worker says which backend and device it uses.
    this.o.log(this.isLocal() && this.o.localSlot !== 0 ? choice.brief : choice.summary);
    if (this.stopCode !== null) return this.stopCode;
    this.ring = new RingAllReduce({ bindAddress: this.o.dataBind, onWarning: (w) => this.o.log(`ring: ${w.code}: ${w.message}`) });
    const dataAddress = await this.ring.start();
    const ring = this.ring;
    // Before `hello` names the same-host socket, so that any rank told of this one in a `welcome` can look for it.
    if (ring.localAddress !== '') {
      this.probe = new ShmProbe(ring.localAddress, segmentDirectory());
      const failed = this.probe.write();
      if (failed !== null) this.o.log(`${failed}; no ring with this worker will use shared memory`);
    }
    this.transport = new TransportSelector(ring, () => new ShmAllReduce({ timeoutMs: this.setup!.allreduceTimeoutMs }), this.o.log);
    if (this.stopCode !== null) return this.stopCode;
    this.socket.connect(this.o.connect);
    this.heartbeat.start();
    await this.send({
      type: 'hello', rankRequest: this.o.rank, dataAddress, ...(this.ring.localAddress === '' ? {} : { localDataAddress: this.ring.localAddress }),
      sharedMemory: sharedMemorySupport(loadShmModule()),
      pid: process.pid, host: hostname(), ...(HOST_ID === null ? {} : { hostId: HOST_ID }),
      capabilities: { backend: choice.tfName, wireDtypes: ['float32', 'float16'], maxFrameBytes: 512 * 1024 * 1024, build: loadedBuild() },
    });
    this.o.log(`joining the coordinator at ${this.o.connect}`);
    // Commands run one at a time in arrival order; an `abort` or a new `welcome` also cancels an all-reduce in
    // flight right away (its step then fails and is dropped), so a dead peer never holds the survivors.
    let refused: string | null = null;
    for await (const parts of this.socket) {
      if (this.stopCode !== null) break;
      let msg: Message, frames: readonly Buffer[];
      try {
        ({ message: msg, frames } = decode(parts));
      } catch (err) {
        const peek = peekHeader(parts);
        if (peek?.type === 'error' && peek.message !== null) {
          // A coordinator of another protocol version refused us: its error is still readable.
          refused = `coordinator refused this worker: ${peek.code ?? 'ERR_PROTOCOL'}: ${peek.message}`;
          break;
        }
        this.o.log(`rejected a message from the coordinator: ${(err as Error).message}`);
        continue;
      }
      // The coordinator sends an `error` only to refuse a worker: at `hello` (another build), or after its setup failed
      // on this machine (a wrong --data): the rendezvous goes on without it, and it exits with the reason.
      if (msg.type === 'error') {
        refused = `coordinator refused this worker: ${msg.code}: ${msg.message}`;
        break;
      }
      if ((msg.type === 'abort' && this.inFlightStep === msg.step) || (msg.type === 'welcome' && (this.inFlightStep !== null || this.inFlightSync))) {
        this.reducer().abort(`${msg.type} from the coordinator`);
      }
      // Commands still queued behind the one in progress may be stale by now: remember what makes them so, and
      // process() refuses them at once instead of entering an all-reduce with a dead peer (which would hold this
      // worker until the all-reduce timeout while the coordinator waits for its next reply).
      if (msg.type === 'welcome') this.announcedGeneration = Math.max(this.announcedGeneration, msg.generation);
      if (msg.type === 'abort' && this.inFlightStep !== msg.step) this.abortedBeforeStart = { step: msg.step, generation: this.announcedGeneration };
      if (msg.type === 'shutdown') {
        this.o.log(`shutdown: ${msg.reason}`);
        this.stop(WORKER_EXIT.ok);
        break;
      }
      const m = msg, f = frames;
      this.chain = this.chain.then(() => this.process(m, f)).catch((err: unknown) => {
        if (this.closing === null) this.o.log(`${m.type}: reply not sent: ${(err as Error).message}`);
      });
    }
    if (refused !== null) {
      this.refusal = refused;
      this.o.log(refused);
      return WORKER_EXIT.failed;
    }
    // The loop also ends when close() closed the socket (after stop()): the stop code wins the race in run().
    return this.stopCode ?? WORKER_EXIT.failed;
  }

  private async process(msg: Message, frames: readonly Buffer[]): Promise<void> {
    // A command still queued when the worker began stopping is not started: nobody awaits its reply.
    if (this.stopCode !== null) return;
    try {
      this.refuseStale(msg);
      if (msg.type === 'step') this.inFlightStep = msg.step;
      if (msg.type === 'sync-bn') this.inFlightSync = true;
      await this.handle(msg, frames);
    } catch (err) {
      const code = isTrainerError(err) ? err.code : 'ERR_INTERNAL';
      if (this.stopCode !== null) return; // e.g. a step cut short by close() (its all-reduce aborted): nobody to tell
      // A local worker's error reaches the user from its coordinator (same terminal), which prints it in full: said
      // once there, not once per process. A remote worker's own terminal gets it in full.
      this.o.log(`${msg.type} failed: ${code}: ${this.isLocal() ? 'sent to the coordinator, which reports it' : logText((err as Error).message)}`);
      if (msg.type === 'step') await this.send({ type: 'step-failed', step: msg.step, generation: msg.generation, rank: Math.max(0, this.rank), code, message: (err as Error).message.slice(0, 4000) });
      else await this.send(errorReply(msg, this.rank, code, `${msg.type}: ${(err as Error).message}`.slice(0, 4000)));
    } finally {
      if (msg.type === 'step') this.inFlightStep = null;
      if (msg.type === 'sync-bn') this.inFlightSync = false;
    }
  }

  /**
   * Refuses, before it starts, a ring command that was overtaken while queued: a `step` or `sync-bn` of a generation
   * older than the newest `welcome` received, or a `step` the coordinator aborted before this worker began it (the
   * coordinator redoes it under a newer generation). The refusal is an ordinary failure reply, which the coordinator
   * ignores as stale.
   * @throws TrainerError ERR_WORKER_LOST for such a command
   */
  private refuseStale(msg: Message): void {
    if (msg.type !== 'step' && msg.type !== 'sync-bn') return;
    const aborted = this.abortedBeforeStart;
    const stale = msg.generation < this.announcedGeneration
      || (msg.type === 'step' && aborted !== null && aborted.step === msg.step && msg.generation <= aborted.generation);
    if (stale) throw new TrainerError('ERR_WORKER_LOST', `${msg.type} of generation ${msg.generation} overtaken before it started (newest ring generation ${this.announcedGeneration}); skipped`);
  }

  private reducer(): AllReducer {
    if (this.setup?.allreduce === 'star') return this.star!;
    return this.transport?.reducer ?? this.ring!;
  }

  /**
   * Chooses the data-plane transport of the current generation ({@link TransportSelector}: shared memory when every
   * rank is on this host and announced that it can use it, under `--allreduce auto|shm`) and logs which and why. Runs
   * at each `welcome` once the run's setup is known, and at `setup` (which follows the first `welcome`).
   */
  private async applyTransport(): Promise<void> {
    if (this.setup === null || this.transport === null || this.generation < 0 || this.transportGeneration === this.generation) return;
    this.transportGeneration = this.generation;
    await this.transport.apply({
      mode: this.setup.allreduce,
      membership: { peers: this.peers, localPeers: this.localPeers, hostIds: this.hostIds, rank: this.rank, generation: this.generation },
      dtype: this.setup.allreduceDtype,
      announced: this.sharedMemory,
      load: loadShmModule(),
    });
  }

  private need<T>(value: T | null, what: string): T {
    if (value === null) throw new TrainerError('ERR_PROTOCOL', `${what} before setup`);
    return value;
  }

  private async handle(msg: Message, frames: readonly Buffer[]): Promise<void> {
    switch (msg.type) {
      case 'welcome': {
        this.rank = msg.rank;
        this.worldSize = msg.worldSize;
        this.generation = msg.generation;
        this.heartbeat.setRank(msg.rank);
        this.peers = msg.ring.map((m) => m.dataAddress);
        this.localPeers = msg.ring.map((m) => m.localDataAddress);
        this.hostIds = msg.ring.map((m) => m.hostId);
        this.sharedMemory = msg.ring.map((m) => m.sharedMemory);
        await this.ring!.reconfigure({ peers: this.peers, localPeers: this.localPeers, hostIds: this.hostIds, rank: msg.rank, generation: msg.generation });
        if (msg.worldSize > 1) this.o.log(`ring generation ${msg.generation}: rank ${msg.rank} sends to ${this.ring!.rightAddress}`);
        if (this.star) this.star.reconfigure({ rank: msg.rank, worldSize: msg.worldSize, generation: msg.generation });
        await this.applyTransport();
        this.trainer?.abort(this.trainer.pendingStep ?? -1);
        return;
      }
      case 'heartbeat':
        return;
      case 'setup':
        return this.onSetup(msg, frames[0]!);
      case 'stage':
        this.need(this.replica, 'stage').setFrozen(msg.frozen);
        return this.reply(msg, {});
      case 'step': {
        this.failStepForTest(msg.step);
        const done = await this.need(this.trainer, 'step').step(msg);
        return this.send({ type: 'step-done', rank: this.rank, ...done });
      }
      case 'commit':
        this.need(this.trainer, 'commit').commit(msg.step);
        return this.divergeForTest();
      case 'abort':
        return this.trainer?.abort(msg.step);
      case 'validate': {
        const r = await this.need(this.trainer, 'validate').validate(msg.withProbabilities);
        const frame = r.items && r.probs ? Buffer.concat([Buffer.from(r.items.buffer, r.items.byteOffset, r.items.byteLength), Buffer.from(r.probs.buffer, r.probs.byteOffset, r.probs.byteLength)]) : Buffer.alloc(0);
        return this.reply(msg, { lossSum: r.lossSum, count: r.count, correct: r.correct, byteLength: frame.byteLength }, [frame]);
      }
      case 'get-state': {
        const blob = encodeReplicaState(await this.need(this.replica, 'get-state').exportState());
        return this.reply(msg, { byteLength: blob.byteLength }, [blob]);
      }
      case 'load-state': {
        const replica = this.need(this.replica, 'load-state');
        replica.importState(decodeReplicaState(frames[0]!));
        return this.reply(msg, { checksum: await replica.weightsChecksum() });
      }
      case 'sync-bn':
        await this.need(this.trainer, 'sync-bn').syncBatchNorm(msg.requestId);
        return this.reply(msg, {});
      case 'checksum':
        return this.reply(msg, { checksum: await this.need(this.replica, 'checksum').weightsChecksum() });
      default:
        throw new TrainerError('ERR_PROTOCOL', `unexpected ${msg.type} message for a worker`);
    }
  }

  /**
   * Test hook (endings test): with `TRAINER_TEST_FAIL_STEP=<rank>:<global step>` in the environment, that rank
   * fails that step with ERR_INTERNAL before computing it, as a step that fails for a reason that does not go away
   * (the coordinator then stops the run with exit code 1).
   * @throws TrainerError ERR_INTERNAL naming the hook
   */
  private failStepForTest(step: number): void {
    const hook = process.env.TRAINER_TEST_FAIL_STEP;
    if (hook !== undefined && hook === `${this.rank}:${step}`) throw new TrainerError('ERR_INTERNAL', `injected fault: TRAINER_TEST_FAIL_STEP=${hook}`);
  }

  /**
   * Test hook (chaos drill): with `TRAINER_TEST_DIVERGE_RANK=<r>` in the environment, rank r adds 1e-3 to its
   * first weight after each commit, so replicas stop being bit-identical and the checksum check must stop the run.
   */
  private async divergeForTest(): Promise<void> {
    if (process.env.TRAINER_TEST_DIVERGE_RANK !== String(this.rank) || this.replica === null) return;
    const state = await this.replica.exportState();
    const [first, ...rest] = state.tensors;
    const data = Float32Array.from(first!.data);
    data[0]! += 1e-3;
    this.replica.importState({ ...state, tensors: [{ ...first!, data }, ...rest] });
  }

  /**
   * Switches the ring to the run's wire dtype (`--allreduce-dtype`), known only at setup, after `hello` announced
   * the ring's addresses: the same sockets stay bound, so the announced addresses hold.
   */
  private async useWireDtype(dtype: RunSetup['allreduceDtype']): Promise<void> {
    await this.ring?.setDtype(dtype);
  }

  /**
   * Releases what an earlier `setup` built (its feed, image pool threads, replica tensors and star client) before
   * another builds its own. The coordinator sends `setup` again when its request failed after this worker had
   * answered `ready` (another rank failed it: no rank of that request counts as set up); the second pool and
   * replica used to be built beside the first, whose threads and tensors were never released.
   */
  private async releaseSetup(): Promise<void> {
    const { trainer, pool, replica, star } = this;
    this.trainer = null;
    this.pool = null;
    this.replica = null;
    this.star = null;
    await trainer?.close();
    await pool?.close();
    replica?.dispose();
    await star?.close();
  }

  private async onSetup(request: SetupMessage, frame: Buffer): Promise<void> {
    const setup = decodeRunSetup(frame);
    await this.releaseSetup();
    this.setup = setup;
    await this.useWireDtype(setup.allreduceDtype);
    const dataRoot = localDataRoot(this.o.dataRoot, setup);
    const threads = setup.threads > 0 ? setup.threads : Math.max(1, Math.min(2, availableParallelism() - 1));
    this.pool = new ImagePool({ threads });
    this.pool.start();
    const arch = archModel(setup.arch);
    const pretrained = await resolvePretrainedWeights(setup.pretrained, arch, { quiet: true, log: this.o.log });
    this.replica = await Replica.create({ arch, numClasses: setup.classes.length, seed: setup.seed, pretrained, frozen: setup.frozen });
    if (setup.allreduce === 'star') {
      if (!setup.starAddress) throw new TrainerError('ERR_PROTOCOL', 'setup.starAddress is required with allreduce star');
      this.star = new StarAllReduce(setup.starAddress, { timeoutMs: setup.allreduceTimeoutMs });
      await this.star.start();
      this.star.reconfigure({ rank: this.rank, worldSize: this.worldSize, generation: this.generation });
    }
    await this.applyTransport();
    this.trainer = new WorkerTrainer(setup, dataRoot, this.replica, this.pool, () => this.reducer(),
      () => ({ rank: this.rank, worldSize: this.worldSize, generation: this.generation }));
    const elements = this.replica.gradientLayout().reduce((s, p) => s + p.size, 0);
    await this.reply(request, { checksum: await this.replica.weightsChecksum(), gradientElements: elements });
  }

  /**
   * Releases everything, in this order (docs/fault-tolerance.md, "Shutdown order and exit codes"):
   * 1. stop taking commands (`stop()` ends the receive loop; later messages are ignored);
   * 2. close the all-reducers (ring PUSH/PULL, star DEALER, linger 0 after a bounded drain): a step waiting for
   *    peers fails now instead of at its timeout;
   * 3. wait for the command in progress to settle (at most `settleTimeoutMs`), so nothing computes on what follows;
   * 4. close the feed (its loader) and the image pool (piscina threads: drain, then terminate);
   * 5. dispose the replica's tensors, then release the tfjs backend ({@link releaseBackend});
   * 6. stop the heartbeat thread: it closes its own socket and exits, and this waits for its `exit` event;
   * 7. close the control DEALER: linger 0 after the coordinator's `shutdown` (it reads nothing more), SIGTERM,
   *    SIGINT or a lost coordinator; 1 s only when the worker itself failed after joining, so a reply queued just
   *    before the failure can still reach the coordinator that is waiting for it. Nothing is sent once stopping.
   * Idempotent: every call (shutdown, a signal, a lost coordinator, an error) awaits the same close, so no caller
   * can exit the process while another is still closing.
   */
  close(settleTimeoutMs = 30_000): Promise<void> {
    this.closing ??= this.closeInOrder(settleTimeoutMs);
    return this.closing;
  }

  private async closeInOrder(settleTimeoutMs: number): Promise<void> {
    this.stop(this.stopCode ?? WORKER_EXIT.failed);
    const step = async (what: string, fn: () => unknown): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        this.o.log(`close: ${what}: ${(err as Error).message}`);
      }
    };
    await step('ring', () => this.ring?.close());
    await step('star', () => this.star?.close());
    await step('shared memory', () => this.transport?.close());
    await step('shared-memory probe', () => this.probe?.remove());
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.chain, new Promise((r) => { timer = setTimeout(r, settleTimeoutMs); })]);
    clearTimeout(timer);
    await step('feed', () => this.trainer?.close());
    await step('image pool', () => this.pool?.close());
    await step('replica', () => this.replica?.dispose());
    await step('backend', () => releaseBackend());
    await step('heartbeat thread', () => this.heartbeat.close());
    // What is still queued on the control socket is for a coordinator that no longer reads it: after its `shutdown`
    // (a failed run included: it closes its ROUTER at once, so a reply still queued then is never delivered), after
    // a signal, a lost coordinator, or one never reached (the `hello` itself still queued). Lingering on it only holds
    // the exit (zeromq's "Waiting for queued ZeroMQ messages to be delivered" after 500 ms). Only a worker that failed
    // by itself after joining keeps the 1 s linger: the coordinator is there and may be waiting for that last reply.
    if (this.stopCode !== WORKER_EXIT.failed || this.rank < 0) this.socket.linger = 0;
    await step('control socket', () => this.socket.close());
  }
}
