/**
 * The messages of the wire protocol: one discriminated union ({@link Message}) over the control plane
 * (coordinator ⇄ worker, ROUTER/DEALER) and the data plane (worker → worker ring, worker ⇄ coordinator star).
 * Types only; `validators.ts` checks them and `codec.ts` turns them into bytes.
 */
import type { TrainerErrorCode } from '../errors.js';
import type { WireDtype } from './version.js';

/** Phase of a ring all-reduce (Patarasuk & Yuan 2009; Horovod/NCCL ring). */
export type ReducePhase = 'reduce-scatter' | 'all-gather';
/** What a worker can do, announced in `hello`. */
export interface Capabilities {
  /** tfjs backend name in use (`'wasm'`, `'cpu'`, `'tensorflow'`). */
  readonly backend: string;
  /** Wire dtypes this worker can all-reduce. */
  readonly wireDtypes: readonly WireDtype[];
  /** Largest frame this worker accepts, in bytes. */
  readonly maxFrameBytes: number;
  /**
   * The build of the code the worker runs (`contract/build-stamp.ts`: the source hash stamped on `dist/`, 16 hex
   * digits), null when it runs from the TypeScript sources; absent from workers that predate the field. The
   * coordinator refuses a worker of another build than its own (`ERR_STALE_BUILD`).
   */
  readonly build?: string | null;
}

/**
 * Whether a worker can take part in the shared-memory all-reduce (`--allreduce auto|shm`, `worker/allreduce/shm.ts`):
 * its native module loads and matches its sources. Announced in `hello` and passed on in `welcome`'s ring, so every
 * rank decides the transport from the same facts.
 */
export interface SharedMemorySupport {
  /** True when the worker's shared-memory module loaded. */
  readonly usable: boolean;
  /** Why it cannot (the module missing, stale, or failing to load); absent when `usable`. */
  readonly reason?: string;
}

/** Worker → coordinator: join request (the protocol version travels in every header). */
export interface HelloMessage {
  readonly type: 'hello';
  /** Rank the worker asks for (e.g. after a restart), or `null` for "any". */
  readonly rankRequest: number | null;
  /** The worker's bound data-plane address, e.g. `tcp://127.0.0.1:40123`. */
  readonly dataAddress: string;
  /**
   * The same data-plane socket's Unix-socket endpoint (`ipc://…`), for peers on this host; absent when the worker
   * binds none. A peer uses it only when the socket file exists on its own file system, else `dataAddress`.
   */
  readonly localDataAddress?: string;
  /**
   * Whether the worker can use the shared-memory all-reduce; absent from workers that predate the field, which count
   * as unable (a same-host ring then uses sockets).
   */
  readonly sharedMemory?: SharedMemorySupport;
  readonly pid: number;
  readonly host: string;
  /**
   * The worker's host identity ({@link hostIdentity} of `contract/host-identity.ts`: a hash of the kernel's boot id,
   * or of the host name where there is no boot id): a peer uses this worker's {@link localDataAddress} only when its
   * own host identity is the same. Absent when there is neither: peers then use `dataAddress`.
   */
  readonly hostId?: string;
  readonly capabilities: Capabilities;
}
/** One ring member: rank and the data-plane address its left neighbour connects to. */
export interface RingMember {
  readonly rank: number;
  readonly dataAddress: string;
  /** The member's `ipc://` endpoint from its `hello`, when it announced one. */
  readonly localDataAddress?: string;
  /** The member's {@link HelloMessage.hostId}, when it announced one. */
  readonly hostId?: string;
  /** The member's {@link HelloMessage.sharedMemory}, when it announced one. */
  readonly sharedMemory?: SharedMemorySupport;
}
/** Coordinator → worker: admission, with the ring for the given generation (ring epoch). */
export interface WelcomeMessage {
  readonly type: 'welcome';
  readonly rank: number;
  readonly worldSize: number;
  /** Ring epoch; increases every time membership changes. */
  readonly generation: number;
  /** All members sorted by rank; `ring[i].rank === i`. */
  readonly ring: readonly RingMember[];
}
/** Liveness ping, both ways. */
export interface HeartbeatMessage {
  readonly type: 'heartbeat';
  readonly sender: 'coordinator' | 'worker';
  /** Sender's rank, or -1 for the coordinator / a worker without rank yet. */
  readonly rank: number;
  /** Per-sender sequence number, starting at 0. */
  readonly seq: number;
  /** Sender's wall clock, milliseconds since the Unix epoch. */
  readonly sentAtMs: number;
}
/**
 * Either way: a typed failure report. Worker → coordinator: the failure of one coordinator message, which the error
 * names ({@link command}, and {@link requestId} for a request of the request → reply table), so the coordinator
 * ends only the wait for that request and drops a late error of an earlier one (a `sync-bn` that timed out and was
 * redone: its late error used to fail the redo). Coordinator → worker: a refusal (another build or protocol version
 * at `hello`, or a worker whose setup failed on its own machine, e.g. a wrong `--data`): the worker exits with it.
 */
