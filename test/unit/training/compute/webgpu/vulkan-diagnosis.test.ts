// Why Dawn found no adapter: each machine this project met gives the remedy that fixed it there
// (docs/performance-gpu.md, "Figures": the H200 host without glvnd; containers without the graphics capability).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { diagnoseNoAdapter, gatherVulkanFacts, type VulkanFacts } from '../../../../../src/training/compute/webgpu/vulkan-diagnosis.js';

const base: VulkanFacts = { loader: true, glvnd: true, nvidiaGpus: [], icdFiles: [], icdDirs: ['/usr/share/vulkan/icd.d'] };

test('no Vulkan loader: names libvulkan1', () => {
  const m = diagnoseNoAdapter({ ...base, loader: false, nvidiaGpus: ['0000:00:06.0'] });
  assert.match(m, /^webgpu: no adapter: the Vulkan loader libvulkan\.so\.1 is not installed \(apt-get install libvulkan1/);
});

test('NVIDIA GPU without an NVIDIA ICD manifest: the container capability graphics', () => {
  const m = diagnoseNoAdapter({ ...base, nvidiaGpus: ['0000:1b:00.0', '0000:3b:00.0'], icdFiles: ['/usr/share/vulkan/icd.d/lvp_icd.x86_64.json'] });
  assert.match(m, /2 NVIDIA GPU\(s\) present but no NVIDIA Vulkan driver manifest \(nvidia_icd\.json\) in \/usr\/share\/vulkan\/icd\.d/);
  assert.match(m, /NVIDIA_DRIVER_CAPABILITIES must include graphics/);
});

test('NVIDIA ICD without glvnd (the H200 host of 2026-11-30): libglvnd0', () => {
  const m = diagnoseNoAdapter({ ...base, glvnd: false, nvidiaGpus: ['0000:00:06.0'], icdFiles: ['/usr/share/vulkan/icd.d/nvidia_icd.json'] });
  assert.match(m, /libGLdispatch\.so\.0 is not \(apt-get install libglvnd0\)/);
});

test('NVIDIA with ICD and glvnd but no device: points at VK_LOADER_DEBUG', () => {
  const m = diagnoseNoAdapter({ ...base, nvidiaGpus: ['0000:00:06.0'], icdFiles: ['/etc/vulkan/icd.d/nvidia_icd.json'] });
  assert.match(m, /present but Vulkan gave no device; VK_LOADER_DEBUG=/);
});

test('no GPU and no ICD at all: the GPU driver or mesa-vulkan-drivers', () => {
  assert.match(diagnoseNoAdapter(base), /no Vulkan driver installed \(no ICD manifest in \/usr\/share\/vulkan\/icd\.d\): install the GPU's driver, or mesa-vulkan-drivers/);
});

test('unknown glvnd (ldconfig could not run) is not reported as missing', () => {
  const m = diagnoseNoAdapter({ ...base, glvnd: null, nvidiaGpus: ['0000:00:06.0'], icdFiles: ['/x/nvidia_icd.json'] });
  assert.doesNotMatch(m, /libglvnd0/);
});

test('gatherVulkanFacts reads ldconfig, LD_LIBRARY_PATH, the NVIDIA listing and the ICD folders', () => {
  const root = mkdtempSync(join(tmpdir(), 'pets-vkdiag-'));
  try {
    const data = join(root, 'share');
    mkdirSync(join(data, 'vulkan', 'icd.d'), { recursive: true });
    writeFileSync(join(data, 'vulkan', 'icd.d', 'nvidia_icd.json'), '{}');
    writeFileSync(join(data, 'vulkan', 'icd.d', 'README'), '');
    const gpus = join(root, 'gpus');
    mkdirSync(join(gpus, '0000:3b:00.0'), { recursive: true });
    mkdirSync(join(gpus, '0000:1b:00.0'), { recursive: true });
    const lib = join(root, 'lib');
    mkdirSync(lib);
    writeFileSync(join(lib, 'libGLdispatch.so.0'), '');
    const ldconfig = '2 libs found in cache `/etc/ld.so.cache\'\n\tlibvulkan.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libvulkan.so.1\n';
    const f = gatherVulkanFacts({ XDG_DATA_DIRS: data, LD_LIBRARY_PATH: lib }, { ldconfig, nvidiaDir: gpus });
    assert.equal(f.loader, true);
    assert.equal(f.glvnd, true, 'found on LD_LIBRARY_PATH');
    assert.deepEqual(f.nvidiaGpus, ['0000:1b:00.0', '0000:3b:00.0']);
    assert.deepEqual(f.icdFiles, [join(data, 'vulkan', 'icd.d', 'nvidia_icd.json')]);
    const none = gatherVulkanFacts({ XDG_DATA_DIRS: join(root, 'nothing') }, { ldconfig: '', nvidiaDir: join(root, 'no-driver') });
    assert.deepEqual([none.loader, none.glvnd, none.nvidiaGpus, none.icdFiles], [false, false, [], []]);
    const unknown = gatherVulkanFacts({}, { ldconfig: null, nvidiaDir: gpus });
    assert.equal(unknown.loader, null);
    const explicit = gatherVulkanFacts({ VK_DRIVER_FILES: '/a/nvidia_icd.json:/b/lvp.json' }, { ldconfig: '', nvidiaDir: gpus });
    assert.deepEqual([explicit.icdFiles, explicit.icdDirs], [['/a/nvidia_icd.json', '/b/lvp.json'], []]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('on this machine the facts are readable (ldconfig runs)', () => {
  const f = gatherVulkanFacts();
  assert.notEqual(f.loader, null, 'ldconfig -p ran');
  assert.ok(f.icdDirs.includes('/usr/share/vulkan/icd.d'));
});
