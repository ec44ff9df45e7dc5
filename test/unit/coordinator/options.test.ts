import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommanderError } from 'commander';
import { DEFAULT_RUNTIME, applyResumeStageShorthands, applyStageShorthands, inheritRuntime, parseTrainArgs, trainProgram } from '../../../src/coordinator/options.js';
import { BACKEND_REQUESTS } from '../../../src/training/compute/backend.js';
import { isTrainerError } from '../../../src/contract/errors.js';
import { DEFAULT_RUN_CONFIG, DEFAULT_STAGES, RUN_CONFIG_FLAGS, flagOf, settingName } from '../../../src/contract/config.js';

test('flags map onto the run config and runtime options', () => {
  const { config, runtime, explicit } = parseTrainArgs(['--workers', '2', '--data', '../shared/x', '--pretrained', 'none', '--size', '128',
    '--bind', 'tcp://0.0.0.0:0', '--metrics-port', '-1', '--allreduce-dtype', 'float16', '--keep', '2', '--run-dir', 'runs/t']);
  assert.equal(config.workers, 2);
  assert.equal(config.expect, 2);
  assert.equal(config.size, 128);
  assert.equal(config.runDir, 'runs/t');
  assert.equal(runtime.bind, 'tcp://0.0.0.0:0');
  assert.equal(runtime.metricsPort, -1);
  assert.equal(runtime.allreduceDtype, 'float16');
  assert.equal(runtime.keep, 2);
  assert.equal(runtime.heartbeatTimeoutMs, DEFAULT_RUNTIME.heartbeatTimeoutMs);
  assert.deepEqual(Object.keys(explicit).sort(), ['data', 'pretrained', 'runDir', 'size', 'workers']);
});

test('one field → flag table: every run setting but stages has a flag, the program has each, and it sets that field', () => {
  assert.deepEqual(Object.keys(RUN_CONFIG_FLAGS).sort(), Object.keys(DEFAULT_RUN_CONFIG).filter((k) => k !== 'stages').sort());
  const longs = trainProgram().options.map((o) => o.long);
  for (const flag of Object.values(RUN_CONFIG_FLAGS)) assert.ok(longs.includes(flag), `${flag} is a coordinator flag`);
  assert.deepEqual(Object.keys(parseTrainArgs(['--valid-pct', '0.3', '--no-flip', '--flip-vert', '--no-augment', '--max-zoom', '1.5']).explicit).sort(),
    ['augment', 'doFlip', 'flipVert', 'maxZoom', 'validPct']);
  assert.equal(flagOf('validPct'), '--valid-pct');
  assert.equal(flagOf('doFlip'), '--no-flip');
  assert.equal(flagOf('stages'), undefined);
  assert.equal(flagOf('toString'), undefined, 'own keys only');
  assert.equal(settingName('validPct'), 'validPct (--valid-pct)');
  assert.equal(settingName('stages[0].epochs'), 'stages[0].epochs');
});

test('stage shorthands edit the tutorial plan', () => {
  const { config } = parseTrainArgs(['--epochs', '1', '--fine-tune-epochs', '3', '--no-lr-find']);
  assert.deepEqual(config.stages.map((s) => [s.name, s.epochs, s.frozen]), [['stage-1', 1, true], ['stage-2', 3, false]]);
  assert.match(config.runDir, /^runs\/\d{4}-\d\d-\d\dT/);
});

