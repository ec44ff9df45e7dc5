// Every command the README and docs/*.md show still runs as written: each `npm run <script>` names a script of
// package.json, each flag given to a script, to `npx coordinator` (and its subcommands) or to `npx worker` is one its
// `--help` lists, and every script the docs pass flags to answers `--help` with exit code 0 (`npm run bench:scaling
// -- --help` printed its help, then `bench-scaling: (outputHelp)`, exit 1; `npm run test:times -- --help` ran the
// word as a test file). Only commands are read: fenced blocks marked bash/sh and inline code that starts with the
// command; log output (unmarked blocks) is not. And every relative link, with its #heading, resolves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInterpretCommand, runPredictCommand } from '../../src/coordinator/inference.js';
import { parseTrainArgs } from '../../src/coordinator/options.js';
import { runShowBatchCommand } from '../../src/coordinator/show-batch.js';
import { parseWorkerArgs } from '../../src/worker/cli.js';
import { inProcessHelp } from './support/help-text.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCRIPTS = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
const DOCS = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** One command as the docs show it: where, which CLI (`npm:<script>`, `coordinator`, `show-batch`, …), its flags. */
interface DocCommand { readonly where: string; readonly cli: string; readonly flags: readonly string[] }

/** The command lines of a Markdown text: lines of ```bash/```sh blocks, and inline code spans starting with a command. */
function commandLines(text: string): Array<{ line: number; command: string }> {
  const out: Array<{ line: number; command: string }> = [];
  let fence: string | null = null;
  let continued = '';
  text.split('\n').forEach((raw, i) => {
    const open = /^\s*```(\w*)/.exec(raw);
    if (open) { fence = fence === null ? open[1]! : null; continued = ''; return; }
    if (fence !== null) {
      if (!['bash', 'sh', 'shell'].includes(fence)) return;
      const line = continued + raw.replace(/\s#.*$/, '');
      if (line.trimEnd().endsWith('\\')) { continued = line.trimEnd().slice(0, -1) + ' '; return; }
      continued = '';
      out.push({ line: i + 1, command: line });
      return;
    }
    for (const m of raw.matchAll(/`([^`]+)`/g)) {
      if (/^(npm run|npx|node bin\/)/.test(m[1]!)) out.push({ line: i + 1, command: m[1]! });
    }
  });
  return out;
}

