/**
 * `--pretrained imagenet` (the default) without a network, deterministically: `HF_ENDPOINT` (the Hub mirror variable
 * `huggingface_hub` reads) points at a closed local port and the weights cache is an empty folder.
 * - A new run stops in the coordinator's checks, before the data step and before any worker starts, with one
 *   ERR_OFFLINE message (it used to come after the data step, from each worker and again from the coordinator).
 * - A resumed run needs no pretrained weights: its replicas load the checkpoint (fastai's `learn.load` reads no
 *   ImageNet weights either), so an offline resume of an ImageNet run finishes.
 * Every node process started under a test records its argv through a preload, so "no worker started" is checked.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { CoordinatorProcess } from './support/coordinator.js';
import { CheckpointStore, checkpointMeta } from '../../src/coordinator/checkpoint-store.js';
import { archModel, resolveRunConfig } from '../../src/contract/config.js';
import { newHistory } from '../../src/coordinator/history.js';
import { planScaleOut } from '../../src/coordinator/scale-out.js';
import { planStages } from '../../src/contract/plan/plan.js';
import { initBackend } from '../../src/training/compute/backend.js';
import { Replica } from '../../src/training/learner/replica.js';
import { encodeReplicaState } from '../../src/training/learner/state-codec.js';

let tmp: string;
let preload: string;
let data: string;
/** A local port nothing listens on (taken, then closed): connecting to it is refused at once. */
let closedPort: number;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'offline-'));
  preload = join(tmp, 'record-argv.mjs');
  writeFileSync(preload, "import { appendFileSync } from 'node:fs';\nimport { isMainThread } from 'node:worker_threads';\n" +
    'if (isMainThread && process.env.PETS_ARGV_LOG) appendFileSync(process.env.PETS_ARGV_LOG, JSON.stringify(process.argv) + "\\n");\n');
  data = join(tmp, 'data');
  mkdirSync(data);
  const names = ['cat_1', 'cat_2', 'cat_3', 'cat_4', 'cat_5', 'dog_1', 'dog_2', 'dog_3', 'dog_4', 'dog_5'];
  for (const [i, n] of names.entries()) {
    await sharp({ create: { width: 40, height: 32, channels: 3, background: { r: (i * 37) % 256, g: n.startsWith('cat') ? 40 : 200, b: 120 } } }).jpeg().toFile(join(data, `${n}.jpg`));
  }
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closedPort = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Offline env: the Hub on a closed port, an empty weights cache; every node process appends its argv to `log`. */
function offlineEnv(name: string): { env: NodeJS.ProcessEnv; log: string; cache: string } {
  const log = join(tmp, `${name}.argv`);
  const cache = join(tmp, `${name}-weights`);
  return {
    log, cache, env: {
      ...process.env, HF_ENDPOINT: `http://127.0.0.1:${closedPort}`, PETS_TRAINER_WEIGHTS_DIR: cache, PETS_ARGV_LOG: log,
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(preload).href}`.trim(),
    },
  };
}

const workerArgvs = (log: string): string[][] => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as string[]) : [])
  .filter((argv) => argv.some((a) => /worker[/\\]run\.(ts|js)$/.test(a)));

const STAGES = [{ kind: 'one_cycle', name: 'frozen', epochs: 1, maxLr: '1e-3', frozen: true }];

test('offline, --pretrained imagenet by default: one ERR_OFFLINE before the data step, no worker started', { timeout: 120_000 }, async () => {
  const { env, log } = offlineEnv('new');
  const config = join(tmp, 'run.yaml'); // a config file without `pretrained`, as the user's
  writeFileSync(config, `data: ${JSON.stringify(data)}\narch: resnet18\nsize: 32\nbs: 2\nworkers: 2\n`);
  const proc = new CoordinatorProcess(['--config', config, '--run-dir', join(tmp, 'run-new'), '--bind', 'tcp://127.0.0.1:0', '--metrics-port', '-1', '--plain'], env);
  try {
    const r = await proc.exited;
    assert.notEqual(r.code, 0, r.stderr);
    const all = r.stdout + r.stderr;
    assert.equal(all.match(/ERR_OFFLINE/g)?.length, 1, `one message:\n${all}`);
    assert.match(r.stderr, /ERR_OFFLINE: --pretrained imagenet: the ImageNet weights cannot be downloaded: the network looks offline/);
    assert.ok(r.stderr.includes(`http://127.0.0.1:${closedPort}/timm/resnet18.tv_in1k/resolve/main/model.safetensors`), `the URL tried, on $HF_ENDPOINT:\n${r.stderr}`);
    // Its own lines, as the README shows them (new-user tryout: printed as one line joined by literal \n's).
    assert.match(r.stderr, /^coordinator: ERR_OFFLINE: [^\n]*network looks offline\nhint: [^\n]*--pretrained none[^\n]*\ntried:\n {2}http:\/\/127\.0\.0\.1:\d+\//m, r.stderr);
    assert.doesNotMatch(all, /^data: |coordinator listening|worker joined|setup failed/m, 'nothing of the run started');
    assert.equal(workerArgvs(log).length, 0, 'no worker process');
  } finally {
    await proc.close();
  }
});

