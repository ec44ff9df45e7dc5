// Every command's --help shows its defaults as a user types them: commander JSON-quotes a string default
// (`--top <k>  classes to show per image (default: "1")`), so numbers read as strings beside the train command's
// `(default 64)`. The expected texts are the defaults each command declares.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { plainDefaults } from '../../../src/contract/cli-help.js';
import { isTrainerError } from '../../../src/contract/errors.js';
import { runInterpretCommand, runPredictCommand } from '../../../src/coordinator/inference.js';
import { parseTrainArgs } from '../../../src/coordinator/options.js';
import { runShowBatchCommand } from '../../../src/coordinator/show-batch.js';
import { parseWorkerArgs } from '../../../src/worker/cli.js';
import { parseLearnArgs } from '../../../scripts/learn.js';
import { inProcessHelp } from '../support/help-text.js';

/** The help text of `run` (see {@link inProcessHelp}), whitespace runs as one space. */
async function helpOf(run: () => unknown): Promise<string> {
  return (await inProcessHelp(run)).replace(/\s+/g, ' ');
}

test('plainDefaults shows string defaults as typed and leaves the others', () => {
  const cmd = plainDefaults(new Command('x').option('--top <k>', 'k', '1').option('--list <a>', 'a', ['a'] as unknown as string)
    .option('--flag', 'f').option('--named <n>', 'n', '2'));
  const [top, list, flag] = cmd.options;
  assert.equal(top!.defaultValueDescription, '1');
  assert.equal(list!.defaultValueDescription, undefined);
  assert.equal(flag!.defaultValueDescription, undefined);
  assert.match(cmd.helpInformation(), /--top <k> +k \(default: 1\)/);
});

test('predict, interpret, show-batch, worker and learn print no JSON-quoted default', async () => {
  const helps: Record<string, [() => unknown, RegExp[]]> = {
    predict: [() => runPredictCommand(['--help']), [/--top <k> classes to show per image \(default: 1\)/, /\(default: auto\)/]],
    interpret: [() => runInterpretCommand(['--help']), [/--bs <n> evaluation batch \(default: 32\)/]],
    'show-batch': [() => runShowBatchCommand(['--help']), [/--rows <n> grid rows and columns \(default: 3\)/, /\(default: show-batch\.png\)/]],
    worker: [() => parseWorkerArgs(['--help']), [/\(default: tcp:\/\/127\.0\.0\.1:\*\)/, /\(default: 10000\)/]],
    learn: [() => parseLearnArgs(['--help']), [/--size <pixels> image side \[16, 1024\] \(the coordinator.s\) \(default: 224\)/, /\(default: slice\(3e-3\)\)/]],
  };
  for (const [name, [run, expected]] of Object.entries(helps)) {
    const text = await helpOf(run);
    assert.doesNotMatch(text, /\(default: "/, `${name}: ${text}`);
    for (const re of expected) assert.match(text, re, `${name}: ${text}`);
  }
});

test('--version prints the package.json version and ends like --help (exit code 0), for every command', async () => {
  // `npx coordinator --version` was an unknown option (exit 2); every npm CLI answers it. So did `npm run learn --
  // --version` and the coordinator's subcommands (found by the new-user tryout).
  const version = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  const commands: Record<string, () => unknown> = {
    coordinator: () => parseTrainArgs(['--version']),
    worker: () => parseWorkerArgs(['--version']),
    learn: () => parseLearnArgs(['--version']),
    predict: () => runPredictCommand(['--version']),
    interpret: () => runInterpretCommand(['--version']),
    'show-batch': () => runShowBatchCommand(['--version']),
  };
  const write = process.stdout.write.bind(process.stdout);
  const out: string[] = [];
  process.stdout.write = ((chunk: string) => { out.push(String(chunk)); return true; }) as typeof process.stdout.write;
  try {
    for (const [name, run] of Object.entries(commands)) {
      await assert.rejects(async () => { await run(); },
        (e: unknown) => e instanceof CommanderError && e.code === 'commander.version' && e.exitCode === 0, name);
    }
  } finally {
    process.stdout.write = write;
  }
  assert.deepEqual(out, Object.keys(commands).map(() => `${version}\n`));
});

test('a word no flag takes is refused by name (ERR_BAD_FLAG), with the command it resembles, for every flags-only command', async () => {
  // `npx coordinator predcit run a.jpg` and `npx coordinator --workers 2 ../data` ended with commander's "too many
  // arguments. Expected 0 arguments but got 3." (new-user tryout), naming neither the word nor the fix.
  const refused = (re: RegExp) => (e: unknown): boolean => {
    assert.ok(isTrainerError(e, 'ERR_BAD_FLAG'), String(e));
    assert.match(e.message, re);
    return true;
  };
  assert.throws(() => parseTrainArgs(['predcit', 'runs/x', 'a.jpg']), refused(/^unknown command "predcit": did you mean coordinator predict\?; its commands, given first, are train, predict, interpret, show-batch/));
  assert.throws(() => parseTrainArgs(['show', '--rows', '3']), refused(/unknown command "show": did you mean coordinator show-batch\?/));
  assert.throws(() => parseTrainArgs(['Interpet', 'runs/x']), refused(/did you mean coordinator interpret\?/));
  assert.throws(() => parseTrainArgs(['--workers', '2', '../shared/data']), refused(/^unexpected argument "\.\.\/shared\/data": coordinator takes flags, each value after its flag \(e\.g\. --data <dir>\).*see coordinator --help$/));
  assert.throws(() => parseTrainArgs(['--no-lr-find', 'true']), refused(/^unexpected argument "true"/));
  assert.throws(() => parseTrainArgs(['run.yaml']), refused(/^unexpected argument "run\.yaml": a run configuration file is given with --config \(did you mean coordinator --config run\.yaml\?\)/));
  assert.throws(() => parseWorkerArgs(['--connect', 'tcp://127.0.0.1:5555', 'foo']), refused(/^unexpected argument "foo": worker takes flags.*see worker --help$/));
  assert.throws(() => parseLearnArgs(['--epochs', '1', 'resnet18']), refused(/^unexpected argument "resnet18": learn takes flags/));
  await assert.rejects(runShowBatchCommand(['out.png']), refused(/^unexpected argument "out\.png": coordinator show-batch takes flags.*see coordinator show-batch --help$/));
  // Flags alone still parse.
  assert.equal(parseWorkerArgs(['--connect', 'tcp://127.0.0.1:5555']).connect, 'tcp://127.0.0.1:5555');
});

test('coordinator help <command> shows that command\'s help (git and npm style); a mistyped one is named', async () => {
  // New-user tryout: `coordinator help predict` printed the training flags.
  const { main } = await import('../../../src/coordinator/cli.js');
  const helpText = async (argv: string[]): Promise<{ code: number; text: string }> => {
    let text = '';
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string | Uint8Array): boolean => { text += String(chunk); return true; }) as typeof process.stdout.write;
    try {
      return { code: await main(argv), text };
    } finally {
      process.stdout.write = write;
    }
  };
  for (const [argv, usage] of [[['help'], 'Usage: coordinator [train]'], [['help', 'train'], 'Usage: coordinator [train]'],
    [['help', 'predict'], 'Usage: coordinator predict [options] <model> <images...>'], [['help', 'interpret'], 'Usage: coordinator interpret [options] <model>'],
    [['help', 'show-batch'], 'Usage: coordinator show-batch [options]']] as const) {
    const { code, text } = await helpText([...argv]);
    assert.equal(code, 0, argv.join(' '));
    assert.ok(text.startsWith(usage), `${argv.join(' ')}: ${text.slice(0, 80)}`);
  }
  const errors: string[] = [];
  const error = console.error;
  console.error = (line: string) => { errors.push(line); };
  try {
    assert.equal(await main(['help', 'predcit']), 2);
  } finally {
    console.error = error;
  }
  assert.match(errors.join('\n'), /^coordinator: ERR_BAD_FLAG: unknown command "predcit": did you mean coordinator predict\?/);
});

