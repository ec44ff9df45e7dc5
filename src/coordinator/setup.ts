/**
 * The coordinator's setup and admission, before the first stage: the checks that need no data, the control plane
 * and `/metrics`, the data and the plan, the local workers, their admission and each rank's setup. The run itself
 * (the stage loop, checkpoints, the ending) is {@link Coordinator} in `driver.ts`, which extends this class.
 */
import { listCheckpoints } from '../contract/checkpoint-format.js';
import { counted, logText } from '../contract/log-text.js';
import { writeFileAtomicSync } from '../contract/atomic-write.js';
import { basename, join, relative, resolve } from 'node:path';
import { MIB } from '../training/allreduce/buckets.js';
import { accountJson, dataLine, recordSkippedFiles } from '../training/data/accounting.js';
import { assertTrainable, checkDataSource, createDataBunch, dataBunchOptions, type DataBunch } from '../training/data/databunch.js';
import { ImagePool } from '../training/data/pool.js';
import { TrainerError, isRetryable, isTrainerError } from '../contract/errors.js';
import { checkBackendRequest } from '../training/compute/backend.js';
import { remoteJoinEndpoint } from './join-endpoint.js';
import { makeDirs, writeRunFile } from './make-dir.js';
import { checkNewRunDir } from './disk.js';
import { archModel, augmentOf, type Arch } from '../contract/config.js';
import { checkPretrainedSource, resolvePretrainedWeights, verifyTorchWeightsFile } from '../training/model/pretrained.js';
import { planStages, trainingSeed, type StagePlan } from '../contract/plan/plan.js';
import { encodeRunSetup, type RunSetup } from '../contract/run-setup.js';
import { lockRunDir, RUN_LOCK_FILE, type RunLock } from './run-lock.js';
import { planResumedScaleOut, planScaleOut, type ScaleOut } from './scale-out.js';
import { Cluster } from './cluster.js';
import { ControlServer, loadOrCreateCurveKeys, type CurveKeys } from './control.js';
import { LocalWorkers, describeExit, watchEarlyExits } from './local-workers.js';
import { MetricsServer } from './metrics/server.js';
import { runLabelOf } from './metrics/training-metrics.js';
import { newHistory, type RunHistory } from './history.js';
import type { RuntimeOptions, StagesFrom, TrainCommand } from './options.js';
import { GroupRestart, Recovery } from './recovery.js';
import { describeRunStart, previewRestartPoint } from './restart-point.js';
import { StarReduceServer } from './star-reduce.js';
import { CheckpointStore, checkResumedPlan, dataFingerprint, type ResumePoint } from './checkpoint-store.js';
import { StepMetricsRecorder } from './run-metrics.js';
import { writeShowBatch } from './show-batch.js';
import { resumeCommandLine } from './shell-arg.js';
import { RUN_CONFIG_FILE, writeRunConfigFile } from './run-config-file.js';
import { restoreRunDir } from './run-dir-guard.js';
import { checkLoadArch, checkLoadClasses, describeLoadStart, readLoadSource, startStateBlob, type LoadSource, type StartRecord } from './load-model.js';
import { weightsChecksumOf } from '../training/learner/state-codec.js';


/**
 * What a worker that joins a full ring is told in the log: it is not trained with (not `--elastic` growth), but kept
 * as a spare that recovery admits in place of a lost worker, and sent `shutdown` with the others at the end.
 */
const SPARE_NOTE = (expect: number): string =>
  `the run has its ${expect} worker(s) (--expect), so it waits as a spare: it replaces a lost worker, and is sent shutdown when the run ends`;
/** `--pretrained`'s check before anything starts: one rule with `npm run learn` (`training/model/pretrained.ts`). */
export { checkPretrainedSource };

/**
 * A `--pretrained` file must hold a torchvision state dict of `arch` (checked here, before any worker starts, rather
 * than in every worker after it started).
 * @throws TrainerError ERR_BAD_FLAG naming the file and the first mismatches
 */
export async function checkPretrainedFile(value: string, arch: Arch): Promise<void> {
  if (value === 'imagenet' || value === 'none') return;
  try {
    await verifyTorchWeightsFile(value, archModel(arch));
  } catch (err) {
    if (!isTrainerError(err)) throw err;
    throw new TrainerError('ERR_BAD_FLAG', `--pretrained must be a torchvision ${arch} state dict for --arch ${arch}: ${err.message}`, { cause: err });
  }
}

