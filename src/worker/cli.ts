/**
 * `worker` command line: `worker --connect tcp://host:port` joins a coordinator (local workers are spawned by the
 * coordinator with the same flags). Flags are validated before anything starts.
 */
import { networkInterfaces } from 'node:os';
import { Command, CommanderError } from 'commander';
import { logText } from '../contract/log-text.js';
import { flagsOnly, plainDefaults, refuseStrayArguments, withVersion } from '../contract/cli-help.js';
import { parseBackendRequest } from '../training/compute/backend.js';
import { checkInt, MAX_TIMER_MS } from '../contract/config.js';
import { TrainerError, isTrainerError } from '../contract/errors.js';
import { WORKER_EXIT, Worker, type WorkerOptions } from './worker.js';
import { ignoreBrokenPipes } from '../training/broken-pipe.js';
import { localWorkerSlot, type WorkerExitNotice } from '../contract/local-pipe.js';
import { buildMismatch } from '../contract/build-stamp.js';
import { checkEnvSettings } from '../contract/env-settings.js';
import { curveKeyProblem } from '../contract/curve-key.js';
import { folderProblem } from '../contract/folder.js';

/** Parses the worker's flags. @throws TrainerError ERR_BAD_FLAG / ERR_BAD_CONFIG naming the flag; CommanderError */
export function parseWorkerArgs(argv: readonly string[]): Omit<WorkerOptions, 'log'> {
  const program = new Command('worker')
    .description('Distributed trainer worker process: joins a coordinator and trains its shard')
    // Checked after parsing, not as commander's requiredOption: that check came before the unknown-option one, so
    // `worker --conect tcp://…` (a typo) was told "required option '--connect <endpoint>' not specified".
    .option('--connect <endpoint>', 'coordinator endpoint, e.g. tcp://10.0.0.5:5555 (required)')
    .option('--backend <name>', 'compute backend: auto|tensorflow|webgpu|native|wasm|cpu', 'auto')
    .option('--data <dir>', 'local copy of the data (default: the coordinator\'s path)')
    .option('--rank <n>', 'rank to ask for (default: any free rank)')
    .option('--data-bind <endpoint>', 'data-plane bind address; use tcp://<this host ip>:* across machines', 'tcp://127.0.0.1:*')
    .option('--heartbeat-interval-ms <ms>', 'heartbeat period', '1000')
    .option('--heartbeat-timeout-ms <ms>', 'coordinator silence before this worker exits', '10000')
    .option('--curve-server-key <z85>', 'coordinator CURVE public key (from its --curve-keys directory)')
    .exitOverride();
  withVersion(plainDefaults(flagsOnly(program))).parse([...argv], { from: 'user' });
  refuseStrayArguments(program);
  const o = program.opts<Record<string, string | undefined>>();
  if (o.connect === undefined) throw new TrainerError('ERR_BAD_FLAG', '--connect <endpoint> is required: the coordinator\'s address, as its log prints it (npx worker --connect tcp://<host>:<port>)');
  if (!/^(tcp|ipc):\/\/\S+$/.test(o.connect)) {
    // `--connect 10.0.0.5:5555` (the address without its scheme) was refused without saying what to write instead.
    const hint = /^[^/:\s]+:\d+$/.test(o.connect) ? ` (did you mean tcp://${o.connect}?)` : '';
    throw new TrainerError('ERR_BAD_FLAG', `--connect must be tcp://host:port or ipc://path, got ${JSON.stringify(o.connect)}${hint}`);
  }
  // ZeroMQ takes a port modulo 65536 (tcp://h:99999 means 34463), so the range is checked here.
  for (const [flag, endpoint] of [['--connect', o.connect], ['--data-bind', o.dataBind!]] as const) {
    const port = /^tcp:\/\/.+:(\d+)$/.exec(endpoint)?.[1];
    if (port !== undefined && Number(port) > 65535) throw new TrainerError('ERR_BAD_FLAG', `${flag} port must be an integer in [0, 65535], got ${port}`);
  }
  if (!/^tcp:\/\/[^:]+:(\*|\d+)$/.test(o.dataBind!)) throw new TrainerError('ERR_BAD_FLAG', `--data-bind must be tcp://host:port or tcp://host:*, got ${JSON.stringify(o.dataBind)}`);
  // zeromq refused a mistyped key with a bare 'Error: Invalid argument' stack (exit 1) from the socket's construction.
  const keyProblem = o.curveServerKey === undefined ? null : curveKeyProblem(o.curveServerKey);
  if (keyProblem !== null) {
    throw new TrainerError('ERR_BAD_FLAG', `--curve-server-key must be the coordinator's 40-character Z85 public key (the coordinator prints it; its --curve-keys folder holds it in coordinator.key), got ${JSON.stringify(o.curveServerKey)}: ${keyProblem}`);
  }
  // Checked before the worker joins, as every flag: a wrong path used to pass here, the worker joined the run and
  // failed its setup (ERR_DATA, exit 1), which the coordinator counted as a lost worker. Whether the folder holds the
  // run's items is known only at setup (`localDataRoot`, worker.ts).
  const dataProblem = o.data === undefined ? null : folderProblem(o.data);
  if (dataProblem !== null) {
    throw new TrainerError('ERR_BAD_FLAG', `--data must be this machine's copy of the coordinator's data, a folder of images or a folder holding images/, got ${JSON.stringify(o.data)}: ${dataProblem}`);
  }
  const interval = checkInt('--heartbeat-interval-ms', o.heartbeatIntervalMs, 10, MAX_TIMER_MS);
  const timeout = checkInt('--heartbeat-timeout-ms', o.heartbeatTimeoutMs, 2 * interval, MAX_TIMER_MS);
  return {
    connect: o.connect, backend: parseBackendRequest(o.backend!), dataRoot: o.data ?? null,
    rank: o.rank === undefined ? null : checkInt('--rank', o.rank, 0), dataBind: o.dataBind!,
    heartbeatIntervalMs: interval, heartbeatTimeoutMs: timeout, curveServerKey: o.curveServerKey ?? null,
  };
}

