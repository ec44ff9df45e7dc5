import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { initBackend } from '../../../../src/training/compute/backend.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { createResNet } from '../../../../src/training/model/resnet.js';
import { readSafetensors, type SafetensorsFile, type SafetensorsTensor } from '../../../../src/training/model/safetensors.js';
import {
  exportTorchStateDict, loadTorchStateDict, loadTorchWeightsFile, saveTorchWeightsFile,
} from '../../../../src/training/model/torch-weights.js';

const WEIGHTS = resolve(process.cwd(), '../shared/fixtures/resnet-tiny/weights.safetensors');
const TINY = { block: 'basic', layers: [1, 1, 1, 1] } as const;
let fixture: SafetensorsFile;

before(async () => {
  await initBackend('cpu');
  fixture = await readSafetensors(WEIGHTS);
});

function withKey(key: string, t: SafetensorsTensor | null): Map<string, SafetensorsTensor> {
  const m = new Map(fixture.tensors);
  if (t === null) m.delete(key);
  else m.set(key, t);
  return m;
}

function weightsError(pattern: RegExp): (err: unknown) => boolean {
  return (err: unknown) => isTrainerError(err, 'ERR_WEIGHTS') && pattern.test(err.message);
}

test('loads the fixture with layout conversion: conv OIHW → HWIO, fc [out,in] → [in,out], BN as is', async () => {
  const m = createResNet(TINY, { numClasses: 37 });
  try {
    const r = loadTorchStateDict(m, fixture.tensors);
    assert.equal(r.loaded, 12 * 5 + 2); // 12 conv weights + 12 BNs × 4 + fc × 2
    assert.equal(r.ignored.length, 12); // the num_batches_tracked entries
    // conv1.weight torch [o=5, i=2, kh=6, kw=1] must be tfjs [kh=6, kw=1, i=2, o=5].
    const torchConv = fixture.tensors.get('conv1.weight')!.data as Float32Array;
    const hwio = await m.params.get('conv1.weight')!.data();
    assert.equal(hwio[((6 * 7 + 1) * 3 + 2) * 64 + 5], torchConv[((5 * 3 + 2) * 7 + 6) * 7 + 1]);
    const torchFc = fixture.tensors.get('fc.weight')!.data as Float32Array;
    assert.equal((await m.params.get('fc.weight')!.data())[300 * 37 + 11], torchFc[11 * 512 + 300]);
    assert.deepEqual(await m.buffers.get('layer3.0.bn2.running_var')!.data(), fixture.tensors.get('layer3.0.bn2.running_var')!.data);
  } finally {
    m.dispose();
  }
});

test('wrong shape, missing and unknown keys are ERR_WEIGHTS naming the key and both shapes; nothing is assigned', async () => {
  const m = createResNet(TINY, { numClasses: 37 });
  try {
    const before0 = await m.params.get('fc.bias')!.data();
    const bad = { dtype: 'F32' as const, shape: [64, 3, 3, 3], data: new Float32Array(64 * 27) };
    assert.throws(() => loadTorchStateDict(m, withKey('conv1.weight', bad), { source: 'w.safetensors' }),
      weightsError(/^w\.safetensors: weights do not fit ResNet\(basic, \[1,1,1,1\]\): key "conv1\.weight": expected shape \[64,3,7,7\] \(torch layout\), got \[64,3,3,3\]/));
    assert.throws(() => loadTorchStateDict(m, withKey('layer1.0.bn1.running_var', null)),
      weightsError(/missing key "layer1\.0\.bn1\.running_var" \(expected shape \[64\]\)/));
    assert.throws(() => loadTorchStateDict(m, withKey('layer5.0.conv1.weight', { dtype: 'F32', shape: [2], data: new Float32Array(2) })),
      weightsError(/unexpected key "layer5\.0\.conv1\.weight" \[2\]/));
    assert.throws(() => loadTorchStateDict(m, withKey('bn1.weight', { dtype: 'I32', shape: [64], data: new Int32Array(64) })),
      weightsError(/key "bn1\.weight": expected a float dtype, got I32/));
    assert.deepEqual(await m.params.get('fc.bias')!.data(), before0);
  } finally {
    m.dispose();
  }
});

test('fc policy: a body ignores fc.*, a 10-class model loads the body with fc "ignore" and rejects it with "load"', async () => {
  const body = createResNet(TINY);
  const ten = createResNet(TINY, { numClasses: 10 });
  try {
    assert.deepEqual(loadTorchStateDict(body, fixture.tensors).ignored.filter((k) => k.startsWith('fc.')), ['fc.weight', 'fc.bias']);
    assert.throws(() => loadTorchStateDict(body, fixture.tensors, { fc: 'load' }), weightsError(/unexpected key "fc\.weight" \[37,512\]/));
    assert.throws(() => loadTorchStateDict(ten, fixture.tensors), weightsError(/key "fc\.weight": expected shape \[10,512\] \(torch layout\), got \[37,512\]/));
    const fcBefore = await ten.params.get('fc.weight')!.data();
    assert.equal(loadTorchStateDict(ten, withKey('fc.bias', null), { fc: 'ignore' }).loaded, 12 * 5);
    assert.deepEqual(await ten.params.get('fc.weight')!.data(), fcBefore);
    assert.deepEqual(await ten.params.get('bn1.bias')!.data(), fixture.tensors.get('bn1.bias')!.data);
  } finally {
    body.dispose();
    ten.dispose();
  }
});

test('export gives back the fixture bit for bit in torch order; save → load round trip', async () => {
  const m = createResNet(TINY, { numClasses: 37 });
  const m2 = createResNet(TINY, { numClasses: 37, seed: 5 });
  const dir = await mkdtemp(join(tmpdir(), 'tw-test-'));
  try {
    loadTorchStateDict(m, fixture.tensors);
    const out = await exportTorchStateDict(m);
    assert.deepEqual([...out.keys()], [...fixture.tensors.keys()]);
    for (const [k, t] of fixture.tensors) {
      assert.deepEqual(out.get(k)!.shape, t.shape, k);
      assert.deepEqual(out.get(k)!.data, t.data, k);
    }
    m.numBatchesTracked = 17;
    const path = join(dir, 'm.safetensors');
    await saveTorchWeightsFile(m, path);
    await loadTorchWeightsFile(m2, path);
    assert.equal(m2.numBatchesTracked, 17);
    assert.deepEqual(await m2.params.get('layer4.0.conv2.weight')!.data(), await m.params.get('layer4.0.conv2.weight')!.data());
    assert.equal((await readSafetensors(path)).metadata.arch, 'ResNet(basic, [1,1,1,1])');
  } finally {
    m.dispose();
    m2.dispose();
    await rm(dir, { recursive: true, force: true });
  }
});
