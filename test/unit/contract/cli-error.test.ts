/**
 * How the command line programs end on an error: `<program>: <code>: <message>` on one line, every error with a code
 * (a user or a script tells the kinds apart by the code, never by the words), and exit 2 exactly for an input to
 * change (a bad flag or configuration, data that cannot be trained), 1 otherwise. `npm run learn` printed
 * `learn: <message>` with no code, and ended ERR_BAD_DATA with 1 where the coordinator ends it with 2.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommanderError } from 'commander';
import { CLI_EXIT, errorExit, errorLine } from '../../../src/contract/cli-error.js';
import { TrainerError } from '../../../src/contract/errors.js';
import { main as learnMain } from '../../../scripts/learn.js';

test('errorLine: the program, the code, the message on one line; an error with no code of ours is ERR_INTERNAL', () => {
  assert.equal(errorLine('learn', new TrainerError('ERR_BAD_DATA', 'x must give ≥ 2 classes')), 'learn: ERR_BAD_DATA: x must give ≥ 2 classes');
  assert.equal(errorLine('learn', new Error('EIO: i/o error, read')), 'learn: ERR_INTERNAL: EIO: i/o error, read');
  assert.equal(errorLine('coordinator', 'thrown text'), 'coordinator: ERR_INTERNAL: thrown text');
  // A file name with a newline must not split the line; the offline error's own lines are kept (contract/log-text.ts).
  assert.equal(errorLine('learn', new TrainerError('ERR_BAD_IMAGE', 'a\nb.jpg: not an image')), 'learn: ERR_BAD_IMAGE: a\\nb.jpg: not an image');
  assert.equal(errorLine('learn', new TrainerError('ERR_OFFLINE', 'no network\nhint: use --data')), 'learn: ERR_OFFLINE: no network\nhint: use --data');
});

test('errorExit: 2 for an input to change, 1 for a failure, 0 for --help; commander\'s own errors are not printed twice', () => {
  const lines: string[] = [];
  const exit = (err: unknown): number => errorExit('p', err, (l) => lines.push(l));
  assert.deepEqual(['ERR_BAD_FLAG', 'ERR_BAD_CONFIG', 'ERR_BAD_DATA'].map((c) => exit(new TrainerError(c as 'ERR_BAD_FLAG', 'm'))), [2, 2, 2]);
  assert.deepEqual(['ERR_OFFLINE', 'ERR_BACKEND', 'ERR_INTERNAL'].map((c) => exit(new TrainerError(c as 'ERR_OFFLINE', 'm'))), [1, 1, 1]);
  assert.equal(exit(new Error('bug')), CLI_EXIT.failed);
  assert.equal(lines.length, 7);
  assert.equal(exit(new CommanderError(0, 'commander.helpDisplayed', '')), CLI_EXIT.ok);
  assert.equal(exit(new CommanderError(1, 'commander.unknownOption', 'error: unknown option')), CLI_EXIT.badInput);
  assert.equal(lines.length, 7, 'commander printed its own error');
});

test('npm run learn ends a bad flag with its code, as the coordinator: `learn: ERR_BAD_FLAG: …`, exit 2', async () => {
  const lines: string[] = [];
  const original = console.error;
  console.error = (line: string) => { lines.push(line); };
  try {
    assert.equal(await learnMain(['--data', 'x', '--pretrained', 'none', '--epochs', '0']), 2);
  } finally {
    console.error = original;
  }
  assert.deepEqual(lines, ['learn: ERR_BAD_FLAG: --epochs must be an integer ≥ 1, got 0']);
});