export interface ErrorMessage {
  readonly type: 'error';
  readonly code: TrainerErrorCode;
  readonly message: string;
  /** Rank of the reporter, or -1 for the coordinator (or a worker without a rank yet). */
  readonly rank: number;
  /** The type of the message the error answers (`'sync-bn'`, `'commit'`, `'hello'`), or null: none. */
  readonly command: MessageType | null;
  /** The `requestId` of the request it answers when {@link command} is a request of the table, else null. */
  readonly requestId: number | null;
}
/** Coordinator → worker: stop after closing resources. */
export interface ShutdownMessage {
  readonly type: 'shutdown';
  readonly reason: string;
}
/** Fields that identify one all-reduce call across the group. */
export interface ReduceTagFields {
  /** Ring epoch; messages of older generations are stale and dropped. */
  readonly generation: number;
  /** Training step (integer ≥ 0). */
  readonly step: number;
  /** Gradient bucket id within the step (integer ≥ 0). */
  readonly bucket: number;
}
/** Worker → right neighbour: one chunk of a ring all-reduce; carries 1 frame of `byteLength` bytes. */
export interface ChunkMessage extends ReduceTagFields {
  readonly type: 'chunk';
  /**
   * The phase of the ring; `'done'`: a receipt token (no payload) that a rank sends once it has received every
   * slice of a call and that the next ranks forward, so its left neighbour learns that its zero-copy sends were
   * delivered (`ringStep` = hops travelled, `chunk` = the rank that issued it).
   */
  readonly phase: ReducePhase | 'done';
  /** Step within the phase, 0 … N−2. */
  readonly ringStep: number;
  /** Chunk index 0 … N−1 within the buffer. */
  readonly chunk: number;
  /**
   * Element offset of this message's slice within the chunk: a chunk travels as consecutive slices (one message
   * each) so that the receiver adds one slice while the next is on the wire.
   */
  readonly offset: number;
  /** Sender's rank. */
  readonly from: number;
  readonly dtype: WireDtype;
  readonly byteLength: number;
}
/** Worker → coordinator (star baseline): the whole float32 buffer; carries 1 frame. */
export interface StarPushMessage extends ReduceTagFields {
  readonly type: 'star-push';
  readonly rank: number;
  readonly worldSize: number;
  /** Divide the sum by the world size. */
  readonly average: boolean;
  readonly byteLength: number;
}
/** Coordinator → worker (star baseline): the reduced float32 buffer; carries 1 frame. */
export interface StarResultMessage extends ReduceTagFields {
  readonly type: 'star-result';
  readonly byteLength: number;
}

/**
 * Coordinator → worker: the run setup; carries 1 frame, the UTF-8 JSON of a `RunSetup` (see `run-setup.ts`); `ready`
 * reply.
 */