/** Everything the coordinator prints goes through these. */
export interface DriverIo {
  /** Results (plan, epoch tables, saved paths, final error rate): stdout in the CLI. */
  readonly out: (line: string) => void;
  /** Log lines (`[coordinator] …`): stderr in the CLI. */
  readonly log: (line: string) => void;
  /** Per-batch progress lines, unprefixed: stderr (tqdm's and Lightning's stream); omitted: stderr. */
  readonly progress?: (line: string) => void;
}

/**
 * The state of a coordinator's run and the steps that set it up ({@link CoordinatorSetUp.setUp}); the run itself is
 * {@link Coordinator}.
 */
export abstract class CoordinatorSetUp {
  protected control: ControlServer | null = null;
  protected workers: LocalWorkers | null = null;
  protected metrics: MetricsServer | null = null;
  protected cluster: Cluster | null = null;
  protected pool: ImagePool | null = null;
  protected stopRequested = false;
  /** Aborts waits for workers when a stop is requested (steps check `stopRequested` between steps). */
  protected readonly stopController = new AbortController();
  protected starAddress: string | null = null;
  /** The paste-ready command that starts a worker for this run (`npx worker --connect …`), set once the control socket is bound. */
  private joinCommand = '';
  protected star: StarReduceServer | null = null;
  protected history: RunHistory = newHistory();
  protected scale!: ScaleOut;
  protected stages: StagePlan[] = [];
  protected store: CheckpointStore;
  protected classes: readonly string[] = [];
  /** {@link dataFingerprint} of this run's data, recorded in every checkpoint. */
  protected dataFingerprint = '';
  protected recorder: StepMetricsRecorder | null = null;
  protected recovery: Recovery | null = null;
  /**
   * The folders this run created for its directory, outermost first, the run directory last (empty: it existed), so a
   * run failing before its first checkpoint removes them again: `runs/<date-time>`, and `runs/` when it made that too.
   */
  protected createdRunDirs: readonly string[] = [];
  /** This coordinator's lock of the run directory (run-lock.ts), held from its creation to the end of close. */
  protected runLock: RunLock | null = null;
  /** The run finished or stopped with its results written (its directory is kept whatever it holds). */
  protected ended = false;
  /** The data could not be trained: the directory is kept for its data.json (the account of every file). */
  protected keepDataAccount = false;
  /** A resumed run's data.json, written once its data is found to be the run's (null: not resumed, or written). */
  private resumedAccount: string | null = null;
  /** The data.json text this run wrote (null: not yet), written again if the run directory loses it (run-dir-guard.ts). */
  private writtenAccount: string | null = null;
  /** A new `--load` run's model, read and checked before the data step; dropped once {@link startState} is made. */
  private loadSource: LoadSource | null = null;
  /** The model a `--load` run started from (a resumed one's from its checkpoint), recorded in config.json, checkpoints, report. */
  protected startedFrom: StartRecord | null = null;
  /**
   * Where the run's stages came from (the default plan or a config file), recorded in config.json and checkpoints so
   * that a `--resume` addresses the stage shorthands as the run was made; a resumed run's from its checkpoint (absent
   * in one written before it was recorded: left absent, the resume then tells by the stages' names).
   */
  protected readonly stagesFrom: StagesFrom | undefined;
  /**
   * A new `--load` run's start: the state every replica loads at the start of the first stage (weights and BatchNorm
   * statistics, no optimizer state) and the weights checksum each must then report; null: the replicas' own start.
   */
  protected startState: { readonly blob: Uint8Array; readonly checksum: string } | null = null;
  readonly runDir: string;
  /**
   * The checkpoint this run resumed from as it was loaded (null: a new run), the one record of where it began: its
   * history is copied before the run moves it on (the run's own history starts as that very object). A group restart
   * that finds no newer intact checkpoint goes back to it (`chooseRestartPoint`), and the line announcing a restart
   * names it (`previewRestartPoint`).
   */
  protected readonly resumedAt: ResumePoint | null;

