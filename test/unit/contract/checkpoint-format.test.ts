import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, truncateSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listCheckpoints, loadLatestCheckpoint, readCheckpoint, writeCheckpoint, writeCheckpointDetailed } from '../../../src/contract/checkpoint-format.js';
import { isTrainerError } from '../../../src/contract/errors.js';
import { withZombie } from '../support/zombie.js';

const files = (s: number) => new Map<string, Uint8Array>([['w.bin', new Uint8Array(1000).fill(s)], ['meta.txt', Buffer.from(`step ${s}`)]]);

test('write then read back verifies every file', () => {
  const run = mkdtempSync(join(tmpdir(), 'ckpt-'));
  const dir = writeCheckpoint(run, 7, files(7), { epoch: 1, lrs: [1e-3] });
  const back = readCheckpoint<{ epoch: number }>(dir);
  assert.equal(back.manifest.step, 7);
  assert.equal(back.manifest.meta.epoch, 1);
  assert.deepEqual(back.files.get('w.bin'), Buffer.from(new Uint8Array(1000).fill(7)));
});

test('keep prunes all but the newest k', () => {
  const run = mkdtempSync(join(tmpdir(), 'ckpt-'));
  for (let s = 1; s <= 5; s++) writeCheckpoint(run, s, files(s), {}, 2);
  assert.deepEqual(listCheckpoints(run).map((d) => d.slice(-14)), ['step-000000004', 'step-000000005']);
});

test('a corrupted or truncated newest checkpoint is detected and the previous one is used, with a message', () => {
  const run = mkdtempSync(join(tmpdir(), 'ckpt-'));
  writeCheckpoint(run, 1, files(1), { s: 1 });
  writeCheckpoint(run, 2, files(2), { s: 2 });
  const newest = writeCheckpoint(run, 3, files(3), { s: 3 });
  const w = join(newest, 'w.bin');
  const bytes = readFileSync(w);
  bytes[10] ^= 0xff;
  writeFileSync(w, bytes);
  let got = loadLatestCheckpoint<{ s: number }>(run)!;
  assert.equal(got.manifest.meta.s, 2);
  assert.match(got.skipped[0]!, /step-000000003\/w\.bin sha256 [0-9a-f]+ does not match/);
  truncateSync(join(listCheckpoints(run)[1]!, 'w.bin'), 10);
  got = loadLatestCheckpoint<{ s: number }>(run)!;
  assert.equal(got.manifest.meta.s, 1);
  assert.match(got.skipped[1]!, /has 10 bytes, manifest says 1000 \(truncated\?\)/);
  truncateSync(join(listCheckpoints(run)[0]!, 'manifest.json'), 5);
  assert.throws(() => loadLatestCheckpoint(run), (e: unknown) => isTrainerError(e, 'ERR_CHECKPOINT') && /no intact checkpoint/.test(e.message));
});

test('no checkpoints → null; bad file names are refused', () => {
  const run = mkdtempSync(join(tmpdir(), 'ckpt-'));
  assert.equal(loadLatestCheckpoint(run), null);
  assert.throws(() => writeCheckpoint(run, 1, new Map([['../x', new Uint8Array(1)]]), {}), (e: unknown) => isTrainerError(e, 'ERR_CHECKPOINT'));
  assert.equal(listCheckpoints(run).length, 0);
});

test('SIGKILL during writes always leaves an intact newest checkpoint', async () => {
  const run = mkdtempSync(join(tmpdir(), 'ckpt-kill-'));
  const fixture = new URL('../../integration/fixtures/checkpoint-writer.ts', import.meta.url).pathname;
  for (let round = 0; round < 3; round++) {
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, run, String(1 + round * 100)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let written = 0;
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        written += d.toString().split('\n').filter(Boolean).length;
        // Kill at a varying moment after at least two checkpoints, very likely mid-write of the next.
        if (written >= 2 + round) setTimeout(() => child.kill('SIGKILL'), 3 + round * 7);
      });
      child.on('exit', () => resolve());
    });
    const latest = loadLatestCheckpoint<{ step: number }>(run)!;
    assert.equal(latest.skipped.length, 0, latest.skipped.join('\n'));
    assert.equal(latest.files.get('weights.bin')![123], latest.manifest.meta.step % 251);
    assert.ok(latest.manifest.step >= 1 + round * 100 + 1, `round ${round}: newest ${latest.manifest.step} is from this round`);
  }
  // Leftover temporary directories of the dead writers are cleaned by the next writer.
  writeCheckpoint(run, 10_000, files(1), {}, 2);
  assert.deepEqual(readdirSync(join(run, 'checkpoints')).filter((n) => n.startsWith('.')), []);
});

