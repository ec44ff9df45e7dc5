import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { isTrainerError } from '../../../src/contract/errors.js';
import {
  decode,
  decodeAs,
  encode,
  errorReply,
  isReplyTo,
  isRequest,
  REPLY_TYPE,
  replyMessage,
  requestMessage,
  MAX_FRAMES,
  MAX_HEADER_BYTES,
  PROTOCOL_VERSION,
  type ChunkMessage,
  type Message,
  type RequestKind,
  type RequestMessage,
} from '../../../src/contract/protocol/index.js';

const packr = new Packr({ useRecords: false });
const isProtocolError = (err: unknown): boolean => isTrainerError(err, 'ERR_PROTOCOL');

const chunk: ChunkMessage = {
  type: 'chunk',
  generation: 3,
  step: 17,
  bucket: 2,
  phase: 'reduce-scatter',
  ringStep: 1,
  chunk: 2,
  offset: 0,
  from: 1,
  dtype: 'float32',
  byteLength: 12,
};

const controlMessages: Message[] = [
  {
    type: 'hello',
    rankRequest: null,
    dataAddress: 'tcp://127.0.0.1:40001',
    pid: 1234,
    host: 'node-a',
    hostId: '0123456789abcdef',
    capabilities: { backend: 'wasm', wireDtypes: ['float32', 'float16'], maxFrameBytes: 1 << 20 },
  },
  {
    type: 'welcome',
    rank: 1,
    worldSize: 2,
    generation: 5,
    ring: [
      { rank: 0, dataAddress: 'tcp://127.0.0.1:40000', localDataAddress: 'ipc:///tmp/pets-ring-1-ab', hostId: 'fedcba9876543210' },
      { rank: 1, dataAddress: 'tcp://127.0.0.1:40001' },
    ],
  },
  { type: 'heartbeat', sender: 'coordinator', rank: -1, seq: 9, sentAtMs: 1_700_000_000_000 },
  { type: 'error', code: 'ERR_WORKER_LOST', message: 'rank 2 missed 3 heartbeats', rank: -1, command: null, requestId: null },
  { type: 'shutdown', reason: 'done' },
  { type: 'error', code: 'ERR_DATA', message: 'sync-bn: disk gone', rank: 1, command: 'sync-bn', requestId: 12 },
];

test('control messages round-trip unchanged with no frames', () => {
  for (const m of controlMessages) {
    const parts = encode(m);
    assert.equal(parts.length, 1);
    const d = decode(parts);
    assert.deepEqual(d.message, m);
    assert.equal(d.frames.length, 0);
  }
});

test('chunk round-trips with its tensor as a raw frame (not inside msgpack)', () => {
  const values = new Float32Array([1.5, -2, 3.25]);
  const frame = new Uint8Array(values.buffer);
  const parts = encode(chunk, [frame]);
  assert.equal(parts.length, 2);
  assert.ok(parts[0].byteLength < 200, `header is small: ${parts[0].byteLength} bytes`);
  const { message, frames } = decodeAs(parts, 'chunk');
  assert.deepEqual(message, chunk);
  assert.deepEqual(new Float32Array(new Uint8Array(frames[0]).buffer), values);
});

test('the header carries the protocol version and is plain msgpack', () => {
  const header = packr.unpack(encode(controlMessages[4])[0]) as Record<string, unknown>;
  assert.equal(header.v, PROTOCOL_VERSION);
  assert.equal(header.type, 'shutdown');
});

function rejects(parts: Uint8Array[], pattern: RegExp): void {
  assert.throws(() => decode(parts), (err: unknown) => isProtocolError(err) && pattern.test((err as Error).message));
}