  /**
   * @param cmd - the parsed command (for a resumed run: its configuration comes from the checkpoint)
   * @param resumePoint - the checkpoint to continue from, or null for a new run
   */
  constructor(protected readonly cmd: TrainCommand, protected readonly io: DriverIo, protected readonly resumePoint: ResumePoint | null = null) {
    this.runDir = resolve(cmd.config.runDir);
    this.store = new CheckpointStore(this.runDir, cmd.runtime.keep);
    this.resumedAt = resumePoint && { ...resumePoint, meta: { ...resumePoint.meta, history: structuredClone(resumePoint.meta.history) } };
    if (resumePoint) {
      this.history = resumePoint.meta.history;
      this.store.resumedFrom(resumePoint);
      this.startedFrom = resumePoint.meta.startedFrom ?? null;
    }
    this.stagesFrom = resumePoint ? resumePoint.meta.stagesFrom : cmd.stagesFrom ?? 'default';
  }

  /**
   * What this run started from, for the log: the loaded model (`--load`), else {@link describeRunStart} (pretrained
   * or seeded weights).
   */
  protected runStartText(): string {
    const c = this.cmd.config;
    return this.startedFrom !== null ? describeLoadStart(this.startedFrom) : describeRunStart(c.pretrained, c.seed);
  }

  /**
   * Before a checkpoint or a saved model: a run directory that lost its lock or config.json during the run (deleted)
   * gets them back, with data.json, and one warning line (run-dir-guard.ts).
   * @throws TrainerError ERR_BAD_FLAG when another process holds the directory's lock now
   */
  protected guardRunDir(): void {
    if (this.runLock === null) return;
    restoreRunDir({
      runDir: this.runDir, lock: this.runLock, dataAccount: this.writtenAccount,
      writeConfig: () => writeRunConfigFile(this.runDir, this.cmd.config, this.cmd.runtime, this.startedFrom, this.stagesFrom),
    }, this.io.log);
  }

  /** Asks the run to stop after the current step (with a checkpoint). */
  requestStop(): void {
    this.stopRequested = true;
    this.stopController.abort('stop requested (SIGINT/SIGTERM)');
  }

  private async prepareData(): Promise<DataBunch> {
    const c = this.cmd.config;
    this.pool = new ImagePool({});
    this.pool.start();
    const data = await createDataBunch({ ...dataBunchOptions(c), verify: true, log: (line) => this.io.log(`data: ${line}`) }, this.pool);
    // Every file is accounted for before anything else can fail: the log lines above, data.json, the metric. A
    // resumed run's data.json is the account of the data it trained on: the new account replaces it only once the
    // data is found to be the run's (announcePlan). A refused resume (a file gone or broken since) overwrote it with
    // the data it refused, so the run's own record of its files was lost.
    const account = `${JSON.stringify(accountJson(data.account), null, 2)}\n`;
    if (this.resumePoint) this.resumedAccount = account;
    else {
      this.writeDataAccount(account);
    }
    if (this.metrics) recordSkippedFiles(this.metrics, data.account);
    this.io.out(dataLine(data.account, data.classes.length));
    try {
      assertTrainable(data);
    } catch (err) {
      // The data cannot be trained: the run folder is kept for its data.json, which says where every file went.
      this.keepDataAccount = true;
      if (!this.resumePoint) this.io.log(`data: where every file went: ${join(this.runDir, 'data.json')}`);
      throw err;
    }
    await writeShowBatch(data, this.pool, join(this.runDir, 'show-batch.png'), { size: c.size, seed: c.seed, transforms: augmentOf(c) })
      .catch((err: unknown) => this.io.log(`show_batch: not written (${logText(err instanceof Error ? err.message : String(err))})`));
    await this.pool.close();
    this.pool = null;
    return data;
  }

  /**
   * Seed of the workers' shuffles, augmentation and dropout: a resumed run's own (its checkpoint's `sampler.seed`, so
   * that a run checkpointed by a build that drew differently keeps its data order to the end), else
   * {@link trainingSeed} of `--seed` and the `--load`ed file.
   */
  protected samplerSeed(): number {
    return this.resumePoint?.meta.sampler?.seed ?? trainingSeed(this.cmd.config.seed, this.startedFrom?.sha256 ?? null);
  }