for (const [name, pretrained] of [['an ImageNet run with an empty weights cache', 'imagenet'], ['a run whose --pretrained file has moved', '/moved/away/resnet18.safetensors']] as const) {
test(`offline resume of ${name}: the replicas load the checkpoint, the run finishes`, { timeout: 300_000 }, async () => {
  const runDir = join(tmp, `run-resumed-${pretrained === 'imagenet' ? 'imagenet' : 'file'}`);
  const config = resolveRunConfig({ data, workers: 1, arch: 'resnet18', size: 32, bs: 2, pretrained, runDir, stages: STAGES });
  const scale = planScaleOut({ bs: 2, worldSize: 1, accum: 1, globalBs: null, lrScale: config.lrScale, baseBs: config.baseBs });
  const stages = planStages({ stages: config.stages, trainCount: 8, globalBs: scale.globalBs, lrFactor: scale.lrFactor });
  // The checkpoint of an ImageNet run (its weights are whatever it trained; random ones stand in for them here).
  await initBackend('cpu');
  const replica = await Replica.create({ arch: archModel('resnet18'), numClasses: 2, seed: 7, pretrained: null, frozen: true });
  const state = encodeReplicaState(await replica.exportState());
  replica.dispose();
  const { plan: _plan, ...meta } = checkpointMeta({ runId: 'r', config, classes: ['cat', 'dog'], history: newHistory(), stages, scale, worldSize: 1, generation: 1 });
  new CheckpointStore(runDir, 2).write(meta, state);
  const { env, log, cache } = offlineEnv(`resume-${pretrained === 'imagenet' ? 'imagenet' : 'file'}`);
  const proc = new CoordinatorProcess(['--resume', runDir, '--bind', 'tcp://127.0.0.1:0', '--metrics-port', '-1', '--plain'], env);
  try {
    const r = await proc.exited;
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /ERR_OFFLINE|cannot reach|ERR_BAD_FLAG|no such file/);
    assert.match(r.stderr, /resumed from /);
    assert.equal(workerArgvs(log).length, 1, 'its worker ran');
    assert.equal(existsSync(cache), false, 'nothing was fetched into the weights cache');
  } finally {
    await proc.close();
  }
});
}

test('a local worker\'s failure is said once, by the coordinator, not again by the worker', { timeout: 300_000 }, async () => {
  // Seen: each worker's "setup failed: <the whole message>", then the coordinator's error, then "worker rank 0: …".
  const { env } = offlineEnv('fail');
  const proc = new CoordinatorProcess(['--data', data, '--workers', '1', '--arch', 'resnet10', '--size', '32', '--bs', '2', '--pretrained', 'none',
    '--epochs', '1', '--fine-tune-epochs', '0', '--no-lr-find', '--max-restarts', '0', '--run-dir', join(tmp, 'run-fail'), '--bind', 'tcp://127.0.0.1:0', '--metrics-port', '-1', '--plain'],
  { ...env, TRAINER_TEST_FAIL_STEP: '0:1' });
  try {
    const r = await proc.exited;
    assert.notEqual(r.code, 0, r.stderr);
    const all = r.stdout + r.stderr;
    assert.equal(all.match(/injected fault: TRAINER_TEST_FAIL_STEP=0:1/g)?.length, 1, `the cause once:\n${all}`);
    assert.match(r.stderr, /\[worker \d+\] step failed: ERR_INTERNAL: sent to the coordinator, which reports it/);
  } finally {
    await proc.close();
  }
});
