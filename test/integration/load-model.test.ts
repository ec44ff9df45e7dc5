/**
 * `--load` end to end on the tiny fixture (`fault-harness.ts`): fastai's `learn.load('stage-1')` then new fits.
 *
 * - Run A trains stage 1 (frozen) from seeded weights and saves `models/stage-1`.
 * - Run B is a new run `--load A/models/stage-1.safetensors` with its own stages (stage 1 frozen again, 2 epochs): the
 *   weights every replica holds when its first step starts have the checksum this test computes from A's file on its
 *   own (sha256 over each weight's name and float32 bytes, in name order: what a replica reports), the optimizer
 *   starts fresh (B's AdamW step counts are B's steps alone, not A's + B's, though both stages train the same
 *   parameters), and config.json and the report record where it started.
 * - Run C is B again, stopped by SIGINT during its first epoch; A's model is then moved away and C resumed: it goes on
 *   from its own checkpoint (never reading the loaded model again) and ends with B's weights, bit for bit.
 * - A wrong --arch and data of other classes are refused before any worker starts, naming the file and what differs.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { differingTensors, makeFixture, readTensors, useTinyRunFixture } from './fault-harness.js';

const RUN_TIMEOUT_MS = 300_000;
const fx = useTinyRunFixture('load-model-');

/** A tiny 1-worker run: resnet10 at 32 px, bs 2, WASM, no lr_find, ephemeral ports. */
function args(runDir: string, extra: readonly string[], data = fx.data): string[] {
  return ['--workers', '1', '--data', data, '--arch', 'resnet10', '--size', '32', '--bs', '2', '--no-lr-find', '--backend', 'wasm',
    '--metrics-port', '-1', '--bind', 'tcp://127.0.0.1:0', '--run-dir', runDir, '--plain', ...extra];
}

/** What a replica reports as its weights checksum, computed here from a saved state file: weights only, name order. */
function weightsChecksum(file: string): string {
  const tensors = readTensors(file);
  const h = createHash('sha256');
  for (const name of [...tensors.keys()].filter((n) => !n.startsWith('opt.')).sort()) h.update(name).update(tensors.get(name)!);
  return h.digest('hex');
}

/** Steps of each stage, from the plan line (`stages: stage-1 (7 steps), …`). */
function planSteps(out: string): number {
  const m = /stages: stage-1 \((\d+) steps?\)/.exec(out); // "1 step" for one
  assert.ok(m, out.slice(-2000));
  return Number(m[1]);
}

