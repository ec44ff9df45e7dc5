// `npm run learn` (one process) and the coordinator are two CLIs of one trainer: a user moving between them expects
// the same flag to accept the same values and the same lr_find to write the same files (as fastai's one Learner
// does whether it runs in a notebook or a script). They differed: learn refused --size below 32 (the coordinator
// takes 16) and took any size above, and wrote lr_find.png where the coordinator writes lr-find-lr-find.png.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLearnArgs } from '../../../scripts/learn.js';
import { parseTrainArgs } from '../../../src/coordinator/options.js';
import { writeLrFindPicture, writeRunReport } from '../../../src/coordinator/report/write-report.js';
import { LR_FIND_STAGE_NAME, SIZE_RANGE } from '../../../src/contract/config.js';

/** The error message of a parse, or null when it accepted the value. */
function refusal(parse: () => unknown): string | null {
  try {
    parse();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

test('--size and --bs: both CLIs accept and refuse the same values, with the same message', () => {
  assert.deepEqual(SIZE_RANGE, { min: 16, max: 1024 });
  const cases: Array<[string, string, boolean]> = [
    ['--size', '15', false], ['--size', '16', true], ['--size', '32', true], ['--size', '1024', true], ['--size', '1025', false], ['--size', '12x', false],
    ['--bs', '1', false], ['--bs', '2', true], ['--bs', '4096', true], ['--bs', '4097', false],
  ];
  for (const [flag, value, ok] of cases) {
    const learn = refusal(() => parseLearnArgs(['--data', 'x', '--pretrained', 'none', flag, value]));
    const coordinator = refusal(() => parseTrainArgs(['--workers', '1', '--data', 'x', '--pretrained', 'none', flag, value]));
    assert.equal(learn === null, ok, `learn ${flag} ${value}: ${learn}`);
    assert.equal(coordinator, learn, `${flag} ${value}: the same rule and message in both CLIs`);
  }
  assert.match(refusal(() => parseLearnArgs(['--size', '15']))!, /^size \(--size\) must be an integer in \[16, 1024\], got 15$/);
});

test('lr_find writes the same file names in both CLIs: lr-find-<stage name>.png and .json', async () => {
  const record = { name: LR_FIND_STAGE_NAME, lrs: [1e-7, 1e-5, 1e-3, 1e-1], smoothedLosses: [2.3, 2.2, 1.9, 3.5] };
  const learnDir = mkdtempSync(join(tmpdir(), 'lrf-learn-'));
  const runDir = mkdtempSync(join(tmpdir(), 'lrf-run-'));
  try {
    // learn's writer, and the coordinator's report of a run with the default plan's lr_find stage.
    const png = await writeLrFindPicture(learnDir, record, 1);
    await writeRunReport(runDir, { title: 't', lrFinds: [record] }, { chartScale: 1 });
    assert.equal(png, join(learnDir, 'lr-find-lr-find.png'));
    const lrFindFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.startsWith('lr')).sort();
    assert.deepEqual(lrFindFiles(learnDir), ['lr-find-lr-find.json', 'lr-find-lr-find.png']);
    assert.deepEqual(lrFindFiles(runDir), lrFindFiles(learnDir));
    assert.ok(!existsSync(join(learnDir, 'lr_find.png')));
  } finally {
    rmSync(learnDir, { recursive: true, force: true });
    rmSync(runDir, { recursive: true, force: true });
  }
});
