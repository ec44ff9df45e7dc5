// `coordinator --resume <run>`: the lines the resume step logs (the runtime settings kept from the run, checkpoints
// skipped) carry the "[coordinator] " tag of every other stderr log line. New-user tryout: "--resume: keeping this
// run's --bind …, --checkpoint-every 4, --metrics-port 0 (give a flag to change one)" was printed bare.
// The run here has finished (its position is past its last stage), so main() ends before any worker or port.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { resolveRunConfig, type StageConfig } from '../../../src/contract/config.js';
import { planStages } from '../../../src/contract/plan/plan.js';
import { planScaleOut } from '../../../src/coordinator/scale-out.js';
import { CheckpointStore, checkpointMeta } from '../../../src/coordinator/checkpoint-store.js';
import { newHistory } from '../../../src/coordinator/history.js';
import { main } from '../../../src/coordinator/cli.js';

const STAGES: StageConfig[] = [{ kind: 'one_cycle', name: 'stage-1', epochs: 1, maxLr: 'slice(3e-3)', frozen: true }];

test('--resume logs what it keeps from the run with the [coordinator] tag, as every other log line', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'resume-log-'));
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  try {
    const scale = planScaleOut({ bs: 2, worldSize: 1, accum: 1, globalBs: 2, lrScale: 'none', baseBs: 64 });
    const stages = planStages({ stages: STAGES, trainCount: 4, globalBs: scale.globalBs, lrFactor: scale.lrFactor });
    const config = resolveRunConfig({ bs: 2, size: 32, workers: 1, pretrained: 'none', arch: 'resnet10', stages: STAGES, runDir: dir });
    const history = newHistory();
    history.position = { stageIndex: 1, stepInStage: 0, globalStep: 2 }; // past its only stage: finished
    new CheckpointStore(dir, 2).write(checkpointMeta({ runId: 'r', config, classes: ['a', 'b'], history, stages, scale, worldSize: 1, generation: 1 }), new Uint8Array([1, 2, 3]));
    // The run was started with --keep 5, which a resume without --keep keeps (and says so).
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ config, runtime: { keep: 5 } }));
    console.log = (line: string) => { out.push(line); };
    console.error = (line: string) => { err.push(line); };
    const code = await main(['--resume', dir, '--metrics-port', '-1']);
    console.log = log;
    console.error = error;
    assert.equal(code, 0, err.join('\n'));
    assert.match(out.join('\n'), /this run already finished \(global step 2\); nothing to resume/);
    const keeping = err.filter((l) => l.includes('--resume: keeping'));
    assert.deepEqual(keeping, ['[coordinator] --resume: keeping this run\'s --keep 5 (give a flag to change one)'], err.join('\n'));
    for (const line of err) assert.match(line, /^\[coordinator\] /, line);
  } finally {
    console.log = log;
    console.error = error;
    rmSync(dir, { recursive: true, force: true });
  }
});
