// Where a whole-group restart (every worker lost at once, torchrun's restart of the worker group) takes the run back
// to: the newest intact state the run has. torchrun's restarted script loads its newest checkpoint; a `--resume`d run
// that finds none (pruned, deleted or damaged since) still holds the state it resumed from, and a new run without one
// starts again from what it started from (its pretrained weights, or the seeded initial weights). Before, a resumed
// run went back to global step 0 with fresh replicas, which a resumed run sets up with `--pretrained none`: random
// weights, its training before the resume lost. The driver's rewind is driven here with files on disk and a scripted
// recovery and cluster (no process, no socket, no timing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Coordinator } from '../../../src/coordinator/driver.js';
import { GroupRestart, type Recovery } from '../../../src/coordinator/recovery.js';
import { parseTrainArgs } from '../../../src/coordinator/options.js';
import { newHistory, type RunHistory } from '../../../src/coordinator/history.js';
import type { CheckpointMeta, ResumePoint } from '../../../src/coordinator/checkpoint-store.js';
import { listCheckpoints, writeCheckpoint } from '../../../src/contract/checkpoint-format.js';
import { resolveRunConfig } from '../../../src/contract/config.js';
import { describeRunStart, previewRestartPoint } from '../../../src/coordinator/restart-point.js';

type Rewound = { kind: 'restart'; from: string; state: Uint8Array | null; restart: number; checksum?: string };
interface Internals {
  history: RunHistory;
  cluster: unknown;
  startState: { blob: Uint8Array; checksum: string } | null;
  startedFrom: { path: string; what: string; sha256: string } | null;
  rewindAfterGroupRestart(recovery: Recovery, restart: GroupRestart): Promise<Rewound>;
}

function historyAt(globalStep: number): RunHistory {
  return { ...newHistory(), position: { stageIndex: 1, stepInStage: globalStep - 4, globalStep } };
}

/** A manifest's metadata at `globalStep`, whole (the restart point reads only the history, but checks the shape). */
function metaAt(globalStep: number): CheckpointMeta {
  const config = resolveRunConfig({ stages: [{ kind: 'one_cycle', name: 'stage-1', epochs: 1, maxLr: '1e-3', frozen: true }], runDir: '/tmp/x' });
  return { runId: 'r', config, classes: ['a', 'b'], history: historyAt(globalStep) };
}

function checkpoint(runDir: string, step: number, fill: number): string {
  return writeCheckpoint(runDir, step, new Map([['state.safetensors', new Uint8Array(64).fill(fill)]]), metaAt(step), 5);
}

/** A recovery whose restarted group has `fresh` ranks set up now and `kept` ranks set up before the restart. */
function scriptedRecovery(fresh: number[], kept: number[] = []) {
  const calls = { synced: 0 };
  const recovery = {
    setUpRestartedGroup: async () => ({ fresh, kept }),
    markGroupSynced: () => { calls.synced++; },
  } as unknown as Recovery;
  return { recovery, calls };
}

function coordinator(flags: string[], runDir: string, resumed: ResumePoint | null) {
  const lines: string[] = [];
  const cmd = parseTrainArgs(['--run-dir', runDir, ...flags]);
  const c = new Coordinator(cmd, { out: () => undefined, log: (l) => lines.push(l) }, resumed) as unknown as Internals;
  return { c, lines };
}