export interface SetupMessage extends RequestFields {
  readonly type: 'setup';
  readonly byteLength: number;
}
/** Worker → coordinator: model built, data ready, state of the replica (the reply to `setup`). */
export interface ReadyMessage extends ReplyFields {
  readonly type: 'ready';
  /** sha256 of the replica's weights (hex). */
  readonly checksum: string;
  /** Trainable elements in the gradient layout. */
  readonly gradientElements: number;
}
/** Coordinator → worker: compute one optimizer step (forward/backward over `accum` micro-batches, all-reduce). */
export interface StepMessage {
  readonly type: 'step';
  /** Run-wide step id (monotonic over stages; also the all-reduce tag). */
  readonly step: number;
  readonly generation: number;
  readonly stageIndex: number;
  /** Data epoch of this step (its shuffle). */
  readonly epoch: number;
  readonly stepInEpoch: number;
  readonly accum: number;
  /** Learning rate per layer group and momentum (Adam beta1) of this step, applied on `commit`. */
  readonly lrs: readonly number[];
  readonly momentum: number;
}
/**
 * What a worker measured over one step, named as its metric is (`metrics/catalog.ts`): one name per quantity from
 * the wire to Prometheus. Seconds are ≥ 0; counts and bytes are integers ≥ 0.
 */
export interface StepStats {
  /** Valid training items this rank processed in the step (the images of `pets_images_processed_total`). */
  readonly count: number;
  /** Waiting for the data feed to hand over the micro-batches, seconds. */
  readonly dataWaitSeconds: number;
  /** Forward and backward passes over this rank's micro-batches, seconds. */
  readonly forwardBackwardSeconds: number;
  /** The gradient (and BatchNorm increment) all-reduce, seconds. */
  readonly allreduceSeconds: number;
  /** The previous step's optimizer update (applied at its commit), seconds. */
  readonly optimizerSeconds: number;
  /** Bytes this rank sent in the step's all-reduce. */
  readonly allreduceBytes: number;
  /** Image decode tasks waiting for a thread in this worker's decode pool (piscina `queueSize`) after the step. */
  readonly decodeQueueTasks: number;
  /** `tf.memory().numBytes` after the step, bytes. */
  readonly tfjsBytes: number;
  /** `tf.memory().numTensors` after the step. */
  readonly tfjsTensors: number;
  /** Resident set size of the worker process (`process.memoryUsage().rss`), bytes. */
  readonly rssBytes: number;
}
/** Worker → coordinator: the step's gradients are reduced and pending; its training sums and {@link StepStats}. */
export interface StepDoneMessage extends StepStats {
  readonly type: 'step-done';
  readonly step: number;
  /** Ring generation the step ran in (replies of an aborted generation are ignored). */
  readonly generation: number;
  readonly rank: number;
  /** Sum of per-item losses over the valid items of all micro-batches. */
  readonly lossSum: number;
  readonly correct: number;
  /** Files the loader skipped so far, by reason (bounded set of reasons). */
  readonly skipped: Readonly<Record<string, number>>;
}
/** Worker → coordinator: the step could not complete (peer lost, timeout); nothing was applied. */
export interface StepFailedMessage {
  readonly type: 'step-failed';
  readonly step: number;
  readonly generation: number;
  readonly rank: number;
  readonly code: TrainerErrorCode;
  readonly message: string;
}
/** Coordinator → worker: apply the pending reduced gradients of `step` (the AdamW step). */
export interface CommitMessage {
  readonly type: 'commit';
  readonly step: number;
}
/** Coordinator → worker: drop the pending reduced gradients of `step` (it will be redone). */
export interface AbortMessage {
  readonly type: 'abort';
  readonly step: number;
}
/**
 * Fields of every coordinator → worker request that gets exactly one reply per asked rank (the request → reply
 * table is `requests.ts`; `Cluster.request` is the one primitive that sends them and pairs the replies).
 */
