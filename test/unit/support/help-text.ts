/**
 * What a commander CLI run in-process prints for `--help`: its stdout is captured while it runs, and it must end the
 * way commander ends a help display (throwing `commander.helpDisplayed` under `exitOverride`).
 */
import assert from 'node:assert/strict';

/**
 * @param run - calls the CLI with `--help` (e.g. `() => parseTrainArgs(['--help'])`)
 * @returns the help text as printed
 * @throws AssertionError when `run` does not end with commander's `helpDisplayed`
 */
export async function inProcessHelp(run: () => unknown): Promise<string> {
  let text = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array): boolean => { text += String(chunk); return true; }) as typeof process.stdout.write;
  try {
    await assert.rejects(async () => { await run(); }, (e: unknown) => (e as { code?: string }).code === 'commander.helpDisplayed');
  } finally {
    process.stdout.write = write;
  }
  return text;
}
