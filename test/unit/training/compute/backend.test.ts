import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { BACKEND_REQUESTS, gpuVisible, initBackend, parseBackendRequest } from '../../../../src/training/compute/backend.js';
import { dawnFlags, describeAdapter, isNotInstalled } from '../../../../src/training/compute/webgpu/dawn.js';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { webgpuOrSkip } from './webgpu/support.js';

test('parseBackendRequest accepts the six names and names the flag on anything else', () => {
  for (const name of ['auto', 'tensorflow', 'webgpu', 'native', 'wasm', 'cpu']) assert.equal(parseBackendRequest(name), name);
  assert.deepEqual([...BACKEND_REQUESTS], ['auto', 'tensorflow', 'webgpu', 'native', 'wasm', 'cpu']);
  assert.throws(() => parseBackendRequest('gpu'), (err: unknown) =>
    isTrainerError(err, 'ERR_BAD_FLAG') && /--backend must be one of auto\|tensorflow\|webgpu\|native\|wasm\|cpu, got "gpu"/.test(err.message));
});

test('gpuVisible honours CUDA_VISIBLE_DEVICES=-1 and empty', () => {
  assert.equal(gpuVisible({ CUDA_VISIBLE_DEVICES: '-1' }), false);
  assert.equal(gpuVisible({ CUDA_VISIBLE_DEVICES: '' }), false);
});

test('isNotInstalled: the package itself missing, not a missing file inside an installed package', () => {
  const missing = Object.assign(new Error("Cannot find package '@tensorflow/tfjs-node' imported from /x/backend.js"), { code: 'ERR_MODULE_NOT_FOUND' });
  assert.equal(isNotInstalled(missing, '@tensorflow/tfjs-node'), true);
  const broken = Object.assign(new Error("Cannot find module '/x/node_modules/@tensorflow/tfjs-node/lib/napi-v8/tfjs_binding.node'"), { code: 'MODULE_NOT_FOUND' });
  assert.equal(isNotInstalled(broken, '@tensorflow/tfjs-node'), false);
  assert.equal(isNotInstalled(new Error('libvulkan.so.1: cannot open shared object file'), 'webgpu'), false);
});

test('dawnFlags: PETS_WEBGPU_ADAPTER becomes adapter=, PETS_DAWN_FLAGS are passed through', () => {
  assert.deepEqual(dawnFlags({}), []);
  assert.deepEqual(dawnFlags({ PETS_WEBGPU_ADAPTER: ' nvidia-h200 ', PETS_DAWN_FLAGS: 'enable-dawn-features=a  backend=vulkan' }),
    ['enable-dawn-features=a', 'backend=vulkan', 'adapter=nvidia-h200']);
});

test('describeAdapter names vendor, device, description and a software fallback', () => {
  assert.equal(describeAdapter({ vendor: 'nvidia', architecture: '', device: 'nvidia-h200', description: 'NVIDIA: 580.159.04', isFallbackAdapter: false }),
    'nvidia nvidia-h200 (NVIDIA: 580.159.04)');
  assert.equal(describeAdapter({ vendor: '', architecture: '', device: '', description: '', isFallbackAdapter: true }), 'unnamed adapter, software fallback');
});

test('auto picks a working backend and explains every rejected one in one calm line', async () => {
  const choice = await initBackend('auto');
  assert.equal(tf.getBackend(), choice.tfName);
  assert.match(choice.summary, /^backend: /);
  assert.ok(choice.summary.startsWith(choice.brief));
  assert.equal(choice.summary.includes('\n'), false, 'one line');
  if (choice.kind === 'wasm' || choice.kind === 'native') {
    // On a machine without tfjs-node and without a hardware GPU, the earlier candidates are each listed with a reason.
    assert.ok(choice.rejected.some((r) => r.includes('tensorflow-gpu') || r.includes('tfjs-node-gpu')));
    assert.ok(choice.rejected.some((r) => r.startsWith('webgpu')), 'webgpu comes before wasm in the auto order');
    assert.ok(choice.rejected.some((r) => r.includes('@tensorflow/tfjs-node')));
    // An optional package that is not installed is said calmly, without the module loader's message.
    assert.doesNotMatch(choice.summary, /Cannot find package/);
  }
  // WASM only when the oneDNN addon is unusable, and then the line says why.
  if (choice.kind === 'wasm') assert.ok(choice.rejected.some((r) => r.includes('native')));
  if (choice.kind === 'webgpu') assert.equal(choice.adapter?.isFallbackAdapter, false, 'auto never takes a software adapter');
  const y = tf.tidy(() => tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])));
  assert.deepEqual(Array.from(await y.data()), [4, 6]);
  y.dispose();
});

test('an explicit webgpu request names the adapter in the log line', async (t) => {
  const choice = await webgpuOrSkip(t);
  if (choice === null) return;
  assert.equal(choice.kind, 'webgpu');
  assert.equal(tf.getBackend(), 'webgpu');
  assert.ok(choice.adapter !== null);
  assert.ok(choice.brief.includes(describeAdapter(choice.adapter)), choice.brief);
  const y = tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.tensor2d([5, 6, 7, 8], [2, 2]));
  assert.deepEqual(Array.from(await y.data()), [19, 22, 43, 50]);
  y.dispose();
});

test('an explicit cpu request activates cpu', async () => {
  const choice = await initBackend('cpu');
  assert.equal(choice.kind, 'cpu');
  assert.equal(tf.getBackend(), 'cpu');
});
