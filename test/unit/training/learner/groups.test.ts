import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTrainerError } from '../../../../src/contract/errors.js';
import { isBatchNormParam, layerGroupOf, layerGroups, trainableNames } from '../../../../src/training/learner/groups.js';
import { layoutModules, resnetLayout } from '../../../../src/contract/resnet-spec.js';

const HEAD_PARAMS = ['head.2.weight', 'head.2.bias', 'head.4.weight', 'head.4.bias', 'head.6.weight', 'head.6.bias',
  'head.8.weight', 'head.8.bias'];

/** Parameter names of a torchvision body, from the model's own layout (independent of the regexes under test). */
function bodyParams(arch: 'resnet18' | 'resnet34' | 'resnet50'): { names: string[]; bn: Set<string> } {
  const names: string[] = [];
  const bn = new Set<string>();
  for (const m of layoutModules(resnetLayout(arch, null))) {
    if (m.kind === 'conv') names.push(`${m.name}.weight`);
    else for (const p of ['weight', 'bias']) { names.push(`${m.name}.${p}`); bn.add(`${m.name}.${p}`); }
  }
  return { names, bn };
}

test('layer groups: [conv1, bn1, layer1, layer2], [layer3, layer4], [head] (fastai _resnet_split)', () => {
  assert.equal(layerGroupOf('conv1.weight'), 0);
  assert.equal(layerGroupOf('bn1.running_var'), 0);
  assert.equal(layerGroupOf('layer2.3.downsample.1.bias'), 0);
  assert.equal(layerGroupOf('layer3.0.conv1.weight'), 1);
  assert.equal(layerGroupOf('layer4.2.bn2.weight'), 1);
  assert.equal(layerGroupOf('head.8.bias'), 2);
  for (const bad of ['fc.weight', 'layer5.0.conv1.weight', 'conv1.bias2', 'head.weight']) {
    assert.throws(() => layerGroupOf(bad), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') && e.message.includes(bad));
  }
  const { names } = bodyParams('resnet34');
  const groups = layerGroups([...names, ...HEAD_PARAMS]);
  // resnet34 has 3+4+6+3 blocks; group 0 = conv1 + bn1(2) + layer1 (3 blocks × 6) + layer2 (4 × 6 + downsample 3).
  assert.equal(groups[0]!.length, 1 + 2 + 18 + 27);
  assert.equal(groups[1]!.length, 6 * 6 + 3 + 3 * 6 + 3);
  assert.deepEqual(groups[2], HEAD_PARAMS);
  assert.equal(groups.flat().length, names.length + HEAD_PARAMS.length);
});

for (const arch of ['resnet18', 'resnet34', 'resnet50'] as const) {
  test(`isBatchNormParam agrees with the ${arch} layout's BN modules`, () => {
    const { names, bn } = bodyParams(arch);
    for (const name of names) assert.equal(isBatchNormParam(name), bn.has(name), name);
  });
}

test('trainableNames: frozen = head + every BN of the body (train_bn); unfrozen = all', () => {
  const { names, bn } = bodyParams('resnet34');
  const all = [...names, ...HEAD_PARAMS];
  assert.deepEqual(trainableNames(all, { frozen: false }), all);
  const frozen = trainableNames(all, { frozen: true });
  assert.deepEqual(frozen, all.filter((n) => bn.has(n) || n.startsWith('head.')));
  assert.ok(frozen.includes('layer2.0.downsample.1.weight') && !frozen.includes('layer2.0.downsample.0.weight'));
  assert.ok(frozen.includes('head.4.weight') && frozen.includes('head.2.bias'));
  assert.deepEqual(trainableNames(all, { frozen: true, trainBn: false }), HEAD_PARAMS);
  assert.ok(isBatchNormParam('head.6.weight') && !isBatchNormParam('head.4.weight') && !isBatchNormParam('head.6.running_mean'));
});