  private setupFor(data: DataBunch, starAddress: string | null): RunSetup {
    const c = this.cmd.config, r = this.cmd.runtime;
    return {
      // A resumed run loads every replica from its checkpoint: its workers need no pretrained weights (offline, a
      // moved file), as fastai's learn.load does not.
      runId: basename(this.runDir), arch: c.arch, size: c.size, bs: c.bs,
      // A --load run draws new shuffles, crops and dropout masks (not the loaded run's): samplerSeed.
      seed: this.samplerSeed(), pretrained: this.resumePoint ? 'none' : c.pretrained,
      frozen: this.stages[this.history.position.stageIndex]?.config.frozen ?? true, classes: data.classes, dataRoot: data.root,
      paths: data.paths.map((p) => relative(data.root, p).split('\\').join('/')), labels: Array.from(data.labels),
      train: Array.from(data.train), valid: Array.from(data.valid), allreduce: r.allreduce, allreduceDtype: r.allreduceDtype,
      bucketBytes: r.bucketMb * MIB, allreduceTimeoutMs: r.allreduceTimeoutMs, starAddress, threads: r.threads,
      transforms: augmentOf(c),
    };
  }

  /**
   * Everything before the first stage: the checks, the servers, the data and the plan, the workers and their
   * admission, and each rank's setup.
   * @returns the data and the recovery policy, or null when a stop was requested while waiting for workers
   */
  protected async setUp(): Promise<{ readonly data: DataBunch; readonly recovery: Recovery } | null> {
    await this.checkBeforeStart();
    // Ports are taken first (a mistake stops the run at once), but announced only once the data is there, so a
    // failed download or data check is the first and only thing printed.
    const announce: string[] = [];
    const { endpoint, curve } = await this.startServers(announce);
    const data = await this.prepareData();
    this.announcePlan(data, announce, endpoint);
    const recovery = await this.startWorkers(data, endpoint, curve);
    // A remote worker whose setup fails on its own machine (a wrong --data) is refused: the rendezvous goes on.
    if (!(await this.admitWorkers())) return null;
    await this.cluster!.announce();
    // A worker lost while the ranks are set up (SIGKILLed, OOM-killed) is recovered as a loss in a step is (respawned
    // or waited for, counted against --max-restarts), then the set-up goes on: it ended the run with ERR_WORKER_LOST
    // ('ready from rank 0: aborted'), exit 1. Every replica holds the run's start weights then (seeded, pretrained;
    // a --load or --resume state is loaded after this), so a newcomer given a survivor's state holds them too.
    for (;;) {
      try {
        if (!(await recovery.setUpUntilNoneRefused(() => this.admitWorkers(), false))) return null;
        break;
      } catch (err) {
        if (!isRetryable(err)) throw err;
        this.io.log(`${new Date().toISOString()} setting the workers up failed (${err.message}); recovering and setting them up again`);
        try {
          await recovery.recover(err.message, async (rank) => {
            const [reply] = await this.cluster!.request('get-state', {}, { ranks: [rank], timeoutMs: 120_000 });
            return new Uint8Array(reply!.frames[0]!);
          });
        } catch (restart) {
          // Every worker lost: the new group is admitted; nothing ran yet, so there is nothing to rewind.
          if (!(restart instanceof GroupRestart)) throw restart;
        }
      }
    }
    // Nothing has trained yet: every replica holds the run's start weights (a member of a restarted group too).
    recovery.markGroupSynced();
    if (this.resumePoint) checkResumedPlan(this.resumePoint, this.stages, this.scale);
    return { data, recovery };
  }

