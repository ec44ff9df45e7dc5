// A process whose reader has gone (terminal closed, `| head` exited, test runner killed) must neither crash nor spin:
// with `ignoreBrokenPipes()` its writes to the closed stdout/stderr are dropped and it goes on to its own end, as under
// `nohup`; without it the first write fails with an uncaught EPIPE (the fault: a coordinator whose uncaught handler
// logged that error to the same closed pipe, forever, at full CPU).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { isBrokenPipe } from '../../../src/training/broken-pipe.js';

const MODULE = pathToFileURL(resolve('src/training/broken-pipe.ts')).href;

/** Runs a child that writes 2,000 lines to stdout and stderr after its reader has closed; resolves its exit code. */
function runWriter(guard: boolean): Promise<number | null> {
  const script = `
    const { ignoreBrokenPipes } = await import(${JSON.stringify(MODULE)});
    if (${guard}) ignoreBrokenPipes();
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 2000; i++) { process.stdout.write('line ' + i + '\\n'); process.stderr.write('err ' + i + '\\n'); await new Promise((r) => setImmediate(r)); }
    process.exitCode = 7;`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  // The reader goes away before the child writes.
  child.stdout.destroy();
  child.stderr.destroy();
  return new Promise((res) => child.on('exit', (code) => res(code)));
}

test('with the guard, writes to a closed stdout/stderr are dropped and the process reaches its own end', async () => {
  assert.equal(await runWriter(true), 7);
});

test('without the guard the same writes end the process with an uncaught EPIPE (the guard is what makes the difference)', async () => {
  assert.notEqual(await runWriter(false), 7);
});

test('isBrokenPipe tells EPIPE from other errors', () => {
  assert.equal(isBrokenPipe(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })), true);
  assert.equal(isBrokenPipe(Object.assign(new Error('x'), { code: 'ENOSPC' })), false);
  assert.equal(isBrokenPipe('EPIPE'), false);
});
