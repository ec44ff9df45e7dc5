/**
 * `--resume <run> --data <other data>`: data of other classes, or other images, is refused as bad data (ERR_BAD_DATA,
 * exit 2: the flag's data is to change, nothing started), and the run then resumes from its own data as it was. Both
 * refusals were ERR_CHECKPOINT, exit 1, which the exit codes call a failed run.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readlinkSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { makeFixture, useTinyRunFixture } from './fault-harness.js';

const RUN_TIMEOUT_MS = 300_000;
const fx = useTinyRunFixture('resume-other-data-');
const NET = ['--metrics-port', '-1', '--bind', 'tcp://127.0.0.1:0', '--plain'];

test('--resume with another --data: other classes or other images are ERR_BAD_DATA, exit 2; the run resumes from its own data', { timeout: 4 * RUN_TIMEOUT_MS }, async () => {
  const runDir = path.join(fx.dir, 'run');
  const run = fx.start(['--workers', '1', '--data', fx.data, '--pretrained', 'none', '--arch', 'resnet10', '--size', '32', '--bs', '2', '--epochs', '2',
    '--fine-tune-epochs', '0', '--no-lr-find', '--backend', 'wasm', '--run-dir', runDir, ...NET]);
  await run.waitFor(/^epoch 1: 1\/\d+ batches/m, RUN_TIMEOUT_MS); // after epoch 0's checkpoint
  process.kill(run.child.pid!, 'SIGINT');
  assert.equal((await run.exited).code, 0, run.out.slice(-3000));
  // Three breeds (other classes); the run's two breeds less one photo (other images).
  const three = makeFixture(path.join(fx.dir, 'three'), 3);
  const fewer = path.join(fx.dir, 'fewer');
  mkdirSync(path.join(fewer, 'images'), { recursive: true });
  for (const f of readdirSync(path.join(fx.data, 'images')).sort().slice(1)) symlinkSync(readlinkSync(path.join(fx.data, 'images', f)), path.join(fewer, 'images', f));
  const cases: Array<[string, RegExp]> = [
    [three, /^coordinator: ERR_BAD_DATA: --resume: the data now has classes 3 \(Abyssinian, .*\), the checkpoint 2; point --data at the run's data$/m],
    [fewer, /^coordinator: ERR_BAD_DATA: --resume: the data at \S*fewer\/images is not the run's: .*point --data at the run's data/m],
  ];
  for (const [data, rule] of cases) {
    const r = fx.start(['--resume', runDir, '--data', data, ...NET]);
    const exit = await r.exited;
    assert.equal(exit.code, 2, r.out.slice(-3000));
    assert.match(r.out, rule);
  }
  const resumed = fx.start(['--resume', runDir, ...NET]);
  assert.equal((await resumed.exited).code, 0, resumed.out.slice(-3000));
  assert.match(resumed.out, /^final error_rate/m);
});
