/**
 * Recorder wiring: worker states and heartbeat ages polled from a control-plane member table, link bandwidth from
 * the best all-reduce send rate. The scrape text is the MetricsServer's real exposition (no HTTP needed).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ControlServer, Member } from '../../../src/coordinator/control.js';
import type { StagePlan } from '../../../src/contract/plan/plan.js';
import { MetricsServer } from '../../../src/coordinator/metrics/server.js';
import { StepMetricsRecorder, allreduceSendRate, workerStateOf } from '../../../src/coordinator/run-metrics.js';

function member(rank: number, state: Member['state'], lastSeenMs: number): Member {
  return { id: `w${rank}-${state}`, rank, state, lastSeenMs, lastSeenMonoMs: 0, hello: {} as Member['hello'] };
}

function value(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((p) => l.includes(p)));
  assert.ok(line, `no ${name} with ${labels} in scrape`);
  return Number(line.split(' ').pop());
}

describe('run-metrics', () => {
  it('maps member states to pets_worker_state values', () => {
    assert.equal(workerStateOf({ state: 'joining' }, true), 'joining');
    assert.equal(workerStateOf({ state: 'lost' }, true), 'lost');
    assert.equal(workerStateOf({ state: 'ready' }, false), 'ready');
    assert.equal(workerStateOf({ state: 'ready' }, true), 'training');
  });

  it('computes the all-reduce send rate and ignores empty reports', () => {
    assert.equal(allreduceSendRate(1_000_000, 0.5), 2_000_000);
    assert.equal(allreduceSendRate(0, 0.5), 0);
    assert.equal(allreduceSendRate(10, 0), 0);
  });

  it('polls the member table: states per rank, heartbeat age, a newcomer wins over the lost holder of its rank, left at the end', async () => {
    const now = 1_000_000;
    const metrics = new MetricsServer({ port: 0, runId: 'rm', defaultMetrics: false, nowMs: () => now });
    const members = [member(0, 'ready', now - 3000), member(1, 'lost', now - 20_000), member(1, 'ready', now - 1000), member(-1, 'joining', now)];
    const control = { all: () => members, live: () => members.filter((m) => m.state !== 'lost') } as unknown as ControlServer;
    const recorder = new StepMetricsRecorder(metrics);
    recorder.watch(control, 60_000);
    let text = await metrics.scrape();
    // Expected ages: now − lastSeenMs of the live member holding the rank (3 s and 1 s), exact (injected clock).
    assert.equal(value(text, 'pets_worker_heartbeat_age_seconds', 'rank="0"'), 3);
    assert.equal(value(text, 'pets_worker_heartbeat_age_seconds', 'rank="1"'), 1);
    assert.equal(value(text, 'pets_workers', 'state="ready"'), 2);
    assert.equal(value(text, 'pets_workers', 'state="lost"'), 0);
    recorder.finish();
    text = await metrics.scrape();
    assert.equal(value(text, 'pets_workers', 'state="left"'), 2);
    recorder.close();
  });

  it('exports the stage plan from the first step it records, also when a resumed run starts mid-stage', async () => {
    const metrics = new MetricsServer({ port: 0, runId: 'rm', defaultMetrics: false });
    const recorder = new StepMetricsRecorder(metrics);
    const stage = (index: number, epochs: number, stepsPerEpoch: number): StagePlan => ({
      index, config: { kind: 'one_cycle', name: `stage-${index + 1}`, epochs, maxLr: 'slice(3e-3)', frozen: true },
      maxLrs: [3e-4, 3e-4, 3e-3], stepsPerEpoch, totalSteps: epochs * stepsPerEpoch,
    } as StagePlan);
    // A run resumed at step 56 of a 6 × 14-step stage: its first recorded step is 57, never 1.
    recorder.record(stage(0, 6, 14), 57, 57, [], 5, [3e-4, 3e-4, 3e-3], 0.9, 0.5);
    let text = await metrics.scrape();
    assert.equal(value(text, 'pets_steps_planned', 'run="rm"'), 84);
    assert.equal(value(text, 'pets_epochs_planned', 'run="rm"'), 6);
    assert.equal(value(text, 'pets_global_step', 'run="rm"'), 57);
    // The next stage's plan replaces it at that stage's first recorded step.
    recorder.record(stage(1, 2, 14), 1, 85, [], 4, [1e-6, 1e-5, 1e-4], 0.95, 0.5);
    text = await metrics.scrape();
    assert.equal(value(text, 'pets_steps_planned', 'run="rm"'), 28);
    assert.equal(value(text, 'pets_epochs_planned', 'run="rm"'), 2);
    // The run's step goes on counting (84 + 1, the logs' "global step 85"); the fit's starts again, of its 28 planned.
    assert.equal(value(text, 'pets_global_step', 'run="rm"'), 85);
    assert.equal(value(text, 'pets_fit_step', 'run="rm"'), 1);
    recorder.close();
  });
});