test('wrong version, unknown type, missing fields are ERR_PROTOCOL', () => {
  rejects([packr.pack({ v: PROTOCOL_VERSION + 1, type: 'shutdown', reason: 'x' })], new RegExp(`expected v=${PROTOCOL_VERSION}, got ${PROTOCOL_VERSION + 1}`));
  rejects([packr.pack({ type: 'shutdown', reason: 'x' })], /version mismatch/);
  rejects([packr.pack({ v: PROTOCOL_VERSION, type: 'bogus' })], /unknown message type "bogus"/);
  rejects([packr.pack({ v: PROTOCOL_VERSION, type: 'toString' })], /unknown message type/);
  rejects([packr.pack({ v: PROTOCOL_VERSION, type: 'heartbeat', sender: 'worker', rank: 0, seq: -1, sentAtMs: 0 })], /seq must be an integer/);
  const { byteLength: _omit, ...noLength } = chunk;
  rejects([packr.pack({ v: PROTOCOL_VERSION, ...noLength }), new Uint8Array(12)], /byteLength must be an integer/);
  rejects([packr.pack({ v: PROTOCOL_VERSION, ...chunk, dtype: 'int8' })], /dtype must be one of/);
});

test('malformed, truncated, non-map and oversized headers are ERR_PROTOCOL, never a crash', () => {
  const good = encode(controlMessages[0])[0];
  rejects([good.subarray(0, good.byteLength - 3)], /malformed msgpack/);
  rejects([Buffer.from('hello world')], /malformed msgpack/);
  rejects([Buffer.from([0xc1])], /header must be a map/);
  rejects([packr.pack([1, 2, 3])], /header must be a map, got array/);
  rejects([packr.pack(null)], /header must be a map, got null/);
  rejects([Buffer.alloc(MAX_HEADER_BYTES + 1)], /header must be ≤ MAX_HEADER_BYTES/);
  rejects([], /empty multipart/);
  rejects(Array.from({ length: MAX_FRAMES + 2 }, () => good), /≤ 9 parts/);
});

test('frames must match the header: count, announced length, dtype alignment', () => {
  const header = encode(chunk, [new Uint8Array(12)])[0];
  rejects([header], /must carry 1 frame/);
  rejects([header, new Uint8Array(8)], /byteLength=12 bytes, got 8/);
  rejects([header, new Uint8Array(12), new Uint8Array(1)], /must carry 1 frame/);
  const odd = packr.pack({ v: PROTOCOL_VERSION, ...chunk, byteLength: 6 });
  rejects([odd, new Uint8Array(6)], /multiple of 4/);
  const half = packr.pack({ v: PROTOCOL_VERSION, ...chunk, dtype: 'float16', byteLength: 6 });
  assert.equal(decode([half, new Uint8Array(6)]).message.type, 'chunk');
  rejects([encode(controlMessages[4])[0], new Uint8Array(4)], /shutdown must carry 0 frame/);
});

test('welcome.ring must list every rank in order with valid addresses', () => {
  const w = controlMessages[1];
  rejects([packr.pack({ v: PROTOCOL_VERSION, ...w, ring: [] })], /array of worldSize=2 members, got 0/);
  const swapped = { ...w, ring: [{ rank: 1, dataAddress: 'tcp://a:1' }, { rank: 0, dataAddress: 'tcp://b:2' }] };
  rejects([packr.pack({ v: PROTOCOL_VERSION, ...swapped })], /ring\[0\]\.rank must be an integer in \[0, 0\]/);
  rejects([packr.pack({ v: PROTOCOL_VERSION, ...w, rank: 2 })], /rank must be an integer in \[0, 1\]/);
  const badAddr = { ...w, ring: [{ rank: 0, dataAddress: 'http://x' }, { rank: 1, dataAddress: 'tcp://b:2' }] };
  rejects([packr.pack({ v: PROTOCOL_VERSION, ...badAddr })], /dataAddress must be a string matching/);
});