  /**
   * Everything that can be checked without the data is checked first (bad flags, a missing weights file, a stale
   * native addon), so a mistake stops the run in seconds rather than after the data check; then the run directory
   * and the scale-out plan.
   */
  private async checkBeforeStart(): Promise<void> {
    const { config } = this.cmd;
    const resumed = this.resumePoint !== null;
    // A resumed run's weights come from its checkpoint (as fastai's learn.load): its --pretrained source (a file
    // since moved, ImageNet weights not cached on an offline machine) is never needed.
    if (!resumed) {
      checkPretrainedSource(config.pretrained);
      await checkPretrainedFile(config.pretrained, config.arch);
      // A resumed --load run starts from its own checkpoint: the loaded model is never read again (it may be gone).
      if (config.load !== null) {
        this.loadSource = readLoadSource(config.load);
        checkLoadArch(this.loadSource, config.arch);
        this.startedFrom = this.loadSource.record;
      }
    }
    if (config.workers > 0) checkBackendRequest(config.backend);
    // Before the run folder is made: a mistyped --data made it, then failed at the data step and removed it again.
    checkDataSource(config.data, config.labelFrom === 'csv' ? config.labels ?? null : null);
    this.createdRunDirs = makeDirs(this.runDir, '--run-dir');
    this.runLock = writeRunFile(this.runDirFlag(), this.runDir, join(this.runDir, RUN_LOCK_FILE), () => lockRunDir(this.runDir, this.runDirFlag(), this.io.log));
    if (!this.cmd.runtime.resume && this.createdRunDirs.length === 0) {
      try {
        checkNewRunDir(this.runDir, this.io.log);
      } catch (err) {
        this.runLock.release();
        this.runLock = null;
        throw err;
      }
    }
    // A resumed run keeps its global batch (and so its plan) even with another world size: accumulation absorbs it.
    const runGlobalBs = this.resumePoint ? config.globalBs ?? this.resumePoint.meta.plan?.globalBs ?? null : null;
    this.scale = runGlobalBs !== null
      ? planResumedScaleOut({ bs: config.bs, worldSize: config.expect, lrScale: config.lrScale, baseBs: config.baseBs }, runGlobalBs)
      : planScaleOut({ bs: config.bs, worldSize: config.expect, accum: config.globalBs === null ? config.accum : 1, globalBs: config.globalBs, lrScale: config.lrScale, baseBs: config.baseBs });
    if (!resumed && config.workers > 0) await this.fetchPretrained();
  }

  /**
   * Fetches the ImageNet weights (`--pretrained imagenet`) once, into the cache the local workers read, before the
   * data step and before any worker starts: offline, the run stops here with one ERR_OFFLINE message instead of
   * after the data step, from every worker. The download holds a per-file lock, so a concurrent run waits for it.
   * @throws TrainerError ERR_OFFLINE, ERR_DOWNLOAD, ERR_CHECKSUM, ERR_WEIGHTS (from {@link resolvePretrainedWeights})
   */
  private async fetchPretrained(): Promise<void> {
    const { config } = this.cmd;
    if (config.pretrained !== 'imagenet') return;
    await resolvePretrainedWeights(config.pretrained, archModel(config.arch), { log: this.io.log });
  }

  /**
   * Starts `/metrics` (when asked for), the control plane (with CURVE when asked for) and the cluster over it.
   * @param announce - receives the lines to print once the data is there
   * @returns the control plane's endpoint and the CURVE keys (null: no CURVE)
   */
  private async startServers(announce: string[]): Promise<{ readonly endpoint: string; readonly curve: CurveKeys | null }> {
    const { runtime } = this.cmd;
    if (runtime.metricsPort >= 0) {
      this.metrics = await this.startMetrics(announce);
      this.recorder = new StepMetricsRecorder(this.metrics);
    }
    const curve = runtime.curveKeys === null ? null : loadOrCreateCurveKeys(runtime.curveKeys);
    if (curve) this.io.out(`CURVE on (keys in ${resolve(runtime.curveKeys!)}): start remote workers with --curve-server-key '${curve.publicKey}'`);
    const endpoint = await this.startControl(curve?.secretKey ?? null, announce);
    this.joinCommand = `npx worker --connect ${remoteJoinEndpoint(runtime.bind, endpoint)}${curve ? ` --curve-server-key '${curve.publicKey}'` : ''} --data <its copy of the data>`;
    const control = this.control!;
    this.recorder?.watch(control);
    // The star server serves each announced group (world size, generation): after a respawn or an elastic change
    // too, not only the first one.
    this.cluster = new Cluster(control, this.io.log, (worldSize, generation) => this.star?.reconfigure(worldSize, generation));
    control.on('hello', (m) => this.io.log(`worker joined: pid ${m.hello.pid} on ${m.hello.host}, data plane ${m.hello.dataAddress}, backend ${m.hello.capabilities.backend}` +
      (this.cluster!.worldSize >= this.cmd.config.expect ? `; ${SPARE_NOTE(this.cmd.config.expect)}` : '')));
    return { endpoint, curve };
  }

