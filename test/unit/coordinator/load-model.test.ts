/**
 * `--load` (coordinator/load-model.ts): what it reads (a saved model, a checkpoint, a run directory), the checks made
 * before any worker starts (architecture, classes, a damaged or missing file, each named), and the start state every
 * replica loads: the saved weights and BatchNorm statistics with a fresh optimizer, as fastai's
 * `learn.load(name)` (`with_opt=False`) leaves a learner.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../src/training/compute/backend.js';
import { registerTfjsGradients } from '../../../src/training/compute/kernels/gradients.js';
import { Replica } from '../../../src/training/learner/replica.js';
import { saveModel } from '../../../src/training/learner/save.js';
import { decodeReplicaState, encodeReplicaState, weightsChecksumOf } from '../../../src/training/learner/state-codec.js';
import { sha256, writeCheckpoint } from '../../../src/contract/checkpoint-format.js';
import { archModel, resolveRunConfig } from '../../../src/contract/config.js';
import { resolveResNetConfig } from '../../../src/contract/resnet-spec.js';
import { isTrainerError } from '../../../src/contract/errors.js';
import { findModel, loadReplica } from '../../../src/coordinator/inference.js';
import { currentLockOwner } from '../../../src/contract/lock-file.js';
import { checkLoadArch, checkLoadClasses, readLoadSource, replicaTensorShapes, startStateBlob } from '../../../src/coordinator/load-model.js';

const CLASSES = ['Abyssinian', 'Bengal'];
const SIZE = 32;
let dir = '';
let runA = '';
/** The trained replica's state as saved (weights, BN statistics, AdamW moments after one step). */
let savedState: Uint8Array;

/** A ResNet10 replica of 2 classes after one training step, so its optimizer state is not empty. */
async function trainedReplica(): Promise<Replica> {
  const r = await Replica.create({ arch: archModel('resnet10'), numClasses: CLASSES.length, seed: 5, pretrained: null, frozen: true });
  const n = 4;
  const x = Float32Array.from({ length: n * SIZE * SIZE * 3 }, (_, i) => Math.sin(i * 0.37));
  await r.accumulate(x, Int32Array.from([0, 1, 0, 1]), null, 11);
  const g = await r.takeGradients();
  r.applyGradients(g, { lrs: [1e-3, 1e-3, 1e-2], momentum: 0.9 });
  return r;
}

before(async () => {
  await initBackend('auto');
  await registerTfjsGradients();
  dir = mkdtempSync(join(tmpdir(), 'load-model-'));
  runA = join(dir, 'run-a');
  const r = await trainedReplica();
  try {
    await saveModel(r, { arch: resolveResNetConfig(archModel('resnet10')), classes: CLASSES, size: SIZE, normalize: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } }, runA, 'stage-1');
    savedState = encodeReplicaState(await r.exportState());
  } finally {
    r.dispose();
  }
});