test('--lr and --fine-tune-lr set the max_lr of stage 1 and 2 (fit_one_cycle\'s max_lr, as npm run learn -- --lr)', () => {
  // Seen (tryout): after lr_find's suggestion the coordinator had no flag for a learning rate: `--lr` was unknown,
  // and `--max-lr` got "(Did you mean --max-warp?)", an augmentation flag; only a config file of every stage could.
  const { config } = parseTrainArgs(['--lr', '1e-3', '--fine-tune-lr', 'slice(1e-6, 3e-4)']);
  assert.deepEqual(config.stages.map((s) => [s.name, s.maxLr]), [['stage-1', '1e-3'], ['lr-find', '0'], ['stage-2', 'slice(1e-6,3e-4)']]);
  assert.deepEqual(parseTrainArgs(['--lr', 'slice(3.31e-4)']).config.stages.map((s) => s.maxLr), ['slice(3.31e-4)', '0', 'slice(1e-6,1e-4)'], 'the default stage 2 kept');
  assert.deepEqual(parseTrainArgs(['--lr', '0.0005']).config.stages[0]!.maxLr, '5e-4');
  for (const [flag, bad] of [['--lr', '0'], ['--lr', 'slice(1e-3'], ['--fine-tune-lr', '-1e-4']] as const) {
    assert.throws(() => parseTrainArgs([flag, bad]), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') &&
      e.message.startsWith(`${flag} must be a number or slice(start,end) or slice(end) with positive values (`) && e.message.endsWith(`got ${JSON.stringify(bad)}`));
  }
  assert.throws(() => parseTrainArgs(['--max-lr', '1e-3']), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') &&
    e.message === "unknown option '--max-lr': fit_one_cycle's max_lr is --lr (stage 1; --fine-tune-lr for stage 2)");
  assert.throws(() => parseTrainArgs(['--fine-tune-max-lr=1e-4']), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') &&
    e.message === "unknown option '--fine-tune-max-lr': fit_one_cycle's max_lr is --fine-tune-lr (stage 2)");
  assert.throws(() => parseTrainArgs(['--fine-tune-epochs', '0', '--fine-tune-lr', '1e-4']), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') &&
    e.message === '--fine-tune-lr 1e-4 sets the max_lr of stage 2, which --fine-tune-epochs 0 drops; give one or the other');
});

test('--fine-tune-epochs 0 drops stage 2 (stage 1 alone, as the tutorial\'s first fit); negative is refused', () => {
  assert.deepEqual(parseTrainArgs(['--fine-tune-epochs', '0']).config.stages.map((s) => s.name), ['stage-1', 'lr-find']);
  assert.deepEqual(parseTrainArgs(['--fine-tune-epochs', '0', '--no-lr-find', '--epochs', '2']).config.stages.map((s) => [s.name, s.epochs]), [['stage-1', 2]]);
  assert.throws(() => parseTrainArgs(['--fine-tune-epochs', '-1']), (e: unknown) => isTrainerError(e) && /--fine-tune-epochs must be an integer in \[0, 10000\], got -1/.test(e.message));
});

