// `--backend auto` on a machine whose only WebGPU adapter is Mesa's software one (every CPU machine with Mesa):
// the user sees the one backend line and nothing from Dawn. Dawn's native code prints two "artificially reduced"
// warnings whenever it enumerates that device; auto probes it in a child process whose stderr is filtered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { withoutDawnNoise } from '../../../../src/training/compute/webgpu/dawn.js';

const NOISE = [
  'Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.',
  'Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.',
];

test('the filter drops exactly the two known Dawn warnings and keeps every other line', () => {
  const real = ['Error: vkCreateInstance failed', 'Warning: maxDynamicUniformBuffersPerPipelineLayout is odd', 'something else'];
  assert.equal(withoutDawnNoise([real[0], NOISE[0], real[1], NOISE[1], real[2]].join('\n')), real.join('\n'));
  assert.equal(withoutDawnNoise(`${NOISE[0]}\r\n`), '');
});

test('initBackend(auto) prints no Dawn noise (checked where Dawn finds only a software adapter)', { timeout: 180_000 }, async (t) => {
  const script = "const m = await import('./src/training/compute/backend.ts'); const c = await m.initBackend('auto'); console.log(JSON.stringify(c.rejected));";
  const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((res, rej) => execFile(process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 170_000 }, (err, so, se) => (err ? rej(err) : res({ stdout: so, stderr: se }))));
  const rejected = JSON.parse(stdout.trim().split('\n').at(-1)!) as string[];
  if (!rejected.some((r) => r.startsWith('webgpu: only a software adapter'))) {
    t.skip(`no software-only WebGPU adapter here (${rejected.find((r) => r.startsWith('webgpu')) ?? 'webgpu used'})`);
    return;
  }
  assert.doesNotMatch(stderr, /artificially reduced/, stderr);
});
