/**
 * One rule for how a command's `--help` shows option defaults. commander prints a string default JSON-quoted,
 * `--top <k>  classes to show per image (default: "1")`, so a number read as a string beside the train command's
 * `(default 64)`; every command here gives its defaults as the strings a user would type, so they are shown as typed.
 */
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
