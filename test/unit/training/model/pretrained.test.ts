// --pretrained resolution against a local HTTP server on 127.0.0.1 (ephemeral port, closed after the tests).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { createResNet } from '../../../../src/training/model/resnet.js';
import { encodeSafetensors } from '../../../../src/training/model/safetensors.js';
import { exportTorchStateDict } from '../../../../src/training/model/torch-weights.js';
import { Replica } from '../../../../src/training/learner/replica.js';
import { saveModel } from '../../../../src/training/learner/save.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../../../../src/training/data/transforms.js';
import {
  IMAGENET_WEIGHTS, cachedWeightsPath, defaultWeightsCacheDir, loadPretrained, onEndpoint, parsePretrained, resolvePretrainedWeights,
  type PretrainedOptions, type PretrainedSource,
} from '../../../../src/training/model/pretrained.js';

const TINY = { block: 'basic', layers: [1, 1, 1, 1] } as const;
let server: Server;
let base = '';
let dir = '';
let weights: Uint8Array;
let weightsSha = '';
/** Served files by URL path; `cutFirst` paths drop the connection halfway through their first full response. */
const files = new Map<string, Uint8Array>();
const cutFirst = new Set<string>();
const requests: { path: string; range: string | undefined }[] = [];

function serve(req: IncomingMessage, res: ServerResponse): void {
  const path = req.url ?? '';
  requests.push({ path, range: req.headers.range });
  const body = files.get(path);
  if (!body) {
    res.writeHead(404).end();
    return;
  }
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (m) {
    const from = Number(m[1]);
    res.writeHead(206, { 'content-length': body.length - from, 'content-range': `bytes ${from}-${body.length - 1}/${body.length}` });
    res.end(body.subarray(from));
    return;
  }
  res.writeHead(200, { 'content-length': body.length });
  if (cutFirst.delete(path)) {
    res.write(body.subarray(0, body.length >> 1), () => res.destroy());
    return;
  }
  res.end(body);
}

function source(path: string, sha256: string | null, repo = `test/${path.slice(1)}`): PretrainedSource {
  return { repo, url: `${base}${path}`, sha256 };
}

function opts(extra: Partial<PretrainedOptions>): PretrainedOptions {
  return { cacheDir: join(dir, 'cache'), retries: 2, backoffMs: 5, timeoutMs: 5_000, quiet: true, log: () => undefined, ...extra };
}

