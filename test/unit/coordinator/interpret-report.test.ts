/**
 * `coordinator interpret <run>` rewrites the run's report; for a `--load` run it showed the `load` row but not the
 * `startedFrom` row (file, what it is, sha256) that the training run's own report has (inference.ts
 * interpretReportBase).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveRunConfig } from '../../../src/contract/config.js';
import type { LoadedCheckpoint } from '../../../src/contract/checkpoint-format.js';
import type { CheckpointMeta } from '../../../src/coordinator/checkpoint-store.js';
import type { RunHistory } from '../../../src/coordinator/history.js';
import { ClassificationInterpretation } from '../../../src/coordinator/interpret/interpretation.js';
import { interpretReportBase } from '../../../src/coordinator/inference.js';
import { reportInput } from '../../../src/coordinator/stage-report.js';

const FROM = { path: '/runs/a/models/stage-1.safetensors', what: 'saved model stage-1 of run /runs/a', sha256: 'ab'.repeat(32) };
const ROW = `${FROM.path} (${FROM.what}, sha256 ${FROM.sha256}): weights and BatchNorm statistics; optimizer state fresh`;

function interpretation(): ClassificationInterpretation {
  return new ClassificationInterpretation({ probs: Float32Array.from([0.9, 0.1, 0.2, 0.8]), targets: Int32Array.from([0, 1]), classes: ['a', 'b'], items: ['x.jpg', 'y.jpg'] });
}

test('interpret of a --load run: the report has the startedFrom row of the training run\'s report, from the newest checkpoint', () => {
  const config = resolveRunConfig({ load: FROM.path });
  const history = { stages: [] } as unknown as RunHistory;
  const latest = { manifest: { meta: { config, history, startedFrom: FROM } } } as unknown as LoadedCheckpoint<CheckpointMeta>;
  const interp = interpretation();
  const base = interpretReportBase({ dir: '/runs/b', name: 'stage-2' }, {}, latest, interp);
  assert.equal(base.config?.startedFrom, ROW);
  assert.equal(base.config?.load, FROM.path);
  // The same rows as the training run's own report (driver.ts / finish.ts pass the run's startedFrom).
  assert.deepEqual(base.config, reportInput('/runs/b', config, history, interp, FROM).config);
  // A run that did not start from --load has no such row.
  const plain = { manifest: { meta: { config: resolveRunConfig({}), history } } } as unknown as LoadedCheckpoint<CheckpointMeta>;
  assert.equal(Object.hasOwn(interpretReportBase({ dir: '/runs/c', name: 'stage-1' }, {}, plain, interp).config ?? {}, 'startedFrom'), false);
});

test('interpret of a --load run without a checkpoint: the startedFrom row comes from its config.json', () => {
  const dir = mkdtempSync(join(tmpdir(), 'interpret-report-'));
  try {
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ config: { load: FROM.path }, runtime: {}, startedFrom: { ...FROM, optimizer: 'fresh' } }));
    const base = interpretReportBase({ dir, name: 'stage-1' }, { load: FROM.path }, null, interpretation());
    assert.deepEqual(base.config, { load: FROM.path, startedFrom: ROW });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
