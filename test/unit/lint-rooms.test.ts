/**
 * The room rule is enforced by lint (eslint.config.js): src/coordinator ↛ src/worker, src/worker ↛
 * src/coordinator, src/shared ↛ either; what a room may import (src/shared, its own files) stays allowed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ESLint } from 'eslint';

const ROOT = new URL('../../', import.meta.url).pathname;
const eslint = new ESLint({ cwd: ROOT });

async function roomErrors(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${ROOT}${filePath}` });
  return result!.messages.filter((m) => m.ruleId === 'no-restricted-imports' || m.ruleId === 'no-restricted-syntax').map((m) => m.message);
}

test('lint rejects an import across rooms, static, type-only, re-exported or dynamic, and names the rule', async () => {
  const cases: [string, string, RegExp][] = [
    ['src/coordinator/probe.ts', "import { WorkerTrainer } from '../worker/trainer.js';\nexport const t = WorkerTrainer;\n", /coordinator ↛ worker/],
    ['src/coordinator/report/probe.ts', "export type { RankInfo } from '../../worker/trainer.js';\n", /coordinator ↛ worker/],
    ['src/coordinator/probe.ts', "export const m = import('../worker/cli.js');\n", /coordinator ↛ worker/],
    ['src/worker/allreduce/probe.ts', "import type { Cluster } from '../../coordinator/cluster.js';\nexport type C = Cluster;\n", /worker ↛ coordinator/],
    ['src/shared/data/probe.ts', "import type { Cluster } from '../../coordinator/cluster.js';\nexport type C = Cluster;\n", /shared ↛ either/],
    ['src/shared/probe.ts', "import type { RankInfo } from '../worker/trainer.js';\nexport type R = RankInfo;\n", /shared ↛ either/],
  ];
  for (const [file, code, rule] of cases) {
    const errors = await roomErrors(file, code);
    assert.equal(errors.length, 1, `${file}: ${code}`);
    assert.match(errors[0]!, rule);
  }
});

test('lint allows what a room may import: src/shared, its own files, and names that only look alike', async () => {
  const cases: [string, string][] = [
    ['src/coordinator/probe.ts', "import { TrainerError } from '../shared/errors.js';\nimport { Cluster } from './cluster.js';\nexport const a = [TrainerError, Cluster];\n"],
    ['src/worker/allreduce/probe.ts', "import { decode } from '../../shared/protocol/index.js';\nimport { RingAllReduce } from './ring.js';\nexport const a = [decode, RingAllReduce];\n"],
    ['src/worker/allreduce/probe.ts', "import type { Worker } from '../worker.js';\nexport type W = Worker;\n"],
    ['src/shared/data/probe.ts', "import { ImagePool } from './pool.js';\nexport const m = import('./pool-worker.js');\nexport const p = ImagePool;\n"],
  ];
  for (const [file, code] of cases) assert.deepEqual(await roomErrors(file, code), [], `${file}: ${code}`);
});