/** The CLI invocations in one command line (a line may chain several with && or ;). */
function parseCommands(where: string, command: string): DocCommand[] {
  const found: DocCommand[] = [];
  for (const part of command.split(/&&|\|\||;|\|/)) {
    const words = part.trim().replace(/^(\w+=\S+\s+)+/, '').split(/\s+/);
    let cli: string | null = null;
    let rest: string[] = [];
    if (words[0] === 'npm' && words[1] === 'run' && words[2] !== undefined) {
      cli = `npm:${words[2]}`;
      rest = words[3] === '--' ? words.slice(4) : [];
    } else if ((words[0] === 'npx' && /^(coordinator|worker)$/.test(words[1] ?? '')) || /^bin\/(coordinator|worker)\.js$/.test(words[1] ?? '')) {
      cli = (words[1] ?? '').replace(/^bin\//, '').replace(/\.js$/, '');
      rest = words.slice(2);
      if (cli === 'coordinator' && /^(show-batch|predict|interpret)$/.test(rest[0] ?? '')) cli = rest.shift()!;
    }
    if (cli === null) continue;
    const end = rest.findIndex((w) => w === '>' || w.startsWith('>') || w === '#');
    const flags = (end < 0 ? rest : rest.slice(0, end)).filter((w) => /^--[a-z][\w-]*(=.*)?$/.test(w))
      .map((w) => w.replace(/=.*$/, '')).filter((f) => f !== '--help' && f !== '--version');
    found.push({ where, cli, flags });
  }
  return found;
}

const COMMANDS: DocCommand[] = DOCS.flatMap((file) =>
  commandLines(readFileSync(join(ROOT, file), 'utf8')).flatMap(({ line, command }) => parseCommands(`${file}:${line}`, command)));

/** `npm run <script> -- --help` without npm: the script's own command line with --help appended. */
function scriptHelp(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('sh', ['-c', `${SCRIPTS[script]!} --help`], { cwd: ROOT, timeout: 300_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

const hasFlag = (help: string, flag: string): boolean => new RegExp(`(^|[\\s,\\[])${flag}(?![\\w-])`, 'm').test(help);

test('the docs show commands at all (the reader finds them)', () => {
  const clis = new Set(COMMANDS.map((c) => c.cli));
  for (const cli of ['coordinator', 'worker', 'show-batch', 'predict', 'interpret', 'npm:bench:compute', 'npm:parity']) {
    assert.ok(clis.has(cli), `no ${cli} command found in ${DOCS.join(', ')}`);
  }
});

test('every npm run <script> in the docs names a script of package.json', () => {
  const missing = COMMANDS.filter((c) => c.cli.startsWith('npm:') && SCRIPTS[c.cli.slice(4)] === undefined);
  assert.deepEqual(missing.map((c) => `${c.where}: ${c.cli}`), []);
});

test('every flag the docs give the coordinator, its subcommands and the worker is in their --help', async () => {
  const helps: Record<string, string> = {
    coordinator: await inProcessHelp(() => parseTrainArgs(['--help'])),
    worker: await inProcessHelp(() => parseWorkerArgs(['--help'])),
    'show-batch': await inProcessHelp(() => runShowBatchCommand(['--help'])),
    predict: await inProcessHelp(() => runPredictCommand(['--help'])),
    interpret: await inProcessHelp(() => runInterpretCommand(['--help'])),
  };
  const unknown = COMMANDS.filter((c) => helps[c.cli] !== undefined)
    .flatMap((c) => c.flags.filter((f) => !hasFlag(helps[c.cli]!, f)).map((f) => `${c.where}: ${c.cli} ${f}`));
  assert.deepEqual(unknown, []);
});

test('every script the docs pass flags to answers --help (exit 0) and lists those flags', async () => {
  const byScript = new Map<string, DocCommand[]>();
  for (const c of COMMANDS) {
    if (!c.cli.startsWith('npm:') || SCRIPTS[c.cli.slice(4)] === undefined) continue;
    const script = c.cli.slice(4);
    if (c.flags.length > 0 || ['bench:compute', 'parity', 'learn', 'test:times'].includes(script)) {
      byScript.set(script, [...(byScript.get(script) ?? []), c]);
    }
  }
  const problems: string[] = [];
  await Promise.all([...byScript].map(async ([script, commands]) => {
    const { code, stdout, stderr } = await scriptHelp(script);
    if (code !== 0) problems.push(`npm run ${script} -- --help: exit ${code} (${stderr.trim().split('\n').pop() ?? ''})`);
    if (!/usage/i.test(stdout) || /^Usage: node /m.test(stdout)) problems.push(`npm run ${script} -- --help printed no usage of its own`);
    for (const c of commands) {
      for (const f of c.flags) if (!hasFlag(stdout, f)) problems.push(`${c.where}: npm run ${script} -- ${f}: not in its --help`);
    }
  }));
  assert.deepEqual(problems.sort(), []);
});

/** GitHub's heading anchor: lower case, punctuation but `-` and `_` dropped, each space a `-`. */
const anchorOf = (heading: string): string => heading.replace(/[`*]/g, '').trim().toLowerCase().replace(/[^\p{L}\p{N}_\- ]/gu, '').replace(/ /g, '-');

test('every relative link of the README and docs names a file that exists, and a heading it holds', () => {
  const headings = new Map(DOCS.map((file) => [file, new Set(readFileSync(join(ROOT, file), 'utf8').replace(/```[\s\S]*?```/g, '')
    .split('\n').filter((l) => /^#+ /.test(l)).map((l) => anchorOf(l.replace(/^#+ /, ''))))]));
  const broken: string[] = [];
  for (const file of DOCS) {
    readFileSync(join(ROOT, file), 'utf8').split('\n').forEach((line, i) => {
      for (const m of line.matchAll(/\]\(([^)\s#]*)(?:#([^)\s]+))?\)/g)) {
        const [, target, anchor] = m;
        if (/^[a-z]+:/.test(target!)) continue;
        const path = target === '' ? file : join(dirname(file), target!).replace(/\\/g, '/');
        if (!existsSync(join(ROOT, path))) broken.push(`${file}:${i + 1}: ${target} does not exist`);
        else if (anchor !== undefined && headings.has(path) && !headings.get(path)!.has(anchor)) broken.push(`${file}:${i + 1}: ${path} has no heading #${anchor}`);
      }
    });
  }
  assert.deepEqual(broken, []);
});
