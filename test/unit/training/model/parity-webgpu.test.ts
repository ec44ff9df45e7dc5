// PyTorch parity of the tfjs ResNet on the WebGPU backend (Dawn; Mesa's lavapipe in CI), with the same tolerances as
// on wasm and cpu. Expected values: ../shared/fixtures/resnet-tiny/case.safetensors, recorded with PyTorch 1.13 /
// torchvision 0.14. Tolerances (relative, max|a−b|/max|b|): eval logits 1e-4, train loss 1e-5, gradients 1e-3.
// Skipped, saying why, where no WebGPU adapter exists; required with PETS_REQUIRE_WEBGPU=1.
import { test } from 'node:test';
import { webgpuOrSkip } from '../compute/webgpu/support.js';
import { checkTinyParity, readTinyFixture } from './tiny-parity.js';

test('tiny ResNet on webgpu matches PyTorch: eval logits, train logits, loss and 7 gradients; no leaked tensors', async (t) => {
  if (!(await webgpuOrSkip(t))) return;
  const { weights, kase } = await readTinyFixture();
  await checkTinyParity(weights, kase);
});
