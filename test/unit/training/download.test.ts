/**
 * downloadFile against a local node:http server on 127.0.0.1 (ephemeral port): normal download, a transfer cut
 * mid-way then resumed with Range, a wrong checksum, mirror fallback, offline error, reuse without network, one
 * download of a file at a time (its lock: waited for, taken over from a dead owner).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { backoffDelayMs, downloadFile } from '../../../src/training/download.js';
import { isTrainerError } from '../../../src/contract/errors.js';
import { createLockFile, currentLockOwner } from '../../../src/contract/lock-file.js';

const BODY = randomBytes(256 * 1024);
const SHA = createHash('sha256').update(BODY).digest('hex');
const BIG = randomBytes(4 * 1024 * 1024);
const BIG_CUT = 3 * 1024 * 1024;

interface Hit { url: string; range: string | undefined }

/** Serves BODY at /ok (Range-aware), cuts /cut-once mid-way on its first request, 500s on /broken. */
function startServer(hits: Hit[]): Promise<{ server: Server; base: string }> {
  let cutDone = false;
  let bigCutDone = false;
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    hits.push({ url: req.url ?? '', range: req.headers.range });
    if (req.url === '/no-range') {
      res.writeHead(200, { 'content-length': String(BODY.length) }).end(BODY);
      return;
    }
    if (req.url === '/broken') {
      res.writeHead(500).end('nope');
      return;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    if (req.url === '/cut-big' && !bigCutDone) {
      // 3 MiB of BIG sent in 64 KiB writes, then the connection closes: the client has every byte of it.
      bigCutDone = true;
      res.writeHead(200, { 'content-length': String(BIG.length) });
      const send = (at: number): void => {
        if (at >= BIG_CUT) {
          setTimeout(() => res.socket?.destroy(), 20);
          return;
        }
        res.write(BIG.subarray(at, at + 65_536), () => send(at + 65_536));
      };
      send(0);
      return;
    }
    if (req.url === '/cut-once' && !cutDone) {
      cutDone = true;
      res.writeHead(200, { 'content-length': String(BODY.length) });
      res.write(BODY.subarray(0, 100_000), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    if (req.url === '/slow-big') {
      // BIG in 64 KiB writes, each after the previous one was flushed: a transfer that spans many event-loop turns.
      res.writeHead(200, { 'content-length': String(BIG.length) });
      const send = (at: number): void => {
        if (at >= BIG.length) {
          res.end();
          return;
        }
        res.write(BIG.subarray(at, at + 65_536), () => send(at + 65_536));
      };
      send(0);
      return;
    }
    const whole = req.url === '/cut-big' ? BIG : BODY;
    const slice = whole.subarray(start);
    res.writeHead(m ? 206 : 200, {
      'content-length': String(slice.length),
      ...(m ? { 'content-range': `bytes ${start}-${whole.length - 1}/${whole.length}` } : {}),
    });
    res.end(slice);
  };
  const server = createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    resolve({ server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
  }));
}

/** A port that was just free: bind, read, close. Connecting to it is refused. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('downloadFile', () => {
  const hits: Hit[] = [];
  let server: Server;
  let base: string;
  let dir: string;
  const quiet = { quiet: true, backoffMs: 5, timeoutMs: 5_000 } as const;

  before(async () => {
    ({ server, base } = await startServer(hits));
    dir = mkdtempSync(join(tmpdir(), 'dl-test-'));
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('downloads, verifies and renames atomically (no .part left)', async () => {
    const dest = join(dir, 'a.bin');
    const r = await downloadFile({ urls: [`${base}/ok`], dest, sha256: SHA, ...quiet });
    assert.equal(r.reused, false);
    assert.equal(r.bytes, BODY.length);
    assert.deepEqual(readFileSync(dest), BODY);
    assert.equal(existsSync(`${dest}.part`), false);
  });

  it('reuses a present verified file without any request', async () => {
    const dest = join(dir, 'a.bin');
    const before = hits.length;
    const r = await downloadFile({ urls: [`${base}/ok`], dest, sha256: SHA, ...quiet });
    assert.equal(r.reused, true);
    assert.equal(hits.length, before);
  });

  it('resumes a transfer cut mid-way with a Range request', async () => {
    const dest = join(dir, 'b.bin');
    const r = await downloadFile({ urls: [`${base}/cut-once`], dest, sha256: SHA, ...quiet });
    assert.equal(r.sha256, SHA);
    const mine = hits.filter((h) => h.url === '/cut-once');
    assert.equal(mine.length, 2);
    assert.equal(mine[0]!.range, undefined);
    const resumedAt = Number(/bytes=(\d+)-/.exec(mine[1]!.range ?? '')?.[1]);
    assert.ok(resumedAt > 0 && resumedAt < BODY.length, `resumed at ${resumedAt}`);
    assert.deepEqual(readFileSync(dest), BODY);
  });

  it('keeps every byte received before the cut: the Range resumes exactly where the server stopped', async () => {
    // Fault under load: the cut used to destroy the file writer with received chunks still queued, so the retry
    // asked for an earlier offset (or none). Like curl -C -, the retry must start at the first byte not received.
    const dest = join(dir, 'big.bin');
    const r = await downloadFile({ urls: [`${base}/cut-big`], dest, sha256: createHash('sha256').update(BIG).digest('hex'), ...quiet });
    const mine = hits.filter((h) => h.url === '/cut-big');
    assert.deepEqual(mine.map((h) => h.range), [undefined, `bytes=${BIG_CUT}-`]);
    assert.equal(r.bytes, BIG.length);
    assert.deepEqual(readFileSync(dest), BIG);
  });

  it('resumes a .part left by an earlier process', async () => {
    const dest = join(dir, 'c.bin');
    writeFileSync(`${dest}.part`, BODY.subarray(0, 12_345));
    await downloadFile({ urls: [`${base}/ok`], dest, sha256: SHA, ...quiet });
    assert.equal(hits.at(-1)!.range, 'bytes=12345-');
    assert.deepEqual(readFileSync(dest), BODY);
  });

  it('restarts from zero when the server ignores Range (200 instead of 206)', async () => {
    const dest = join(dir, 'h.bin');
    writeFileSync(`${dest}.part`, Buffer.alloc(5000, 7));
    await downloadFile({ urls: [`${base}/no-range`], dest, sha256: SHA, ...quiet });
    assert.equal(hits.at(-1)!.range, 'bytes=5000-');
    assert.deepEqual(readFileSync(dest), BODY);
  });

  it('deletes the file and throws ERR_CHECKSUM naming expected and got', async () => {
    const dest = join(dir, 'd.bin');
    const wrong = '0'.repeat(64);
    await assert.rejects(downloadFile({ urls: [`${base}/ok`], dest, sha256: wrong, ...quiet }), (err) => {
      assert.ok(isTrainerError(err, 'ERR_CHECKSUM'));
      assert.match(err.message, new RegExp(`expected sha256 ${wrong}, got ${SHA}`));
      return true;
    });
    assert.equal(existsSync(dest), false);
    assert.equal(existsSync(`${dest}.part`), false);
  });

  it('falls back over down mirrors (refused, HTTP 500) to a working one', async () => {
    const dest = join(dir, 'e.bin');
    const dead = `http://127.0.0.1:${await closedPort()}/x`;
    const r = await downloadFile({ urls: [dead, `${base}/broken`, `${base}/ok`], dest, sha256: SHA, ...quiet, retries: 1 });
    assert.equal(r.url, `${base}/ok`);
    assert.equal(hits.filter((h) => h.url === '/broken').length, 2, '500 is retried once (retries: 1)');
  });

  it('throws ERR_OFFLINE when no mirror is reachable; ERR_DOWNLOAD when mirrors answer with errors', async () => {
    const p1 = await closedPort();
    await assert.rejects(
      downloadFile({ urls: [`http://127.0.0.1:${p1}/a`, `http://127.0.0.1:${p1}/b`], dest: join(dir, 'f.bin'), ...quiet, retries: 1 }),
      (err) => isTrainerError(err, 'ERR_OFFLINE') && /cannot reach any mirror/.test(err.message),
    );
    await assert.rejects(
      downloadFile({ urls: [`${base}/broken`], dest: join(dir, 'g.bin'), ...quiet, retries: 0 }),
      (err) => isTrainerError(err, 'ERR_DOWNLOAD') && /HTTP 500/.test(err.message),
    );
  });

  it('downloads a file once when two downloads of it run at once: the second waits and reuses it', async () => {
    // Fault: the local workers of a run all fetch the same ImageNet weights into one cache; they wrote one .part
    // together and all but the first to finish failed with 'ENOENT … rename'. As huggingface_hub's FileLock: one
    // download, the other reuses its file.
    const dest = join(dir, 'shared.bin');
    const lines: string[] = [];
    const o = { urls: [`${base}/slow-big`], dest, ...quiet, retries: 0, lockPollMs: 5, log: (l: string) => lines.push(l) };
    const [a, b] = await Promise.all([downloadFile(o), downloadFile(o)]);
    assert.equal(hits.filter((h) => h.url === '/slow-big').length, 1, 'one request for the file');
    assert.deepEqual([a.reused, b.reused].sort(), [false, true]);
    const sha = createHash('sha256').update(BIG).digest('hex');
    assert.deepEqual([a.sha256, b.sha256], [sha, sha]);
    assert.deepEqual(readFileSync(dest), BIG);
    assert.equal(existsSync(`${dest}.lock`), false, 'the lock is removed');
    assert.equal(existsSync(`${dest}.part`), false);
    assert.ok(lines.some((l) => l.includes(`${dest} is being downloaded by pid ${process.pid} on ${hostname()}`)), lines.join('\n'));
  });

  it('waits for a live owner of the lock and reuses the file it leaves, without a request', async () => {
    const dest = join(dir, 'held.bin');
    const owner = { ...currentLockOwner(), since: '2026-01-01T00:00:00.000Z' };
    assert.ok(createLockFile(`${dest}.lock`, owner));
    let waiting!: () => void;
    const told = new Promise<void>((r) => { waiting = r; });
    const before = hits.length;
    const pending = downloadFile({
      urls: [`${base}/ok`], dest, sha256: SHA, ...quiet, lockPollMs: 5,
      log: (l) => { if (l.includes('is being downloaded by')) waiting(); },
    });
    assert.equal(await Promise.race([told.then(() => 'waits'), pending.then(() => 'downloaded beside the owner')]), 'waits');
    writeFileSync(dest, BODY); // what the owner leaves: its finished file, then no lock
    rmSync(`${dest}.lock`);
    const r = await pending;
    assert.equal(r.reused, true);
    assert.equal(hits.length, before, 'no request');
  });

  it('takes over the lock of a downloader that died', async () => {
    const dest = join(dir, 'stale.bin');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(`${dest}.lock`, JSON.stringify({ pid: dead, host: hostname(), since: '2026-01-01T00:00:00.000Z' }));
    const lines: string[] = [];
    const r = await downloadFile({ urls: [`${base}/ok`], dest, sha256: SHA, ...quiet, lockPollMs: 5, log: (l) => lines.push(l) });
    assert.equal(r.reused, false);
    assert.deepEqual(readFileSync(dest), BODY);
    assert.equal(existsSync(`${dest}.lock`), false);
    assert.ok(lines.some((l) => l === `download: removed the stale lock ${dest}.lock of pid ${dead} (started 2026-01-01T00:00:00.000Z, no longer running)`), lines.join('\n'));
  });

  it('removes an empty lock left seconds ago (a writer killed or a disk full between create and write) instead of waiting forever', async () => {
    // Review finding: an empty lock names no owner, so it was never stale and every later download polled forever.
    const dest = join(dir, 'empty-lock.bin');
    writeFileSync(`${dest}.lock`, '');
    const old = new Date(Date.now() - 60_000);
    utimesSync(`${dest}.lock`, old, old);
    const lines: string[] = [];
    const r = await downloadFile({ urls: [`${base}/ok`], dest, sha256: SHA, ...quiet, lockPollMs: 5, log: (l) => lines.push(l) });
    assert.deepEqual(readFileSync(dest), BODY);
    assert.equal(r.reused, false);
    assert.ok(lines.some((l) => l === `download: removed the unreadable lock ${dest}.lock (no owner recorded for over 10 s)`), lines.join('\n'));
  });

  it('rejects bad options naming the field', async () => {
    await assert.rejects(downloadFile({ urls: [], dest: 'x' }), /urls must hold at least one URL/);
    await assert.rejects(downloadFile({ urls: [`${base}/ok`], dest: 'x', sha256: 'abc' }), /sha256 must be 64 hex digits/);
    await assert.rejects(downloadFile({ urls: [`${base}/ok`], dest: 'x', retries: -1 }), /retries must be an integer ≥ 0, got -1/);
    await assert.rejects(downloadFile({ urls: [`${base}/ok`], dest: 'x', lockPollMs: 0 }), /lockPollMs must be > 0, got 0/);
  });

  it('backs off exponentially with a ceiling', () => {
    assert.deepEqual([1, 2, 3, 4, 5].map((a) => backoffDelayMs(a, 100, 1000)), [100, 200, 400, 800, 1000]);
  });
});
