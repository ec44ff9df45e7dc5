/**
 * untar_data path: images.tar.gz built here (synthetic JPEGs), served by a local node:http server on 127.0.0.1
 * (ephemeral port) that cuts the first transfer mid-way and honours Range; then cache reuse with the server gone,
 * and the offline message.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import * as tar from 'tar';
import { createDataBunch } from '../../../../src/training/data/databunch.js';
import { defaultCacheDir, fetchPets } from '../../../../src/training/data/pets.js';
import { ImagePool } from '../../../../src/training/data/pool.js';
import { isTrainerError } from '../../../../src/contract/errors.js';

describe('fetchPets / createDataBunch({ data: "oxford-iiit-pet" })', () => {
  let dir: string;
  let body: Buffer;
  let server: Server;
  let url: string;
  const requests: (string | undefined)[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pets-'));
    const src = join(dir, 'src');
    mkdirSync(join(src, 'images'), { recursive: true });
    const names = ['Bengal_1.jpg', 'Bengal_2.jpg', 'beagle_1.jpg', 'beagle_2.jpg', 'pug_1.jpg'];
    for (const [i, n] of names.entries()) {
      await sharp({ create: { width: 48 + i, height: 40, channels: 3, background: { r: 40 * i, g: 100, b: 200 - 30 * i } } })
        .jpeg().toFile(join(src, 'images', n));
    }
    await tar.c({ gzip: true, cwd: src, file: join(dir, 'images.tar.gz') }, ['images']);
    body = readFileSync(join(dir, 'images.tar.gz'));
    let cut = false;
    server = createServer((req, res) => {
      requests.push(req.headers.range);
      const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const start = m ? Number(m[1]) : 0;
      if (!cut) {
        cut = true;
        res.writeHead(200, { 'content-length': String(body.length) });
        res.write(body.subarray(0, Math.floor(body.length / 2)), () => setTimeout(() => res.socket?.destroy(), 20));
        return;
      }
      res.writeHead(m ? 206 : 200, { 'content-length': String(body.length - start), ...(m ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}) });
      res.end(body.subarray(start));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/images.tar.gz`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('downloads through a cut transfer (resumed with Range), extracts images/, then reuses the cache offline', async () => {
    const cacheDir = join(dir, 'cache');
    const ds = await fetchPets({ cacheDir, imagesUrls: [url], quiet: true, backoffMs: 5 });
    assert.deepEqual(readdirSync(join(ds, 'images')).sort(), ['Bengal_1.jpg', 'Bengal_2.jpg', 'beagle_1.jpg', 'beagle_2.jpg', 'pug_1.jpg']);
    assert.equal(requests.length, 2);
    assert.equal(requests[0], undefined);
    assert.equal(requests[1], `bytes=${Math.floor(body.length / 2)}-`);
    const dead = 'http://127.0.0.1:9/images.tar.gz';
    assert.equal(await fetchPets({ cacheDir, imagesUrls: [dead], quiet: true }), ds, 'no network needed the second time');
    assert.equal(requests.length, 2);
  });

  it('builds the DataBunch from the downloaded cache with a verify pass', async () => {
    const pool = new ImagePool({ threads: 1 });
    pool.start();
    try {
      const bunch = await createDataBunch({ data: 'oxford-iiit-pet', cacheDir: join(dir, 'cache'), validPct: 0.2, seed: 3, fetch: { imagesUrls: ['http://127.0.0.1:9/x'], quiet: true } }, pool);
      assert.deepEqual(bunch.classes, ['Bengal', 'beagle', 'pug']);
      assert.equal(bunch.valid.length, 1, 'int(0.2·5) = 1');
      assert.equal(bunch.train.length, 4);
      assert.equal(bunch.skipLog.entries().length, 0);
    } finally {
      await pool.close();
    }
  });

  it('offline with no cache: ERR_OFFLINE telling the user to pass --data <dir>', async () => {
    await assert.rejects(
      fetchPets({ cacheDir: join(dir, 'empty-cache'), imagesUrls: ['http://127.0.0.1:9/images.tar.gz'], quiet: true, retries: 0 }),
      (e) => {
        // Readable in a terminal: a short first line without URLs, the hint, then each address on its own line.
        const lines = isTrainerError(e, 'ERR_OFFLINE') ? e.message.split('\n') : [];
        assert.match(lines[0] ?? '', /^the Oxford-IIIT Pet images are not in \S+ and cannot be downloaded: the network looks offline$/);
        assert.ok(lines[0]!.length <= 160 && !/https?:/.test(lines[0]!), lines[0]);
        assert.match(lines[1] ?? '', /^hint: to train offline, pass --data <dir>/);
        assert.equal(lines[2], 'tried:');
        assert.match(lines[3] ?? '', /^ {2}http:\/\/127\.0\.0\.1:9\/images\.tar\.gz \(try 1\): /);
        return true;
      },
    );
  });

  it('the default cache is the user\'s (~/.cache/pets-trainer, or $PETS_TRAINER_CACHE_DIR), not the current directory', () => {
    assert.equal(defaultCacheDir({}), join(homedir(), '.cache', 'pets-trainer'));
    assert.equal(defaultCacheDir({ PETS_TRAINER_CACHE_DIR: '/x/c' }), '/x/c');
    assert.equal(defaultCacheDir({ PETS_TRAINER_CACHE_DIR: ' ' }), join(homedir(), '.cache', 'pets-trainer'));
  });
});
