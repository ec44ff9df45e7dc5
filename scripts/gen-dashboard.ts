/**
 * Writes grafana/dashboards/training.json from src/coordinator/metrics/dashboard.ts.
 *
 * Usage: `node --import tsx scripts/gen-dashboard.ts` (write) or `... --check` (exit 1 when the committed file
 * differs from what the generator produces).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { renderTrainingDashboard } from '../src/coordinator/metrics/dashboard.js';

/** Path of the generated dashboard, relative to the repository root. */
const TARGET = new URL('../grafana/dashboards/training.json', import.meta.url);

async function main(argv: readonly string[]): Promise<number> {
  const wanted = renderTrainingDashboard();
  if (argv.includes('--check')) {
    const actual = await readFile(TARGET, 'utf8').catch(() => '');
    if (actual !== wanted) {
      console.error('grafana/dashboards/training.json is out of date: run node --import tsx scripts/gen-dashboard.ts');
      return 1;
    }
    console.log('grafana/dashboards/training.json is up to date');
    return 0;
  }
  await writeFile(TARGET, wanted);
  console.log(`wrote grafana/dashboards/training.json (${wanted.length} bytes)`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
