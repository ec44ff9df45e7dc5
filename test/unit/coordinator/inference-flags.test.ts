// `coordinator predict --top` and `coordinator interpret --bs` are checked before anything loads, with the flag named
// (as every training flag is): `--top abc` used to mean 1 and `--bs abc` 32 without a word, and `interpret --bs -5`
// failed after loading the model, naming an internal "shardPlan batchSize". `interpret <run-dir>` takes the run's lock
// (coordinator/run-lock.ts) before it writes the run's report. Its data check's hints name no flag it lacks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTrainerError } from '../../../src/contract/errors.js';
import { checkImageArg, findModel, interpretDataOptions, modelLine, predictFailureLine, predictLine, runInterpretCommand, runPredictCommand, tsvField } from '../../../src/coordinator/inference.js';
import { TrainerError } from '../../../src/contract/errors.js';
import { initBackend } from '../../../src/training/compute/backend.js';
import { releaseBackend } from '../../../src/training/compute/release.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../../../src/training/data/transforms.js';
import { Replica } from '../../../src/training/learner/replica.js';
import { saveModel } from '../../../src/training/learner/save.js';
import type { ResNetConfig } from '../../../src/contract/resnet-spec.js';
import { createDataBunch } from '../../../src/training/data/databunch.js';
import { ImagePool } from '../../../src/training/data/pool.js';
import { RUN_LOCK_FILE } from '../../../src/coordinator/run-lock.js';
import { runShowBatchCommand } from '../../../src/coordinator/show-batch.js';

const badFlag = (re: RegExp) => (err: unknown): boolean => {
  assert.ok(isTrainerError(err), String(err));
  assert.match(err.code, /^ERR_BAD_(FLAG|CONFIG)$/);
  assert.match(err.message, re);
  return true;
};

test('predict --top must be an integer ≥ 1', async () => {
  for (const top of ['abc', '0', '1.5']) {
    // The model path does not exist: the flag is refused before it is looked for.
    await assert.rejects(runPredictCommand(['/nonexistent-run', 'a.jpg', '--top', top]), badFlag(new RegExp(`--top must be an integer ≥ 1, got ${top === 'abc' ? '"abc"' : top}$`)));
  }
});

test('interpret --bs must be an integer in [1, 4096]', async () => {
  for (const bs of ['abc', '-5', '0']) {
    await assert.rejects(runInterpretCommand(['/nonexistent-run', '--bs', bs]), badFlag(new RegExp(`--bs must be an integer in \\[1, 4096\\], got ${bs === 'abc' ? '"abc"' : bs}$`)));
  }
});

/** A run directory with a (dummy) saved model and a config.json, and a lock held by a live coordinator, pid `pid`. */
function lockedRun(pid: number): { dir: string; lock: string; held: string } {
  const dir = mkdtempSync(join(tmpdir(), 'interpret-lock-'));
  mkdirSync(join(dir, 'models'));
  writeFileSync(join(dir, 'models', 'stage-1.safetensors'), 'not read before the lock');
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ config: { data: join(dir, 'no-data') } }));
  const lock = join(dir, RUN_LOCK_FILE);
  const held = `${JSON.stringify({ pid, host: hostname(), since: '2026-01-01T00:00:00.000Z', command: 'coordinator train' })}\n`;
  writeFileSync(lock, held);
  return { dir, lock, held };
}

