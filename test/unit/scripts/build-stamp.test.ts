/**
 * `npm run build` stamps dist/ with the hash of the sources it compiled (scripts/build.mjs, bin/build-stamp.js), and
 * the launchers (`npx coordinator`, `npx worker`) refuse a dist/ of other sources before loading any of it: after a
 * `git pull` without a build they ran the old compiled code silently. Driven on a temporary copy of the launchers and
 * the build script around a two-file project (a fake coordinator and worker entry), compiled by the real tsc.
 * Expected, as a user expects: a fresh build runs; an edited source, an edited tsconfig, a dist/ without a stamp or a
 * failed build stop with exit 1 (a setup error, as a missing dist/) naming `npm run build`, and nothing of dist/ runs;
 * without src/ (an installed package) there is nothing to compare and it runs.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { REBUILD_COMMAND, STAMP_FILE, sourceFiles, sourceHash } from '../../../bin/build-stamp.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
let dir = '';

/** Runs `node <file> ...args` in the temporary project. */
function node(file: string, ...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [path.join(dir, file), ...args], { cwd: dir, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function build(): number | null {
  return node('scripts/build.mjs').code;
}

/** Both launchers ran dist/ (the fake entries print these lines). */
function assertRuns(): void {
  const c = node('bin/coordinator.js', '--flag');
  assert.equal(c.code, 0, c.err);
  assert.match(c.out, /coordinator ran: --flag/);
  const w = node('bin/worker.js');
  assert.equal(w.code, 0, w.err);
  assert.match(w.out, /fake worker ran/);
}

/** Both launchers stopped with exit 1 before loading dist/, saying `why` and naming the rebuild command. */
function assertRefused(why: RegExp): void {
  for (const [launcher, name] of [['bin/coordinator.js', 'coordinator'], ['bin/worker.js', 'worker']] as const) {
    const r = node(launcher);
    assert.equal(r.code, 1, `${launcher}: ${r.out}${r.err}`);
    assert.equal(r.out, '', 'nothing of dist/ ran');
    assert.match(r.err, new RegExp(`^${name}: ERR_STALE_BUILD: `));
    assert.match(r.err, why);
    assert.ok(r.err.includes(`run \`${REBUILD_COMMAND}\``), r.err);
  }
}

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'build-stamp-'));
  for (const f of ['bin/coordinator.js', 'bin/worker.js', 'bin/build-stamp.js', 'bin/open-files.js', 'scripts/build.mjs']) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    cpSync(path.join(ROOT, f), path.join(dir, f));
  }
  writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, types: [], skipLibCheck: true } }));
  writeFileSync(path.join(dir, 'tsconfig.build.json'), JSON.stringify({ extends: './tsconfig.json', compilerOptions: { rootDir: 'src', outDir: 'dist' }, include: ['src/**/*.ts'] }));
  mkdirSync(path.join(dir, 'src/coordinator'), { recursive: true });
  mkdirSync(path.join(dir, 'src/worker'), { recursive: true });
  writeFileSync(path.join(dir, 'src/coordinator/cli.ts'), 'declare const console: { log(s: string): void };\nexport async function main(argv: string[]): Promise<number> {\n  console.log(`fake coordinator ran: ${argv.join(" ")}`);\n  return 0;\n}\n');
  writeFileSync(path.join(dir, 'src/worker/run.ts'), 'declare const console: { log(s: string): void };\nconsole.log("fake worker ran");\n');
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('the stamp covers src/**/*.ts and the tsconfigs, by path and content', () => {
  assert.deepEqual(sourceFiles(dir), ['src/coordinator/cli.ts', 'src/worker/run.ts', 'tsconfig.build.json', 'tsconfig.json']);
  const before = sourceHash(dir);
  assert.match(before ?? '', /^[0-9a-f]{16}$/);
  cpSync(path.join(dir, 'src/worker/run.ts'), path.join(dir, 'src/worker/run2.ts'));
  assert.notEqual(sourceHash(dir), before, 'an added file');
  rmSync(path.join(dir, 'src/worker/run2.ts'));
  assert.equal(sourceHash(dir), before, 'the same files, the same stamp');
});

