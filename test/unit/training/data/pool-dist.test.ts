/**
 * The pool also loads from compiled dist/ in a plain `node` process (no tsx): the worker file resolves to
 * `pool-worker.js` next to `pool.js`. Needs `npm run build` first (as `npm test` does); skipped otherwise.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { loaderExecArgv, workerEntry } from '../../../../src/training/data/pool.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const DIST_POOL = `${ROOT}dist/training/data/pool.js`;
const PHOTO = fileURLToPath(new URL('../../../../../shared/datasets/oxford-iiit-pet-sample/images/Abyssinian_12.jpg', import.meta.url));

describe('ImagePool from dist/', () => {
  it('picks pool-worker.js for a compiled module URL', () => {
    const { filename } = workerEntry('file:///opt/app/dist/training/data/pool.js');
    assert.equal(filename, '/opt/app/dist/training/data/pool-worker.js');
  });

  it('passes only module-loader flags to worker threads', () => {
    assert.deepEqual(
      loaderExecArgv(['--import', 'tsx', '-e', 'code()', '--test', '--require=./a.cjs', '--enable-source-maps', '--inspect']),
      ['--import', 'tsx', '--require=./a.cjs', '--enable-source-maps'],
    );
  });

  it('renders an item in a plain node process without tsx', { skip: existsSync(DIST_POOL) ? false : 'dist/ not built (run npm run build)' }, async () => {
    const script = `
      const { ImagePool } = await import(${JSON.stringify(DIST_POOL)});
      const pool = new ImagePool({ threads: 1 }); pool.start();
      const r = await pool.run({ kind: 'render', path: ${JSON.stringify(PHOTO)}, size: 32, augment: true, seed: 1, epoch: 0, itemIndex: 0 });
      await pool.close();
      console.log(JSON.stringify({ ok: r.ok, n: r.pixels?.length, execArgv: process.execArgv }));`;
    const dir = mkdtempSync(join(tmpdir(), 'pool-dist-'));
    try {
      writeFileSync(join(dir, 'run.mjs'), script);
      const { stdout } = await promisify(execFile)(process.execPath, [join(dir, 'run.mjs')], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' } });
      const out = JSON.parse(stdout.trim()) as { ok: boolean; n: number; execArgv: string[] };
      assert.deepEqual(out, { ok: true, n: 32 * 32 * 3, execArgv: [] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