test('hello and welcome carry an optional sharedMemory announcement (usable, or why not); absent stays absent, malformed is ERR_PROTOCOL', () => {
  const can = { ...controlMessages[0], sharedMemory: { usable: true } } as Message;
  assert.deepEqual(decode(encode(can)).message, can);
  const cannot = { ...controlMessages[0], sharedMemory: { usable: false, reason: 'shared-memory module not built' } } as Message;
  assert.deepEqual(decode(encode(cannot)).message, cannot);
  assert.equal('sharedMemory' in decode(encode(controlMessages[0])).message, false, 'a worker that predates the field');
  const w = controlMessages[1];
  if (w.type !== 'welcome') throw new Error('fixture');
  const welcome: Message = { ...w, ring: [{ ...w.ring[0], sharedMemory: { usable: false, reason: 'no g++' } }, { ...w.ring[1], sharedMemory: { usable: true } }] };
  assert.deepEqual(decode(encode(welcome)).message, welcome);
  rejects([packr.pack({ v: PROTOCOL_VERSION, ...controlMessages[0], sharedMemory: true })], /hello.sharedMemory must be a map/);
  rejects([packr.pack({ v: PROTOCOL_VERSION, ...controlMessages[0], sharedMemory: { usable: 'yes' } })], /hello.sharedMemory.usable must be a boolean/);
  rejects([packr.pack({ v: PROTOCOL_VERSION, ...controlMessages[0], sharedMemory: { usable: false } })], /hello.sharedMemory.reason must be a string/);
  rejects([packr.pack({ v: PROTOCOL_VERSION, ...welcome, ring: [{ rank: 0, dataAddress: 'tcp://a:1', sharedMemory: [] }, w.ring[1]] })],
    /welcome.ring\[0\].sharedMemory must be a map/);
});

test('hello and welcome carry an optional ipc:// localDataAddress for same-host peers; anything else is ERR_PROTOCOL', () => {
  const hello = { ...controlMessages[0], localDataAddress: 'ipc:///tmp/pets-ring-1-ab' } as Message;
  assert.deepEqual(decode(encode(hello)).message, hello);
  const w = controlMessages[1];
  if (w.type !== 'welcome') throw new Error('fixture');
  const welcome: Message = { ...w, ring: [{ ...w.ring[0], localDataAddress: 'ipc:///tmp/a' }, w.ring[1]] };
  const back = decode(encode(welcome)).message;
  assert.deepEqual(back, welcome);
  assert.equal('localDataAddress' in (back.type === 'welcome' ? back.ring[1] : {}), false, 'absent stays absent');
  rejects([packr.pack({ v: PROTOCOL_VERSION, ...hello, localDataAddress: 'tcp://127.0.0.1:1' })], /localDataAddress must be a string matching/);
  rejects([packr.pack({ v: PROTOCOL_VERSION, ...welcome, ring: [{ rank: 0, dataAddress: 'tcp://a:1', localDataAddress: 7 }, w.ring[1]] })],
    /localDataAddress must be a string/);
  rejects([packr.pack({ v: PROTOCOL_VERSION, ...chunk, offset: -1 })], /offset must be an integer/);
});

test('encode validates outgoing messages and frames the same way', () => {
  assert.throws(() => encode(chunk, []), isProtocolError);
  assert.throws(() => encode({ ...chunk, step: 1.5 }, [new Uint8Array(12)]), isProtocolError);
  assert.throws(() => encode({ type: 'nope' } as unknown as Message), isProtocolError);
  assert.throws(() => decodeAs(encode(controlMessages[4]), 'hello'), /expected a hello message, got shutdown/);
});

test('random byte garbage never throws anything but ERR_PROTOCOL (seeded fuzz)', () => {
  let seed = 12345;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed >>> 16;
  };
  const valid = encode(chunk, [new Uint8Array(12)]);
  for (let i = 0; i < 2000; i++) {
    const head = Buffer.from(valid[0]);
    const flips = 1 + (rand() % 4);
    for (let f = 0; f < flips; f++) head[rand() % head.length] = rand() & 0xff;
    try {
      decode([head.subarray(0, 1 + (rand() % head.length)), valid[1]]);
    } catch (err) {
      assert.ok(isProtocolError(err), `unexpected error ${String(err)}`);
    }
  }
});

