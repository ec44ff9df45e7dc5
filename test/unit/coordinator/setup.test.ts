import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkPretrainedSource } from '../../../src/coordinator/setup.js';
import { isTrainerError } from '../../../src/contract/errors.js';

test('--pretrained: imagenet and none pass, a missing file is refused before anything starts', () => {
  checkPretrainedSource('imagenet');
  checkPretrainedSource('none');
  checkPretrainedSource(new URL(import.meta.url).pathname);
  assert.throws(() => checkPretrainedSource('/nonexistent/resnet34.safetensors'), (e: unknown) =>
    isTrainerError(e, 'ERR_BAD_FLAG') && /--pretrained must be imagenet, none or an existing safetensors file, got "\/nonexistent\/resnet34.safetensors"/.test(e.message));
});
