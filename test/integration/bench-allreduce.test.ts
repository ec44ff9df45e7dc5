// scripts/bench-allreduce.ts measures the transport it names: with `--ring-transport ipc` every ring rank sends to
// its neighbour's Unix socket (as local workers do), with `tcp` over loopback TCP. The children are started as the
// benchmark starts them (one per rank, on this host); the smallest workload (1 MiB, 1 rep, 2 ranks, no star or shm)
// keeps it short. Seen: the children's membership had no host identities, so `sameHostAddress` proved no peer on
// this host and the `ipc` rows measured TCP without saying so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const SCRIPT = fileURLToPath(new URL('../../scripts/bench-allreduce.ts', import.meta.url));

async function ringSendsTo(transport: 'ipc' | 'tcp'): Promise<string[]> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', SCRIPT, '--sizes', '1', '--workers', '2', '--reps', '1',
    '--no-star', '--no-shm', '--json', '--ring-transport', transport], { timeout: 180_000, maxBuffer: 1 << 20 });
  const rows = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { rows: { algo: string; sendsTo?: string[] }[] }).rows.filter((r) => r.algo === 'ring');
  assert.equal(rows.length, 1);
  return rows[0].sendsTo ?? [];
}

test('bench-allreduce --ring-transport ipc: each ring rank sends to an ipc:// socket, and the row says so', { skip: process.platform === 'win32' }, async () => {
  const sendsTo = await ringSendsTo('ipc');
  assert.equal(sendsTo.length, 2);
  for (const a of sendsTo) assert.match(a, /^ipc:\/\//);
});

test('bench-allreduce --ring-transport tcp: each ring rank sends over tcp://', async () => {
  const sendsTo = await ringSendsTo('tcp');
  assert.equal(sendsTo.length, 2);
  for (const a of sendsTo) assert.match(a, /^tcp:\/\//);
});