test('a diverged loss (NaN, ±Infinity) crosses the wire as a result: step-done and valid-done carry it, a non-number is refused', async () => {
  const { encode: enc, decode: dec } = await import('../../../src/contract/protocol/index.js');
  const done = {
    type: 'step-done', step: 12, generation: 1, rank: 1, count: 16, correct: 4, dataWaitSeconds: 0.01, forwardBackwardSeconds: 1.2,
    allreduceSeconds: 0.1, optimizerSeconds: 0.2, rssBytes: 1e9, allreduceBytes: 1e6, tfjsBytes: 1e8, tfjsTensors: 300, decodeQueueTasks: 2, skipped: {},
  } as const;
  const valid = { type: 'valid-done', requestId: 4, rank: 0, count: 3, correct: 1, byteLength: 0 } as const;
  // Before: ERR_PROTOCOL 'valid-done.lossSum must be a finite number, got null' ended a run whose lr was too high.
  for (const lossSum of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    assert.deepEqual(dec(enc({ ...done, lossSum })).message, { ...done, lossSum });
    assert.deepEqual(dec(enc({ ...valid, lossSum }, [new Uint8Array(0)])).message, { ...valid, lossSum });
  }
  for (const lossSum of [null, '1.5', undefined]) {
    assert.throws(() => enc({ ...done, lossSum } as never), (e: unknown) => (e as { code?: string }).code === 'ERR_PROTOCOL');
    assert.throws(() => enc({ ...valid, lossSum } as never, [new Uint8Array(0)]), /valid-done\.lossSum must be a number/);
  }
});

test('training control messages round-trip and reject bad fields', async () => {
  const { encode: enc, decode: dec } = await import('../../../src/contract/protocol/index.js');
  const step = { type: 'step', step: 12, generation: 1, stageIndex: 0, epoch: 0, stepInEpoch: 12, accum: 2, lrs: [1e-4, 1e-4, 1e-3], momentum: 0.9 } as const;
  assert.deepEqual(dec(enc(step)).message, step);
  const done = {
    type: 'step-done', step: 12, generation: 1, rank: 1, lossSum: 3.5, count: 16, correct: 4, dataWaitSeconds: 0.01, forwardBackwardSeconds: 1.2,
    allreduceSeconds: 0.1, optimizerSeconds: 0.2, rssBytes: 1e9, allreduceBytes: 1e6, tfjsBytes: 1e8, tfjsTensors: 300, decodeQueueTasks: 2, skipped: { empty: 1 },
  } as const;
  assert.deepEqual(dec(enc(done)).message, done);
  const state = dec(enc({ type: 'state', requestId: 3, rank: 0, byteLength: 8 }, [new Uint8Array(8)]));
  assert.equal(state.frames[0]!.byteLength, 8);
  for (const bad of [
    { ...step, lrs: [] }, { ...step, lrs: [Number.NaN] }, { ...step, accum: 0 },
    { ...done, skipped: { x: -1 } }, { ...done, allreduceSeconds: -0.1 }, { ...done, tfjsTensors: 1.5 }, { ...done, computeSeconds: 1, forwardBackwardSeconds: undefined }, { type: 'validate', requestId: 1, withProbabilities: 'yes' },
  ]) {
    assert.throws(() => enc(bad as never), (e: unknown) => (e as { code?: string }).code === 'ERR_PROTOCOL');
  }
});

const SUM = 'ab'.repeat(32);