test('a fresh build runs; an edited source, an edited tsconfig or a missing stamp is refused until rebuilt', () => {
  assert.equal(build(), 0);
  assert.deepEqual(JSON.parse(readFileSync(path.join(dir, 'dist', STAMP_FILE), 'utf8')), { sourceHash: sourceHash(dir) });
  assertRuns();

  // A `git pull` that changed a source, without a build.
  const cli = path.join(dir, 'src/coordinator/cli.ts');
  writeFileSync(cli, readFileSync(cli, 'utf8').replace('fake coordinator ran', 'new coordinator ran'));
  assertRefused(/dist\/ was built from other sources than src\/ holds now \(build [0-9a-f]{16}, sources [0-9a-f]{16}/);
  assert.equal(build(), 0);
  const c = node('bin/coordinator.js', '--flag');
  assert.equal(c.code, 0, c.err);
  assert.match(c.out, /new coordinator ran: --flag/, 'the rebuilt code runs');

  // A changed compiler setting changes the output too.
  const tsconfig = path.join(dir, 'tsconfig.json');
  const saved = readFileSync(tsconfig, 'utf8');
  writeFileSync(tsconfig, saved.replace('"ES2022"', '"ES2021"'));
  assertRefused(/built from other sources/);
  writeFileSync(tsconfig, saved);
  assertRuns();

  // A dist/ built before the stamp existed.
  rmSync(path.join(dir, 'dist', STAMP_FILE));
  assertRefused(/dist\/ carries no build stamp/);
});

test('a failed build leaves dist/ unstamped (refused), not stamped as current', () => {
  const run = path.join(dir, 'src/worker/run.ts');
  const saved = readFileSync(run, 'utf8');
  writeFileSync(run, 'const n: number = "not a number";\nexport { n };\n');
  assert.notEqual(build(), 0, 'tsc reports the type error');
  assertRefused(/dist\/ carries no build stamp/);
  writeFileSync(run, saved);
  assert.equal(build(), 0);
  assertRuns();
});

test('a build removes the output of deleted sources (tsc alone leaves it importable), and nothing else', () => {
  mkdirSync(path.join(dir, 'src/old'), { recursive: true });
  writeFileSync(path.join(dir, 'src/old/gone.ts'), 'export const gone = 1;\n');
  writeFileSync(path.join(dir, 'src/worker/renamed.ts'), 'export const renamed = 1;\n');
  assert.equal(build(), 0);
  for (const f of ['dist/old/gone.js', 'dist/worker/renamed.js']) assert.ok(existsSync(path.join(dir, f)), f);
  writeFileSync(path.join(dir, 'dist/worker/notes.txt'), 'not compiled output\n');
  rmSync(path.join(dir, 'src/old'), { recursive: true });
  rmSync(path.join(dir, 'src/worker/renamed.ts'));
  assert.equal(build(), 0);
  for (const f of ['dist/old', 'dist/worker/renamed.js', 'dist/worker/renamed.js.map']) {
    assert.equal(existsSync(path.join(dir, f)), false, `${f} removed`);
  }
  for (const f of ['dist/worker/run.js', 'dist/coordinator/cli.js', 'dist/worker/notes.txt', `dist/${STAMP_FILE}`]) {
    assert.ok(existsSync(path.join(dir, f)), `${f} kept`);
  }
  assertRuns();
});

test('an installed package (dist/ without src/ beside it): nothing to compare, it runs', () => {
  cpSync(path.join(dir, 'src'), path.join(dir, 'src-away'), { recursive: true });
  rmSync(path.join(dir, 'src'), { recursive: true });
  try {
    assert.equal(sourceHash(dir), null);
    rmSync(path.join(dir, 'dist', STAMP_FILE));
    assertRuns();
  } finally {
    cpSync(path.join(dir, 'src-away'), path.join(dir, 'src'), { recursive: true });
    rmSync(path.join(dir, 'src-away'), { recursive: true });
  }
});
