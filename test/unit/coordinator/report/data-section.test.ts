/** The report's data section: read from the run directory's data.json, every reason with its count, rule and files. */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeRunReport } from '../../../../src/coordinator/report/write-report.js';
import { accountJson, type DataAccount } from '../../../../src/training/data/accounting.js';

test('index.html shows where every file went (from data.json), escaped, with the class table and warnings', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'report-data-'));
  try {
    const root = '/data/pets/images';
    const account: DataAccount = {
      root, filesFound: 14, train: 6, valid: 2,
      groups: [
        { reason: 'unlabelled', paths: ['Bengal_300.JPG', 'beagle_302.jpeg', 'Abyssinian_301.png', 'pug-303.jpg', 'x<y>.jpg'].map((f) => `${root}/${f}`), rule: 'the label regex matches nothing', fix: 'change --label-re' },
        { reason: 'empty', paths: [`${root}/Sphynx_1.jpg`], rule: 'decoding failed: the file is empty (0 bytes)', fix: 'repair, replace or delete them' },
      ],
      classes: [{ name: 'Bengal', train: 3, valid: 1, bad: 0, discarded: 0 }, { name: 'beagle', train: 3, valid: 1, bad: 0, discarded: 0 }, { name: 'Sphynx', train: 0, valid: 0, bad: 1, discarded: 0 }],
      warnings: ['1 class(es) dropped, every image failed to decode: Sphynx'], foldersNotSearched: [{ path: '.git', reason: 'hidden' }, { path: 'locked', reason: 'unreadable', detail: 'EACCES: permission denied' }], csvRowsWithoutFile: [],
    };
    const json = accountJson(account);
    // data.json keeps its fields: hidden folders apart, the others in foldersNotSearched (readers may depend on them).
    assert.deepEqual([json.hiddenFolders, json.foldersNotSearched], [['.git'], [{ path: 'locked', reason: 'unreadable', detail: 'EACCES: permission denied' }]]);
    await writeFile(join(dir, 'data.json'), JSON.stringify(json));
    await writeRunReport(dir, { title: 't' });
    const html = await readFile(join(dir, 'index.html'), 'utf8');
    assert.match(html, /<h2>Data<\/h2>/);
    assert.match(html, /<td class="k">train<\/td><td>6<\/td>/);
    assert.match(html, /<td class="k">valid<\/td><td>2<\/td>/);
    assert.match(html, /<td class="k">skipped: unlabelled<\/td><td>5<\/td><td class="t">the label regex matches nothing; change --label-re\. Bengal_300\.JPG, beagle_302\.jpeg, Abyssinian_301\.png, pug-303\.jpg, x&#60;y&#62;\.jpg<\/td>/);
    assert.match(html, /<td class="k">skipped: empty<\/td><td>1<\/td>/);
    assert.match(html, /<td class="k">files found<\/td><td>14<\/td><td class="t">\/data\/pets\/images<\/td>/);
    assert.match(html, /<li>1 class\(es\) dropped, every image failed to decode: Sphynx<\/li>/);
    // The log's line for hidden folders (one printer for every reason a folder was not searched).
    assert.match(html, /<li>not searched: 1 hidden folder\(s\): \.git — names starting with &#34;\.&#34; are not searched; rename them to include their files<\/li>/);
    assert.match(html, /<li>not searched: 1 folder\(s\) that cannot be read: locked \(EACCES: permission denied\) — /);
    assert.match(html, /<summary>3 classes<\/summary>/);
    assert.match(html, /<td class="t">Sphynx<\/td><td>0<\/td><td>0<\/td><td>1<\/td><td>0<\/td>/);
    assert.match(html, /<a href="data.json">/);
    assert.ok(!html.includes('x<y>'), 'paths are escaped');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('without data.json the report has no data table', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'report-nodata-'));
  try {
    await writeRunReport(dir, { title: 't' });
    assert.doesNotMatch(await readFile(join(dir, 'index.html'), 'utf8'), /files found/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a data.json that parses but is not the data step\'s shape is left out, as an unreadable one: the report is written without the data table', async () => {
  // Seen by the breaker: data.json '{"x":1}' ended `interpret <run>` with 'Cannot read properties of undefined (reading 'map')'.
  const dir = await mkdtemp(join(tmpdir(), 'report-baddata-'));
  try {
    const good = accountJson({ root: '/d', filesFound: 2, train: 1, valid: 1, groups: [], classes: [{ name: 'a', train: 1, valid: 1, bad: 0, discarded: 0 }], warnings: [], foldersNotSearched: [], csvRowsWithoutFile: [] });
    for (const bad of [{ x: 1 }, [], 'text', { ...good, groups: {} }, { ...good, classes: [null] }, { ...good, hiddenFolders: undefined }, { ...good, groups: [{ reason: 'empty', count: 1 }] }]) {
      await writeFile(join(dir, 'data.json'), JSON.stringify(bad));
      await writeRunReport(dir, { title: 't' });
      assert.doesNotMatch(await readFile(join(dir, 'index.html'), 'utf8'), /files found/, JSON.stringify(bad));
    }
    await writeFile(join(dir, 'data.json'), JSON.stringify(good));
    await writeRunReport(dir, { title: 't' });
    assert.match(await readFile(join(dir, 'index.html'), 'utf8'), /files found/, 'the data step\'s own file is shown');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