function withRunDir(fn: (runDir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'group-restart-'));
    try {
      await fn(path.join(dir, 'run'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test('a resumed run whose group restart finds no checkpoint on disk goes back to the state it resumed from (its step, its weights), not to step 0 with random weights', withRunDir(async (runDir) => {
  const resumedState = new Uint8Array(64).fill(7);
  const resumeDir = path.join(runDir, 'checkpoints', 'step-000000006');
  const { c, lines } = coordinator(['--pretrained', 'imagenet'], runDir, { dir: resumeDir, state: resumedState, meta: metaAt(6) });
  // The run moved on since the resume (its history is the checkpoint's own object), and its checkpoints are gone.
  c.history.position = { stageIndex: 1, stepInStage: 5, globalStep: 9 };
  const { recovery, calls } = scriptedRecovery([0, 1]);
  const at = await c.rewindAfterGroupRestart(recovery, new GroupRestart(1, 'all lost'));
  assert.equal(at.state, resumedState, 'the state it resumed from is loaded into every rank');
  assert.deepEqual(c.history.position, { stageIndex: 1, stepInStage: 2, globalStep: 6 }, 'back to the step it resumed at');
  assert.match(at.from, /^the state it resumed from \(\S+step-000000006, global step 6, held in memory: no newer intact checkpoint on disk\)$/);
  assert.match(lines.join('\n'), /worker group restart 1: loading the state it resumed from/);
  assert.equal(calls.synced, 0, 'the driver marks the group synced once the state is loaded everywhere');
}));

test('a resumed run: a newer intact checkpoint wins; one damaged or older than the resume point loses to the resumed state', withRunDir(async (runDir) => {
  const resumedState = new Uint8Array(64).fill(7);
  checkpoint(runDir, 4, 4);
  const resumeDir = checkpoint(runDir, 6, 7);
  const point = { dir: resumeDir, state: resumedState, meta: metaAt(6) };
  // The resumed checkpoint was damaged since; only the older step 4 is intact on disk.
  truncateSync(path.join(resumeDir, 'state.safetensors'), 10);
  const first = coordinator([], runDir, point);
  let c = first.c;
  let at = await c.rewindAfterGroupRestart(scriptedRecovery([0]).recovery, new GroupRestart(1, 'all lost'));
  assert.equal(at.state, resumedState, 'the resumed state (step 6) is newer than the intact step 4');
  assert.equal(c.history.position.globalStep, 6);
  assert.match(first.lines.join('\n'), /skipping checkpoint \S+step-000000006/);
  // A checkpoint written after the resume is the newest state.
  const newer = checkpoint(runDir, 8, 8);
  c = coordinator([], runDir, point).c;
  at = await c.rewindAfterGroupRestart(scriptedRecovery([0]).recovery, new GroupRestart(2, 'all lost'));
  assert.deepEqual([...at.state!], Array(64).fill(8));
  assert.equal(at.from, newer);
  assert.equal(c.history.position.globalStep, 8);
}));

test('a new run with no intact checkpoint goes back to its start: the fresh replicas\' own pretrained (or seeded) weights, and the log says which', withRunDir(async (runDir) => {
  for (const [flags, start] of [
    [['--pretrained', 'imagenet'], 'the pretrained ImageNet weights (--pretrained imagenet)'],
    [['--pretrained', 'none', '--seed', '5'], 'the seeded initial weights (--seed 5, --pretrained none)'],
  ] as const) {
    const { c, lines } = coordinator([...flags], runDir, null);
    c.history.position = { stageIndex: 0, stepInStage: 1, globalStep: 1 };
    const { recovery, calls } = scriptedRecovery([0, 1, 2]);
    const at = await c.rewindAfterGroupRestart(recovery, new GroupRestart(1, 'all lost'));
    assert.equal(at.state, null, 'nothing to load: every replica was set up just now');
    assert.equal(at.from, `the start of the run (${start})`);
    assert.deepEqual(c.history.position, newHistory().position);
    assert.equal(calls.synced, 1);
    assert.match(lines.join('\n'), new RegExp(`worker group restart 1: loading the start of the run \\(${start.replace(/[()]/g, '\\$&')}\\)`));
  }
  // Checkpoints exist but none is intact: the run still restarts (from its start), saying why each was skipped.
  const dir = checkpoint(runDir, 2, 2);
  truncateSync(path.join(dir, 'state.safetensors'), 10);
  const { c, lines } = coordinator(['--pretrained', 'imagenet'], runDir, null);
  const at = await c.rewindAfterGroupRestart(scriptedRecovery([0]).recovery, new GroupRestart(1, 'all lost'));
  assert.equal(at.state, null);
  assert.match(lines.join('\n'), /no intact checkpoint in \S+: skipping checkpoint \S+step-000000002/);
}));

test('from the start, members set up before the restart get a fresh replica\'s state (theirs is unknown); every rank must then agree', withRunDir(async (runDir) => {
  const { c, lines } = coordinator(['--pretrained', 'imagenet'], runDir, null);
  const fresh = new Uint8Array(32).fill(3);
  const asked: Array<{ kind: string; ranks?: readonly number[]; frames?: Uint8Array[] }> = [];
  c.cluster = {
    async request(kind: string, _payload: unknown, o: { ranks?: readonly number[]; frames?: Uint8Array[] }) {
      asked.push({ kind, ranks: o.ranks, frames: o.frames });
      if (kind === 'get-state') return [{ rank: o.ranks![0], message: {}, frames: [Buffer.from(fresh)] }];
      return [0, 1, 2].map((rank) => ({ rank, message: { checksum: 'c'.repeat(64) }, frames: [] }));
    },
  };
  const { recovery, calls } = scriptedRecovery([2], [0, 1]);
  const at = await c.rewindAfterGroupRestart(recovery, new GroupRestart(1, 'all lost'));
  assert.equal(at.state, null);
  assert.deepEqual(asked.map((a) => [a.kind, a.ranks]), [['get-state', [2]], ['load-state', undefined]], 'rank 2\'s fresh state loaded into every rank');
  assert.deepEqual(asked[1]!.frames, [fresh]);
  assert.equal(calls.synced, 1);
  assert.match(lines.join('\n'), /rank\(s\) 0, 1 of the restarted group were set up before the restart: they get the state of rank 2/);
}));

test('the line announcing a group restart names what it goes back to before anything is read', withRunDir(async (runDir) => {
  const start = describeRunStart('w.safetensors', 1);
  assert.equal(start, 'the pretrained weights of w.safetensors (--pretrained)');
  assert.equal(previewRestartPoint(runDir, null, start), 'the start of the run (no checkpoint was written yet: the pretrained weights of w.safetensors (--pretrained))');
  assert.equal(previewRestartPoint(runDir, { dir: 'runs/x/checkpoints/step-000000006', globalStep: 6 }, start), 'the state it resumed from (runs/x/checkpoints/step-000000006, global step 6)');
  checkpoint(runDir, 4, 4);
  assert.match(previewRestartPoint(runDir, { dir: 'runs/x/checkpoints/step-000000006', globalStep: 6 }, start), /^the state it resumed from/);
  checkpoint(runDir, 6, 6);
  assert.equal(previewRestartPoint(runDir, { dir: 'runs/x/checkpoints/step-000000006', globalStep: 6 }, start), listCheckpoints(runDir).at(-1));
}));

test('a --load run with no intact checkpoint goes back to the loaded model: every rank of the new group loads it (kept or fresh), its checksum to be checked', withRunDir(async (runDir) => {
  const { c, lines } = coordinator(['--load', 'runs/a/models/stage-1.safetensors', '--arch', 'resnet10'], runDir, null);
  // What the setup makes of the model (load-model.ts), held by the coordinator for the run's start.
  c.startState = { blob: new Uint8Array(16).fill(9), checksum: 'd'.repeat(64) };
  c.startedFrom = { path: '/abs/a/models/stage-1.safetensors', what: 'saved model stage-1 of /abs/a', sha256: 'e'.repeat(64) };
  c.history.position = { stageIndex: 0, stepInStage: 3, globalStep: 3 };
  const asked: string[] = [];
  c.cluster = { async request(kind: string) { asked.push(kind); return []; } };
  const { recovery, calls } = scriptedRecovery([2], [0, 1]);
  const at = await c.rewindAfterGroupRestart(recovery, new GroupRestart(1, 'all lost'));
  assert.equal(at.state, c.startState.blob, 'the loaded model, not the fresh replicas\' seeded weights');
  assert.equal(at.checksum, 'd'.repeat(64));
  assert.deepEqual(asked, [], 'no fresh replica\'s state is handed round: the loaded model goes to every rank');
  assert.deepEqual(c.history.position, newHistory().position);
  assert.equal(calls.synced, 0, 'synced once the driver has loaded it everywhere');
  assert.match(lines.join('\n'), /worker group restart 1: loading the start of the run \(the weights of \/abs\/a\/models\/stage-1\.safetensors \(--load: saved model stage-1 of \/abs\/a; sha256 eeeeeeeeeeee…\)\)/);
}));
