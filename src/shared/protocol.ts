/**
 * THE wire protocol of the trainer: one versioned, discriminated union of messages shared by the control plane
 * (coordinator ⇄ worker, ROUTER/DEALER) and the data plane (worker → worker ring, worker ⇄ coordinator star).
 *
 * A message on the wire is a ZeroMQ multipart message `[header, ...frames]`:
 * - `header`: a msgpack map (msgpackr, records off, so any msgpack reader can parse it) holding
 *   `{ v: PROTOCOL_VERSION, type, ...fields }`;
 * - `frames`: raw little-endian binary payloads (tensors), never inside msgpack. Each message type fixes how many
 *   frames it carries and their byte length is announced in the header.
 *
 * {@link encode} and {@link decode} are the only places that touch bytes. Anything unexpected (unknown type, other
 * version, malformed or truncated msgpack, wrong frame count/length, oversized parts) is a `TrainerError` with
 * code `ERR_PROTOCOL`; decoding never throws anything else.
 *
 * Adding a message type: add its interface to {@link Message}, its validator to `VALIDATORS` and its frame count
 * to `FRAME_COUNT`; the compiler checks the tables are complete.
 */
import { Packr } from 'msgpackr';
import { TrainerError, type TrainerErrorCode } from './errors.js';

/** Version of this protocol; bumped on any incompatible change. Peers with another version are rejected. */
export const PROTOCOL_VERSION = 2;
/** Largest accepted header, in bytes (64 KiB): headers are small maps, tensors travel as frames. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** Largest accepted binary frame, in bytes (512 MiB): one whole 128 MB star buffer fits with room to spare. */
export const MAX_FRAME_BYTES = 512 * 1024 * 1024;
/** Largest number of binary frames after the header. */
export const MAX_FRAMES = 8;
/** Longest accepted string field (addresses, host names, reasons, error messages), in UTF-16 code units. */
export const MAX_STRING_LENGTH = 4096;
/** Largest ring/world size accepted in a `welcome` message. */
export const MAX_WORLD_SIZE = 4096;

/** Element type of a tensor frame on the wire (always little-endian). */
export type WireDtype = 'float32' | 'float16';
/** Bytes per element of each {@link WireDtype}. */
export const WIRE_DTYPE_BYTES: Readonly<Record<WireDtype, number>> = Object.freeze({ float32: 4, float16: 2 });
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
}