test("commander's own errors are one line with the program and ERR_BAD_FLAG, for every command", async () => {
  // Seen (tryout2): `npm run learn -- --frobnicate` and `coordinator --epoch 2` wrote commander's `error: unknown option
  // '--epoch'` and `(Did you mean --epochs?)` on two lines without a code; the README says an error is one line with
  // its code, as `coordinator: ERR_BAD_FLAG: unknown command "predcit": did you mean coordinator predict?`.
  const commands: Record<string, [() => unknown, string]> = {
    coordinator: [() => parseTrainArgs(['--epoch', '2']), "coordinator: ERR_BAD_FLAG: unknown option '--epoch' (did you mean --epochs?)\n"],
    worker: [() => parseWorkerArgs(['--frob']), "worker: ERR_BAD_FLAG: unknown option '--frob'\n"],
    learn: [() => parseLearnArgs(['--bs']), "learn: ERR_BAD_FLAG: option '--bs <n>' argument missing\n"],
    predict: [() => runPredictCommand(['--frob', 'run', 'a.jpg']), "coordinator: ERR_BAD_FLAG: unknown option '--frob'\n"],
    interpret: [() => runInterpretCommand(['--frob', 'run']), "coordinator: ERR_BAD_FLAG: unknown option '--frob'\n"],
    'show-batch': [() => runShowBatchCommand(['--frob']), "coordinator: ERR_BAD_FLAG: unknown option '--frob'\n"],
  };
  const write = process.stderr.write.bind(process.stderr);
  const out: string[] = [];
  process.stderr.write = ((chunk: string) => { out.push(String(chunk)); return true; }) as typeof process.stderr.write;
  try {
    for (const [name, [run]] of Object.entries(commands)) {
      await assert.rejects(async () => { await run(); }, (e: unknown) => e instanceof CommanderError && e.exitCode !== 0, name);
    }
  } finally {
    process.stderr.write = write;
  }
  assert.deepEqual(out, Object.values(commands).map(([, line]) => line));
});