test('--epochs 0 drops stage 1: --load <model> --epochs 0 --no-lr-find is fastai\'s learn.load; unfreeze; fit_one_cycle(2, slice(1e-6,1e-4))', () => {
  assert.deepEqual(parseTrainArgs(['--epochs', '0', '--no-lr-find']).config.stages,
    [{ kind: 'one_cycle', name: 'stage-2', epochs: 2, maxLr: 'slice(1e-6,1e-4)', frozen: false }]);
  assert.deepEqual(parseTrainArgs(['--epochs', '0', '--fine-tune-epochs', '3']).config.stages.map((s) => [s.name, s.epochs]), [['lr-find', 0], ['stage-2', 3]]);
  // Both fit stages dropped: refused by the flags' names, not by the config rule the user never wrote.
  assert.throws(() => parseTrainArgs(['--epochs', '0', '--fine-tune-epochs', '0']),
    (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') && /^--epochs 0 and --fine-tune-epochs 0 leave no training stage of stage-1, lr-find, stage-2; give one of them epochs ≥ 1$/.test(e.message));
});

test('--load: recorded as an absolute path; pretrained becomes none, and an explicit other --pretrained beside it is refused', () => {
  const { config, explicit } = parseTrainArgs(['--load', 'runs/a/models/stage-1.safetensors', '--arch', 'resnet10']);
  assert.equal(config.load, join(process.cwd(), 'runs/a/models/stage-1.safetensors'));
  // resnet10 has no ImageNet weights: the default --pretrained imagenet would refuse it, but --load needs none.
  assert.equal(config.pretrained, 'none');
  assert.equal(explicit.load, 'runs/a/models/stage-1.safetensors');
  assert.equal(parseTrainArgs(['--load', 'm.safetensors', '--pretrained', 'none']).config.pretrained, 'none');
  assert.equal(parseTrainArgs([]).config.load, null);
  for (const pretrained of ['imagenet', 'w.safetensors']) {
    assert.throws(() => parseTrainArgs(['--load', 'm.safetensors', '--pretrained', pretrained]), (e: unknown) => isTrainerError(e, 'ERR_BAD_CONFIG') &&
      e.message === `pretrained (--pretrained) must be none (or not given) with load (--load): the loaded model holds every weight of the network, so give one of --load and --pretrained, got ${JSON.stringify(pretrained)}`);
  }
  assert.match(trainProgram().helpInformation().replace(/\s+/g, ' '), /--load <model> start a new run from a saved model's weights and BatchNorm statistics \(fastai learn\.load; optimizer state fresh\)/);
});

test('a config file sets stages; flags win over it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'opt-'));
  const file = join(dir, 'plan.yaml');
  writeFileSync(file, 'arch: resnet18\nbs: 16\nstages:\n  - {kind: one_cycle, epochs: 2, maxLr: 1e-3, frozen: true}\n');
  const { config } = parseTrainArgs(['--config', file, '--bs', '8']);
  assert.equal(config.arch, 'resnet18');
  assert.equal(config.bs, 8);
  assert.deepEqual(config.stages.map((s) => [s.epochs, s.maxLr]), [[2, '0.001']]);
});

test('bad flags stop the run before it starts, naming flag and rule', () => {
  const bad = (argv: string[], re: RegExp) => assert.throws(() => parseTrainArgs(argv), (e: unknown) =>
    (isTrainerError(e) && re.test(e.message)) || (e instanceof CommanderError && re.test(e.message)));
  bad(['--workers', 'two'], /^workers \(--workers\) must be an integer in \[0, 1024\], got "two"$/);
  bad(['--workers', '0'], /^expect \(--expect\) must be an integer ≥ 1 when workers \(--workers\) is 0 \(remote workers only\): give --expect N, the number of remote workers to wait for, got 0$/);
  bad(['--bind', 'localhost:5555'], /^--bind must be tcp:\/\/host:port or ipc:\/\/path, got "localhost:5555" \(did you mean tcp:\/\/localhost:5555\?\)$/);
  // ZeroMQ would silently bind 99999 mod 65536 = 34463 (measured with zeromq 6).
  bad(['--bind', 'tcp://127.0.0.1:99999'], /^--bind port must be an integer in \[0, 65535\] \(0 = any free port\), got 99999$/);
  bad(['--heartbeat-interval-ms', '1000', '--heartbeat-timeout-ms', '1500'], /--heartbeat-timeout-ms must be ≥ 2 × --heartbeat-interval-ms \(2000\), got 1500/);
  // Node's timers take at most 2^31 − 1 ms (24.8 days) and fire after 1 ms beyond it (TimeoutOverflowWarning): seen by the
  // breaker, --allreduce-timeout-ms 3000000000 timed every step out at once and the run failed. One day at most.
  bad(['--allreduce-timeout-ms', '3000000000'], /^--allreduce-timeout-ms must be an integer in \[100, 86400000\], got 3000000000$/);
  bad(['--heartbeat-timeout-ms', '2147483648'], /^--heartbeat-timeout-ms must be an integer in \[50, 86400000\], got 2147483648$/);
  bad(['--heartbeat-interval-ms', '86400001'], /^--heartbeat-interval-ms must be an integer in \[10, 86400000\], got 86400001$/);
  assert.equal(parseTrainArgs(['--allreduce-timeout-ms', '86400000', '--heartbeat-timeout-ms', '86400000']).runtime.allreduceTimeoutMs, 86_400_000);
  // The project's form (ERR_BAD_FLAG, flag, rule, value), as --backend's, not commander's "Allowed choices are".
  const badFlag = (argv: string[], message: string) => assert.throws(() => parseTrainArgs(argv), (e: unknown) =>
    isTrainerError(e, 'ERR_BAD_FLAG') && e.message === message);
  badFlag(['--allreduce', 'tree'], '--allreduce must be one of auto|ring|shm|star, got "tree"');
  badFlag(['--allreduce', 'Ring'], '--allreduce must be one of auto|ring|shm|star, got "Ring"');
  // Shared memory moves no bytes over a wire: float16 compression has nothing to act on, so the pair is refused.
  badFlag(['--allreduce', 'shm', '--allreduce-dtype', 'float16'],
    '--allreduce shm needs --allreduce-dtype float32 (shared memory sends nothing to compress), got float16; use --allreduce ring or auto for float16');
  assert.equal(parseTrainArgs([]).runtime.allreduce, 'auto');
  for (const algo of ['auto', 'ring', 'shm', 'star']) assert.equal(parseTrainArgs(['--allreduce', algo]).runtime.allreduce, algo);
  assert.equal(parseTrainArgs(['--allreduce', 'auto', '--allreduce-dtype', 'float16']).runtime.allreduceDtype, 'float16');
  badFlag(['--allreduce-dtype', 'float8'], '--allreduce-dtype must be one of float32|float16, got "float8"');
  assert.equal(parseTrainArgs(['--allreduce', 'star', '--allreduce-dtype', 'float16']).runtime.allreduce, 'star');
  assert.equal(parseTrainArgs(['--allreduce-dtype', 'float16']).runtime.allreduceDtype, 'float16');
  bad(['--wokers', '2'], /unknown option '--wokers'/);
  bad(['--epochs', '-1'], /^--epochs must be an integer in \[0, 10000\], got -1$/);
  // The bound the stage check enforces is in the message (it said "an integer ≥ 1, got 1e9" for a non-integer and
  // only the config check named [1, 10000]).
  bad(['--epochs', '1e9'], /^--epochs must be an integer in \[0, 10000\], got 1e9$/);
  bad(['--epochs', '20000'], /^--epochs must be an integer in \[0, 10000\], got 20000$/);
  bad(['--fine-tune-epochs', '10001'], /^--fine-tune-epochs must be an integer in \[0, 10000\], got 10001$/);
});

test('--help names every backend the run accepts (native was missing) and the defaults of --allreduce and --allreduce-dtype', () => {
  const help = trainProgram().helpInformation().replace(/\s+/g, ' ');
  const listed = /--backend <name> (.+?) \(default auto\)/.exec(help)?.[1]?.split(' | ');
  // The expected set is what the backend selection accepts (compute/backend.ts), not the help's own list.
  assert.deepEqual(listed, [...BACKEND_REQUESTS]);
  for (const name of BACKEND_REQUESTS) assert.equal(parseTrainArgs(['--backend', name]).config.backend, name);
  assert.match(help, /--allreduce <algo> auto \| ring \| shm \| star \(auto: shared memory when all workers share this host, else ring; star: the baseline\) \(default auto\)/);
  assert.match(help, /--allreduce-dtype <dtype> wire dtype of gradients: float32 \| float16 \(default float32\)/);
});

test('--accum beside --global-bs must be the accumulation it picks; otherwise ERR_BAD_CONFIG naming both (was: --accum silently dropped)', () => {
  // 8 × 1 worker × accum 4 = 32: --accum 2 disagrees.
  assert.throws(() => parseTrainArgs(['--bs', '8', '--workers', '1', '--accum', '2', '--global-bs', '32']), (err: unknown) => {
    assert.ok(isTrainerError(err));
    assert.equal(err.code, 'ERR_BAD_CONFIG');
    assert.match(err.message, /--accum 2 and --global-bs 32 disagree: bs × workers × accum = 8 × 1 × 2 = 16/);
    return true;
  });
  // Agreeing values, and either one alone, are accepted.
  assert.equal(parseTrainArgs(['--bs', '8', '--workers', '2', '--accum', '2', '--global-bs', '32']).config.accum, 2);
  assert.equal(parseTrainArgs(['--bs', '8', '--workers', '1', '--global-bs', '32']).config.globalBs, 32);
  assert.equal(parseTrainArgs(['--bs', '8', '--workers', '1', '--accum', '3']).config.accum, 3);
});

test('--resume keeps the run\'s runtime settings unless a flag is given again (was: defaults, so --keep 5 became 2 and pruned)', () => {
  // What the run recorded in config.json: started with --keep 5 --checkpoint-every 1 --allreduce star --curve-keys k
  // --bind tcp://0.0.0.0:6000 (given) and the default metrics port.
  const saved = { ...DEFAULT_RUNTIME, keep: 5, checkpointEvery: 1, allreduce: 'star', curveKeys: 'k', bind: 'tcp://0.0.0.0:6000', bindGiven: true, plain: true };
  const logs: string[] = [];
  const resumed = parseTrainArgs(['--resume', 'runs/x', '--keep', '3']);
  const r = inheritRuntime(resumed, saved, (l) => logs.push(l));
  assert.equal(r.keep, 3, 'a flag given again wins');
  assert.equal(r.checkpointEvery, 1);
  assert.equal(r.allreduce, 'star');
  assert.equal(r.curveKeys, 'k');
  assert.equal(r.bind, 'tcp://0.0.0.0:6000');
  assert.equal(r.bindGiven, true, 'a port the run asked for is still never replaced by a free one');
  assert.equal(r.metricsPortGiven, false);
  assert.equal(r.resume, 'runs/x');
  assert.equal(r.plain, resumed.runtime.plain, 'plain output follows this terminal, not the run');
  assert.deepEqual(logs, ['--resume: keeping this run\'s --bind tcp://0.0.0.0:6000, --allreduce star, --checkpoint-every 1, --curve-keys k (give a flag to change one)']);
  // A config.json without runtime (or unreadable): the command line's own runtime, no line.
  assert.deepEqual(inheritRuntime(resumed, {}, (l) => logs.push(l)), resumed.runtime);
  assert.equal(logs.length, 1);
  // Fields of the wrong type are ignored, not trusted.
  assert.equal(inheritRuntime(resumed, { checkpointEvery: 'often', heartbeatIntervalMs: null }, () => undefined).checkpointEvery, 0);
  // The merged heartbeats must still obey their rule.
  // (--heartbeat-interval-ms 3000 given, the run's --heartbeat-timeout-ms 4000 taken: 4000 < 2 × 3000.)
  assert.throws(() => inheritRuntime(parseTrainArgs(['--resume', 'runs/x', '--heartbeat-interval-ms', '3000']), { heartbeatTimeoutMs: 4000 }, () => undefined),
    { message: '--resume (a flag not given again keeps this run\'s value): --heartbeat-timeout-ms must be ≥ 2 × --heartbeat-interval-ms (6000), got 4000' });
  // The shared-memory rule too (the run's float16 wire dtype taken, --allreduce shm given): one rule for both paths.
  assert.throws(() => inheritRuntime(parseTrainArgs(['--resume', 'runs/x', '--allreduce', 'shm']), { allreduceDtype: 'float16' }, () => undefined),
    { message: '--resume (a flag not given again keeps this run\'s value): --allreduce shm needs --allreduce-dtype float32 (shared memory sends nothing to compress), got float16; use --allreduce ring or auto for float16' });
});

test('--resume refuses a runtime value of config.json that its flag would refuse, naming the file, the field, the flag and the rule', () => {
  // Seen by the breaker: an edited "heartbeatIntervalMs": -5 reached the workers (ERR_WORKER_LOST … exited with code 2
  // before joining), "allreduce": "pigeon" ended the run with ERR_PROTOCOL at the workers' setup.
  const resumed = parseTrainArgs(['--resume', 'runs/x']);
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ heartbeatIntervalMs: -5 }, 'runtime.heartbeatIntervalMs -5, which its flag refuses (--heartbeat-interval-ms must be an integer in [10, 86400000], got -5); give --heartbeat-interval-ms'],
    [{ allreduce: 'pigeon' }, 'runtime.allreduce "pigeon", which its flag refuses (--allreduce must be one of auto|ring|shm|star, got "pigeon"); give --allreduce'],
    [{ bind: 'garbage' }, 'runtime.bind "garbage", which its flag refuses (--bind must be tcp://host:port or ipc://path, got "garbage"); give --bind'],
    [{ keep: 0 }, 'runtime.keep 0, which its flag refuses (--keep must be an integer ≥ 1, got 0); give --keep'],
    [{ metricsPort: 99999 }, 'runtime.metricsPort 99999, which its flag refuses (--metrics-port must be an integer in [-1, 65535], got 99999); give --metrics-port'],
  ];
  for (const [saved, message] of cases) {
    assert.throws(() => inheritRuntime(resumed, saved, () => undefined), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_BAD_FLAG');
      assert.equal(err.message, `--resume: ${join('runs/x', 'config.json')} records ${message} to choose a value, or correct ${join('runs/x', 'config.json')}`);
      return true;
    });
  }
  // A flag given again replaces the bad value: nothing to refuse.
  assert.equal(inheritRuntime(parseTrainArgs(['--resume', 'runs/x', '--allreduce', 'ring']), { allreduce: 'pigeon' }, () => undefined).allreduce, 'ring');
});

