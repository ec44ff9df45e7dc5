import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_RUN_CONFIG } from '../../../src/contract/config.js';
import { DEFAULT_RUNTIME } from '../../../src/coordinator/options.js';
import { readRunConfigFile, writeRunConfigFile } from '../../../src/coordinator/run-config-file.js';

test('config.json: written then read back, without the runtime\'s resume; missing, cut short and odd files say so', () => {
  const dir = mkdtempSync(join(tmpdir(), 'runcfg-'));
  try {
    assert.equal(readRunConfigFile(dir).state, 'missing');
    writeRunConfigFile(dir, { ...DEFAULT_RUN_CONFIG, runDir: dir }, { ...DEFAULT_RUNTIME, resume: dir });
    const read = readRunConfigFile(dir);
    assert.equal(read.state, 'read');
    if (read.state !== 'read') return;
    assert.equal(read.config?.runDir, dir);
    assert.equal(read.runtime?.bucketMb, DEFAULT_RUNTIME.bucketMb);
    assert.equal('resume' in (read.runtime ?? {}), false, 'a resumed run\'s file does not mark the next start as a resume');
    writeFileSync(join(dir, 'config.json'), '{"config": {"arch": "resn');
    const cut = readRunConfigFile(dir);
    assert.equal(cut.state, 'unreadable');
    assert.match(cut.state === 'unreadable' ? cut.fault : '', /JSON/);
    writeFileSync(join(dir, 'config.json'), '{"config": [1], "runtime": null}');
    assert.deepEqual(readRunConfigFile(dir), { state: 'read', path: join(dir, 'config.json') });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