before(async () => {
  await initBackend('cpu');
  const m = createResNet(TINY, { numClasses: 10, seed: 11 });
  weights = encodeSafetensors(await exportTorchStateDict(m));
  m.dispose();
  weightsSha = createHash('sha256').update(weights).digest('hex');
  dir = await mkdtemp(join(tmpdir(), 'pretrained-test-'));
  server = createServer(serve);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

test('parsePretrained and the cache directory', () => {
  assert.deepEqual(parsePretrained('imagenet'), { kind: 'imagenet' });
  assert.deepEqual(parsePretrained('none'), { kind: 'none' });
  assert.deepEqual(parsePretrained('./w.safetensors'), { kind: 'path', path: './w.safetensors' });
  assert.throws(() => parsePretrained(''), (err: unknown) => isTrainerError(err, 'ERR_BAD_FLAG'));
  assert.equal(defaultWeightsCacheDir({ PETS_TRAINER_WEIGHTS_DIR: '/x/w' }), '/x/w');
  assert.match(defaultWeightsCacheDir({}), /\.cache\/pets-trainer\/weights$/);
  // README: the data cache's variable moves the weights too (its weights/), as $TORCH_HOME moves PyTorch's hub;
  // the weights' own variable still wins, and a blank one counts as unset.
  assert.equal(defaultWeightsCacheDir({ PETS_TRAINER_CACHE_DIR: '/app/.cache' }), '/app/.cache/weights');
  assert.equal(defaultWeightsCacheDir({ PETS_TRAINER_CACHE_DIR: '/app/.cache', PETS_TRAINER_WEIGHTS_DIR: '/x/w' }), '/x/w');
  assert.equal(defaultWeightsCacheDir({ PETS_TRAINER_CACHE_DIR: '/app/.cache', PETS_TRAINER_WEIGHTS_DIR: ' ' }), '/app/.cache/weights');
  assert.match(defaultWeightsCacheDir({ PETS_TRAINER_CACHE_DIR: ' ' }), /\.cache\/pets-trainer\/weights$/);
  assert.equal(IMAGENET_WEIGHTS.resnet34.url, 'https://huggingface.co/timm/resnet34.tv_in1k/resolve/main/model.safetensors');
  for (const s of Object.values(IMAGENET_WEIGHTS)) assert.ok(s.sha256 === null || /^[0-9a-f]{64}$/.test(s.sha256));
});

test('imagenet: a transfer cut mid-way is resumed with a Range request, verified by sha256, then loaded', async () => {
  files.set('/cut.safetensors', weights);
  cutFirst.add('/cut.safetensors');
  requests.length = 0;
  const src = source('/cut.safetensors', weightsSha);
  const path = await resolvePretrainedWeights('imagenet', TINY, opts({ source: src }));
  assert.equal(path, cachedWeightsPath(src, join(dir, 'cache')));
  assert.equal(requests.length, 2);
  assert.equal(requests[0].range, undefined);
  // Resumed from what arrived before the cut (≤ the half the server sent; a reset may drop some in flight).
  const resumedAt = Number(/^bytes=(\d+)-$/.exec(requests[1].range ?? '')?.[1]);
  assert.ok(resumedAt > 0 && resumedAt <= weights.length >> 1, `range ${requests[1].range}`);
  // A second resolution reuses the cache without any request; loading puts the served weights in a body.
  const body = createResNet(TINY);
  try {
    const r = await loadPretrained(body, 'imagenet', opts({ source: src }));
    assert.equal(requests.length, 2);
    assert.equal(r!.loaded, 12 * 5);
    assert.ok(r!.ignored.includes('fc.weight'));
  } finally {
    body.dispose();
  }
});

test('imagenet: a wrong checksum is ERR_CHECKSUM and leaves nothing in the cache', async () => {
  files.set('/bad.safetensors', weights);
  const cache = join(dir, 'cache-bad');
  await assert.rejects(resolvePretrainedWeights('imagenet', TINY, opts({ cacheDir: cache, source: source('/bad.safetensors', '0'.repeat(64)) })),
    (err: unknown) => isTrainerError(err, 'ERR_CHECKSUM') && err.message.includes(`got ${weightsSha}`));
  assert.deepEqual(await readdir(cache), []);
});

test('imagenet: an unpinned file with wrong keys is ERR_WEIGHTS and is removed; a pinless good file logs its sha256', async () => {
  files.set('/junk.safetensors', encodeSafetensors({ x: { dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) } }));
  const cache = join(dir, 'cache-junk');
  await assert.rejects(resolvePretrainedWeights('imagenet', TINY, opts({ cacheDir: cache, source: source('/junk.safetensors', null) })),
    (err: unknown) => isTrainerError(err, 'ERR_WEIGHTS') && /missing key "conv1\.weight" \(expected shape \[64,3,7,7\]\)/.test(err.message));
  assert.deepEqual(await readdir(cache), []);
  files.set('/nopin.safetensors', weights);
  const lines: string[] = [];
  await resolvePretrainedWeights('imagenet', TINY, opts({ cacheDir: cache, source: source('/nopin.safetensors', null), log: (l) => lines.push(l) }));
  assert.ok(lines.some((l) => l.includes(`sha256 ${weightsSha}`) && l.includes('pin it')));
});

test('imagenet offline is ERR_OFFLINE telling how to pass a local file', async () => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const src: PretrainedSource = { repo: 'timm/resnet34.tv_in1k', url: `http://127.0.0.1:${port}/model.safetensors`, sha256: null };
  await assert.rejects(resolvePretrainedWeights('imagenet', 'resnet34', opts({ cacheDir: join(dir, 'cache-off'), retries: 0, source: src })),
    (err: unknown) => isTrainerError(err, 'ERR_OFFLINE') && err.message.includes('--pretrained /path/to/resnet34.tv_in1k.safetensors'));
  // The hint's other way (tryout): the file saved where it names is taken offline, with no flag to change (a
  // container's or a k8s pod's command line stays as it is).
  const cache = join(dir, 'cache-off-2');
  const tiny: PretrainedSource = { ...src, repo: 'test/tiny' };
  let named = '';
  await assert.rejects(resolvePretrainedWeights('imagenet', TINY, opts({ cacheDir: cache, retries: 0, source: tiny })), (err: unknown) => {
    named = /or save it as (\S+) \(the weights cache, where --pretrained imagenet looks first\)/.exec((err as Error).message)?.[1] ?? '';
    return isTrainerError(err, 'ERR_OFFLINE') && named.startsWith(`${cache}/`);
  });
  await mkdir(cache, { recursive: true });
  await writeFile(named, weights);
  assert.equal(await resolvePretrainedWeights('imagenet', TINY, opts({ cacheDir: cache, retries: 0, source: tiny })), named);
});

