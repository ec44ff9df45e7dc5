/**
 * One rule for how a command's `--help` shows option defaults. commander prints a string default JSON-quoted,
 * `--top <k>  classes to show per image (default: "1")`, so a number read as a string beside the train command's
 * `(default 64)`; every command here gives its defaults as the strings a user would type, so they are shown as typed.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { TrainerError } from './errors.js';

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
 * It also makes commander write its own errors as {@link commanderErrorLine} does (every command here calls it).
 * @param cmd - a commander command
 * @returns `cmd`, for chaining
 */
export function withVersion<T extends Command>(cmd: T): T {
  cmd.version(PACKAGE_VERSION, '--version', 'print the version and exit');
  cmd.configureOutput({ outputError: (text, write) => write(`${commanderErrorLine(cmd.name(), text)}\n`) });
  return cmd;
}

/**
 * commander's own error (an unknown option, a flag without its value) as one line in the form of every other
 * error, `<program>: ERR_BAD_FLAG: <what>`. commander wrote `error: unknown option '--epoch'` and `(Did you mean
 * --epochs?)` on two lines without a code, where the README promises one line with its code (seen with
 * `npm run learn -- --frobnicate` and `coordinator --epoch 2`, tryout2).
 * @param name - the command's name (`coordinator predict`: its first word is the program)
 * @param text - commander's message, `error: …` and an optional suggestion line
 * @returns e.g. `coordinator: ERR_BAD_FLAG: unknown option '--epoch' (did you mean --epochs?)`
 */
export function commanderErrorLine(name: string, text: string): string {
  const what = text.trim().replace(/^error:\s*/, '').split(/\s*\n\s*/).join(' ').replace('(Did you mean', '(did you mean');
  return `${name.split(' ')[0]}: ERR_BAD_FLAG: ${what}`;
}

/**
 * Lets `cmd`, a command that takes flags only, collect the words no flag took (commander's `cmd.args`) instead of
 * stopping with its own "too many arguments. Expected 0 arguments but got 1.", which names neither the word nor
 * what to do; {@link refuseStrayArguments} then refuses them by name. Call it before `parse`.
 * @param cmd - a commander command declaring no arguments
 * @returns `cmd`, for chaining
 */
export function flagsOnly<T extends Command>(cmd: T): T {
  cmd.allowExcessArguments(true);
  return cmd;
}

/**
 * Levenshtein distance between two words (insertions, deletions, substitutions each cost 1), for "did you mean".
 * @returns the number of single-character edits that turn `a` into `b`
 */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next.push(Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    row = next;
  }
  return row[b.length]!;
}

/**
 * The error for a word a flags-only command line holds where no flag takes it.
 * @param name - the command's name as typed (`coordinator`, `coordinator show-batch`)
 * @param word - the stray word
 * @param commands - the sibling commands that may come first instead (`predict` …), for "did you mean"
 */
function strayArgumentError(name: string, word: string, commands: readonly string[]): TrainerError {
  const lower = word.toLowerCase();
  const near = commands.find((c) => editDistance(lower, c) <= 2 || (word.length >= 3 && c.startsWith(lower)));
  const others = commands.length > 0 ? `; its commands, given first, are ${commands.join(', ')} (${name} <command> --help)` : '';
  if (near !== undefined) return new TrainerError('ERR_BAD_FLAG', `unknown command ${JSON.stringify(word)}: did you mean ${name} ${near}?${others}`);
  if (/\.(ya?ml|json)$/i.test(word) && commands.length > 0) {
    return new TrainerError('ERR_BAD_FLAG', `unexpected argument ${JSON.stringify(word)}: a run configuration file is given with --config (did you mean ${name} --config ${word}?); see ${name} --help`);
  }
  return new TrainerError('ERR_BAD_FLAG', `unexpected argument ${JSON.stringify(word)}: ${name} takes flags, each value after its flag (e.g. --data <dir>), and this word follows none that takes a value${others}; see ${name} --help`);
}

/**
 * Refuses a first word that is neither a flag nor one of `commands` (`coordinator predcit run a.jpg`), before the
 * flags are parsed, so that the flags of the command meant (`--top`) are not reported as unknown instead.
 * @param name - the command's name as typed
 * @param argv - the arguments after the name
 * @param commands - the commands that may come first
 * @throws TrainerError ERR_BAD_FLAG naming the word and the command it resembles (edit distance ≤ 2, or a prefix
 *   of 3 characters or more), if any
 */
export function refuseUnknownCommand(name: string, argv: readonly string[], commands: readonly string[]): void {
  const [first] = argv;
  if (first !== undefined && !first.startsWith('-') && !commands.includes(first)) throw strayArgumentError(name, first, commands);
}

/**
 * Refuses the words a flags-only command line left over (a value without its flag such as `--workers 2 ../data`,
 * a value given to a switch): the user got commander's "too many arguments. Expected 0 arguments but got 1."
 * (exit 2), which does not say which word.
 * @param cmd - a parsed command made with {@link flagsOnly}
 * @param commands - the sibling commands that may come first instead (`predict` …), for "did you mean"
 * @throws TrainerError ERR_BAD_FLAG naming the first stray word, the command it resembles if any, and where the
 *   flags are listed
 */
export function refuseStrayArguments(cmd: Command, commands: readonly string[] = []): void {
  const [word] = cmd.args;
  if (word !== undefined) throw strayArgumentError(cmd.name(), word, commands);
}