/** Worker → coordinator: join request (the protocol version travels in every header). */
export interface HelloMessage {
  readonly type: 'hello';
  /** Rank the worker asks for (e.g. after a restart), or `null` for "any". */
  readonly rankRequest: number | null;
  /** The worker's bound data-plane address, e.g. `tcp://127.0.0.1:40123`. */
  readonly dataAddress: string;
  readonly pid: number;
  readonly host: string;
  readonly capabilities: Capabilities;
}
/** One ring member: rank and the data-plane address its left neighbour connects to. */
export interface RingMember {
  readonly rank: number;
  readonly dataAddress: string;
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
/** Either way: a typed failure report. */
export interface ErrorMessage {
  readonly type: 'error';
  readonly code: TrainerErrorCode;
  readonly message: string;
  /** Rank of the reporter, or -1 for the coordinator. */
  readonly rank: number;
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
  readonly phase: ReducePhase;
  /** Step within the phase, 0 … N−2. */
  readonly ringStep: number;
  /** Chunk index 0 … N−1 within the buffer. */
  readonly chunk: number;
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

/** Coordinator → worker: the run setup; carries 1 frame, the UTF-8 JSON of a `RunSetup` (see `run-setup.ts`). */
export interface SetupMessage {
  readonly type: 'setup';
  readonly byteLength: number;
}
/** Worker → coordinator: model built, data ready, state of the replica. */
export interface ReadyMessage {
  readonly type: 'ready';
  readonly rank: number;
  /** sha256 of the replica's weights (hex). */
  readonly checksum: string;
  /** Trainable elements in the gradient layout. */
  readonly gradientElements: number;
}
/** Coordinator → worker: switch to a stage (freeze state; resets the optimizer as fastai does). */
export interface StageMessage {
  readonly type: 'stage';
  readonly requestId: number;
  readonly stageIndex: number;
  readonly frozen: boolean;
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
/** Worker → coordinator: the step's gradients are reduced and pending; its training metrics. */
export interface StepDoneMessage {
  readonly type: 'step-done';
  readonly step: number;
  /** Ring generation the step ran in (replies of an aborted generation are ignored). */
  readonly generation: number;
  readonly rank: number;
  /** Sum of per-item losses over the valid items of all micro-batches. */
  readonly lossSum: number;
  readonly count: number;
  readonly correct: number;
  /** Phase durations, seconds. */
  readonly dataWaitSeconds: number;
  readonly computeSeconds: number;
  readonly allreduceSeconds: number;
  /** Duration of the previous step's optimizer update (applied at its commit), seconds. */
  readonly optimizerSeconds: number;
  /** Resident set size of the worker process, bytes. */
  readonly rssBytes: number;
  /** Bytes this rank sent in the all-reduce. */
  readonly allreduceBytes: number;
  /** tfjs memory of the replica (bytes, tensors) and the loader queue depth after the step. */
  readonly tfBytes: number;
  readonly tfTensors: number;
  readonly queueDepth: number;
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
/** Fields of a coordinator → worker request without payload. */
export interface RequestFields {
  readonly requestId: number;
  /** For `validate`: also return per-item probabilities (interpretation); unused otherwise. */
  readonly flag: boolean;
  /** Ring generation the request belongs to (for requests that use the ring, like `sync-bn`). */
  readonly generation: number;
}
/** Coordinator → worker: validate this rank's shard of the validation set. */
export interface ValidateMessage extends RequestFields { readonly type: 'validate' }
/** Coordinator → worker: send the replica's state (`state` reply). */
export interface GetStateMessage extends RequestFields { readonly type: 'get-state' }
/** Coordinator → worker: send the weights checksum (`ack` reply with the hex digest). */
export interface ChecksumMessage extends RequestFields { readonly type: 'checksum' }
/** Coordinator → worker: take rank 0's BatchNorm running statistics (over the ring), then `ack`. */
export interface SyncBnMessage extends RequestFields { readonly type: 'sync-bn' }
/** The payload-free requests. */
export type RequestMessage = ValidateMessage | GetStateMessage | ChecksumMessage | SyncBnMessage;
/** Worker → coordinator: validation sums over this rank's shard (padding excluded); 1 frame (maybe empty). */
export interface ValidDoneMessage {
  readonly type: 'valid-done';
  readonly requestId: number;
  readonly rank: number;
  readonly lossSum: number;
  readonly count: number;
  readonly correct: number;
  /** Frame: `[k] int32 item indices` then `[k × classes] float32 probabilities`, or empty. */
  readonly byteLength: number;
}
/** Worker → coordinator: a replica's state (weights, BatchNorm statistics, optimizer) as one safetensors blob; 1 frame. */
export interface StateMessage {
  readonly type: 'state';
  readonly requestId: number;
  readonly byteLength: number;
}
/** Coordinator → worker: replace the replica's state with this safetensors blob, then `ack`; 1 frame. */
export interface LoadStateMessage {
  readonly type: 'load-state';
  readonly requestId: number;
  readonly byteLength: number;
}
/** Worker → coordinator: generic reply to `stage`, `load-state`, `checksum`, `sync-bn`. */
export interface AckMessage {
  readonly type: 'ack';
  readonly requestId: number;
  readonly rank: number;
  /** Request-specific value (e.g. the weights checksum), or empty. */
  readonly value: string;
}

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
  | SetupMessage
  | ReadyMessage
  | StageMessage
  | StepMessage
  | StepDoneMessage
  | StepFailedMessage
  | CommitMessage
  | AbortMessage
  | RequestMessage
  | ValidDoneMessage
  | StateMessage
  | LoadStateMessage
  | AckMessage;
/** The `type` tag of a {@link Message}. */
export type MessageType = Message['type'];
/** A decoded message and its binary frames (views into the received buffers, not copies). */
export interface Decoded<M extends Message = Message> {
  readonly message: M;
  readonly frames: readonly Buffer[];
}

type Header = Record<string, unknown>;
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

function fail(message: string, cause?: unknown): never {
  throw new TrainerError('ERR_PROTOCOL', message, cause === undefined ? undefined : { cause });
}

function int(h: Header, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = h[field];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    fail(`${String(h.type)}.${field} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function str(h: Header, field: string, pattern?: RegExp): string {
  const v = h[field];
  if (typeof v !== 'string' || v.length > MAX_STRING_LENGTH || (pattern !== undefined && !pattern.test(v))) {
    const rule = pattern === undefined ? `a string of ≤ ${MAX_STRING_LENGTH} chars` : `a string matching ${pattern}`;
    fail(`${String(h.type)}.${field} must be ${rule}, got ${JSON.stringify(v)?.slice(0, 80)}`);
  }
  return v;
}

function oneOf<T extends string>(h: Header, field: string, allowed: readonly T[]): T {
  const v = h[field];
  if (!allowed.includes(v as T)) {
    fail(`${String(h.type)}.${field} must be one of ${allowed.join('|')}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}

function bool(h: Header, field: string): boolean {
  const v = h[field];
  if (typeof v !== 'boolean') fail(`${String(h.type)}.${field} must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

function record(v: unknown, what: string): Header {
  const proto: unknown = typeof v === 'object' && v !== null ? Object.getPrototypeOf(v) : undefined;
  if (proto !== Object.prototype && proto !== null) {
    const got = v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'object' ? v.constructor.name : typeof v;
    fail(`${what} must be a map, got ${got}`);
  }
  return v as Header;
}

function num(h: Header, field: string): number {
  const v = h[field];
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${String(h.type)}.${field} must be a finite number, got ${JSON.stringify(v)}`);
  return v;
}

function numbers(h: Header, field: string, minLength: number, maxLength: number): number[] {
  const v = h[field];
  if (!Array.isArray(v) || v.length < minLength || v.length > maxLength || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    fail(`${String(h.type)}.${field} must be an array of ${minLength}..${maxLength} finite numbers, got ${JSON.stringify(v)?.slice(0, 80)}`);
  }
  return v as number[];
}

function counts(h: Header, field: string): Record<string, number> {
  const r = record(h[field], `${String(h.type)}.${field}`);
  const entries = Object.entries(r);
  if (entries.length > 16 || !entries.every(([k, x]) => k.length <= 64 && typeof x === 'number' && Number.isInteger(x) && x >= 0)) {
    fail(`${String(h.type)}.${field} must map ≤ 16 short names to non-negative integers, got ${JSON.stringify(r).slice(0, 80)}`);
  }
  return r as Record<string, number>;
}

function request<K extends RequestMessage['type']>(type: K, h: Header): Extract<RequestMessage, { type: K }> {
  return { type, requestId: int(h, 'requestId', 0), flag: bool(h, 'flag'), generation: int(h, 'generation', 0) } as Extract<RequestMessage, { type: K }>;
}

const DTYPES: readonly WireDtype[] = ['float32', 'float16'];
const ADDRESS = /^(tcp|ipc|inproc):\/\/\S+$/;

function tagFields(h: Header): ReduceTagFields {
  return { generation: int(h, 'generation', 0), step: int(h, 'step', 0), bucket: int(h, 'bucket', 0) };
}

function capabilities(h: Header): Capabilities {
  const c = record(h.capabilities, 'hello.capabilities');
  const dtypes = c.wireDtypes;
  if (!Array.isArray(dtypes) || dtypes.length > DTYPES.length || !dtypes.every((d) => DTYPES.includes(d))) {
    fail(`hello.capabilities.wireDtypes must be a subset of ${DTYPES.join('|')}, got ${JSON.stringify(dtypes)}`);
  }
  const named = { ...c, type: 'hello.capabilities' };
  return { backend: str(named, 'backend'), wireDtypes: dtypes, maxFrameBytes: int(named, 'maxFrameBytes', 0) };
}

function ring(h: Header, worldSize: number): RingMember[] {
  const r = h.ring;
  if (!Array.isArray(r) || r.length !== worldSize) {
    fail(`welcome.ring must be an array of worldSize=${worldSize} members, got ${Array.isArray(r) ? r.length : typeof r}`);
  }
  return r.map((m: unknown, i: number) => {
    const member = { ...record(m, `welcome.ring[${i}]`), type: `welcome.ring[${i}]` };
    return { rank: int(member, 'rank', i, i), dataAddress: str(member, 'dataAddress', ADDRESS) };
  });
}

/** Per-type validators: header map → typed message, or ERR_PROTOCOL. */
const VALIDATORS: { readonly [K in MessageType]: (h: Header) => Extract<Message, { type: K }> } = {
  hello: (h) => ({
    type: 'hello',
    rankRequest: h.rankRequest === null ? null : int(h, 'rankRequest', 0, MAX_WORLD_SIZE - 1),
    dataAddress: str(h, 'dataAddress', ADDRESS),
    pid: int(h, 'pid', 0),
    host: str(h, 'host'),
    capabilities: capabilities(h),
  }),
  welcome: (h) => {
    const worldSize = int(h, 'worldSize', 1, MAX_WORLD_SIZE);
    return {
      type: 'welcome',
      rank: int(h, 'rank', 0, worldSize - 1),
      worldSize,
      generation: int(h, 'generation', 0),
      ring: ring(h, worldSize),
    };
  },
  heartbeat: (h) => ({
    type: 'heartbeat',
    sender: oneOf(h, 'sender', ['coordinator', 'worker'] as const),
    rank: int(h, 'rank', -1),
    seq: int(h, 'seq', 0),
    sentAtMs: int(h, 'sentAtMs', 0),
  }),
  error: (h) => ({
    type: 'error',
    code: str(h, 'code', /^ERR_[A-Z_]+$/) as TrainerErrorCode,
    message: str(h, 'message'),
    rank: int(h, 'rank', -1),
  }),
  shutdown: (h) => ({ type: 'shutdown', reason: str(h, 'reason') }),
  chunk: (h) => ({
    type: 'chunk',
    ...tagFields(h),
    phase: oneOf(h, 'phase', ['reduce-scatter', 'all-gather'] as const),
    ringStep: int(h, 'ringStep', 0, MAX_WORLD_SIZE - 2),
    chunk: int(h, 'chunk', 0, MAX_WORLD_SIZE - 1),
    from: int(h, 'from', 0, MAX_WORLD_SIZE - 1),
    dtype: oneOf(h, 'dtype', DTYPES),
    byteLength: int(h, 'byteLength', 0, MAX_FRAME_BYTES),
  }),
  'star-push': (h) => ({
    type: 'star-push',
    ...tagFields(h),
    rank: int(h, 'rank', 0, MAX_WORLD_SIZE - 1),
    worldSize: int(h, 'worldSize', 1, MAX_WORLD_SIZE),
    average: bool(h, 'average'),
    byteLength: int(h, 'byteLength', 0, MAX_FRAME_BYTES),
  }),
  'star-result': (h) => ({ type: 'star-result', ...tagFields(h), byteLength: int(h, 'byteLength', 0, MAX_FRAME_BYTES) }),
  setup: (h) => ({ type: 'setup', byteLength: int(h, 'byteLength', 1, MAX_FRAME_BYTES) }),
  ready: (h) => ({
    type: 'ready', rank: int(h, 'rank', 0, MAX_WORLD_SIZE - 1), checksum: str(h, 'checksum', /^[0-9a-f]{64}$/),
    gradientElements: int(h, 'gradientElements', 0),
  }),
  stage: (h) => ({ type: 'stage', requestId: int(h, 'requestId', 0), stageIndex: int(h, 'stageIndex', 0, 1024), frozen: bool(h, 'frozen') }),
  step: (h) => ({
    type: 'step', step: int(h, 'step', 0), generation: int(h, 'generation', 0), stageIndex: int(h, 'stageIndex', 0, 1024),
    epoch: int(h, 'epoch', 0), stepInEpoch: int(h, 'stepInEpoch', 0), accum: int(h, 'accum', 1, 65536),
    lrs: numbers(h, 'lrs', 1, 16), momentum: num(h, 'momentum'),
  }),
  'step-done': (h) => ({
    type: 'step-done', step: int(h, 'step', 0), generation: int(h, 'generation', 0), rank: int(h, 'rank', 0, MAX_WORLD_SIZE - 1),
    lossSum: num(h, 'lossSum'), count: int(h, 'count', 0), correct: int(h, 'correct', 0),
    dataWaitSeconds: num(h, 'dataWaitSeconds'), computeSeconds: num(h, 'computeSeconds'), allreduceSeconds: num(h, 'allreduceSeconds'),
    optimizerSeconds: num(h, 'optimizerSeconds'), rssBytes: num(h, 'rssBytes'),
    allreduceBytes: num(h, 'allreduceBytes'), tfBytes: num(h, 'tfBytes'), tfTensors: num(h, 'tfTensors'), queueDepth: num(h, 'queueDepth'),
    skipped: counts(h, 'skipped'),
  }),
  'step-failed': (h) => ({
    type: 'step-failed', step: int(h, 'step', 0), generation: int(h, 'generation', 0), rank: int(h, 'rank', 0, MAX_WORLD_SIZE - 1),
    code: str(h, 'code', /^ERR_[A-Z_]+$/) as TrainerErrorCode, message: str(h, 'message'),
  }),
  commit: (h) => ({ type: 'commit', step: int(h, 'step', 0) }),
  abort: (h) => ({ type: 'abort', step: int(h, 'step', 0) }),
  validate: (h) => request('validate', h),
  'get-state': (h) => request('get-state', h),
  checksum: (h) => request('checksum', h),
  'sync-bn': (h) => request('sync-bn', h),
  'valid-done': (h) => ({
    type: 'valid-done', requestId: int(h, 'requestId', 0), rank: int(h, 'rank', 0, MAX_WORLD_SIZE - 1),
    lossSum: num(h, 'lossSum'), count: int(h, 'count', 0), correct: int(h, 'correct', 0), byteLength: int(h, 'byteLength', 0, MAX_FRAME_BYTES),
  }),
  state: (h) => ({ type: 'state', requestId: int(h, 'requestId', 0), byteLength: int(h, 'byteLength', 1, MAX_FRAME_BYTES) }),
  'load-state': (h) => ({ type: 'load-state', requestId: int(h, 'requestId', 0), byteLength: int(h, 'byteLength', 1, MAX_FRAME_BYTES) }),
  ack: (h) => ({ type: 'ack', requestId: int(h, 'requestId', 0), rank: int(h, 'rank', 0, MAX_WORLD_SIZE - 1), value: str(h, 'value') }),
};

/** Number of binary frames each message type carries. */
const FRAME_COUNT: { readonly [K in MessageType]: number } = {
  hello: 0,
  welcome: 0,
  heartbeat: 0,
  error: 0,
  shutdown: 0,
  chunk: 1,
  'star-push': 1,
  'star-result': 1,
  setup: 1,
  ready: 0,
  stage: 0,
  step: 0,
  'step-done': 0,
  'step-failed': 0,
  commit: 0,
  abort: 0,
  validate: 0,
  'get-state': 0,
  checksum: 0,
  'sync-bn': 0,
  'valid-done': 1,
  state: 1,
  'load-state': 1,
  ack: 0,
};

/** Checks the frames against the message: count, announced length, dtype alignment. */
function checkFrames(message: Message, frames: readonly Uint8Array[]): void {
  const expected = FRAME_COUNT[message.type];
  if (frames.length !== expected) fail(`${message.type} must carry ${expected} frame(s), got ${frames.length}`);
  if (!('byteLength' in message)) return;
  const got = frames[0].byteLength;
  if (got !== message.byteLength) fail(`${message.type} frame must be byteLength=${message.byteLength} bytes, got ${got}`);
  if (!['chunk', 'star-push', 'star-result', 'valid-done'].includes(message.type)) return;
  const elementBytes = WIRE_DTYPE_BYTES['dtype' in message ? message.dtype : 'float32'];
  if (got % elementBytes !== 0) fail(`${message.type} frame length must be a multiple of ${elementBytes}, got ${got}`);
}

function validate(h: Header): Message {
  if (h.v !== PROTOCOL_VERSION) {
    fail(`protocol version mismatch: expected v=${PROTOCOL_VERSION}, got ${JSON.stringify(h.v)}`);
  }
  const type = h.type;
  if (typeof type !== 'string' || !Object.hasOwn(VALIDATORS, type)) {
    fail(`unknown message type ${JSON.stringify(type)?.slice(0, 80)}`);
  }
  return VALIDATORS[type as MessageType](h);
}

/**
 * Encodes a message and its binary frames as ZeroMQ multipart parts `[header, ...frames]`.
 *
 * The message is validated exactly as the receiver will validate it, so a bad outgoing message fails here.
 * Frames are passed through as given (no copy): ZeroMQ may send them zero-copy, so callers must not mutate them
 * until the send completes.
 *
 * @param message - the message (its header fields)
 * @param frames - the binary frames the message type requires (e.g. one little-endian tensor frame for `chunk`)
 * @returns `[header, ...frames]`, ready for `socket.send`
 * @throws TrainerError `ERR_PROTOCOL` when a field, the frame count or a frame length is invalid
 */
export function encode(message: Message, frames: readonly Uint8Array[] = []): Uint8Array[] {
  const checked = validate({ ...message, v: PROTOCOL_VERSION });
  checkFrames(checked, frames);
  for (const f of frames) {
    if (f.byteLength > MAX_FRAME_BYTES) fail(`frame must be ≤ MAX_FRAME_BYTES=${MAX_FRAME_BYTES}, got ${f.byteLength}`);
  }
  const header = packr.pack({ v: PROTOCOL_VERSION, ...checked });
  if (header.byteLength > MAX_HEADER_BYTES) {
    fail(`${message.type} header must be ≤ MAX_HEADER_BYTES=${MAX_HEADER_BYTES} bytes, got ${header.byteLength}`);
  }
  return [header, ...frames];
}

/**
 * Decodes ZeroMQ multipart parts `[header, ...frames]` into a typed message.
 *
 * @param parts - the received parts; frames in the result are the same buffers (no copy)
 * @returns the validated message and its frames
 * @throws TrainerError `ERR_PROTOCOL` for: no parts, too many parts, an oversized header or frame, malformed or
 *   truncated msgpack, a header that is not a map, another protocol version, an unknown type, a missing or
 *   out-of-range field, or frames that do not match the header. Never any other error.
 */
export function decode(parts: readonly Uint8Array[]): Decoded {
  if (parts.length === 0) fail('empty multipart message: expected [header, ...frames]');
  if (parts.length > MAX_FRAMES + 1) fail(`message must have ≤ ${MAX_FRAMES + 1} parts, got ${parts.length}`);
  const [head, ...rest] = parts;
  if (head.byteLength > MAX_HEADER_BYTES) {
    fail(`header must be ≤ MAX_HEADER_BYTES=${MAX_HEADER_BYTES} bytes, got ${head.byteLength}`);
  }
  for (const f of rest) {
    if (f.byteLength > MAX_FRAME_BYTES) fail(`frame must be ≤ MAX_FRAME_BYTES=${MAX_FRAME_BYTES}, got ${f.byteLength}`);
  }
  let raw: unknown;
  try {
    raw = packr.unpack(head);
  } catch (err) {
    fail(`malformed msgpack header (${head.byteLength} bytes): ${(err as Error).message.slice(0, 120)}`, err);
  }
  const message = validate(record(raw, 'header'));
  const frames = rest.map((f) => (Buffer.isBuffer(f) ? f : Buffer.from(f.buffer, f.byteOffset, f.byteLength)));
  checkFrames(message, frames);
  return { message, frames };
}

/**
 * Decodes and additionally requires a given message type.
 *
 * @throws TrainerError `ERR_PROTOCOL` as {@link decode}, or when the type differs from `type`
 */
export function decodeAs<K extends MessageType>(parts: readonly Uint8Array[], type: K): Decoded<Extract<Message, { type: K }>> {
  const d = decode(parts);
  if (d.message.type !== type) fail(`expected a ${type} message, got ${d.message.type}`);
  return d as Decoded<Extract<Message, { type: K }>>;
}

/** The version-independent part of a header: what any protocol version can read from any other. */
export interface HeaderPeek {
  /** The sender's protocol version, as sent (a number for any real peer). */
  readonly v: unknown;
  /** The message type, as sent. */
  readonly type: unknown;
  /** For `error` headers: the sender's code and human message (≤ {@link MAX_STRING_LENGTH} chars), else null. */
  readonly code: string | null;
  readonly message: string | null;
}

/**
 * Reads `{v, type}` (and `code`/`message` of an `error`) from a header of ANY protocol version, without
 * validating the rest: used to answer a peer of another version with a readable error, and by a worker to print
 * such an answer, instead of both sides timing out in silence. msgpack maps are self-describing, so these fields
 * stay readable whatever else a future version adds.
 *
 * @param parts - received multipart parts `[header, ...frames]`
 * @returns the peeked fields, or null when the first part is not a msgpack map of ≤ {@link MAX_HEADER_BYTES}
 */
export function peekHeader(parts: readonly Uint8Array[]): HeaderPeek | null {
  const head = parts[0];
  if (head === undefined || head.byteLength > MAX_HEADER_BYTES) return null;
  let raw: unknown;
  try {
    raw = packr.unpack(head);
  } catch {
    return null;
  }
  const proto: unknown = typeof raw === 'object' && raw !== null ? Object.getPrototypeOf(raw) : undefined;
  if (proto !== Object.prototype && proto !== null) return null;
  const h = raw as Header;
  const text = (x: unknown): string | null => (typeof x === 'string' ? x.slice(0, MAX_STRING_LENGTH) : null);
  return { v: h.v, type: h.type, code: h.type === 'error' ? text(h.code) : null, message: h.type === 'error' ? text(h.message) : null };
}