export interface RequestFields {
  /** Id the reply echoes; unique per coordinator run (integer ≥ 0). */
  readonly requestId: number;
}
/** Fields of every reply to a {@link RequestFields} request. */
export interface ReplyFields {
  /** The id of the request answered. */
  readonly requestId: number;
  /** The replying rank. */
  readonly rank: number;
}
/** Coordinator → worker: switch to a stage (freeze state; resets the optimizer as fastai does); `ack` reply. */
export interface StageMessage extends RequestFields {
  readonly type: 'stage';
  readonly stageIndex: number;
  readonly frozen: boolean;
}
/** Coordinator → worker: validate this rank's shard of the validation set; `valid-done` reply. */
export interface ValidateMessage extends RequestFields {
  readonly type: 'validate';
  /** Also return per-item probabilities (interpretation). */
  readonly withProbabilities: boolean;
}
/** Coordinator → worker: send the replica's state; `state` reply. */
export interface GetStateMessage extends RequestFields { readonly type: 'get-state' }
/** Coordinator → worker: replace the replica's state with this safetensors blob; 1 frame; `weights-checksum` reply. */
export interface LoadStateMessage extends RequestFields {
  readonly type: 'load-state';
  readonly byteLength: number;
}
/** Coordinator → worker: send the replica's weights checksum; `weights-checksum` reply. */
export interface ChecksumMessage extends RequestFields { readonly type: 'checksum' }
/** Coordinator → worker: take rank 0's BatchNorm running statistics (over the ring); `ack` reply. */
export interface SyncBnMessage extends RequestFields {
  readonly type: 'sync-bn';
  /** Ring generation the coordinator expects the all-reduce to run in. */
  readonly generation: number;
}
/** The requests of the request → reply table. */
export type RequestMessage = SetupMessage | StageMessage | ValidateMessage | GetStateMessage | LoadStateMessage | ChecksumMessage | SyncBnMessage;
/** Worker → coordinator: the request is done and returns nothing (`stage`, `sync-bn`). */
export interface AckMessage extends ReplyFields { readonly type: 'ack' }
/** Worker → coordinator: validation sums over this rank's shard (padding excluded); 1 frame (maybe empty). */
export interface ValidDoneMessage extends ReplyFields {
  readonly type: 'valid-done';
  readonly lossSum: number;
  readonly count: number;
  readonly correct: number;
  /** Frame: `[k] int32 item indices` then `[k × classes] float32 probabilities`, or empty. */
  readonly byteLength: number;
}
/** Worker → coordinator: a replica's state (weights, BatchNorm statistics, optimizer) as one safetensors blob; 1 frame. */
export interface StateMessage extends ReplyFields {
  readonly type: 'state';
  readonly byteLength: number;
}
/** Worker → coordinator: the replica's weights checksum after the request (`checksum`, `load-state`). */
export interface WeightsChecksumMessage extends ReplyFields {
  readonly type: 'weights-checksum';
  /** sha256 of the replica's weights, 64 lowercase hex digits. */
  readonly checksum: string;
}
/** The replies of the request → reply table. */
export type ReplyMessage = ReadyMessage | AckMessage | ValidDoneMessage | StateMessage | WeightsChecksumMessage;

/** Every message of the protocol, discriminated by `type`. */
export type Message =
  | HelloMessage
  | WelcomeMessage
  | HeartbeatMessage
  | ErrorMessage
  | ShutdownMessage
  | ChunkMessage
  | StarPushMessage
  | StarResultMessage
  | StepMessage
  | StepDoneMessage
  | StepFailedMessage
  | CommitMessage
  | AbortMessage
  | RequestMessage
  | ReplyMessage;
/** The `type` tag of a {@link Message}. */
export type MessageType = Message['type'];
/** A decoded message and its binary frames (views into the received buffers, not copies). */
export interface Decoded<M extends Message = Message> {
  readonly message: M;
  readonly frames: readonly Buffer[];
}