test('--load: a new run starts from the saved weights with a fresh optimizer; its resume continues from its own checkpoint', { timeout: 4 * RUN_TIMEOUT_MS }, async () => {
  const runA = path.join(fx.dir, 'a'), runB = path.join(fx.dir, 'b'), runC = path.join(fx.dir, 'c');
  const a = fx.start(args(runA, ['--pretrained', 'none', '--epochs', '1', '--fine-tune-epochs', '0']));
  assert.equal((await a.exited).code, 0, a.out.slice(-3000));
  const model = path.join(runA, 'models', 'stage-1.safetensors');
  const stepsA = planSteps(a.stdout);

  const b = fx.start(args(runB, ['--load', model, '--epochs', '2', '--fine-tune-epochs', '0']));
  assert.equal((await b.exited).code, 0, b.out.slice(-3000));
  const sha = createHash('sha256').update(readFileSync(model)).digest('hex');
  assert.match(b.out, new RegExp(`\\] starting from the weights of ${model.replace(/[.]/g, '\\.')} \\(--load: saved model stage-1 of ${runA}; sha256 ${sha.slice(0, 12)}…\\): weights and BatchNorm statistics; the optimizer state starts fresh`));
  // The weights of the first step: what every replica reported after the load, against the file's own checksum.
  const loaded = /--load: every replica holds the loaded weights \(checksum ([0-9a-f]{64})\); stage stage-1 starts with a fresh optimizer/.exec(b.out);
  assert.ok(loaded, b.out.slice(-3000));
  assert.equal(loaded[1], weightsChecksum(model));
  // Fresh optimizer: every AdamW step count is B's own steps; carried over from A they would be A's + B's.
  const stepsB = planSteps(b.stdout);
  assert.equal(stepsB, 2 * stepsA);
  const steps = Object.values((JSON.parse(readFileSync(path.join(runB, 'models', 'stage-1.json'), 'utf8')) as { optimizerSteps: Record<string, number> }).optimizerSteps);
  assert.ok(steps.length > 0);
  assert.deepEqual(new Set(steps), new Set([stepsB]));
  const saved = JSON.parse(readFileSync(path.join(runB, 'config.json'), 'utf8')) as { config: { load: string; pretrained: string }; startedFrom: { path: string; sha256: string } };
  assert.equal(saved.config.load, model);
  assert.equal(saved.config.pretrained, 'none');
  assert.deepEqual([saved.startedFrom.path, saved.startedFrom.sha256], [model, sha]);
  assert.match(readFileSync(path.join(runB, 'index.html'), 'utf8'), new RegExp(`startedFrom[\\s\\S]*${sha}`));

  // The same run, stopped in its first epoch, then resumed with the loaded model gone.
  const c = fx.start(args(runC, ['--load', model, '--epochs', '2', '--fine-tune-epochs', '0']));
  await c.waitFor(/^epoch 0: 1\/\d+ batches/m, RUN_TIMEOUT_MS);
  process.kill(c.child.pid!, 'SIGINT');
  assert.equal((await c.exited).code, 0, c.out.slice(-3000));
  assert.match(c.out, /stopped at stage stage-1/, c.out.slice(-2000));
  renameSync(model, `${model}.moved`);
  try {
    const resumed = fx.start(['--resume', runC, '--metrics-port', '-1', '--bind', 'tcp://127.0.0.1:0', '--plain']);
    assert.equal((await resumed.exited).code, 0, resumed.out.slice(-3000));
    assert.match(resumed.out, new RegExp(`resumed from ${runC}/checkpoints/step-\\d{9}: stage stage-1`));
    assert.doesNotMatch(resumed.out, /starting from the weights|--load: every replica/);
    assert.deepEqual(differingTensors(path.join(runC, 'models', 'stage-1.safetensors'), path.join(runB, 'models', 'stage-1.safetensors')), [],
      'the stopped and resumed run ends with the uninterrupted run\'s weights and optimizer state');
    const record = (JSON.parse(readFileSync(path.join(runC, 'config.json'), 'utf8')) as { startedFrom: { sha256: string } }).startedFrom;
    assert.equal(record.sha256, sha, 'the resumed run still records where it started');
  } finally {
    renameSync(`${model}.moved`, model);
  }

  // Another --arch: refused before the data step; other classes: before any worker starts. Exit 2 both, no worker.
  const arch = fx.start([...args(path.join(fx.dir, 'arch'), ['--load', runA]), '--arch', 'resnet18']);
  assert.equal((await arch.exited).code, 2, arch.out.slice(-2000));
  assert.match(arch.out, new RegExp(`ERR_BAD_FLAG: --load ${runA}/checkpoints/step-\\d{9}/state\\.safetensors: the model is a resnet10, this run's --arch is resnet18; pass --arch resnet10`));
  const otherData = makeFixture(path.join(fx.dir, 'data3'), 3);
  const classes = fx.start(args(path.join(fx.dir, 'classes'), ['--load', model], otherData));
  assert.equal((await classes.exited).code, 2, classes.out.slice(-2000));
  assert.match(classes.out, new RegExp(`ERR_BAD_FLAG: --load ${model.replace(/[.]/g, '\\.')}: the model was trained on 2 classes, the data has 3: not in the model: \\S+; load a model trained on these classes, or point --data at its data`));
  for (const r of [arch, classes]) assert.deepEqual(r.workerPids(), [], r.out.slice(-2000));
  assert.doesNotMatch(arch.out + classes.out, /waiting for \d+ worker/);
});