test('--resume of a run recorded before --allreduce auto existed keeps its ring; --allreduce given again wins', () => {
  // config.json of a run started when the default was ring records allreduce: 'ring'; resuming it must not switch
  // transport behind the user's back (the sums would be the same bits, but the run is reproduced as it was).
  const saved = { ...DEFAULT_RUNTIME, allreduce: 'ring' };
  const logs: string[] = [];
  assert.equal(inheritRuntime(parseTrainArgs(['--resume', 'runs/x']), saved, (l) => logs.push(l)).allreduce, 'ring');
  assert.deepEqual(logs, ['--resume: keeping this run\'s --allreduce ring (give a flag to change one)']);
  assert.equal(inheritRuntime(parseTrainArgs(['--resume', 'runs/x', '--allreduce', 'auto']), saved, () => undefined).allreduce, 'auto');
});

test('--help names the default of each run setting a new user meets first (--data, --label-from, --split, --epochs, --fine-tune-epochs had none)', () => {
  const options = trainProgram().options;
  const d = DEFAULT_RUN_CONFIG;
  // The expected values are the defaults the run uses (contract/config.ts), not the help's own text.
  const expected: Array<[string, unknown]> = [
    ['--data <source>', d.data], ['--label-from <how>', d.labelFrom], ['--split <how>', d.split], ['--valid-pct <fraction>', d.validPct],
    ['--seed <n>', d.seed], ['--arch <name>', d.arch], ['--size <px>', d.size], ['--bs <n>', d.bs], ['--accum <n>', d.accum],
    ['--epochs <n>', DEFAULT_STAGES[0]!.epochs], ['--fine-tune-epochs <n>', DEFAULT_STAGES[2]!.epochs],
    // 0 is a value to give, not only the default: a resumed run keeps its own --checkpoint-every unless given again.
    ['--checkpoint-every <steps>', DEFAULT_RUNTIME.checkpointEvery],
  ];
  for (const [flag, value] of expected) {
    const text = options.find((o) => o.flags === flag)?.description ?? '';
    assert.ok(text.endsWith(`(default ${String(value)})`), `${flag}: ${text}`);
  }
});

