/**
 * One rule for how a command's `--help` shows option defaults. commander prints a string default JSON-quoted,
 * `--top <k>  classes to show per image (default: "1")`, so a number read as a string beside the train command's
 * `(default 64)`; every command here gives its defaults as the strings a user would type, so they are shown as typed.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';

/**
 * Shows each string default of `cmd`'s options as typed (`(default: 1)`, `(default: tcp://127.0.0.1:*)`) instead of
 * JSON-quoted; options with their own default description, or a non-string default, are left as they are.
 * Call it after the options are declared.
 * @param cmd - a commander command
 * @returns `cmd`, for chaining
 */
export function plainDefaults<T extends Command>(cmd: T): T {
  for (const option of cmd.options) {
    if (typeof option.defaultValue === 'string' && option.defaultValueDescription === undefined) {
      option.defaultValueDescription = option.defaultValue;
    }
  }
  return cmd;
}

/**
 * This package's version, from its `package.json` (two folders above this module both in `src/contract` under tsx
 * and in `dist/contract`), or `unknown` when that cannot be read.
 */
export const PACKAGE_VERSION: string = ((): string => {
  try {
    const version: unknown = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }).version;
    return typeof version === 'string' ? version : 'unknown';
  } catch {
    return 'unknown';
  }
})();

/**
 * Adds `--version` (print this package's version and exit 0, as `node --version` or any npm CLI) to a command.
 * With `exitOverride` commander reports it as a CommanderError of exit code 0, which the launchers treat as --help.
 * @param cmd - a commander command
 * @returns `cmd`, for chaining
 */
export function withVersion<T extends Command>(cmd: T): T {
  cmd.version(PACKAGE_VERSION, '--version', 'print the version and exit');
  return cmd;
}