  /**
   * Plans the stages, then prints the announced lines and the plan once the data is there, and writes `config.json`.
   * Nothing is printed for a run that cannot start.
   * @throws TrainerError ERR_BAD_DATA when a resumed run's data has other classes or items than its checkpoint's;
   *   ERR_BAD_CONFIG when the training set cannot fill one global batch (`planStages`)
   */
  private announcePlan(data: DataBunch, announce: readonly string[], endpoint: string): void {
    const { config, runtime } = this.cmd;
    const resumed = this.resumePoint;
    this.classes = data.classes;
    if (resumed && JSON.stringify(resumed.meta.classes) !== JSON.stringify(data.classes)) {
      throw new TrainerError('ERR_BAD_DATA', `--resume: the data now has classes ${data.classes.length} (${data.classes.slice(0, 3).join(', ')}…), the checkpoint ${resumed.meta.classes.length}; point --data at the run's data`);
    }
    this.dataFingerprint = dataFingerprint(data);
    // --data may name another place on resume (the folder moved, another machine): it must hold the same items. Both
    // refusals are ERR_BAD_DATA, exit 2 (the data given is to change; nothing started): they were ERR_CHECKPOINT,
    // exit 1, which the exit codes call a failed run.
    if (resumed?.meta.data !== undefined && resumed.meta.data !== this.dataFingerprint) {
      throw new TrainerError('ERR_BAD_DATA', `--resume: the data at ${data.root} is not the run's: its training and validation images (names, labels, split) differ from the ones the checkpoint was trained on; point --data at the run's data (another place holding the same images is fine)`);
    }
    if (this.loadSource !== null) checkLoadClasses(this.loadSource, data.classes);
    if (this.resumedAccount !== null) this.writeDataAccount(this.resumedAccount);
    // Planned before anything is announced: a run that cannot take one step (a training set smaller than one global
    // batch, e.g. --workers 200 on a small set) must not first say it is listening and waiting for its workers.
    this.stages = planStages({ stages: config.stages, trainCount: data.train.length, globalBs: this.scale.globalBs, lrFactor: this.scale.lrFactor });
    if (this.loadSource !== null) this.prepareStartState(this.loadSource);
    for (const line of announce) this.io.out(line);
    this.io.out(`coordinator listening on ${endpoint}; waiting for ${config.expect} worker(s)`);
    // Workers this coordinator does not start (--expect above --workers, e.g. --workers 0 --expect 2): say how to
    // start them, as the rejoin message does, instead of leaving the user to assemble the command from the docs.
    const others = config.expect - config.workers;
    if (others > 0) this.io.out(`start ${others} more worker(s), here or on other machines, with: ${this.joinCommand}`);
    this.io.out(`plan: ${config.arch} at ${config.size}px, ${config.expect} worker(s) × bs ${config.bs} × accum ${this.scale.accum} = global batch ${this.scale.globalBs}` +
      (this.scale.lrFactor !== 1 ? `, lr × ${this.scale.lrFactor.toFixed(3)} (${config.lrScale} rule)` : '') +
      // One worker (that cannot grow: not elastic) reduces nothing: its gradient is the mean, as DDP at world size 1.
      (config.expect === 1 && !runtime.elastic ? '; all-reduce: none (1 worker)'
        : `; all-reduce: ${ALLREDUCE_PLAN[runtime.allreduce]}, ${runtime.allreduceDtype}, ${runtime.bucketMb} MiB buckets`) +
      `; stages: ${this.stages.map((s) => `${s.config.name} (${counted(s.totalSteps, 'step')})`).join(', ')}`);
    writeRunFile(this.runDirFlag(), this.runDir, join(this.runDir, RUN_CONFIG_FILE), () => writeRunConfigFile(this.runDir, config, runtime, this.startedFrom, this.stagesFrom));
  }

  /**
   * Makes {@link startState} of a `--load` run (the first stage's frozen flag, the loaded weights, a fresh optimizer)
   * and says what the run starts from; the decoded source is dropped.
   */
  private prepareStartState(source: LoadSource): void {
    const { config } = this.cmd;
    this.startState = { blob: startStateBlob(source, this.stages[0]!.config.frozen), checksum: weightsChecksumOf(source.state.tensors) };
    this.loadSource = null;
    const size = source.size === config.size ? '' : `; it was trained at ${source.size} px, this run trains at ${config.size} px`;
    this.io.log(`starting from ${describeLoadStart(source.record)}: weights and BatchNorm statistics; the optimizer state starts fresh (fastai learn.load, with_opt=False)${size}`);
  }

  /** The flag that named the run folder, for messages: `--resume` for a resumed run, else `--run-dir`. */
  private runDirFlag(): string {
    return this.cmd.runtime.resume ? '--resume' : '--run-dir';
  }