test('none gives null; a path is checked for existence and torchvision keys; configs without ImageNet weights are rejected', async () => {
  assert.equal(await resolvePretrainedWeights('none', 'resnet34'), null);
  const local = join(dir, 'local.safetensors');
  await writeFile(local, weights);
  assert.equal(await resolvePretrainedWeights(local, TINY), local);
  await assert.rejects(resolvePretrainedWeights(local, 'resnet18'),
    (err: unknown) => isTrainerError(err, 'ERR_WEIGHTS') && /missing key "layer1\.1\.conv1\.weight"/.test(err.message));
  await assert.rejects(resolvePretrainedWeights(join(dir, 'nope.safetensors'), TINY),
    (err: unknown) => isTrainerError(err, 'ERR_BAD_FLAG') && /no such file/.test(err.message));
  await assert.rejects(resolvePretrainedWeights('imagenet', TINY, opts({})),
    (err: unknown) => isTrainerError(err, 'ERR_BAD_CONFIG') && /no ImageNet weights for ResNet\(basic, \[1,1,1,1\]\)/.test(err.message));
});

test('HF_ENDPOINT (huggingface_hub\'s mirror variable) moves the download URL to the mirror; unset or blank: the Hub', () => {
  const src = IMAGENET_WEIGHTS.resnet18;
  assert.equal(src.url, 'https://huggingface.co/timm/resnet18.tv_in1k/resolve/main/model.safetensors');
  assert.deepEqual(onEndpoint(src, {}), src);
  assert.deepEqual(onEndpoint(src, { HF_ENDPOINT: '  ' }), src);
  assert.deepEqual(onEndpoint(src, { HF_ENDPOINT: 'https://hf-mirror.com/' }),
    { ...src, url: 'https://hf-mirror.com/timm/resnet18.tv_in1k/resolve/main/model.safetensors' });
});

test('a model saved by this trainer (fastai learn.save) given as --pretrained is named as such, not as a page of shape mismatches', async () => {
  // New-user tryout: `--pretrained runs/<run>/models/stage-2.safetensors` was refused with "not a torchvision ResNet
  // state dict: key "conv1.weight": expected shape [64,3,7,7], got [7,7,3,64]; … and 104 more" (tfjs HWIO layout).
  const saved = await mkdtemp(join(tmpdir(), 'pretrained-saved-'));
  try {
    await initBackend('cpu');
    const replica = await Replica.create({ arch: TINY, numClasses: 2, seed: 1, pretrained: null, frozen: true });
    const { weights: file } = await saveModel(replica, { arch: TINY, classes: ['cat', 'dog'], size: 32, normalize: { mean: IMAGENET_MEAN, std: IMAGENET_STD } }, saved, 'stage-1');
    replica.dispose();
    await assert.rejects(resolvePretrainedWeights(file, TINY), (err: unknown) => isTrainerError(err, 'ERR_WEIGHTS') &&
      err.message.startsWith(`${file}: a model saved by this trainer (a run's models/<name>.safetensors or a checkpoint's state`) &&
      /To continue that run use --resume <run dir>/.test(err.message) && !/expected shape/.test(err.message));
    // torchvision's own state dict (the fixture's weights) still passes.
    const local = join(saved, 'torchvision.safetensors');
    await writeFile(local, weights);
    assert.equal(await resolvePretrainedWeights(local, TINY), local);
  } finally {
    await rm(saved, { recursive: true, force: true });
  }
});