test('request → reply table: every request kind round-trips, and its reply has the type the table names, echoing id and rank', () => {
  // The replies a worker sends (the table's right-hand side), built from each request as worker.ts does.
  const cases: [RequestMessage, Uint8Array[], Record<string, unknown>, Uint8Array[]][] = [
    [requestMessage('setup', 6, { byteLength: 2 }), [new Uint8Array(2)], { checksum: SUM, gradientElements: 10 }, []],
    [requestMessage('stage', 7, { stageIndex: 1, frozen: false }), [], {}, []],
    [requestMessage('validate', 8, { withProbabilities: true }), [], { lossSum: 1.5, count: 3, correct: 2, byteLength: 4 }, [new Uint8Array(4)]],
    [requestMessage('get-state', 9, {}), [], { byteLength: 8 }, [new Uint8Array(8)]],
    [requestMessage('load-state', 10, { byteLength: 8 }), [new Uint8Array(8)], { checksum: SUM }, []],
    [requestMessage('checksum', 11, {}), [], { checksum: SUM }, []],
    [requestMessage('sync-bn', 12, { generation: 4 }), [], {}, []],
  ];
  const expectedReply: Record<RequestKind, string> = { setup: 'ready', stage: 'ack', validate: 'valid-done', 'get-state': 'state', 'load-state': 'weights-checksum', checksum: 'weights-checksum', 'sync-bn': 'ack' };
  assert.deepEqual({ ...REPLY_TYPE }, expectedReply);
  for (const [request, requestFrames, payload, replyFrames] of cases) {
    assert.deepEqual(decode(encode(request, requestFrames)).message, request);
    const reply = replyMessage(request, 3, payload as never);
    const back = decode(encode(reply, replyFrames)).message;
    assert.deepEqual(back, { ...payload, type: expectedReply[request.type], requestId: request.requestId, rank: 3 });
    assert.ok(isReplyTo(request.type, request.requestId, back), `${request.type}: its reply is recognised`);
    assert.ok(!isReplyTo(request.type, request.requestId + 1, back), `${request.type}: a reply to another request id is not`);
  }
  // stage and sync-bn share the `ack` reply type: the request id tells them apart, never the caller.
  assert.ok(!isReplyTo('validate', 7, replyMessage(cases[0]![0], 0, {} as never)), 'an ack is no reply to validate');
});

test('a worker error names what it answers: the failed message\'s type, and its request id when it is a request', () => {
  const syncBn = requestMessage('sync-bn', 12, { generation: 4 });
  assert.deepEqual(errorReply(syncBn, 1, 'ERR_WORKER_LOST', 'sync-bn: aborted'),
    { type: 'error', code: 'ERR_WORKER_LOST', message: 'sync-bn: aborted', rank: 1, command: 'sync-bn', requestId: 12 });
  assert.deepEqual(errorReply({ type: 'commit', step: 4 }, 0, 'ERR_INTERNAL', 'commit: x'),
    { type: 'error', code: 'ERR_INTERNAL', message: 'commit: x', rank: 0, command: 'commit', requestId: null });
  assert.ok(isRequest(syncBn) && isRequest(requestMessage('setup', 1, { byteLength: 1 })));
  assert.ok(!isRequest({ type: 'commit', step: 4 }) && !isRequest({ type: 'step-failed', step: 1, generation: 1, rank: 0, code: 'ERR_TIMEOUT', message: '' }));
  for (const bad of [
    { type: 'error', code: 'ERR_DATA', message: 'm', rank: 1 },
    { type: 'error', code: 'ERR_DATA', message: 'm', rank: 1, command: 'no-such-type', requestId: null },
    { type: 'error', code: 'ERR_DATA', message: 'm', rank: 1, command: 'sync-bn', requestId: -1 },
    { type: 'hello', rankRequest: null, dataAddress: 'tcp://127.0.0.1:1', pid: 1, host: 'h', hostId: 'not-hex', capabilities: { backend: 'wasm', wireDtypes: [], maxFrameBytes: 1 } },
  ]) {
    assert.throws(() => encode(bad as never), (e: unknown) => isProtocolError(e), JSON.stringify(bad));
  }
});

test('typed replies reject a bad payload: a checksum that is not sha256 hex, a reply without rank', () => {
  for (const bad of [
    { type: 'ready', rank: 0, checksum: SUM, gradientElements: 1 },
    { type: 'weights-checksum', requestId: 1, rank: 0, checksum: 'not-hex' },
    { type: 'ack', requestId: 1 },
    { type: 'sync-bn', requestId: 1 },
  ]) {
    assert.throws(() => encode(bad as never), (e: unknown) => isProtocolError(e));
  }
});