  /** Writes `account` as the run's data.json (the account of every file) and keeps it for run-dir-guard.ts. */
  private writeDataAccount(account: string): void {
    const path = join(this.runDir, 'data.json');
    writeRunFile(this.runDirFlag(), this.runDir, path, () => writeFileAtomicSync(path, account));
    this.writtenAccount = account;
  }

  /** Starts the star server (`--allreduce star`) and the local workers, and builds the recovery policy. */
  private async startWorkers(data: DataBunch, endpoint: string, curve: CurveKeys | null): Promise<Recovery> {
    const { config, runtime } = this.cmd;
    const resumedAt = this.resumedAt && { dir: this.resumedAt.dir, globalStep: this.resumedAt.meta.history.position.globalStep };
    if (runtime.allreduce === 'star') {
      this.star = new StarReduceServer({ bindAddress: runtime.bind.replace(/:\d+$/, ':*') });
      this.starAddress = await this.star.start();
    }
    if (config.workers > 0) {
      this.workers = new LocalWorkers({ endpoint, killTimeoutMs: WORKER_KILL_TIMEOUT_MS, args: ['--backend', config.backend, '--heartbeat-interval-ms', String(runtime.heartbeatIntervalMs), '--heartbeat-timeout-ms', String(runtime.heartbeatTimeoutMs), ...(curve ? ['--curve-server-key', curve.publicKey] : [])] });
      // Every exit is logged with its code (docs/fault-tolerance.md lists them), expected or not.
      this.workers.on('exit', (e) => this.io.log(`worker process ${e.pid} ${describeExit(e)}`));
      this.workers.start(config.workers);
    }
    this.recovery = new Recovery({
      cluster: this.cluster!, control: this.control!, workers: this.workers, localSlots: config.workers, expect: config.expect, elastic: runtime.elastic,
      joinCommand: this.joinCommand,
      describeBatch: () => `${this.cluster!.worldSize} worker(s) × bs ${config.bs} × accum ${this.currentAccum()} = global batch ${this.scale.globalBs}`,
      maxRestarts: runtime.maxRestarts, joinTimeoutMs: runtime.joinTimeoutS * 1000, rejoinTimeoutMs: (runtime.rejoinTimeoutS ?? runtime.joinTimeoutS) * 1000, stopSignal: this.stopController.signal, detectTimeoutMs: runtime.heartbeatTimeoutMs + 2 * runtime.heartbeatIntervalMs,
      hungSilenceMs: runtime.heartbeatTimeoutMs,
      fitsWorldSize: (w) => this.scale.globalBs % (config.bs * w) === 0,
      setupFrame: () => encodeRunSetup(this.setupFor(data, this.starAddress)),
      metrics: this.metrics, log: this.io.log,
      checkpoint: async () => {
        const dir = await this.writeCheckpoint();
        return dir === null ? 'nothing to checkpoint' : `checkpointed at global step ${this.history.position.globalStep} (${dir})`;
      },
      resumeCommand: resumeCommandLine(this.runDir),
      newestCheckpoint: () => listCheckpoints(this.runDir).at(-1) ?? null,
      restartFrom: () => previewRestartPoint(this.runDir, resumedAt, this.runStartText()),
    });
    return this.recovery;
  }

  /**
   * Waits until the ring has `--expect` workers (again after a worker was refused at its setup). A local worker that
   * exits before joining with an error it named (its setup failed) ends the wait at once; one that crashed without one
   * is respawned within `--max-restarts` (`respawnBeforeJoin`).
   * @returns false when a stop was requested while waiting (said on stdout)
   * @throws what the admission throws otherwise (join timeout, a local worker's early exit)
   */
  private async admitWorkers(): Promise<boolean> {
    const { config, runtime } = this.cmd;
    const earlyExit = watchEarlyExits(this.workers, (pid) => this.recovery!.joinedRing(pid), (e) => this.recovery!.respawnBeforeJoin(e));
    try {
      await this.cluster!.admit(config.expect - this.cluster!.worldSize, runtime.joinTimeoutS * 1000, AbortSignal.any([earlyExit.signal, this.stopController.signal]));
    } catch (err) {
      if (!this.stopRequested) throw err;
      this.io.out('stopped while waiting for workers to join; nothing was trained');
      return false;
    }
    earlyExit.stop();
    const spares = this.control!.live().filter((m) => m.rank < 0);
    if (spares.length > 0) this.io.log(`worker(s) pid ${spares.map((m) => `${m.hello.pid} on ${m.hello.host}`).join(', ')} joined beyond --expect: ${SPARE_NOTE(config.expect)}`);
    return true;
  }

