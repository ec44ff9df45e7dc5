/**
 * Validation of every message type: header map → typed {@link Message}, and the frames each type carries.
 * Adding a message type: add its interface to `Message` (messages.ts), its validator to `VALIDATORS` and its frame
 * count to `FRAME_COUNT`; the compiler checks the tables are complete.
 */
import type { TrainerErrorCode } from '../errors.js';
import { bool, counts, fail, int, lossNum, num, numbers, oneOf, record, seconds, str, type Header } from './fields.js';
import type { Capabilities, Message, MessageType, ReduceTagFields, RingMember, SharedMemorySupport, StepStats } from './messages.js';
import { MAX_FRAME_BYTES, MAX_WORLD_SIZE, PROTOCOL_VERSION, WIRE_DTYPE_BYTES, type WireDtype } from './version.js';

/** The {@link StepStats} of a `step-done`: seconds finite and ≥ 0, counts and bytes integers ≥ 0. */
function stepStats(h: Header): StepStats {
  return {
    count: int(h, 'count', 0), dataWaitSeconds: seconds(h, 'dataWaitSeconds'), forwardBackwardSeconds: seconds(h, 'forwardBackwardSeconds'),
    allreduceSeconds: seconds(h, 'allreduceSeconds'), optimizerSeconds: seconds(h, 'optimizerSeconds'), allreduceBytes: int(h, 'allreduceBytes', 0),
    decodeQueueTasks: int(h, 'decodeQueueTasks', 0), tfjsBytes: int(h, 'tfjsBytes', 0), tfjsTensors: int(h, 'tfjsTensors', 0), rssBytes: int(h, 'rssBytes', 0),
  };
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

function requestId(h: Header): { requestId: number } {
  return { requestId: int(h, 'requestId', 0) };
}

function replyFields(h: Header): { requestId: number; rank: number } {
  return { requestId: int(h, 'requestId', 0), rank: int(h, 'rank', 0, MAX_WORLD_SIZE - 1) };
}

const DTYPES: readonly WireDtype[] = ['float32', 'float16'];
/** A build stamp (`contract/build-stamp.ts`): 16 hex digits. */
const BUILD_HASH = /^[0-9a-f]{16}$/;
const ADDRESS = /^(tcp|ipc|inproc):\/\/\S+$/;
const IPC_ADDRESS = /^ipc:\/\/\S+$/;

/** A host identity (`contract/host-identity.ts`): 16 hex digits. */
const HOST_ID = /^[0-9a-f]{16}$/;

/** An optional host identity (absent → no field). */
function hostId(h: Header): { hostId?: string } {
  return h.hostId === undefined ? {} : { hostId: str(h, 'hostId', HOST_ID) };
}

/** An optional `ipc://` data-plane address (absent → no field). */
function localAddress(h: Header): { localDataAddress?: string } {
  return h.localDataAddress === undefined ? {} : { localDataAddress: str(h, 'localDataAddress', IPC_ADDRESS) };
}

/** An optional {@link SharedMemorySupport} (absent → no field); `reason` is required when not `usable`. */
function sharedMemory(h: Header, where: string): { sharedMemory?: SharedMemorySupport } {
  if (h.sharedMemory === undefined) return {};
  const named = { ...record(h.sharedMemory, `${where}.sharedMemory`), type: `${where}.sharedMemory` };
  const usable = bool(named, 'usable');
  if (usable) return { sharedMemory: { usable } };
  return { sharedMemory: { usable, reason: str(named, 'reason') } };
}

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
  const base = { backend: str(named, 'backend'), wireDtypes: dtypes, maxFrameBytes: int(named, 'maxFrameBytes', 0) };
  if (c.build === undefined) return base;
  return { ...base, build: c.build === null ? null : str(named, 'build', BUILD_HASH) };
}

function ring(h: Header, worldSize: number): RingMember[] {
  const r = h.ring;
  if (!Array.isArray(r) || r.length !== worldSize) {
    fail(`welcome.ring must be an array of worldSize=${worldSize} members, got ${Array.isArray(r) ? r.length : typeof r}`);
  }
  return r.map((m: unknown, i: number) => {
    const member = { ...record(m, `welcome.ring[${i}]`), type: `welcome.ring[${i}]` };
    return {
      rank: int(member, 'rank', i, i), dataAddress: str(member, 'dataAddress', ADDRESS), ...localAddress(member), ...hostId(member),
      ...sharedMemory(member, `welcome.ring[${i}]`),
    };
  });
}