test('interpret <run-dir> refuses a run directory a live coordinator holds (it would write the run\'s report there); the lock stays', async () => {
  // The test runner's parent stands for the live coordinator: a running process on this host, not this one.
  const { dir, lock, held } = lockedRun(process.ppid);
  try {
    await assert.rejects(runInterpretCommand([dir, '--backend', 'cpu']), (err: unknown) => {
      assert.ok(isTrainerError(err, 'ERR_BAD_FLAG'), String(err));
      assert.match(err.message, new RegExp(`^interpret ${dir}: this run directory is in use by coordinator train \\(pid ${process.ppid} on `));
      assert.match(err.message, /interpret writes the run's report there\. Wait for it to end, or interpret one of its saved models into a folder of its own: coordinator interpret .*models\/stage-1\.safetensors$/);
      return true;
    });
    assert.equal(readFileSync(lock, 'utf8'), held, 'the coordinator\'s lock is left as it was');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('interpret <run-dir> after the coordinator died (stale lock) takes the lock and releases it, even when it then fails', async () => {
  // A pid far above any pid_max in use: no such process, so the lock is stale (a SIGKILLed coordinator's).
  const { dir, lock } = lockedRun(2 ** 30);
  try {
    // The dummy model cannot be loaded: the command fails after taking the lock, and must release it.
    await assert.rejects(runInterpretCommand([dir, '--backend', 'cpu']), (err: unknown) => !(isTrainerError(err) && /in use by/.test(err.message)));
    assert.equal(existsSync(lock), false, 'no lock left behind');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('interpret <model file> writes into a folder of its own and needs no lock: not refused for a live run', async () => {
  const { dir, lock, held } = lockedRun(process.ppid);
  writeFileSync(join(dir, 'models', 'stage-1.json'), '{}'); // found (a model is two files); unreadable later
  const out: string[] = [];
  const { log } = console;
  console.log = (line: string) => { out.push(line); };
  try {
    await assert.rejects(runInterpretCommand([join(dir, 'models', 'stage-1.safetensors'), '--backend', 'cpu']), (err: unknown) => !(isTrainerError(err) && /in use by/.test(err.message)));
    assert.equal(readFileSync(lock, 'utf8'), held);
    assert.deepEqual(out, [`model: ${join(dir, 'models', 'stage-1.safetensors')}`], 'stdout names the model file first');
  } finally {
    console.log = log;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('interpret\'s data check does not tell the user to raise a --valid-pct that interpret lacks: it names retraining', async () => {
  // The shared photos at the run defaults (seed 42, valid_pct 0.2) leave 7 classes without a validation image.
  const lines: string[] = [];
  const pool = new ImagePool({});
  pool.start();
  try {
    await createDataBunch({ ...interpretDataOptions({}, join(process.cwd(), '../shared/datasets/oxford-iiit-pet-sample')), log: (l) => lines.push(l) }, pool);
  } finally {
    await pool.close();
  }
  const warning = lines.find((l) => /class\(es\) have no validation image/.test(l));
  assert.ok(warning, lines.join('\n'));
  assert.match(warning, /— add images or train again with a higher --valid-pct \(interpret measures the run's own split\)$/);
});

test('each subcommand\'s --help names the command as typed (coordinator <sub>) and says what it does', async () => {
  // The help said "Usage: predict [options] <model> <images...>": a user copying it ran a command that does not exist.
  const runs: [string, (argv: string[]) => Promise<number>][] = [
    ['predict', runPredictCommand], ['interpret', runInterpretCommand], ['show-batch', (a) => runShowBatchCommand(a)],
  ];
  for (const [sub, run] of runs) {
    let text = '';
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string | Uint8Array): boolean => { text += String(chunk); return true; }) as typeof process.stdout.write;
    try {
      await assert.rejects(run(['--help']), (e: unknown) => (e as { code?: string }).code === 'commander.helpDisplayed');
    } finally {
      process.stdout.write = write;
    }
    assert.match(text, new RegExp(`^Usage: coordinator ${sub} \\[options\\]`), text);
    assert.match(text.split('\n')[2] ?? '', /^fastai's /, `${sub}: a description line under the usage\n${text}`);
    // Which model a run directory stands for, and the models/ folder findModel takes (tryout: the help named neither).
    if (sub !== 'show-batch') assert.match(text.replace(/\s+/g, ' '), /model run directory \(its newest saved model\), a models\/ folder, or models\/<name>\.safetensors/, text);
  }
});

test('predict refuses a folder as a folder, naming what to pass instead, and a missing file as missing; files pass the check', () => {
  const dir = mkdtempSync(join(tmpdir(), 'predict-arg-'));
  try {
    assert.throws(() => checkImageArg(dir), (e: unknown) => isTrainerError(e, 'ERR_BAD_IMAGE') && e.message === `${dir}: a folder, not an image file: pass the images in it (e.g. ${join(dir, '*.jpg')})`);
    writeFileSync(join(dir, 'a.jpg'), 'x');
    checkImageArg(join(dir, 'a.jpg'));
    // Seen (tryout): a mistyped photo was 'unreadable: <path> (ENOENT: no such file or directory, stat '<path>')'.
    const missing = join(dir, 'missing.jpg');
    assert.throws(() => checkImageArg(missing), (e: unknown) => isTrainerError(e, 'ERR_BAD_IMAGE') && e.message === `no such file: ${missing}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('predict: one tab-separated line per image on stdout; an unreadable image gets one coordinator error line naming its path once, and exit 1', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'predict-run-'));
  const shared = new URL('../../../../shared/datasets/', import.meta.url).pathname;
  const good = join(shared, 'oxford-iiit-pet-sample/images/pug_139.jpg');
  const truncated = join(shared, 'bad-inputs/images/Bengal_9001.jpg');
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  try {
    await initBackend('cpu');
    const arch: ResNetConfig = { block: 'basic', layers: [1, 1, 1, 1] };
    const replica = await Replica.create({ arch, numClasses: 2, seed: 1, pretrained: null, frozen: true });
    await saveModel(replica, { arch, classes: ['cat', 'dog'], size: 32, normalize: { mean: IMAGENET_MEAN, std: IMAGENET_STD } }, dir, 'stage-1');
    replica.dispose();
    releaseBackend();
    console.log = (line: string) => { out.push(line); };
    console.error = (line: string) => { err.push(line); };
    const code = await runPredictCommand([dir, truncated, good, dir, '--backend', 'cpu', '--top', '2']);
    console.log = log;
    console.error = error;
    assert.equal(code, 1, 'some images could not be predicted');
    assert.equal(out.length, 1, out.join('\n'));
    // `<image>\t<class> <p>\t<class> <p>`: the two classes, most probable first, probabilities summing to 1.
    const [path, ...pairs] = out[0]!.split('\t');
    assert.equal(path, good);
    const top = pairs.map((p) => p.split(' '));
    assert.deepEqual(top.map(([c]) => c).sort(), ['cat', 'dog']);
    assert.ok(Number(top[0]![1]) >= Number(top[1]![1]) && Math.abs(Number(top[0]![1]) + Number(top[1]![1]) - 1) <= 2e-4, out[0]);
    assert.equal(err.length, 3, err.join('\n'));
    // The model file it used, first, on stderr (stdout stays one line per image): the run's only saved stage.
    assert.equal(err.shift(), `model: ${join(dir, 'models', 'stage-1.safetensors')}`);
    assert.match(err[0]!, /^coordinator: ERR_BAD_IMAGE: truncated\/corrupt: \S+Bengal_9001\.jpg \(/);
    assert.match(err[1]!, /^coordinator: ERR_BAD_IMAGE: \S+: a folder, not an image file/);
    for (const [line, path] of [[err[0]!, truncated], [err[1]!, dir]] as const) assert.equal(line.split(path).length - 1, path === dir ? 2 : 1, line);
  } finally {
    console.log = log;
    console.error = error;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('predict prints one line per image with two-column-safe names: a newline or tab in a file name is escaped', () => {
  // Seen: `predict run 'Abys<newline>sinian_901.jpg'` printed the name over two lines, so a script reading one line per
  // image got a line without probabilities and one without a name. Escaped as GNU coreutils' sha256sum does (\\, \n).
  const probs = Float32Array.from([0.25, 0.5, 0.25]);
  assert.equal(predictLine('Abys\nsinian_901.jpg', ['a', 'b', 'c'], probs, 2), 'Abys\\nsinian_901.jpg\tb 0.5000\ta 0.2500');
  assert.equal(predictLine('cat.jpg', ['a', 'b', 'c'], probs, 1), 'cat.jpg\tb 0.5000', 'ordinary names unchanged');
  assert.equal(tsvField('a\tb\rc\\d\x01e\x7f'), 'a\\tb\\rc\\\\d\\x01e\\x7f');
  for (const name of ['x\ny.jpg', 'x\ty.jpg', 'x\\ny.jpg']) assert.doesNotMatch(tsvField(name), /[\t\n]/);
  assert.notEqual(tsvField('x\ny.jpg'), tsvField('x\\ny.jpg'), 'a backslash in a name is escaped too, so no two names print alike');
});

test('predictFailureLine names the image when the message does not', () => {
  assert.equal(predictFailureLine('a.jpg', new TrainerError('ERR_BAD_IMAGE', 'empty: a.jpg (file is empty)')), 'coordinator: ERR_BAD_IMAGE: empty: a.jpg (file is empty)');
  assert.equal(predictFailureLine('a.jpg', new Error('out of memory')), 'coordinator: a.jpg: out of memory');
});

test('a model file that does not exist is named as such, with the models saved beside it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'find-model-'));
  try {
    mkdirSync(join(dir, 'models'));
    for (const f of ['stage-1.safetensors', 'stage-2.safetensors', 'stage-1.json']) writeFileSync(join(dir, 'models', f), '');
    const missing = join(dir, 'models', 'stage-3.safetensors');
    assert.throws(() => findModel(missing), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') && e.message === `${missing}: no such model file (saved beside it: stage-1, stage-2)`);
    const nowhere = join(dir, 'none', 'stage-1.safetensors');
    assert.throws(() => findModel(nowhere), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') && e.message === `${nowhere}: no such model file`);
    assert.deepEqual(findModel(join(dir, 'models', 'stage-1.safetensors')), { dir, name: 'stage-1' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('findModel: a file that is not a model (its .json, an image) is ERR_BAD_FLAG naming what to pass', () => {
  // Seen (tryout2): `predict runs/<run>/models/stage-1.json cat.jpg` ended with ERR_INTERNAL 'ENOTDIR: not a
  // directory, scandir …' and exit 1; a path that holds no model is a bad flag (exit 2), and the .json names its model.
  const dir = mkdtempSync(join(tmpdir(), 'find-model-file-'));
  try {
    mkdirSync(join(dir, 'models'));
    for (const f of ['models/stage-1.safetensors', 'models/stage-1.json', 'models/notes.json', 'cat.jpg']) writeFileSync(join(dir, f), 'x');
    const meta = join(dir, 'models', 'stage-1.json');
    assert.throws(() => findModel(meta), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') &&
      e.message === `${meta}: the saved model's metadata, not the model: pass its weights file ${join(dir, 'models', 'stage-1.safetensors')} (the .json beside it is read with it)`);
    for (const other of [join(dir, 'models', 'notes.json'), join(dir, 'cat.jpg')]) {
      assert.throws(() => findModel(other), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') &&
        e.message === `${other}: not a model: pass a run directory, its models/ folder, or models/<name>.safetensors`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('findModel: a checkpoint (its folder or its state file) is named as one, with the run and its saved models', () => {
  // Seen (tryout): `interpret runs/<run>/checkpoints/step-000000173` was told 'found state.safetensors directly in it …
  // move them into …/step-000000173/models', which makes no model (a checkpoint has no <name>.json).
  const dir = mkdtempSync(join(tmpdir(), 'find-model-ckpt-'));
  try {
    const step = join(dir, 'run', 'checkpoints', 'step-000000173');
    mkdirSync(step, { recursive: true });
    mkdirSync(join(dir, 'run', 'models'));
    for (const f of ['checkpoints/step-000000173/manifest.json', 'checkpoints/step-000000173/state.safetensors', 'models/stage-1.safetensors', 'models/stage-1.json', 'models/stage-2.safetensors', 'models/stage-2.json']) writeFileSync(join(dir, 'run', f), 'x');
    const run = join(dir, 'run');
    const want = `a checkpoint (for --resume), not a saved model: pass the run directory ${run} or one of its saved models (${join(run, 'models', 'stage-1.safetensors')}, ${join(run, 'models', 'stage-2.safetensors')})`;
    for (const target of [step, join(step, 'state.safetensors')]) {
      assert.throws(() => findModel(target), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') && e.message === `${target}: ${want}`);
    }
    rmSync(join(run, 'models'), { recursive: true });
    assert.throws(() => findModel(step), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') &&
      e.message === `${step}: a checkpoint (for --resume), not a saved model: pass the run directory ${run} (its models/ holds a stage once the stage ends)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('findModel: a model file outside a models/ folder or without its <name>.json is refused naming what is missing', () => {
  // Seen by the breaker: `predict /tmp/m.safetensors` (a copy of the weights alone) said 'cannot read saved model
  // metadata /tmp/models/m.json (ENOENT …)', a path derived from the grandparent folder that the user never had.
  const dir = mkdtempSync(join(tmpdir(), 'find-model-'));
  try {
    mkdirSync(join(dir, 'run', 'models'), { recursive: true });
    for (const f of ['loose.safetensors', 'run/models/stage-1.safetensors', 'run/models/stage-1.json', 'run/models/alone.safetensors']) writeFileSync(join(dir, f), 'x');
    assert.throws(() => findModel(join(dir, 'loose.safetensors')), badFlag(new RegExp(`a saved model is read from a run's models/ folder, as <name>\\.safetensors with its loose\\.json beside it .*; ${join(dir, 'loose.json')} is missing: pass the run directory or <run>/models/loose\\.safetensors`)));
    assert.throws(() => findModel(join(dir, 'run', 'models', 'alone.safetensors')), badFlag(/alone\.json is missing/));
    writeFileSync(join(dir, 'loose.json'), '{}');
    assert.throws(() => findModel(join(dir, 'loose.safetensors')), badFlag(new RegExp(`this file is in ${dir}:`)));
    assert.deepEqual(findModel(join(dir, 'run', 'models', 'stage-1.safetensors')), { dir: join(dir, 'run'), name: 'stage-1' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('findModel: the models/ folder itself stands for the folder holding it; model files straight in another folder are named', () => {
  // New-user tryout: after copying a run's models/ elsewhere (fastai's load_learner(path) takes the folder holding
  // export.pkl), `predict /tmp/exported/models cat.jpg` was refused with "… found none" though the folder held the
  // model; a folder holding the two files directly was refused the same way, not saying what it lacked.
  const dir = mkdtempSync(join(tmpdir(), 'find-model-dir-'));
  try {
    mkdirSync(join(dir, 'exported', 'models'), { recursive: true });
    mkdirSync(join(dir, 'flat'));
    for (const f of ['exported/models/stage-1.safetensors', 'exported/models/stage-1.json', 'flat/stage-1.safetensors', 'flat/stage-1.json']) writeFileSync(join(dir, f), 'x');
    assert.deepEqual(findModel(join(dir, 'exported', 'models')), { dir: join(dir, 'exported'), name: 'stage-1' });
    assert.deepEqual(findModel(join(dir, 'exported')), { dir: join(dir, 'exported'), name: 'stage-1' });
    const flat = join(dir, 'flat');
    assert.throws(() => findModel(flat), badFlag(new RegExp(`^${flat}: expected a run directory with models/\\*\\.safetensors or a model file, found stage-1\\.safetensors directly in it: a saved model is read from a folder named models/ \\(<name>\\.safetensors with its <name>\\.json beside it\\); move them into ${join(flat, 'models')}$`)));
    mkdirSync(join(dir, 'empty'));
    assert.throws(() => findModel(join(dir, 'empty')), badFlag(/found none$/));
    // New-user tryout: `interpret runs/<run>` during stage 1 (or after a Ctrl-C before it ended) said only "found
    // none", as for a folder that is not a run; a run directory (config.json, checkpoints/) is named as one.
    const run = join(dir, 'run');
    mkdirSync(join(run, 'checkpoints', 'step-000000014'), { recursive: true });
    writeFileSync(join(run, 'config.json'), '{}');
    assert.throws(() => findModel(run), badFlag(new RegExp(`^${run}: expected a run directory with models/\\*\\.safetensors or a model file, found none: this run has saved no model yet \\(models/<stage>\\.safetensors is written when a stage ends\\); wait for its first stage to end, or, if it was stopped before, continue it with npx coordinator --resume ${run}$`)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('predict and interpret refuse a path that holds no model before starting the backend, saying it does not exist', async () => {
  // New-user tryout: `predict runs/nonexistent x.jpg` took 8-9 s (the backend started first: native addon, GPU
  // probe) to say "expected a run directory … found none". tensorflow is requested here: where tfjs-node is not
  // installed, starting it first failed with ERR_BACKEND instead of naming the path.
  const missing = join(tmpdir(), 'no-such-run-for-predict');
  const noSuch = badFlag(new RegExp(`^${missing}: no such run directory or model file$`));
  await assert.rejects(runPredictCommand([missing, 'a.jpg', '--backend', 'tensorflow']), noSuch);
  await assert.rejects(runInterpretCommand([missing, '--backend', 'tensorflow']), noSuch);
  assert.throws(() => findModel(missing), noSuch);
});

test('predict and interpret name the model file they use: a run directory\'s newest saved stage, or the file given, as an absolute path', () => {
  // A run directory holds several stages (stage-1, stage-2, …): which one answered was said nowhere.
  const dir = mkdtempSync(join(tmpdir(), 'model-line-'));
  try {
    const models = join(dir, 'run', 'models');
    mkdirSync(models, { recursive: true });
    for (const [name, mtime] of [['stage-1', 2000], ['stage-2', 3000], ['a-late-name', 1000]] as const) {
      for (const ext of ['safetensors', 'json']) {
        writeFileSync(join(models, `${name}.${ext}`), '{}');
        utimesSync(join(models, `${name}.${ext}`), mtime, mtime);
      }
    }
    const newest = `model: ${join(models, 'stage-2.safetensors')}`;
    assert.equal(modelLine(findModel(join(dir, 'run'))), newest, 'the newest by time, not by name');
    assert.equal(modelLine(findModel(models)), newest);
    assert.equal(modelLine(findModel(join(models, 'stage-1.safetensors'))), `model: ${join(models, 'stage-1.safetensors')}`);
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      assert.equal(modelLine(findModel('run')), newest, 'a relative argument is named absolute');
    } finally {
      process.chdir(cwd);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