test('an identical payload is hard-linked to the newest checkpoint\'s file, not written again; a changed one is written', () => {
  const run = mkdtempSync(join(tmpdir(), 'ckpt-link-'));
  try {
    const big = new Uint8Array(1 << 20).fill(7);
    const a = writeCheckpointDetailed(run, 10, new Map([['state.bin', big]]), { n: 1 }, 3);
    assert.deepEqual(a.linked, []);
    assert.ok(a.bytesWritten >= big.length);
    // Same step again (the final checkpoint after the last epoch's) and a later step with the same bytes.
    const b = writeCheckpointDetailed(run, 10, new Map([['state.bin', big]]), { n: 2 }, 3);
    assert.deepEqual(b.linked, ['state.bin']);
    assert.ok(b.bytesWritten < 1000, `only the manifest is written: ${b.bytesWritten} bytes`);
    const c = writeCheckpointDetailed(run, 11, new Map([['state.bin', big]]), { n: 3 }, 3);
    assert.deepEqual(c.linked, ['state.bin']);
    assert.equal(statSync(join(b.dir, 'state.bin')).ino, statSync(join(c.dir, 'state.bin')).ino, 'one inode');
    const changed = big.slice();
    changed[5] = 8;
    const d = writeCheckpointDetailed(run, 12, new Map([['state.bin', changed]]), { n: 4 }, 3);
    assert.deepEqual(d.linked, []);
    assert.notEqual(statSync(join(d.dir, 'state.bin')).ino, statSync(join(c.dir, 'state.bin')).ino);
    // Every checkpoint still reads back verified, with its own metadata.
    assert.equal(readCheckpoint<{ n: number }>(b.dir).manifest.meta.n, 2);
    assert.equal(readCheckpoint<{ n: number }>(c.dir).files.get('state.bin')![5], 7);
    assert.equal(loadLatestCheckpoint<{ n: number }>(run)!.files.get('state.bin')![5], 8);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('a damaged newest checkpoint is never hard-linked: a resumed run that redoes its step writes the bytes again', () => {
  // --resume skips a truncated or bit-flipped newest checkpoint (step 6) and goes back to step 5; the redone step 6 is
  // bit-identical, so its state has the sha256 and size the damaged manifest records. Linking to that file made the
  // new step-6 (and the stage model linked to it) the same damaged inode: the run ended with no intact newest
  // checkpoint, and the old step-6 directory it replaced was gone.
  for (const damage of ['bit flip', 'truncated'] as const) {
    const run = mkdtempSync(join(tmpdir(), 'ckpt-damaged-'));
    try {
      const state = new Uint8Array(4096).map((_, i) => i % 251);
      writeCheckpoint(run, 5, new Map([['state.bin', new Uint8Array(4096).fill(5)]]), { s: 5 });
      const six = writeCheckpoint(run, 6, new Map([['state.bin', state]]), { s: 6 });
      const file = join(six, 'state.bin');
      if (damage === 'truncated') truncateSync(file, 100);
      else {
        const bytes = readFileSync(file);
        bytes[2000]! ^= 0x10;
        writeFileSync(file, bytes);
      }
      const resumed = loadLatestCheckpoint<{ s: number }>(run)!;
      assert.equal(resumed.manifest.meta.s, 5, `${damage}: resume falls back to step 5`);
      const redone = writeCheckpointDetailed(run, 6, new Map([['state.bin', state]]), { s: 6 }, 3);
      assert.deepEqual(redone.linked, [], `${damage}: nothing linked to the damaged file`);
      const back = loadLatestCheckpoint<{ s: number }>(run)!;
      assert.deepEqual(back.skipped, [], `${damage}: the new step 6 is intact`);
      assert.equal(back.manifest.meta.s, 6);
      assert.deepEqual(back.files.get('state.bin'), Buffer.from(state));
    } finally {
      rmSync(run, { recursive: true, force: true });
    }
  }
});

test('a writer killed between the two renames of a same-step replacement: the old checkpoint is put back, not lost', () => {
  const run = mkdtempSync(join(tmpdir(), 'ckpt-'));
  writeCheckpoint(run, 4, files(4), { s: 4 });
  writeCheckpoint(run, 5, files(5), { s: 5 });
  // The state a SIGKILL leaves after `step-5` → `.old-step-000000005-<pid>` and before the new `step-5` is renamed in:
  // the writer's pid is gone (a child that has exited).
  const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
  const root = join(run, 'checkpoints');
  renameSync(join(root, 'step-000000005'), join(root, `.old-step-000000005-${dead}`));
  const got = loadLatestCheckpoint<{ s: number }>(run)!;
  assert.equal(got.manifest.meta.s, 5, 'the newest step is still there to resume from');
  assert.deepEqual(readdirSync(root).sort(), ['step-000000004', 'step-000000005']);
  // The same leftover met by the next write's prune is restored too (it used to be deleted as garbage).
  renameSync(join(root, 'step-000000005'), join(root, `.old-step-000000005-${dead}`));
  writeCheckpoint(run, 6, files(6), { s: 6 }, 3);
  assert.deepEqual(readdirSync(root).sort(), ['step-000000004', 'step-000000005', 'step-000000006']);
  // Once the new checkpoint of that step exists, an `.old-` copy of a dead writer is garbage and is removed.
  cpSync(join(root, 'step-000000006'), join(root, `.old-step-000000006-${dead}`), { recursive: true });
  writeCheckpoint(run, 7, files(7), { s: 7 }, 3);
  assert.deepEqual(readdirSync(root).sort(), ['step-000000005', 'step-000000006', 'step-000000007']);
  rmSync(run, { recursive: true, force: true });
});

test('a zombie writer\'s temporary checkpoint is cleaned up; a live writer\'s is kept', { skip: !existsSync('/proc/self/stat') && 'no procfs' }, async () => {
  // A writer killed while its parent has not reaped it yet still answers signal 0; it writes nothing any more, so its
  // `.tmp-` directory is garbage (as the run lock treats a zombie owner). The live test process's own is kept.
  const run = mkdtempSync(join(tmpdir(), 'ckpt-'));
  try {
    writeCheckpoint(run, 1, files(1), { s: 1 });
    const root = join(run, 'checkpoints');
    const live = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      await withZombie((zombie) => {
        mkdirSync(join(root, `.tmp-step-000000002-${zombie}`));
        mkdirSync(join(root, `.tmp-step-000000002-${live.pid}`));
        writeCheckpoint(run, 3, files(3), { s: 3 });
        assert.deepEqual(readdirSync(root).sort(), [`.tmp-step-000000002-${live.pid}`, 'step-000000001', 'step-000000003']);
      });
    } finally {
      live.kill('SIGKILL');
    }
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});