  /**
   * Starts `/metrics` on `--metrics-port`; when that is the default port and another process holds it (a second
   * run on this host), on a free port instead, and says so (Prometheus must be pointed at it).
   * @throws TrainerError ERR_PORT_IN_USE for a port the user asked for; ERR_BAD_FLAG
   */
  private async startMetrics(announce: string[]): Promise<MetricsServer> {
    const r = this.cmd.runtime;
    const make = (port: number): MetricsServer => new MetricsServer({ host: r.metricsHost, port, runId: runLabelOf(basename(this.runDir)) });
    let metrics = make(r.metricsPort);
    try {
      await metrics.start();
      announce.push(`metrics: ${metrics.url}`);
    } catch (err) {
      if (!isTrainerError(err, 'ERR_PORT_IN_USE') || r.metricsPortGiven || r.metricsPort === 0) throw err;
      await metrics.close();
      metrics = make(0);
      await metrics.start();
      announce.push(`metrics: ${metrics.url}`,
        `metrics: the default port ${r.metricsPort} is taken (another run on this host?), so this run serves /metrics on the free port ${metrics.port}: add ${r.metricsHost}:${metrics.port} to Prometheus's scrape targets, or choose the port with --metrics-port`);
    }
    return metrics;
  }

  /**
   * Binds the control plane on `--bind`; when that is the default endpoint and its port is taken (a second run on
   * this host), on a free port of the same interface instead, and says how remote workers reach it.
   * @returns the bound endpoint
   * @throws TrainerError ERR_PORT_IN_USE for an endpoint the user asked for; ERR_BAD_FLAG
   */
  private async startControl(curveSecretKey: string | null, announce: string[]): Promise<string> {
    const r = this.cmd.runtime;
    const make = (bind: string): ControlServer => new ControlServer({
      bind, heartbeatIntervalMs: r.heartbeatIntervalMs, heartbeatTimeoutMs: r.heartbeatTimeoutMs, curveSecretKey, log: this.io.log,
      // A running local child is judged by its process (exit, closed pipe), never by heartbeat silence.
      watchedByProcess: (m) => this.recovery?.isLocal(m) === true && this.workers?.isRunning(m.hello.pid) === true,
    });
    this.control = make(r.bind);
    try {
      return await this.control.start();
    } catch (err) {
      if (!isTrainerError(err, 'ERR_PORT_IN_USE') || r.bindGiven) throw err;
      this.control.close();
      this.control = make(r.bind.replace(/:\d+$/, ':0'));
      const endpoint = await this.control.start();
      announce.push(`control: the default port ${/:(\d+)$/.exec(r.bind)?.[1] ?? '?'} is taken (another run on this host?), so this run listens on ${endpoint}: remote workers join with npx worker --connect ${endpoint}, or choose the port with --bind`);
      return endpoint;
    }
  }

  /** Accumulation steps of the current ring: global batch / (bs × world size). */
  protected currentAccum(): number {
    return this.scale.globalBs / (this.cmd.config.bs * this.cluster!.worldSize);
  }

  /**
   * Writes a checkpoint of the current state ({@link Coordinator}), for the recovery policy built here.
   * @returns the checkpoint directory, or null when no worker is left to take it from
   */
  protected abstract writeCheckpoint(): Promise<string | null>;
}

/**
 * Time between SIGTERM and SIGKILL of a local worker, milliseconds: a SIGTERMed worker closes everything (the step
 * in progress is cut short) and exits 143; SIGKILL is for one that does not.
 */
export const WORKER_KILL_TIMEOUT_MS = 15_000;

/** How the plan line names each `--allreduce` value (the transport each generation uses is logged by the workers). */
const ALLREDUCE_PLAN: Readonly<Record<RuntimeOptions['allreduce'], string>> = Object.freeze({
  auto: 'auto (shared memory when every worker is on one host, else ring)',
  shm: 'shared memory (reduce-scatter + all-gather, one host)',
  ring: 'ring (reduce-scatter + all-gather)',
  star: 'star (through the coordinator)',
});

