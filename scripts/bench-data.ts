/**
 * `npm run bench:data -- --size 224 [--threads 1,2] [--images 296] [--show-batch out.png]`: decoded + augmented
 * images per second through the piscina pool over the shared Pets sample photos, one row per thread count.
 */
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { DEFAULT_LABEL_PATTERN, listItems } from '../src/training/data/items.js';
import { BatchLoader } from '../src/training/data/loader.js';
import { ImagePool } from '../src/training/data/pool.js';
import { shardPlan } from '../src/training/data/shard.js';
import { showBatch } from '../src/coordinator/show-batch-grid.js';
import { sortClasses } from '../src/training/data/split.js';
import { TrainerError } from '../src/contract/errors.js';
import { checkEnvSettings } from '../src/contract/env-settings.js';
import { errorExit } from '../src/contract/cli-error.js';

const SAMPLE = fileURLToPath(new URL('../../shared/datasets/oxford-iiit-pet-sample/images', import.meta.url));

function intFlag(name: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new TrainerError('ERR_BAD_FLAG', `${name} must be an integer ≥ ${min}, got ${v}`);
    return n;
  };
}

const cmd = new Command('bench-data')
  .option('--size <px>', 'output side in pixels', intFlag('--size', 8), 224)
  .option('--threads <list>', 'comma-separated thread counts', '1,2')
  .option('--batch-size <n>', 'items per batch', intFlag('--batch-size', 1), 16)
  .option('--data <dir>', 'image folder', SAMPLE)
  .option('--show-batch <png>', 'also write a 3x3 show_batch grid of augmented training images')
  .parse();
// As the coordinator, workers and learn: a bad PETS_* setting is refused before the pool starts (exit 2).
try {
  checkEnvSettings(process.env);
} catch (err) {
  process.exit(errorExit('bench-data', err));
}
const opts = cmd.opts<{ size: number; threads: string; batchSize: number; data: string; showBatch?: string }>();

const items = listItems(opts.data, { kind: 'regex', pattern: DEFAULT_LABEL_PATTERN });
const classes = sortClasses(items.labels);
const labels = Int32Array.from(items.labels, (l) => classes.indexOf(l));
const split = Int32Array.from(items.paths, (_, i) => i);

async function run(threads: number): Promise<number> {
  const pool = new ImagePool({ threads });
  pool.start();
  try {
    // warm-up: thread start and sharp init are not part of the steady-state rate
    await Promise.all(items.paths.slice(0, threads * 2).map((path, itemIndex) => pool.run({ kind: 'render', path, size: opts.size, augment: true, seed: 0, epoch: 99, itemIndex })));
    const plan = shardPlan({ itemCount: split.length, seed: 0, epoch: 0, worldSize: 1, rank: 0, batchSize: opts.batchSize, shuffle: true, mode: 'drop' });
    const loader = new BatchLoader({ pool, paths: items.paths, labels, split, plan, size: opts.size, augment: true, seed: 0, epoch: 0, prefetchBatches: 2 });
    const t0 = performance.now();
    let n = 0;
    let first = true;
    for await (const batch of loader) {
      n += batch.y.length;
      if (first && opts.showBatch) await showBatch(batch, classes, resolve(opts.showBatch), { rows: 3, cols: 3 });
      first = false;
    }
    const s = (performance.now() - t0) / 1000;
    await loader.close();
    return n / s;
  } finally {
    await pool.close();
  }
}

console.log(`bench:data size=${opts.size} images=${items.paths.length} batch=${opts.batchSize} (decode+augment+normalize, train transforms)`);
for (const t of opts.threads.split(',').map(intFlag('--threads', 1))) {
  const rate = await run(t);
  console.log(`threads=${t}  ${rate.toFixed(1)} images/s  (${(1000 / rate).toFixed(2)} ms/image wall)`);
}