/**
 * The warning for a worker that joins a coordinator on another machine with its ring's data plane on loopback (the
 * `--data-bind` default, `tcp://127.0.0.1:*`): its ring neighbours on other machines cannot connect to it, and the
 * run's first all-reduce waits until `--allreduce-timeout-ms`. The coordinator's printed join command does not know
 * the worker's address, so a user who ran it as printed met only that timeout.
 * @param connect the worker's `--connect` endpoint
 * @param dataBind the worker's `--data-bind` endpoint
 * @param own this host's addresses (`os.networkInterfaces()`; a parameter for tests): a coordinator at one of them is
 *   on this machine
 * @returns the warning to log, or null when the coordinator is on loopback (local workers) or the data plane is not
 */
export function dataBindWarning(connect: string, dataBind: string,
  own: readonly string[] = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((n) => n.address))): string | null {
  const host = (endpoint: string): string => /^tcp:\/\/(\[[^\]]*\]|[^:]+):/.exec(endpoint)?.[1] ?? '';
  const loopback = (h: string): boolean => /^127\./.test(h) || h === 'localhost' || h === '[::1]';
  const here = loopback(host(connect)) || own.includes(host(connect).replace(/^\[|\]$/g, ''));
  if (!connect.startsWith('tcp://') || here || !loopback(host(dataBind))) return null;
  return `--data-bind ${dataBind}: the ring's data plane listens on loopback, which workers on other machines cannot reach; ` +
    `the coordinator (${connect}) is on another machine, so pass --data-bind 'tcp://<this host's address>:*'`;
}

/**
 * Entry point of `npx worker`. Every ending goes through one {@link Worker.close} (fixed order, see there) before
 * this resolves, and the caller only sets `process.exitCode`: the process never exits while the heartbeat thread
 * still holds its socket.
 * @returns exit code ({@link WORKER_EXIT}): 0 after a shutdown from the coordinator, 1 on failure, 2 on a bad flag,
 *   3 when the coordinator went silent, 130 / 143 when stopped by SIGINT / SIGTERM
 */
