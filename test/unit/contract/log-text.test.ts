/**
 * logText: the one escaping of file names and labels in log lines. Expected forms are GNU coreutils' (`ls -b`,
 * `sha256sum`): `\n`, `\t`, `\r`, `\xNN` for other control characters; names without control characters unchanged.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { counted, errorText, logText } from '../../../src/contract/log-text.js';
import { offlineMessage } from '../../../src/training/download.js';
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

it('errorText keeps the offline error\'s own lines (summary, hint, tried, addresses), each escaped; any other message is one line', () => {
  // New-user tryout: `npx coordinator` offline printed "… the network looks offline\\nhint: …\\ntried:\\n  https://…" as one
  // line (every error message was escaped whole), not the block the README shows.
  const message = offlineMessage('the images are not in /cache/a\nb and cannot be downloaded', 'pass --data <dir>', ['https://x/images.tar.gz (try 1): getaddrinfo ENOTFOUND x']);
  assert.equal(errorText('ERR_OFFLINE', message), [
    'the images are not in /cache/a\\nb and cannot be downloaded', 'hint: pass --data <dir>', 'tried:', '  https://x/images.tar.gz (try 1): getaddrinfo ENOTFOUND x',
  ].join('\n'));
  assert.equal(errorText('ERR_BAD_DATA', 'no label for Abys\nsinian_1.jpg'), 'no label for Abys\\nsinian_1.jpg');
  assert.equal(errorText(null, 'a\nb'), 'a\\nb');
});

it('counted: singular for one, the plural otherwise (stage headings said "1 steps")', () => {
  assert.equal(counted(1, 'step'), '1 step');
  assert.equal(counted(0, 'step'), '0 steps');
  assert.equal(counted(7, 'epoch'), '7 epochs');
  assert.equal(counted(2, 'batch', 'batches'), '2 batches');
});