after(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

/** A run folder holding one checkpoint of `savedState` at global step 7 (what a coordinator writes). */
function runWithCheckpoint(name: string, arch = 'resnet10', classes = CLASSES, state = savedState): string {
  const runDir = join(dir, name);
  const config = resolveRunConfig({ arch, pretrained: 'none', size: 64, runDir });
  writeCheckpoint(runDir, 7, new Map([['state.safetensors', state]]), { runId: name, config, classes, history: { stages: [], position: { stageIndex: 1, stepInStage: 0, globalStep: 7 } } });
  return runDir;
}

function refusedAs(pattern: RegExp): (e: unknown) => boolean {
  return (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') && pattern.test(e.message);
}

test('a saved model: its file, sha256, architecture, classes, size and state; the run folder without checkpoints or its models/ mean the same model', () => {
  const file = join(runA, 'models', 'stage-1.safetensors');
  for (const given of [file, runA, join(runA, 'models')]) {
    const s = readLoadSource(given);
    assert.equal(s.record.path, file, given);
    assert.equal(s.record.what, `saved model stage-1 of ${runA}`);
    assert.equal(s.record.sha256, sha256(readFileSync(file)));
    assert.deepEqual(s.arch, { block: 'basic', layers: [1, 1, 1, 1] });
    assert.deepEqual(s.classes, CLASSES);
    assert.equal(s.size, SIZE);
    assert.ok(s.state.optimizer.params.length > 0, 'the saved model holds AdamW state (which --load leaves out)');
  }
});

test('a checkpoint: its folder, its state.safetensors, or the run folder (the newest intact checkpoint, the run\'s final state)', () => {
  const runB = runWithCheckpoint('run-b');
  const ckpt = join(runB, 'checkpoints', 'step-000000007');
  for (const given of [runB, ckpt, join(ckpt, 'state.safetensors')]) {
    const s = readLoadSource(given);
    assert.equal(s.record.path, join(ckpt, 'state.safetensors'), given);
    assert.equal(s.record.what, `checkpoint step-000000007 of run ${runB}, global step 7`);
    assert.equal(s.record.sha256, sha256(savedState));
    assert.deepEqual(s.classes, CLASSES);
    assert.equal(s.size, 64);
  }
});

test('refused before anything starts, naming the path: missing, not a model, a model without its .json, a damaged checkpoint', () => {
  assert.throws(() => readLoadSource(join(dir, 'nope.safetensors')), refusedAs(/^--load \S*nope\.safetensors: no such model file or run directory$/));
  const empty = join(dir, 'empty');
  mkdirSync(empty);
  assert.throws(() => readLoadSource(empty), refusedAs(/^--load \S*empty: expected a run directory with models\/\*\.safetensors or a model file, found none$/));
  const loose = join(dir, 'loose');
  mkdirSync(loose);
  copyFileSync(join(runA, 'models', 'stage-1.safetensors'), join(loose, 'stage-1.safetensors'));
  assert.throws(() => readLoadSource(join(loose, 'stage-1.safetensors')), refusedAs(/^--load \S*loose\/stage-1\.safetensors: a saved model is read from a run's models\/ folder, as <name>\.safetensors with its stage-1\.json beside it/));
  const runC = runWithCheckpoint('run-c');
  writeFileSync(join(runC, 'checkpoints', 'step-000000007', 'state.safetensors'), 'damaged');
  assert.throws(() => readLoadSource(runC), refusedAs(/^--load \S*run-c: .*step-000000007.*state\.safetensors/));
});

test('a run still starting (its lock held by a live coordinator, nothing saved) is named in progress, with its holder, for --load and predict', () => {
  // It said only "expected a run directory with models/*.safetensors or a model file, found none".
  const starting = join(dir, 'starting');
  mkdirSync(starting);
  const owner = currentLockOwner('coordinator train'); // this process: alive
  writeFileSync(join(starting, '.coordinator.lock'), JSON.stringify(owner));
  const said = `this run is in progress \\(held by coordinator train \\(pid ${owner.pid} on ${owner.host}, since ${owner.since}\\)\\) `
    + 'and has saved no model or checkpoint yet: wait for it to save one, or pass a saved model$';
  assert.throws(() => readLoadSource(starting), refusedAs(new RegExp(`^--load \\S*starting: ${said}`)));
  assert.throws(() => findModel(starting), refusedAs(new RegExp(`^\\S*starting: ${said}`)));
  // A dead coordinator's lock (its run was killed before it saved anything): no run in progress, as before.
  writeFileSync(join(starting, '.coordinator.lock'), JSON.stringify({ ...owner, pid: 2 ** 22 + 1, startTicks: 1 }));
  assert.throws(() => readLoadSource(starting), refusedAs(/^--load \S*starting: expected a run directory with models\/\*\.safetensors or a model file, found none$/));
});

/** A copy of run-a's saved model whose `.json` is changed by `edit`. */
function modelWithMeta(name: string, edit: (meta: Record<string, unknown>) => void): string {
  const runDir = join(dir, name);
  mkdirSync(join(runDir, 'models'), { recursive: true });
  copyFileSync(join(runA, 'models', 'stage-1.safetensors'), join(runDir, 'models', 'stage-1.safetensors'));
  const meta = JSON.parse(readFileSync(join(runA, 'models', 'stage-1.json'), 'utf8')) as Record<string, unknown>;
  edit(meta);
  writeFileSync(join(runDir, 'models', 'stage-1.json'), JSON.stringify(meta));
  return runDir;
}

test('each field a run uses from a saved model\'s .json is checked (arch, classes, size), refused naming --load, the file, the field and its rule', () => {
  // A .json without size used to give a run "trained at undefined px"; a size of -3 reached the loader.
  const cases: Array<[string, (m: Record<string, unknown>) => void, RegExp]> = [
    ['no-size', (m) => { delete m.size; }, /size must be an integer in \[16, 1024\] \(the --size rule\), got nothing/],
    ['bad-size', (m) => { m.size = -3; }, /size must be an integer in \[16, 1024\] \(the --size rule\), got -3/],
    ['bad-classes', (m) => { m.classes = ['Abyssinian', 7]; }, /classes must be a non-empty list of class names, got \["Abyssinian",7\]/],
    ['null-arch', (m) => { m.arch = null; }, /arch must be \{block: basic\|bottleneck, layers: 4 integers ≥ 1\}, got null/],
  ];
  for (const [name, edit, rule] of cases) {
    const runDir = modelWithMeta(name, edit);
    assert.throws(() => readLoadSource(runDir), refusedAs(new RegExp(`^--load \\S*${name}: \\S*${name}/models/stage-1\\.json: ${rule.source}`)), name);
  }
});

test('a model file the system refuses to read is refused naming --load and the file (it ended the run as ERR_INTERNAL)', () => {
  // As root no mode bit refuses a read, so the file is a folder (EISDIR), which fs refuses as it refuses EACCES.
  const runDir = join(dir, 'unreadable');
  mkdirSync(join(runDir, 'models', 'stage-1.safetensors'), { recursive: true });
  copyFileSync(join(runA, 'models', 'stage-1.json'), join(runDir, 'models', 'stage-1.json'));
  assert.throws(() => readLoadSource(join(runDir, 'models', 'stage-1.safetensors')),
    refusedAs(/^--load \S*unreadable\/models\/stage-1\.safetensors: cannot read \S*unreadable\/models\/stage-1\.safetensors \(EISDIR: illegal operation on a directory, read\)$/));
  // Any other read the system refuses on the way (here a run whose checkpoints/ is a file: ENOTDIR) names --load too.
  const odd = join(dir, 'odd-run');
  mkdirSync(odd);
  writeFileSync(join(odd, 'checkpoints'), '');
  assert.throws(() => readLoadSource(odd), refusedAs(/^--load \S*odd-run: cannot be read \(ENOTDIR: not a directory, scandir '\S*odd-run\/checkpoints'\)$/));
});

test('a checkpoint manifest\'s model fields are checked: an unknown arch, a missing size, refused naming --load, the manifest and the rule', () => {
  const cases: Array<[string, (c: Record<string, unknown>) => void, RegExp]> = [
    // archModel('pigeon') reached resolveResNetConfig, whose ERR_BAD_CONFIG named neither --load nor the file.
    ['ckpt-arch', (c) => { c.arch = 'pigeon'; }, /arch \(--arch\) must be one of resnet10\|resnet18\|resnet34\|resnet50, got "pigeon"/],
    ['ckpt-size', (c) => { delete c.size; }, /meta\.config\.size must be an integer in \[16, 1024\] \(the --size rule\), got nothing/],
    ['ckpt-size0', (c) => { c.size = 0; }, /size \(--size\) must be an integer in \[16, 1024\], got 0/],
  ];
  for (const [name, edit, rule] of cases) {
    const runDir = join(dir, name);
    const config = { ...resolveRunConfig({ arch: 'resnet10', pretrained: 'none', size: 64, runDir }) } as Record<string, unknown>;
    edit(config);
    writeCheckpoint(runDir, 7, new Map([['state.safetensors', savedState]]), { runId: name, config, classes: CLASSES, history: { stages: [], position: { stageIndex: 1, stepInStage: 0, globalStep: 7 } } });
    for (const given of [runDir, join(runDir, 'checkpoints', 'step-000000007')]) {
      assert.throws(() => readLoadSource(given), refusedAs(new RegExp(`^--load \\S*${name}(/checkpoints/step-000000007)?: .*manifest\\.json.*${rule.source}`)), `${name}: ${given}`);
    }
  }
});

/** A copy of run-a's saved model whose state is changed by `edit` (its .json kept, or changed by `editMeta`). */
function modelWithState(name: string, edit: (tensors: Array<{ name: string; shape: number[]; data: Float32Array }>) => void, editMeta?: (m: Record<string, unknown>) => void): string {
  const runDir = modelWithMeta(name, editMeta ?? (() => undefined));
  const state = decodeReplicaState(readFileSync(join(runA, 'models', 'stage-1.safetensors')));
  const tensors = state.tensors.map((t) => ({ name: t.name, shape: [...t.shape], data: Float32Array.from(t.data) }));
  edit(tensors);
  writeFileSync(join(runDir, 'models', 'stage-1.safetensors'), encodeReplicaState({ ...state, tensors }));
  return runDir;
}

test('the tensors a run reads for each --load source fit the model its metadata describes: names and tfjs shapes of a real replica', async () => {
  const r = await Replica.create({ arch: archModel('resnet10'), numClasses: 3, seed: 1, pretrained: null, frozen: false });
  try {
    const real = (await r.exportState()).tensors.map((t) => [t.name, [...t.shape]] as const);
    assert.deepEqual([...replicaTensorShapes(resolveResNetConfig(archModel('resnet10')), 3)].sort(([a], [b]) => (a < b ? -1 : 1)), real);
  } finally {
    r.dispose();
  }
});

test('a model whose tensors do not fit its metadata is refused before any worker starts, naming --load, the file and the tensor', () => {
  // Each was found only by the workers' load-state (ERR_CHECKPOINT, exit 1, after they started, naming no flag), and
  // a tensor of another shape with as many values (conv1.weight in torch's [out, in, k, k]) was trained on silently.
  const cases: Array<[string, (ts: Array<{ name: string; shape: number[]; data: Float32Array }>) => void, ((m: Record<string, unknown>) => void) | undefined, RegExp]> = [
    ['lacks', (ts) => { ts.splice(ts.findIndex((t) => t.name === 'bn1.running_var'), 1); }, undefined, /it lacks the tensor bn1\.running_var/],
    ['torch-layout', (ts) => { ts.find((t) => t.name === 'conv1.weight')!.shape = [64, 3, 7, 7]; }, undefined, /its tensor conv1\.weight is \[64, 3, 7, 7\], the model's is \[7, 7, 3, 64\]/],
    ['extra', (ts) => { ts.push({ name: 'fc.weight', shape: [2], data: new Float32Array(2) }); }, undefined, /it holds a tensor fc\.weight, which the model does not have/],
    // The .json of a 3-class model beside the weights of a 2-class one.
    ['other-json', () => undefined, (m) => { m.classes = ['Abyssinian', 'Bengal', 'Birman']; }, /its tensor head\.8\.weight is \[512, 2\], the model's is \[512, 3\], so it is not the state of the resnet10 with 3 classes its metadata describes/],
    ['nan', (ts) => { ts.find((t) => t.name === 'conv1.weight')!.data[5] = NaN; }, undefined, /its tensor conv1\.weight holds NaN \(value 5 of 9408\); a model's weights and statistics must be finite/],
    ['inf', (ts) => { ts.find((t) => t.name === 'head.6.running_var')!.data[0] = Infinity; }, undefined, /its tensor head\.6\.running_var holds Infinity \(value 0 of 512\)/],
  ];
  for (const [name, edit, editMeta, rule] of cases) {
    const runDir = modelWithState(name, edit, editMeta);
    assert.throws(() => readLoadSource(runDir), refusedAs(new RegExp(`^--load \\S*${name}: \\S*${name}/models/stage-1\\.safetensors: ${rule.source}`)), name);
  }
  // A checkpoint's state is checked the same way.
  const runDir = join(dir, 'ckpt-lacks');
  const state = decodeReplicaState(savedState);
  const config = resolveRunConfig({ arch: 'resnet10', pretrained: 'none', size: 64, runDir });
  writeCheckpoint(runDir, 7, new Map([['state.safetensors', encodeReplicaState({ ...state, tensors: state.tensors.filter((t) => t.name !== 'head.8.weight') })]]),
    { runId: 'ckpt-lacks', config, classes: CLASSES, history: { stages: [], position: { stageIndex: 1, stepInStage: 0, globalStep: 7 } } });
  assert.throws(() => readLoadSource(runDir), refusedAs(/^--load \S*ckpt-lacks: \S*step-000000007\/state\.safetensors: it lacks the tensor head\.8\.weight/));
});

test('predict and interpret refuse the same models, naming the file (they said \'replica state lacks bn1.running_var\', and predicted with the NaN)', async () => {
  const cases: Array<[string, RegExp]> = [
    ['lacks', /^saved model stage-1 \(\S*lacks\/models\/stage-1\.safetensors\) does not fit the model its stage-1\.json describes: replica state lacks bn1\.running_var$/],
    ['torch-layout', /^saved model stage-1 \(\S*torch-layout\/models\/stage-1\.safetensors\) does not fit the model its stage-1\.json describes: replica state conv1\.weight is \[64, 3, 7, 7\], model has \[7, 7, 3, 64\]$/],
    ['nan', /^saved model stage-1 \(\S*nan\/models\/stage-1\.safetensors\) is damaged: its tensor conv1\.weight holds NaN \(value 5 of 9408\); weights and statistics must be finite numbers$/],
  ];
  // The models the test above made; a refused one leaves no tensors behind.
  const tensors = tf.memory().numTensors;
  for (const [name, rule] of cases) {
    await assert.rejects(loadReplica({ dir: join(dir, name), name: 'stage-1' }), (e: unknown) => isTrainerError(e, 'ERR_CHECKPOINT') && rule.test(e.message), name);
  }
  assert.equal(tf.memory().numTensors, tensors);
  const { replica } = await loadReplica({ dir: runA, name: 'stage-1' });
  replica.dispose();
});

test('the architecture must be --arch\'s: the message names the file, both architectures and the flag to pass', async () => {
  const s = readLoadSource(runA);
  checkLoadArch(s, 'resnet10');
  assert.throws(() => checkLoadArch(s, 'resnet34'), refusedAs(new RegExp(`^--load ${s.record.path.replace(/[.]/g, '\\.')}: the model is a resnet10, this run's --arch is resnet34; pass --arch resnet10 \\(the architecture of the model loaded\\)$`)));
  // A resnet18's checkpoint holds a resnet18's state (a resnet10's is refused as not fitting its manifest).
  const r18 = await Replica.create({ arch: archModel('resnet18'), numClasses: CLASSES.length, seed: 2, pretrained: null, frozen: true });
  let state18: Uint8Array;
  try {
    state18 = encodeReplicaState(await r18.exportState());
  } finally {
    r18.dispose();
  }
  const other = readLoadSource(runWithCheckpoint('run-d', 'resnet18', CLASSES, state18));
  assert.throws(() => checkLoadArch(other, 'resnet10'), refusedAs(/: the model is a resnet18, this run's --arch is resnet10; pass --arch resnet18/));
});

test('the classes must be the data\'s, in order: the message names the file and what differs', () => {
  const s = readLoadSource(runA);
  checkLoadClasses(s, CLASSES);
  assert.throws(() => checkLoadClasses(s, ['Abyssinian', 'Bengal', 'Birman']),
    refusedAs(/: the model was trained on 2 classes, the data has 3: not in the model: Birman; load a model trained on these classes, or point --data at its data$/));
  assert.throws(() => checkLoadClasses(s, ['Abyssinian', 'beagle']), refusedAs(/: the model was trained on 2 classes, the data has 2: not in the data: Bengal; not in the model: beagle;/));
  assert.throws(() => checkLoadClasses(s, ['Bengal', 'Abyssinian']), refusedAs(/: the same 2 classes in another order \(the model's class 0 is Abyssinian, the data's Bengal\)/));
});

test('the start state: the saved weights and BatchNorm statistics, no optimizer state (fastai with_opt=False), the first stage\'s frozen flag; a replica loading it reports the checksum the coordinator expects', async () => {
  const s = readLoadSource(runA);
  for (const frozen of [true, false]) {
    const blob = startStateBlob(s, frozen);
    const decoded = decodeReplicaState(blob);
    assert.equal(decoded.frozen, frozen);
    assert.deepEqual(decoded.optimizer.params, []);
    assert.deepEqual(decoded.bnSteps, s.state.bnSteps);
    assert.deepEqual(decoded.tensors.map((t) => t.name), s.state.tensors.map((t) => t.name));
    for (const [i, t] of decoded.tensors.entries()) assert.ok(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(s.state.tensors[i]!.data.buffer, s.state.tensors[i]!.data.byteOffset, s.state.tensors[i]!.data.byteLength)), t.name);
    // A replica that already trained (optimizer state of its own), as a worker's is at a group restart, loads it.
    const r = await trainedReplica();
    const tensorsBefore = tf.memory().numTensors;
    try {
      r.importState(decoded);
      assert.equal(await r.weightsChecksum(), weightsChecksumOf(s.state.tensors));
      assert.equal(r.frozen, frozen);
      assert.deepEqual((await r.exportState()).optimizer.params, [], 'AdamW starts with no moments and step 0');
      // The moments it had are freed (the frozen flip rebuilds the trainable set; none is added).
      assert.ok(tf.memory().numTensors <= tensorsBefore, `${tf.memory().numTensors} tensors after the load, ${tensorsBefore} before`);
    } finally {
      r.dispose();
    }
  }
});
