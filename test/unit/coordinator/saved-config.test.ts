// interpret reads the run's data settings back from its run directory. A config.json cut short (the coordinator
// killed, or the disk full, while it was written) used to end interpret with the bare JSON parser message; the
// configuration is also in every checkpoint manifest, so it is read from there, and without one the error names
// the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { savedRunConfig } from '../../../src/coordinator/inference.js';
import { writeFileAtomicSync } from '../../../src/contract/atomic-write.js';
import { isTrainerError } from '../../../src/contract/errors.js';

test('a truncated config.json: the newest checkpoint\'s configuration is used, and said; without checkpoints an error names the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'saved-config-'));
  try {
    const config = { data: '/data/pets', labelRe: '/([^/]+)_\\d+.jpg$', seed: 7, validPct: 0.2 };
    const whole = JSON.stringify({ config, runtime: {} }, null, 2);
    writeFileAtomicSync(join(dir, 'config.json'), whole);
    assert.deepEqual(readdirSync(dir), ['config.json'], 'no temporary file left');
    assert.deepEqual(savedRunConfig(dir), config);
    writeFileSync(join(dir, 'config.json'), whole.slice(0, 40));
    assert.throws(() => savedRunConfig(dir, () => undefined), (e) => isTrainerError(e, 'ERR_BAD_FLAG')
      && e.message.startsWith(`${join(dir, 'config.json')} cannot be read (`) && /no checkpoint of the run holds its configuration/.test(e.message));
    for (const [step, seed] of [[3, 1], [6, 7]] as const) {
      const ck = join(dir, 'checkpoints', `step-00000000${step}`);
      mkdirSync(ck, { recursive: true });
      writeFileSync(join(ck, 'manifest.json'), JSON.stringify({ format: 1, step, meta: { config: { ...config, seed } } }));
    }
    const lines: string[] = [];
    assert.deepEqual(savedRunConfig(dir, (l) => lines.push(l)), config, 'the newest checkpoint\'s');
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /config\.json cannot be read \(.*JSON.*\); using the run configuration saved in .*step-000000006$/);
    assert.equal(readFileSync(join(dir, 'config.json'), 'utf8'), whole.slice(0, 40), 'read only: the file is left as it is');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
