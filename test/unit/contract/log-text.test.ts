/**
 * logText: the one escaping of file names and labels in log lines. Expected forms are GNU coreutils' (`ls -b`,
 * `sha256sum`): `\n`, `\t`, `\r`, `\xNN` for other control characters; names without control characters unchanged.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { logText } from '../../../src/contract/log-text.js';
import { mostConfusedLines } from '../../../src/coordinator/stage-report.js';
import { predictFailureLine, tsvField } from '../../../src/coordinator/inference.js';
import { TrainerError } from '../../../src/contract/errors.js';

it('escapes control characters, leaves every other character (backslash, non-ASCII) as it is', () => {
  assert.equal(logText('Abyssinian_900.jpg\n'), 'Abyssinian_900.jpg\\n');
  assert.equal(logText('Abys\nsinian\t\r'), 'Abys\\nsinian\\t\\r');
  assert.equal(logText('a\x00b\x1b[2Jc\x7fd\u0085e'), 'a\\x00b\\x1b[2Jc\\x7fd\\x85e');
  assert.equal(logText('line\u2028sep\u2029'), 'line\\u2028sep\\u2029');
  assert.equal(logText('caf\\xe9 Ägyptische Mau_1.jpg'), 'caf\\xe9 Ägyptische Mau_1.jpg', 'the listing\'s \\xNN of a non-UTF-8 name is kept');
  // predict's TSV field escapes the backslash too, so its escapes are unambiguous.
  assert.equal(tsvField('a\\b\nc'), 'a\\\\b\\nc');
});

it('the lines that quote labels and files use it: most_confused, predict failures', () => {
  const interp = { mostConfused: () => [{ actual: 'Abys\nsinian', predicted: 'Bengal\r', count: 3 }] };
  assert.deepEqual(mostConfusedLines(interp as never), ['most_confused(min_val=2) (actual → predicted: count):', '  Abys\\nsinian → Bengal\\r: 3']);
  assert.equal(predictFailureLine('x\ny.jpg', new TrainerError('ERR_BAD_IMAGE', 'x\ny.jpg: empty')), 'coordinator: ERR_BAD_IMAGE: x\\ny.jpg: empty');
});
