import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import * as zmq from 'zeromq';
import { CURVE_KEY_FILES, ControlServer, countedSilenceMs, loadOrCreateCurveKeys, type Member } from '../../../src/coordinator/control.js';
import { isTrainerError } from '../../../src/contract/errors.js';
import { PROTOCOL_VERSION, decode, encode, peekHeader } from '../../../src/contract/protocol/index.js';

const dir = mkdtempSync(join(tmpdir(), 'control-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const HELLO = { type: 'hello', rankRequest: null, dataAddress: 'tcp://127.0.0.1:1', pid: 7, host: 'h', capabilities: { backend: 'wasm', wireDtypes: ['float32'], maxFrameBytes: 1024 } } as const;

test('CURVE keys: created once with mode 0600 (directory 0700), loaded again unchanged; corrupt files are ERR_BAD_FLAG', () => {
  const keysDir = join(dir, 'keys');
  const a = loadOrCreateCurveKeys(keysDir);
  assert.match(a.publicKey, /^\S{40}$/);
  assert.notEqual(a.publicKey, a.secretKey);
  assert.equal(statSync(keysDir).mode & 0o777, 0o700);
  for (const f of Object.values(CURVE_KEY_FILES)) assert.equal(statSync(join(keysDir, f)).mode & 0o777, 0o600, f);
  assert.deepEqual(loadOrCreateCurveKeys(keysDir), a);
  writeFileSync(join(keysDir, CURVE_KEY_FILES.secretKey), 'short');
  assert.throws(() => loadOrCreateCurveKeys(keysDir), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && /40-character Z85 key/.test(e.message));
  // 40 characters of the Z85 alphabet, yet no key: '#####' encodes 85^5 − 1, over 32 bits. The character check let it
  // through and zeromq's setter threw a bare 'Invalid argument' when the control socket was made.
  writeFileSync(join(keysDir, CURVE_KEY_FILES.secretKey), '#'.repeat(40));
  assert.throws(() => loadOrCreateCurveKeys(keysDir), (e) => isTrainerError(e, 'ERR_BAD_FLAG')
    && /must each hold a 40-character Z85 key \(characters 1-5 \(#####\) encode 4437053124, more than 32 bits\)/.test(e.message));
});

test('peekHeader reads {v, type} and an error\'s text from any version, null for non-maps', () => {
  const packr = new Packr({ useRecords: false });
  assert.deepEqual(peekHeader([packr.pack({ v: 9, type: 'error', code: 'ERR_X', message: 'm', extra: 1 })]), { v: 9, type: 'error', code: 'ERR_X', message: 'm' });
  assert.deepEqual(peekHeader(encode({ type: 'shutdown', reason: 'r' })), { v: PROTOCOL_VERSION, type: 'shutdown', code: null, message: null });
  assert.equal(peekHeader([Buffer.from([0xc1])]), null);
  assert.equal(peekHeader([packr.pack([1, 2])]), null);
  assert.equal(peekHeader([]), null);
});

test('ROUTER: garbage is counted and logged, a hello of another version is answered with a readable error, a good hello joins', async () => {
  const lines: string[] = [];
  const server = new ControlServer({ bind: 'tcp://127.0.0.1:0', heartbeatIntervalMs: 100, heartbeatTimeoutMs: 5000, log: (l) => lines.push(l) });
  const endpoint = await server.start();
  const client = new zmq.Dealer({ linger: 0, routingId: 'w1', receiveTimeout: 5000 });
  try {
    client.connect(endpoint);
    const packr = new Packr({ useRecords: false });
    await client.send([Buffer.from('garbage')]);
    await client.send([packr.pack({ v: PROTOCOL_VERSION + 1, ...HELLO })]);
    const [reply] = await client.receive();
    const { message } = decode([reply!]);
    assert.equal(message.type, 'error');
    assert.match(message.type === 'error' ? message.message : '', new RegExp(`speaks v${PROTOCOL_VERSION}, the worker sent v${PROTOCOL_VERSION + 1}`));
    assert.equal(server.rejected, 2);
    assert.equal(lines.filter((l) => /^rejected a frame from peer 7731:/.test(l)).length, 2);
    const joined = new Promise((res) => server.once('hello', res));
    await client.send(encode(HELLO));
    await joined;
    assert.equal(server.all().length, 1);
  } finally {
    client.close();
    server.close();
    server.close();
  }
});

test('a worker of another build is refused at hello with ERR_STALE_BUILD it can print; the same build, no build said, or a coordinator from sources admit', async () => {
  const ours = '0123456789abcdef', other = 'fedcba9876543210';
  const lines: string[] = [];
  const server = new ControlServer({ bind: 'tcp://127.0.0.1:0', heartbeatIntervalMs: 100, heartbeatTimeoutMs: 5000, build: ours, log: (l) => lines.push(l) });
  const fromSources = new ControlServer({ bind: 'tcp://127.0.0.1:0', heartbeatIntervalMs: 100, heartbeatTimeoutMs: 5000, build: null, log: () => {} });
  const clients: zmq.Dealer[] = [];
  const join = async (s: ControlServer, endpoint: string, id: string, build: string | null | undefined): Promise<void> => {
    const c = new zmq.Dealer({ linger: 0, routingId: id, receiveTimeout: 5000 });
    clients.push(c);
    c.connect(endpoint);
    const joined = new Promise((res) => s.once('hello', res));
    await c.send(encode({ ...HELLO, capabilities: { ...HELLO.capabilities, ...(build === undefined ? {} : { build }) } }));
    await joined;
  };
  try {
    const endpoint = await server.start();
    const refused = new zmq.Dealer({ linger: 0, routingId: 'w-other', receiveTimeout: 5000 });
    clients.push(refused);
    refused.connect(endpoint);
    await refused.send(encode({ ...HELLO, capabilities: { ...HELLO.capabilities, build: other } }));
    const { message } = decode(await refused.receive());
    assert.equal(message.type, 'error');
    if (message.type !== 'error') return;
    assert.equal(message.code, 'ERR_STALE_BUILD');
    assert.match(message.message, new RegExp(`runs build ${other}, this coordinator build ${ours}: run the same sources on both`));
    assert.equal(server.all().length, 0, 'never admitted');
    assert.equal(lines.filter((l) => l.startsWith('refused a worker: ')).length, 1);
    await join(server, endpoint, 'w-same', ours);
    await join(server, endpoint, 'w-unsaid', undefined);
    await join(server, endpoint, 'w-sources', null);
    assert.deepEqual(server.all().map((m) => m.id).sort(), ['w-same', 'w-sources', 'w-unsaid']);
    await join(fromSources, await fromSources.start(), 'w-any', other);
    assert.equal(fromSources.all().length, 1);
  } finally {
    for (const c of clients) c.close();
    server.close();
    fromSources.close();
  }
});

test('hello.capabilities.build is null or 16 hex digits', () => {
  const packr = new Packr({ useRecords: false });
  const hello = (build: unknown): unknown => decode([packr.pack({ v: PROTOCOL_VERSION, ...HELLO, capabilities: { ...HELLO.capabilities, build } })]).message;
  assert.equal((hello('0123456789abcdef') as { capabilities: { build: string } }).capabilities.build, '0123456789abcdef');
  assert.equal((hello(null) as { capabilities: { build: null } }).capabilities.build, null);
  for (const bad of ['xyz', 12, '0123456789ABCDEF']) assert.throws(() => hello(bad), (e) => isTrainerError(e, 'ERR_PROTOCOL'), String(bad));
});

test('a busy port is ERR_PORT_IN_USE naming the endpoint', async () => {
  const a = new ControlServer({ bind: 'tcp://127.0.0.1:0', heartbeatIntervalMs: 100, heartbeatTimeoutMs: 5000, log: () => {} });
  const endpoint = await a.start();
  const b = new ControlServer({ bind: endpoint, heartbeatIntervalMs: 100, heartbeatTimeoutMs: 5000, log: () => {} });
  try {
    await assert.rejects(b.start(), (e) => isTrainerError(e, 'ERR_PORT_IN_USE') && e.message.includes(endpoint));
  } finally {
    a.close();
    b.close();
  }
});

test('countedSilenceMs: time since last heard, minus the time the coordinator itself was blocked, never negative', () => {
  assert.equal(countedSilenceMs(10_000, 4_000, 0), 6_000);
  assert.equal(countedSilenceMs(10_000, 4_000, 5_000), 1_000);
  assert.equal(countedSilenceMs(10_000, 4_000, 9_000), 0);
});

/** A dealer that says hello as `id` (pid `pid`) and can heartbeat. */
async function member(endpoint: string, id: string, pid: number): Promise<{ beat: () => Promise<void>; close: () => void }> {
  const d = new zmq.Dealer({ linger: 0, routingId: id });
  d.connect(endpoint);
  await d.send(encode({ ...HELLO, pid }));
  let seq = 0;
  return { beat: () => d.send(encode({ type: 'heartbeat', sender: 'worker', rank: -1, seq: seq++, sentAtMs: Date.now() })), close: () => d.close() };
}

test('silence: a process-watched member is logged, not lost; an unwatched one is lost after the timeout', async () => {
  const lines: string[] = [];
  const server = new ControlServer({ bind: 'tcp://127.0.0.1:0', heartbeatIntervalMs: 50, heartbeatTimeoutMs: 300, watchedByProcess: (m: Member) => m.hello.pid === 1, log: (l) => lines.push(l) });
  const endpoint = await server.start();
  const lost: string[] = [];
  server.on('lost', (m) => lost.push(m.id));
  const joined = new Promise<void>((res) => { let n = 0; server.on('hello', () => { if (++n === 2) res(); }); });
  const a = await member(endpoint, 'local', 1), b = await member(endpoint, 'remote', 2);
  try {
    await joined;
    // Both go silent; wait for the event of each (no assertion on when).
    while (!(lost.includes('remote') && lines.some((l) => /pid 1, local\) silent for \d+ ms; its process is alive, so it is not declared lost/.test(l)))) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(lost, ['remote']);
    assert.deepEqual(server.live().map((m) => m.id), ['local']);
    assert.equal(lines.filter((l) => /silent for/.test(l)).length, 1, 'logged once per silence');
  } finally {
    a.close();
    b.close();
    server.close();
  }
});

test('silence: the time the coordinator itself was blocked does not count against a member (a blocked loop is no dead worker)', async () => {
  const server = new ControlServer({ bind: 'tcp://127.0.0.1:0', heartbeatIntervalMs: 50, heartbeatTimeoutMs: 300, log: () => {} });
  const endpoint = await server.start();
  const lost: string[] = [];
  server.on('lost', (m, why) => lost.push(why));
  const joined = new Promise((res) => server.once('hello', res));
  const w = await member(endpoint, 'w', 3);
  const beats = setInterval(() => void w.beat(), 30);
  try {
    await joined;
    const heard = server.all()[0]!.lastSeenMs;
    while (server.all()[0]!.lastSeenMs === heard) await new Promise((r) => setTimeout(r, 10));
    // Block this process (coordinator and member alike) for 5 × the timeout, as a long synchronous job would.
    const until = Date.now() + 1500;
    while (Date.now() < until) { /* busy */ }
    // Let ten heartbeats of the member be read after the block.
    const after = server.all()[0]!.lastSeenMs;
    let seen = 0;
    while (seen < 10) {
      await new Promise((r) => setTimeout(r, 30));
      if (server.all()[0]!.lastSeenMs !== after) seen++;
    }
    assert.deepEqual(lost, []);
  } finally {
    clearInterval(beats);
    w.close();
    server.close();
  }
});

test('silence is timed on the monotonic clock: a wall clock stepped back does not hide a dead remote worker', { timeout: 120_000 }, async () => {
  // Seen by the breaker: silence was Date.now() − last heard, so after the clock was stepped back an hour (NTP, `date
  // -s`) a remote worker that died was found lost an hour late, the run waiting on it.
  const realNow = Date.now;
  const server = new ControlServer({ bind: 'tcp://127.0.0.1:0', heartbeatIntervalMs: 20, heartbeatTimeoutMs: 5000, log: () => {} });
  const endpoint = await server.start();
  const lost = new Promise<'lost'>((res) => server.once('lost', () => res('lost')));
  const joined = new Promise((res) => server.once('hello', res));
  const w = await member(endpoint, 'remote', 4);
  // The coordinator's heartbeats to the member count its ticks (one per 20 ms at most).
  const hb = new zmq.Dealer({ linger: 0, routingId: 'remote/hb' });
  hb.connect(endpoint);
  try {
    await joined;
    await hb.send(encode({ type: 'heartbeat', sender: 'worker', rank: -1, seq: 0, sentAtMs: Date.now() }));
    const ticks = async (n: number): Promise<'ticking'> => {
      for (let i = 0; i < n; i++) await hb.receive();
      return 'ticking';
    };
    // (A start stalled past the 5 s timeout by load finds it lost before the step: that proves nothing, fails nothing.)
    if (await Promise.race([ticks(1), lost]) === 'lost') return;
    Date.now = () => realNow() - 3_600_000;
    // The member is silent from here on: 5 s of silence is over within ~250 ticks (load delays ticks, never adds any).
    assert.equal(await Promise.race([ticks(1000), lost]), 'lost');
  } finally {
    Date.now = realNow;
    hb.close();
    w.close();
    server.close();
  }
});

test('--curve-keys in a folder that cannot be made (procfs) is ERR_BAD_FLAG at once, not a hang', { skip: !existsSync('/proc/self') && 'no procfs' }, () => {
  // Seen by the breaker: `--curve-keys /proc/x` hung the coordinator at 100 % CPU, deaf to SIGTERM (Node 20's
  // recursive mkdirSync loops where mkdir(2) answers ENOENT though the parent exists). In a child, killed if it hangs.
  const script = `import { loadOrCreateCurveKeys } from ${JSON.stringify(new URL('../../../src/coordinator/control.ts', import.meta.url).href)};
    try { loadOrCreateCurveKeys('/proc/pets-keys'); console.log('created?'); } catch (e) { console.log(e.code + ': ' + e.message); }`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' });
  assert.equal(r.signal, null, 'hung (killed after 60 s)');
  assert.match(r.stdout, /^ERR_BAD_FLAG: --curve-keys \/proc\/pets-keys: cannot create \/proc\/pets-keys \(ENOENT: no such file or directory\); choose another folder with --curve-keys/);
});
