/**
 * The room rule is enforced by lint (eslint.config.js): src/contract ↛ src/training, src/coordinator, src/worker;
 * src/training ↛ src/coordinator, src/worker; src/coordinator ↛ src/worker; src/worker ↛ src/coordinator. What a
 * room may import (the rooms below it, its own files) stays allowed.
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
    ['src/training/data/probe.ts', "import type { Cluster } from '../../coordinator/cluster.js';\nexport type C = Cluster;\n", /training ↛ coordinator, worker/],
    ['src/training/probe.ts', "import type { RankInfo } from '../worker/trainer.js';\nexport type R = RankInfo;\n", /training ↛ coordinator, worker/],
    ['src/training/learner/probe.ts', "export const m = import('../../worker/trainer.js');\n", /training ↛ coordinator, worker/],
    ['src/contract/probe.ts', "import { Learner } from '../training/learner/learner.js';\nexport const l = Learner;\n", /contract ↛ training, coordinator, worker/],
    ['src/contract/plan/probe.ts', "export type { TransformSettings } from '../../training/data/transforms.js';\n", /contract ↛ training, coordinator, worker/],
    ['src/contract/protocol/probe.ts', "import type { Cluster } from '../../coordinator/cluster.js';\nexport type C = Cluster;\n", /contract ↛ training, coordinator, worker/],
    ['src/contract/probe.ts', "export const m = import('../worker/cli.js');\n", /contract ↛ training, coordinator, worker/],
  ];
  for (const [file, code, rule] of cases) {
    const errors = await roomErrors(file, code);
    assert.equal(errors.length, 1, `${file}: ${code}`);
    assert.match(errors[0]!, rule);
  }
});

test('lint allows what a room may import: the rooms below it, its own files, and names that only look alike', async () => {
  const cases: [string, string][] = [
    ['src/coordinator/probe.ts', "import { TrainerError } from '../contract/errors.js';\nimport { Learner } from '../training/learner/learner.js';\nimport { Cluster } from './cluster.js';\nexport const a = [TrainerError, Learner, Cluster];\n"],
    ['src/worker/allreduce/probe.ts', "import { decode } from '../../contract/protocol/index.js';\nimport { planBuckets } from '../../training/allreduce/buckets.js';\nimport { RingAllReduce } from './ring.js';\nexport const a = [decode, planBuckets, RingAllReduce];\n"],
    ['src/worker/allreduce/probe.ts', "import type { Worker } from '../worker.js';\nexport type W = Worker;\n"],
    ['src/training/data/probe.ts', "import { ImagePool } from './pool.js';\nimport { hashSeed } from '../../contract/plan/rng.js';\nexport const m = import('./pool-worker.js');\nexport const p = [ImagePool, hashSeed];\n"],
    ['src/training/learner/probe.ts', "import type { Learner } from '../learner/learner.js';\nexport type L = Learner;\n"],
    ['src/contract/plan/probe.ts', "import { TrainerError } from '../errors.js';\nimport { oneCycle } from './schedule.js';\nexport const a = [TrainerError, oneCycle];\n"],
  ];
  for (const [file, code] of cases) assert.deepEqual(await roomErrors(file, code), [], `${file}: ${code}`);
});
