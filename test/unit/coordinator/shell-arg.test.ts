// A command the coordinator prints for pasting (`npx coordinator --resume <run>`) must give the shell back the very
// path, whatever it holds: checked against a real shell, as shlex.quote's own tests do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { checkpointWriteFailure } from '../../../src/coordinator/checkpoint-store.js';
import { resumeCommandLine, shellArg } from '../../../src/coordinator/shell-arg.js';
import { TrainerError } from '../../../src/contract/errors.js';

const paths = ['runs/2026-11-30T12-00-00', '/tmp/rün dir ☃/x y', "it's", 'a"b', '$HOME', '`id`', 'a\\b', 'semi;colon', 'star*', '', '-x', 'new\nline'];

test('shellArg: one shell word that the shell reads back as the same string', () => {
  assert.equal(shellArg('runs/2026-11-30T12-00-00'), 'runs/2026-11-30T12-00-00', 'a plain path is printed as it is');
  assert.equal(shellArg('/tmp/my run'), "'/tmp/my run'");
  const back = execFileSync('sh', ['-c', `printf '%s\\0' ${paths.map(shellArg).join(' ')}`]).toString().split('\0').slice(0, -1);
  assert.deepEqual(back, paths);
});

test('resumeCommandLine: the one resume command, its run directory one shell word', () => {
  assert.equal(resumeCommandLine('runs/x'), 'npx coordinator --resume runs/x');
  assert.equal(resumeCommandLine("/tmp/it's mine"), "npx coordinator --resume '/tmp/it'\\''s mine'");
});

test('the resume command of a failed checkpoint quotes a run directory with spaces', () => {
  const err = checkpointWriteFailure(new TrainerError('ERR_CHECKPOINT', 'ENOSPC: no space left on device'), '/tmp/my runs/a b', 1e6, 1e5, '/tmp/my runs/a b/checkpoints/step-000000003', 1);
  assert.match(err.message, /resume from it with: npx coordinator --resume '\/tmp\/my runs\/a b'$/);
});