test('--run-dir "" (an unset shell variable) is refused, not the current folder', () => {
  // Seen by the breaker: `--run-dir ""` resolved to the working directory (there refused only because the checkout
  // was not empty; an empty current folder would have become the run directory).
  for (const v of ['', '  ']) {
    assert.throws(() => parseTrainArgs(['--run-dir', v]), (e) => isTrainerError(e, 'ERR_BAD_FLAG') && e.message === `--run-dir must be a non-empty path (default runs/<date-time>), got ${JSON.stringify(v)}`);
  }
  assert.match(parseTrainArgs([]).config.runDir, /^runs\//, 'not given: runs/<date-time>');
});

test('--resume with the run\'s own stage shorthands: a --load … --epochs 0 run is addressed as when it was made', () => {
  // Seen (tryout2): `--resume <run> --epochs 0 --no-lr-find --fine-tune-epochs 2 --fine-tune-lr 6.31e-7`, the command
  // line of the --load run it resumes, was refused: '--fine-tune-epochs sets the epochs of fit stage 2, but the stages
  // have 1 fit stage(s) (stage-2); change the config file's stages instead'. A user repeats the command with --resume.
  const made = { epochs: 0, lrFind: false as const, fineTuneEpochs: 2, fineTuneLr: '6.31e-7' };
  const saved = applyStageShorthands(made, DEFAULT_STAGES);
  assert.deepEqual(saved.map((x) => [x.name, x.epochs, x.maxLr]), [['stage-2', 2, '6.31e-7']]);
  assert.deepEqual(applyResumeStageShorthands(made, saved), saved, 'the same flags give the same stages');
  assert.deepEqual(applyResumeStageShorthands({ fineTuneEpochs: 2 }, saved), saved, 'one of them alone too');
  assert.deepEqual(applyResumeStageShorthands({ fineTuneEpochs: 3 }, saved).map((x) => [x.name, x.epochs]), [['stage-2', 3]],
    '--fine-tune-epochs sets stage-2 (the resume\'s check then refuses another plan, naming both)');
  assert.deepEqual(applyResumeStageShorthands({ epochs: 1 }, saved).map((x) => x.name), ['stage-1', 'stage-2'],
    '--epochs 1 brings stage 1 back: another plan, which the resume refuses by comparing the stages');
  assert.deepEqual(applyResumeStageShorthands({}, saved), saved);
  // A run with every default stage is addressed as before, and a dropped lr_find stays dropped.
  const full = applyStageShorthands({ epochs: 3, fineTuneEpochs: 1, lrFind: false }, DEFAULT_STAGES);
  assert.deepEqual(applyResumeStageShorthands({ fineTuneEpochs: 1 }, full), full);
  assert.deepEqual(applyResumeStageShorthands({ lr: '1e-3' }, full).map((x) => x.maxLr), ['1e-3', 'slice(1e-6,1e-4)']);
  // A config file's own stages keep the positional rule and its message.
  const own = [{ kind: 'one_cycle' as const, name: 'warmup', epochs: 1, maxLr: '1e-3', frozen: false }];
  assert.throws(() => applyResumeStageShorthands({ fineTuneEpochs: 2 }, own), (e: unknown) => isTrainerError(e, 'ERR_BAD_FLAG') && /fit stage 2, but the stages have 1/.test(e.message));
  // So do a config file's stages named as the plan's but in another order (stage-2 first): by position, order kept.
  const swapped = [{ ...saved[0]!, name: 'stage-2' }, { kind: 'one_cycle' as const, name: 'stage-1', epochs: 1, maxLr: '1e-3', frozen: false }];
  assert.deepEqual(applyResumeStageShorthands({ fineTuneEpochs: 1 }, swapped), applyStageShorthands({ fineTuneEpochs: 1 }, swapped));
});

test('--resume: a config file\'s stages named as the plan\'s are addressed by position, as when the run was made (stagesFrom config)', () => {
  const own = [{ kind: 'one_cycle' as const, name: 'stage-2', epochs: 3, maxLr: '1e-3', frozen: false }];
  assert.deepEqual(applyResumeStageShorthands({ epochs: 3 }, own, 'config'), own, '--epochs 3 is stage-2\'s, the first fit stage');
  assert.deepEqual(applyResumeStageShorthands({ epochs: 3 }, own, 'default').map((x) => x.name), ['stage-1', 'stage-2'], 'the plan\'s: stage-1 back');
  assert.deepEqual(applyResumeStageShorthands({ epochs: 3 }, own).map((x) => x.name), ['stage-1', 'stage-2'], 'an older run: by the names, as before');
  assert.equal(parseTrainArgs(['--epochs', '2']).stagesFrom, 'default');
});