export async function main(argv: readonly string[]): Promise<number> {
  // Spawned by a coordinator with a control pipe (a local worker: it names the slot): the pipe closing is the
  // coordinator's death, and the worker's last word goes through it (announceExit). Another parent's IPC channel (a
  // process manager) is not taken for the coordinator.
  const localSlot = localWorkerSlot(process.channel !== undefined, process.env);
  const parentPipe = localSlot !== null;
  let options: Omit<WorkerOptions, 'log'>;
  try {
    options = parseWorkerArgs(argv);
    checkEnvSettings(process.env); // a bad PETS_* setting is refused as a bad flag is (exit 2), not met mid-setup
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? WORKER_EXIT.ok : WORKER_EXIT.badFlag;
    // With its code, as the coordinator's and learn's one error line (`coordinator: ERR_BAD_FLAG: …`).
    console.error(`worker: ${isTrainerError(err) ? `${err.code}: ` : ''}${logText((err as Error).message)}`);
    if (parentPipe) await announceExit(WORKER_EXIT.badFlag, `${isTrainerError(err) ? `${err.code}: ` : ''}${(err as Error).message}`);
    return WORKER_EXIT.badFlag;
  }
  const tag = `[worker ${process.pid}]`;
  const log = (line: string): void => console.error(`${tag} ${line}`);
  const bindWarning = dataBindWarning(options.connect, options.dataBind);
  if (bindWarning !== null) log(`warning: ${bindWarning}`);
  // A local worker runs its coordinator's code or nothing (dist/ rebuilt during the run: contract/build-stamp.ts).
  const otherBuild = buildMismatch();
  if (otherBuild !== null) {
    log(`ERR_STALE_BUILD: ${otherBuild}`);
    if (parentPipe) await announceExit(WORKER_EXIT.failed, `ERR_STALE_BUILD: ${otherBuild}`);
    return WORKER_EXIT.failed;
  }
  /** The error this worker ends on, for the coordinator's report (it is also logged here). */
  let failure: string | null = null;
  const worker = new Worker({ ...options, localSlot, log });
  if (parentPipe) {
    process.channel!.unref();
    const gone = (): void => {
      log('ERR_WORKER_LOST: the coordinator process is gone (its control pipe closed); exiting');
      worker.stop(WORKER_EXIT.coordinatorLost);
    };
    // The pipe may have closed while this module was loading (the event was emitted before anyone listened).
    if (!process.connected) gone();
    else process.once('disconnect', gone);
  }
  const onSigterm = (): void => {
    log('SIGTERM: closing');
    worker.stop(WORKER_EXIT.sigterm);
  };
  // Ctrl-C in a terminal reaches the whole process group: a local worker (spawned by the coordinator) leaves SIGINT to
  // the coordinator, which finishes the step, checkpoints and shuts it down.
  const onSigint = (): void => {
    if (parentPipe) return log('SIGINT: the coordinator will stop this worker');
    log('SIGINT: closing');
    worker.stop(WORKER_EXIT.sigint);
  };
  // An error nothing caught must not end the process with the heartbeat thread still running (native abort).
  ignoreBrokenPipes();
  let crashed = false;
  const onUncaught = (err: unknown): void => {
    if (crashed) return;
    crashed = true;
    failure = `ERR_INTERNAL: uncaught: ${err instanceof Error ? err.message : String(err)}`;
    log(`ERR_INTERNAL: uncaught: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    worker.stop(WORKER_EXIT.failed);
  };
  process.on('SIGTERM', onSigterm);
  process.on('SIGINT', onSigint);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  let code: number;
  try {
    code = await worker.run();
    failure ??= worker.refused;
  } catch (err) {
    failure = `${isTrainerError(err) ? `${err.code}: ` : ''}${(err as Error).message}`;
    log(failure);
    code = WORKER_EXIT.failed;
  } finally {
    // The signal handlers stay: a late SIGTERM then finds the close done and changes nothing.
    await worker.close();
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
  }
  if (parentPipe) await announceExit(code, code === WORKER_EXIT.failed ? failure : null);
  return code;
}

/**
 * Tells the coordinator, over the control pipe, the exit code this local worker is about to end with and the error it
 * ends on ({@link WorkerExitNotice}); resolves once the message is written (or the pipe is gone). Everything is
 * closed by then, so the coordinator lets the process end by itself instead of ending it when the pipe closes.
 */
function announceExit(code: number, error: string | null): Promise<void> {
  const notice: WorkerExitNotice = { type: 'worker-exit', code, error };
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) return resolve();
    process.send(notice, undefined, {}, () => resolve());
  });
}
