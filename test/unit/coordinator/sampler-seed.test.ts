// Which seed the workers train with (shuffles, augmentation, dropout: the setup message's `seed`): a new run's
// `--seed`; a `--load` run's `--seed` mixed with the loaded file's sha256 (else it replayed the loaded run's first
// epoch batch for batch, as fastai's learn.load(); fit_one_cycle() does not); a resumed run's own recorded one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Coordinator } from '../../../src/coordinator/driver.js';
import { parseTrainArgs } from '../../../src/coordinator/options.js';
import { newHistory } from '../../../src/coordinator/history.js';
import type { CheckpointMeta, ResumePoint } from '../../../src/coordinator/checkpoint-store.js';
import { resolveRunConfig } from '../../../src/contract/config.js';
import { trainingSeed } from '../../../src/contract/plan/plan.js';

interface Internals {
  startedFrom: { path: string; what: string; sha256: string } | null;
  samplerSeed(): number;
}

const SHA = 'cd'.repeat(32);

function coordinator(resumed: ResumePoint | null): Internals {
  const cmd = parseTrainArgs(['--run-dir', '/tmp/sampler-seed-run', '--seed', '7']);
  return new Coordinator(cmd, { out: () => undefined, log: () => undefined }, resumed) as unknown as Internals;
}

function resumedWith(sampler: CheckpointMeta['sampler'] | undefined, startedFrom: Internals['startedFrom']): ResumePoint {
  const config = resolveRunConfig({ runDir: '/tmp/sampler-seed-run', seed: 7 });
  const meta = { runId: 'r', config, classes: ['a', 'b'], history: newHistory(), ...(sampler ? { sampler } : {}), ...(startedFrom ? { startedFrom } : {}) } as CheckpointMeta;
  return { dir: '/tmp/sampler-seed-run/checkpoints/step-000000003', state: new Uint8Array(0), meta };
}

test('a new run trains with --seed; a --load run with --seed mixed with the loaded file', () => {
  const plain = coordinator(null);
  assert.equal(plain.samplerSeed(), 7);
  const loaded = coordinator(null);
  loaded.startedFrom = { path: '/m/stage-1.safetensors', what: 'saved model stage-1', sha256: SHA };
  assert.equal(loaded.samplerSeed(), trainingSeed(7, SHA));
  assert.notEqual(loaded.samplerSeed(), 7);
});

test('a resumed run trains with its checkpoint\'s sampler seed (an older build\'s --load run keeps its own order)', () => {
  const from = { path: '/m/stage-1.safetensors', what: 'saved model stage-1', sha256: SHA };
  assert.equal(coordinator(resumedWith({ dataEpoch: 0, stepInEpoch: 3, seed: 7 }, from)).samplerSeed(), 7);
  assert.equal(coordinator(resumedWith({ dataEpoch: 0, stepInEpoch: 3, seed: trainingSeed(7, SHA) }, from)).samplerSeed(), trainingSeed(7, SHA));
  // A manifest without a sampler (written before it was recorded): the rule of a new run.
  assert.equal(coordinator(resumedWith(undefined, from)).samplerSeed(), trainingSeed(7, SHA));
});