/** Per-type validators: header map → typed message, or ERR_PROTOCOL. */
const VALIDATORS: { readonly [K in MessageType]: (h: Header) => Extract<Message, { type: K }> } = {
  hello: (h) => ({
    type: 'hello',
    rankRequest: h.rankRequest === null ? null : int(h, 'rankRequest', 0, MAX_WORLD_SIZE - 1),
    dataAddress: str(h, 'dataAddress', ADDRESS),
    ...localAddress(h),
    ...sharedMemory(h, 'hello'),
    pid: int(h, 'pid', 0),
    host: str(h, 'host'),
    ...hostId(h),
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
    command: h.command === null ? null : oneOf(h, 'command', MESSAGE_TYPES),
    requestId: h.requestId === null ? null : int(h, 'requestId', 0),
  }),
  shutdown: (h) => ({ type: 'shutdown', reason: str(h, 'reason') }),
  chunk: (h) => ({
    type: 'chunk',
    ...tagFields(h),
    phase: oneOf(h, 'phase', ['reduce-scatter', 'all-gather', 'done'] as const),
    ringStep: int(h, 'ringStep', 0, MAX_WORLD_SIZE - 2),
    chunk: int(h, 'chunk', 0, MAX_WORLD_SIZE - 1),
    offset: int(h, 'offset', 0),
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
  setup: (h) => ({ type: 'setup', ...requestId(h), byteLength: int(h, 'byteLength', 1, MAX_FRAME_BYTES) }),
  ready: (h) => ({
    type: 'ready', ...replyFields(h), checksum: str(h, 'checksum', SHA256_HEX),
    gradientElements: int(h, 'gradientElements', 0),
  }),
  stage: (h) => ({ type: 'stage', ...requestId(h), stageIndex: int(h, 'stageIndex', 0, 1024), frozen: bool(h, 'frozen') }),
  step: (h) => ({
    type: 'step', step: int(h, 'step', 0), generation: int(h, 'generation', 0), stageIndex: int(h, 'stageIndex', 0, 1024),
    epoch: int(h, 'epoch', 0), stepInEpoch: int(h, 'stepInEpoch', 0), accum: int(h, 'accum', 1, 65536),
    lrs: numbers(h, 'lrs', 1, 16), momentum: num(h, 'momentum'),
  }),
  'step-done': (h) => ({
    type: 'step-done', step: int(h, 'step', 0), generation: int(h, 'generation', 0), rank: int(h, 'rank', 0, MAX_WORLD_SIZE - 1),
    lossSum: lossNum(h, 'lossSum'), correct: int(h, 'correct', 0), ...stepStats(h), skipped: counts(h, 'skipped'),
  }),
  'step-failed': (h) => ({
    type: 'step-failed', step: int(h, 'step', 0), generation: int(h, 'generation', 0), rank: int(h, 'rank', 0, MAX_WORLD_SIZE - 1),
    code: str(h, 'code', /^ERR_[A-Z_]+$/) as TrainerErrorCode, message: str(h, 'message'),
  }),
  commit: (h) => ({ type: 'commit', step: int(h, 'step', 0) }),
  abort: (h) => ({ type: 'abort', step: int(h, 'step', 0) }),
  validate: (h) => ({ type: 'validate', ...requestId(h), withProbabilities: bool(h, 'withProbabilities') }),
  'get-state': (h) => ({ type: 'get-state', ...requestId(h) }),
  checksum: (h) => ({ type: 'checksum', ...requestId(h) }),
  'sync-bn': (h) => ({ type: 'sync-bn', ...requestId(h), generation: int(h, 'generation', 0) }),
  'valid-done': (h) => ({
    type: 'valid-done', ...replyFields(h),
    lossSum: lossNum(h, 'lossSum'), count: int(h, 'count', 0), correct: int(h, 'correct', 0), byteLength: int(h, 'byteLength', 0, MAX_FRAME_BYTES),
  }),
  state: (h) => ({ type: 'state', ...replyFields(h), byteLength: int(h, 'byteLength', 1, MAX_FRAME_BYTES) }),
  'load-state': (h) => ({ type: 'load-state', ...requestId(h), byteLength: int(h, 'byteLength', 1, MAX_FRAME_BYTES) }),
  ack: (h) => ({ type: 'ack', ...replyFields(h) }),
  'weights-checksum': (h) => ({ type: 'weights-checksum', ...replyFields(h), checksum: str(h, 'checksum', SHA256_HEX) }),
};

/** Every message type, for the `command` an `error` names. */
const MESSAGE_TYPES = Object.keys(VALIDATORS) as MessageType[];

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
  'weights-checksum': 0,
};

/** Checks the frames against the message: count, announced length, dtype alignment. */
export function checkFrames(message: Message, frames: readonly Uint8Array[]): void {
  const expected = FRAME_COUNT[message.type];
  if (frames.length !== expected) fail(`${message.type} must carry ${expected} frame(s), got ${frames.length}`);
  if (!('byteLength' in message)) return;
  const got = frames[0].byteLength;
  if (got !== message.byteLength) fail(`${message.type} frame must be byteLength=${message.byteLength} bytes, got ${got}`);
  if (!['chunk', 'star-push', 'star-result', 'valid-done'].includes(message.type)) return;
  const elementBytes = WIRE_DTYPE_BYTES['dtype' in message ? message.dtype : 'float32'];
  if (got % elementBytes !== 0) fail(`${message.type} frame length must be a multiple of ${elementBytes}, got ${got}`);
}

/** Checks the version and type of a header and validates its fields. @throws TrainerError ERR_PROTOCOL */
export function validateHeader(h: Header): Message {
  if (h.v !== PROTOCOL_VERSION) {
    fail(`protocol version mismatch: expected v=${PROTOCOL_VERSION}, got ${JSON.stringify(h.v)}`);
  }
  const type = h.type;
  if (typeof type !== 'string' || !Object.hasOwn(VALIDATORS, type)) {
    fail(`unknown message type ${JSON.stringify(type)?.slice(0, 80)}`);
  }
  return VALIDATORS[type as MessageType](h);
}
