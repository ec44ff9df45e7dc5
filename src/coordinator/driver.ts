/**
 * The coordinator's driver: builds the dataset index and the plan, starts the control plane and the workers,
 * runs the stages, checkpoints, recovers from lost workers, and writes models, interpretation and the report.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { MIB } from '../training/allreduce/buckets.js';
import { accountJson, dataLine, recordSkippedFiles } from '../training/data/accounting.js';
import { assertTrainable, createDataBunch, dataBunchOptions, type DataBunch } from '../training/data/databunch.js';
import { ImagePool } from '../training/data/pool.js';
import { TrainerError, isRetryable, isTrainerError } from '../contract/errors.js';
import { checkBackendRequest } from '../training/compute/backend.js';
import { makeDir } from './make-dir.js';
import { writeSavedBlob } from '../training/learner/save.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../training/data/transforms.js';
import { resolveResNetConfig } from '../contract/resnet-spec.js';
import { archModel, augmentOf, type Arch } from '../contract/config.js';
import { verifyTorchWeightsFile } from '../training/model/pretrained.js';
import { planStages, stageDataEpochBase, type StagePlan } from '../contract/plan/plan.js';
import { encodeRunSetup, type RunSetup } from '../contract/run-setup.js';
import { lockRunDir, type RunLock } from './run-lock.js';
import { planScaleOut, type ScaleOut } from './scale-out.js';
import { Cluster } from './cluster.js';
import { ControlServer, loadOrCreateCurveKeys, type CurveKeys } from './control.js';
import { LocalWorkers } from './local-workers.js';
import { MetricsServer } from './metrics/server.js';
import { newHistory, type RunHistory } from './history.js';
import type { TrainCommand } from './options.js';
import { Recovery } from './recovery.js';
import { StarReduceServer } from './star-reduce.js';
import { runFitStage, runLrFind, type StageContext } from './stage-runner.js';
import { CheckpointStore, checkpointMeta, checkResumedPlan, type ResumePoint } from './checkpoint-store.js';
import { finishRun, type RunResult } from './finish.js';
import { StepMetricsRecorder } from './run-metrics.js';
import { writeStageReport } from './stage-report.js';
import { writeShowBatch } from './show-batch.js';
import { diskLine, formatBytes, removeFailedRunDir } from './disk.js';

/**
 * A `--pretrained` value that names a file must point at an existing file.
 * @throws TrainerError ERR_BAD_FLAG naming the path
 */
export function checkPretrainedSource(value: string): void {
  if (value === 'imagenet' || value === 'none') return;
  if (!existsSync(value)) throw new TrainerError('ERR_BAD_FLAG', `--pretrained must be imagenet, none or an existing safetensors file, got ${JSON.stringify(value)} (no such file)`);
}

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
  readonly out: (line: string) => void;
  readonly log: (line: string) => void;
}

/** A training run driven by the coordinator; `run()` then `close()`. */
export class Coordinator {
  private control: ControlServer | null = null;
  private workers: LocalWorkers | null = null;
  private metrics: MetricsServer | null = null;
  private cluster: Cluster | null = null;
  private pool: ImagePool | null = null;
  private stopRequested = false;
  /** Aborts waits for workers when a stop is requested (steps check `stopRequested` between steps). */
  private readonly stopController = new AbortController();
  private starAddress: string | null = null;
  private star: StarReduceServer | null = null;
  private history: RunHistory = newHistory();
  private scale!: ScaleOut;
  private stages: StagePlan[] = [];
  private store: CheckpointStore;
  private classes: readonly string[] = [];
  private recorder: StepMetricsRecorder | null = null;
  private recovery: Recovery | null = null;
  private closing: Promise<void> | null = null;
  /** Set by {@link closeNow}: no shutdown message, no grace, no metrics linger. */
  private hurry = false;
  /** This run created its directory (so a run failing before its first checkpoint removes it again). */
  private createdRunDir = false;
  /** This coordinator's lock of the run directory (run-lock.ts), held from its creation to the end of close. */
  private runLock: RunLock | null = null;
  /** The run finished or stopped with its results written (its directory is kept whatever it holds). */
  private ended = false;
  /** The data could not be trained: the directory is kept for its data.json (the account of every file). */
  private keepDataAccount = false;
  readonly runDir: string;

  /**
   * @param cmd - the parsed command (for a resumed run: its configuration comes from the checkpoint)
   * @param resumePoint - the checkpoint to continue from, or null for a new run
   */
  constructor(private readonly cmd: TrainCommand, private readonly io: DriverIo, private readonly resumePoint: ResumePoint | null = null) {
    this.runDir = resolve(cmd.config.runDir);
    this.store = new CheckpointStore(this.runDir, cmd.runtime.keep);
    if (resumePoint) this.history = resumePoint.meta.history;
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
    // Every file is accounted for before anything else can fail: the log lines above, data.json, the metric.
    writeFileSync(join(this.runDir, 'data.json'), `${JSON.stringify(accountJson(data.account), null, 2)}\n`);
    if (this.metrics) recordSkippedFiles(this.metrics, data.account);
    this.io.out(dataLine(data.account, data.classes.length));
    try {
      assertTrainable(data);
    } catch (err) {
      // The data cannot be trained: the run folder is kept for its data.json, which says where every file went.
      this.keepDataAccount = true;
      this.io.log(`data: where every file went: ${join(this.runDir, 'data.json')}`);
      throw err;
    }
    await writeShowBatch(data, this.pool, join(this.runDir, 'show-batch.png'), { size: c.size, seed: c.seed, transforms: augmentOf(c) })
      .catch((err: unknown) => this.io.log(`show_batch: not written (${err instanceof Error ? err.message : String(err)})`));
    await this.pool.close();
    this.pool = null;
    return data;
  }

  private setupFor(data: DataBunch, starAddress: string | null): RunSetup {
    const c = this.cmd.config, r = this.cmd.runtime;
    return {
      runId: basename(this.runDir), arch: c.arch, size: c.size, bs: c.bs, seed: c.seed, pretrained: c.pretrained,
      frozen: this.stages[this.history.position.stageIndex]?.config.frozen ?? true, classes: data.classes, dataRoot: data.root,
      paths: data.paths.map((p) => relative(data.root, p).split('\\').join('/')), labels: Array.from(data.labels),
      train: Array.from(data.train), valid: Array.from(data.valid), allreduce: r.allreduce, allreduceDtype: r.allreduceDtype,
      bucketBytes: r.bucketMb * MIB, allreduceTimeoutMs: r.allreduceTimeoutMs, starAddress, threads: r.threads,
      transforms: augmentOf(c),
    };
  }

  /**
   * Runs the whole plan in three steps: {@link setUp} (checks, servers, data, plan, workers), {@link runStages}, and
   * the ending ({@link finish}). A resumed run that already finished touches nothing.
   * @returns where the artifacts are and the final error rate
   */
  async run(): Promise<RunResult> {
    const resumed = this.resumePoint;
    if (resumed && resumed.meta.history.position.stageIndex >= this.cmd.config.stages.length) {
      // Nothing left to train: touching the workers or the checkpoints could only lose the finished result.
      this.io.out(`${resumed.dir}: this run already finished (global step ${resumed.meta.history.position.globalStep}); nothing to resume. ` +
        `Look at it again with: npx coordinator interpret ${this.runDir}`);
      return this.untrainedResult(false);
    }
    const setup = await this.setUp();
    if (setup === null) return this.untrainedResult(true);
    return (await this.runStages(setup.recovery)) ?? this.finish(setup.data);
  }

  /** The result of a run that trained nothing (already finished, or stopped before the workers joined). */
  private untrainedResult(stopped: boolean): RunResult {
    return { runDir: this.runDir, stopped, finalErrorRate: null, modelPath: null, reportPath: null, metricsUrl: this.metrics?.url ?? null };
  }

  /**
   * Everything before the first stage: the checks, the servers, the data and the plan, the workers and their
   * admission, and each rank's setup.
   * @returns the data and the recovery policy, or null when a stop was requested while waiting for workers
   */
  private async setUp(): Promise<{ readonly data: DataBunch; readonly recovery: Recovery } | null> {
    await this.checkBeforeStart();
    // Ports are taken first (a mistake stops the run at once), but announced only once the data is there, so a
    // failed download or data check is the first and only thing printed.
    const announce: string[] = [];
    const { endpoint, curve } = await this.startServers(announce);
    const data = await this.prepareData();
    this.announcePlan(data, announce, endpoint);
    const recovery = await this.startWorkers(data, endpoint, curve);
    if (!(await this.admitWorkers())) return null;
    await this.cluster!.announce();
    await recovery.setupAll(this.cluster!.ranks().map((m) => m.rank));
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
    checkPretrainedSource(config.pretrained);
    await checkPretrainedFile(config.pretrained, config.arch);
    if (config.workers > 0) checkBackendRequest(config.backend);
    this.createdRunDir = makeDir(this.runDir, '--run-dir');
    this.runLock = lockRunDir(this.runDir, this.cmd.runtime.resume ? '--resume' : '--run-dir', this.io.log);
    // A resumed run keeps its global batch (and so its plan) even with another world size: accumulation absorbs it.
    const globalBs = config.globalBs ?? this.resumePoint?.meta.plan?.globalBs ?? null;
    this.scale = planScaleOut({ bs: config.bs, worldSize: config.expect, accum: globalBs === null ? config.accum : 1, globalBs, lrScale: config.lrScale, baseBs: config.baseBs });
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
    const control = this.control!;
    this.recorder?.watch(control);
    // The star server serves each announced group (world size, generation): after a respawn or an elastic change
    // too, not only the first one.
    this.cluster = new Cluster(control, this.io.log, (worldSize, generation) => this.star?.reconfigure(worldSize, generation));
    control.on('hello', (m) => this.io.log(`worker joined: pid ${m.hello.pid} on ${m.hello.host}, data plane ${m.hello.dataAddress}, backend ${m.hello.capabilities.backend}`));
    control.on('message', (m, msg) => { if (msg.type === 'error') this.io.log(`worker rank ${m.rank}: ${msg.code}: ${msg.message}`); });
    return { endpoint, curve };
  }

  /**
   * Prints the announced lines and the plan once the data is there; plans the stages and writes `config.json`.
   * @throws TrainerError ERR_CHECKPOINT when a resumed run's data has other classes than its checkpoint
   */
  private announcePlan(data: DataBunch, announce: readonly string[], endpoint: string): void {
    const { config, runtime } = this.cmd;
    const resumed = this.resumePoint;
    for (const line of announce) this.io.out(line);
    this.io.out(`coordinator listening on ${endpoint}; waiting for ${config.expect} worker(s)`);
    this.classes = data.classes;
    if (resumed && JSON.stringify(resumed.meta.classes) !== JSON.stringify(data.classes)) {
      throw new TrainerError('ERR_CHECKPOINT', `--resume: the data now has classes ${data.classes.length} (${data.classes.slice(0, 3).join(', ')}…), the checkpoint ${resumed.meta.classes.length}; point --data at the run's data`);
    }
    this.stages = planStages({ stages: config.stages, trainCount: data.train.length, globalBs: this.scale.globalBs, lrFactor: this.scale.lrFactor });
    this.io.out(`plan: ${config.arch} at ${config.size}px, ${config.expect} worker(s) × bs ${config.bs} × accum ${this.scale.accum} = global batch ${this.scale.globalBs}` +
      (this.scale.lrFactor !== 1 ? `, lr × ${this.scale.lrFactor.toFixed(3)} (${config.lrScale} rule)` : '') +
      `; all-reduce: ${runtime.allreduce === 'ring' ? 'ring (reduce-scatter + all-gather)' : 'star (through the coordinator)'}, ${runtime.allreduceDtype}, ${runtime.bucketMb} MiB buckets` +
      `; stages: ${this.stages.map((s) => `${s.config.name} (${s.totalSteps} steps)`).join(', ')}`);
    writeFileSync(join(this.runDir, 'config.json'), JSON.stringify({ config, runtime: { ...runtime, resume: undefined } }, null, 2));
  }

  /** Starts the star server (`--allreduce star`) and the local workers, and builds the recovery policy. */
  private async startWorkers(data: DataBunch, endpoint: string, curve: CurveKeys | null): Promise<Recovery> {
    const { config, runtime } = this.cmd;
    if (runtime.allreduce === 'star') {
      this.star = new StarReduceServer({ bindAddress: runtime.bind.replace(/:\d+$/, ':*') });
      this.starAddress = await this.star.start();
    }
    if (config.workers > 0) {
      this.workers = new LocalWorkers({ endpoint, killTimeoutMs: WORKER_KILL_TIMEOUT_MS, args: ['--backend', config.backend, '--heartbeat-interval-ms', String(runtime.heartbeatIntervalMs), '--heartbeat-timeout-ms', String(runtime.heartbeatTimeoutMs), ...(curve ? ['--curve-server-key', curve.publicKey] : [])] });
      // Every exit is logged with its code (docs/fault-tolerance.md lists them), expected or not.
      this.workers.on('exit', (e) => this.io.log(`worker process ${e.pid} exited ${e.signal === null ? `with code ${e.code}` : `on ${e.signal}`}`));
      this.workers.start(config.workers);
    }
    this.recovery = new Recovery({
      cluster: this.cluster!, control: this.control!, workers: this.workers, localSlots: config.workers, expect: config.expect, elastic: runtime.elastic,
      joinCommand: `npx worker --connect ${endpoint}${curve ? ` --curve-server-key '${curve.publicKey}'` : ''} --data <its copy of the data>`,
      describeBatch: () => `${this.cluster!.worldSize} worker(s) × bs ${config.bs} × accum ${this.currentAccum()} = global batch ${this.scale.globalBs}`,
      maxRestarts: runtime.maxRestarts, joinTimeoutMs: runtime.joinTimeoutS * 1000, rejoinTimeoutMs: (runtime.rejoinTimeoutS ?? runtime.joinTimeoutS) * 1000, stopSignal: this.stopController.signal, detectTimeoutMs: runtime.heartbeatTimeoutMs + 2 * runtime.heartbeatIntervalMs,
      fitsWorldSize: (w) => this.scale.globalBs % (config.bs * w) === 0,
      setupFrame: () => encodeRunSetup(this.setupFor(data, this.starAddress)),
      metrics: this.metrics, log: this.io.log,
      checkpoint: async () => {
        const dir = await this.writeCheckpoint();
        return dir === null ? 'nothing to checkpoint' : `checkpointed at global step ${this.history.position.globalStep} (${dir})`;
      },
      resumeCommand: `npx coordinator --resume ${this.runDir}`,
    });
    return this.recovery;
  }

  /**
   * Waits for `--expect` workers; a local worker that exits before joining ends the wait at once.
   * @returns false when a stop was requested while waiting (said on stdout)
   * @throws what the admission throws otherwise (join timeout, a local worker's early exit)
   */
  private async admitWorkers(): Promise<boolean> {
    const { config, runtime } = this.cmd;
    const earlyExit = new AbortController();
    const onEarlyExit = (e: { pid: number; code: number | null; signal: string | null; expected: boolean }): void => {
      if (!e.expected && !this.control!.all().some((m) => m.hello.pid === e.pid)) earlyExit.abort(`worker process ${e.pid} exited (code ${e.code}, signal ${e.signal}) before joining`);
    };
    this.workers?.on('exit', onEarlyExit);
    try {
      await this.cluster!.admit(config.expect, runtime.joinTimeoutS * 1000, AbortSignal.any([earlyExit.signal, this.stopController.signal]));
    } catch (err) {
      if (!this.stopRequested) throw err;
      this.io.out('stopped while waiting for workers to join; nothing was trained');
      return false;
    }
    this.workers?.off('exit', onEarlyExit);
    return true;
  }

  /**
   * Runs the stages from the current position (a resumed run loads its state at the start of its stage).
   * @returns the stopped result when a stop was requested, else null (every stage ran)
   */
  private async runStages(recovery: Recovery): Promise<RunResult | null> {
    const resumed = this.resumePoint;
    // (this.history IS the checkpoint's history object and moves on with the run: remember where it started.)
    const resumeStage = resumed ? this.history.position.stageIndex : -1;
    const ctx = this.stageContext(recovery);
    for (let i = this.history.position.stageIndex; i < this.stages.length; i++) {
      const stage = this.stages[i]!;
      if (this.history.position.stageIndex !== i) this.history.position = { stageIndex: i, stepInStage: 0, globalStep: this.history.position.globalStep };
      // `stage` (freeze/unfreeze) resets the optimizer as fastai does, so a resumed run loads its state after it.
      await this.guarded(`stage ${stage.config.name}`, () => this.cluster!.request('stage', { stageIndex: i, frozen: stage.config.frozen }, { what: `stage ${stage.config.name}`, timeoutMs: 60_000 }));
      if (resumed && i === resumeStage) {
        await this.guarded('load-state', () => this.loadStateEverywhere(resumed.state));
        this.metrics?.recordRestart('resume');
        this.io.log(`resumed from ${resumed.dir}: stage ${stage.config.name}, step ${this.history.position.stepInStage} (global step ${this.history.position.globalStep})`);
      }
      if (stage.config.kind === 'lr_find') {
        if (!(await runLrFind(ctx, stage))) return this.stopped(stage.config.name);
      } else {
        if (!(await runFitStage(ctx, stage))) return this.stopped(stage.config.name);
        await this.saveStage(stage.config.name);
      }
      this.history.position = { stageIndex: i + 1, stepInStage: 0, globalStep: this.history.position.globalStep };
      await writeStageReport(this.runDir, this.cmd.config, this.history);
    }
    return null;
  }

  /** The ending of a run that trained every stage: the last checkpoint, then the final validation, models and report. */
  private async finish(data: DataBunch): Promise<RunResult> {
    const { config, runtime } = this.cmd;
    await this.checkpoint();
    this.ended = true;
    return finishRun({ cluster: this.cluster!, data, config, runDir: this.runDir, history: this.history, stages: this.stages, metricsUrl: this.metrics?.url ?? null, out: this.io.out, timeoutMs: runtime.allreduceTimeoutMs });
  }

  private stageContext(recovery: Recovery): StageContext {
    let lastCheckpointStep = this.history.position.globalStep;
    return {
      cluster: this.cluster!,
      history: this.history,
      accum: () => this.currentAccum(),
      stepsPerDataEpoch: this.stages.find((s) => s.config.kind !== 'lr_find')?.stepsPerEpoch ?? 1,
      dataEpochBase: (stage: StagePlan): number => stageDataEpochBase(this.stages, stage.index),
      stepTimeoutMs: this.cmd.runtime.allreduceTimeoutMs + 600_000,
      progress: this.cmd.runtime.plain ? 'lines' : 'auto',
      out: this.io.out,
      afterStep: async (stage, replies, loss, lrs, momentum, seconds) => {
        this.recorder?.record(stage, this.history.position.stepInStage, replies, loss, lrs, momentum, seconds);
        await recovery.maybeGrow((rank) => this.getState(rank));
        // Anchored on the global step (not on a counter) so a resumed run checkpoints at the same steps.
        const every = this.cmd.runtime.checkpointEvery, step = this.history.position.globalStep;
        if (every > 0 && step % every === 0 && step !== lastCheckpointStep) {
          await this.checkpoint();
          lastCheckpointStep = step;
        }
        return this.stopRequested;
      },
      afterEpoch: async (_stage, v) => {
        this.metrics?.recordValidation({ validLoss: v.validLoss, errorRate: v.errorRate });
        await this.checkpoint();
        lastCheckpointStep = this.history.position.globalStep;
      },
      stopRequested: () => this.stopRequested,
      guard: (what, fn) => this.guarded(what, fn),
      recover: (reason) => recovery.recover(reason, (rank) => this.getState(rank)),
      snapshot: () => this.guarded('lr_find snapshot', () => this.getState(0)),
      restore: (blob) => this.guarded('lr_find restore', () => this.loadStateEverywhere(blob)),
    };
  }

  /**
   * Starts `/metrics` on `--metrics-port`; when that is the default port and another process holds it (a second
   * run on this host), on a free port instead, and says so (Prometheus must be pointed at it).
   * @throws TrainerError ERR_PORT_IN_USE for a port the user asked for; ERR_BAD_FLAG
   */
  private async startMetrics(announce: string[]): Promise<MetricsServer> {
    const r = this.cmd.runtime;
    const make = (port: number): MetricsServer => new MetricsServer({ host: r.metricsHost, port, runId: basename(this.runDir) });
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
  private currentAccum(): number {
    return this.scale.globalBs / (this.cmd.config.bs * this.cluster!.worldSize);
  }

  /** After a stop request: checkpoints where the run is and says how to resume. */
  private async stopped(stageName: string): Promise<RunResult> {
    await this.checkpoint();
    this.ended = true;
    this.io.out(diskLine(this.runDir));
    this.io.out(`stopped at stage ${stageName}, step ${this.history.position.stepInStage} (global step ${this.history.position.globalStep}); resume with: npx coordinator --resume ${this.runDir}`);
    return { runDir: this.runDir, stopped: true, finalErrorRate: null, modelPath: null, reportPath: null, metricsUrl: this.metrics?.url ?? null };
  }

  /** Fetches rank `rank`'s replica state blob. */
  async getState(rank: number): Promise<Uint8Array> {
    const [reply] = await this.cluster!.request('get-state', {}, { ranks: [rank], timeoutMs: 120_000 });
    return new Uint8Array(reply!.frames[0]!);
  }

  /** Loads a state blob into every rank and checks they all report the same weights checksum. */
  async loadStateEverywhere(blob: Uint8Array): Promise<void> {
    const replies = await this.cluster!.request('load-state', { byteLength: blob.byteLength }, { frames: [blob], timeoutMs: 120_000 });
    const sums = replies.map((r) => r.message.checksum);
    if (new Set(sums).size !== 1) throw new TrainerError('ERR_REPLICA_MISMATCH', `replicas disagree after loading state: ${sums.join(', ')}`);
  }

  /**
   * Runs a collective operation; when a worker is lost (or it times out) meanwhile, recovers (respawn or elastic,
   * new ring generation) and runs it again. For idempotent operations only (validation, state transfer, checkpoints).
   */
  private async guarded<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (!this.recovery || !isRetryable(err)) throw err;
        this.io.log(`${new Date().toISOString()} ${what} failed at global step ${this.history.position.globalStep} (${err.message}); recovering and redoing it`);
        await this.recovery.recover(err.message, (rank) => this.getState(rank));
      }
    }
  }

  /** Writes a checkpoint; a worker lost meanwhile is recovered and the checkpoint taken again. */
  async checkpoint(): Promise<void> {
    await this.guarded('checkpoint', async () => { await this.writeCheckpoint(); });
  }

  /**
   * Writes a checkpoint of rank 0's state (BatchNorm statistics synced first) with the run's position. When nothing
   * was trained since the newest checkpoint (the final checkpoint after the last epoch's), the replicas still hold
   * its synced statistics: no sync, and the unchanged state is hard-linked rather than written again.
   * @returns the checkpoint directory, or null when no worker is left to take it from
   */
  private async writeCheckpoint(): Promise<string | null> {
    if (!this.cluster || this.cluster.worldSize === 0) return null;
    const t0 = performance.now();
    const trainedSince = this.store.newest?.globalStep !== this.history.position.globalStep;
    if (trainedSince) await this.cluster.syncBatchNorm(120_000);
    const sums = (await this.cluster.request('checksum', {}, { timeoutMs: 60_000 })).map((r) => r.message.checksum);
    const agreement = this.metrics?.recordReplicaChecksums(sums) ?? (new Set(sums).size === 1 ? 1 : 0);
    if (agreement !== 1) throw new TrainerError('ERR_REPLICA_MISMATCH', `replica checksums differ at step ${this.history.position.globalStep}: ${sums.join(', ')}; stopping (replicas must be bit-identical)`);
    const state = await this.getState(0);
    const meta = checkpointMeta({ runId: basename(this.runDir), config: this.cmd.config, classes: this.classes, history: this.history, stages: this.stages, scale: this.scale, worldSize: this.cluster.worldSize, generation: this.cluster.generation });
    const written = this.store.write(meta, state);
    this.metrics?.recordCheckpoint((performance.now() - t0) / 1000);
    const how = written.linked.length > 0 ? `state unchanged since the previous checkpoint: hard-linked, ${formatBytes(written.bytesWritten)} written` : `${formatBytes(written.bytesWritten)} written`;
    this.io.log(`${new Date().toISOString()} checkpoint: ${written.dir} (global step ${this.history.position.globalStep}, ${how}, ${(performance.now() - t0).toFixed(0)} ms)`);
    return written.dir;
  }

  /** Saves the current model as `models/<name>.safetensors` (+ `.json`), loadable by `predict`, `interpret` and `Learner.load`. */
  async saveStage(name: string): Promise<void> {
    const blob = await this.guarded(`save ${name}`, () => this.getState(0));
    const c = this.cmd.config;
    // Saved right after the stage's last epoch-end checkpoint, the model is that checkpoint's state: share its file.
    const { weights, linked } = await writeSavedBlob(blob, { arch: resolveResNetConfig(archModel(c.arch)), classes: this.classes, size: c.size, normalize: { mean: [...IMAGENET_MEAN], std: [...IMAGENET_STD] } }, this.runDir, name, this.store.sameStateFile(blob));
    this.io.out(`saved ${weights}${linked ? ' (hard link to the checkpoint of the same step: no extra disk)' : ''}`);
  }

  /**
   * Stops workers and servers, in this order (a run that failed before its first checkpoint first removes the
   * directory it created) (docs/fault-tolerance.md, "Shutdown order and exit codes"):
   * 1. `shutdown` to every worker, saying whether the run finished, stopped or failed;
   * 2. local workers get `workerGraceMs` to close and exit by themselves, then SIGTERM, then SIGKILL (each exit is
   *    logged with its code);
   * 3. the metrics recorder, the control ROUTER (linger 0) and the star-reduce ROUTER (linger 0);
   * 4. the metrics endpoint (after `--metrics-linger-s`), then the image pool (piscina threads).
   * Idempotent: a later call awaits the same close.
   * @param failure - the error that ended the run, if any (named in the workers' shutdown line)
   */
  close(failure?: unknown): Promise<void> {
    this.closing ??= this.closeInOrder(failure);
    return this.closing;
  }

  /**
   * A second SIGINT/SIGTERM: the run is abandoned where it is (no checkpoint, no waiting for the step). Local
   * workers get SIGTERM now (they close and exit 143; SIGKILL after 5 s), sockets close with linger 0, the metrics
   * endpoint closes without lingering. Resolves when all of that is done; the caller then exits 130.
   */
  async closeNow(): Promise<void> {
    this.hurry = true;
    await this.workers?.close(0);
    // Abandoned before its first checkpoint (a double Ctrl-C early on): no folder that --resume cannot use is left.
    this.removeRunDirWithoutCheckpoint();
    this.control?.close();
    await this.star?.close();
    await this.metrics?.close();
    await this.pool?.close();
    this.runLock?.release();
  }

  /** Removes the run directory this run created when it ends before its first checkpoint (nothing to resume). */
  private removeRunDirWithoutCheckpoint(): void {
    if (!this.createdRunDir || this.ended || this.keepDataAccount || this.store.newest !== null) return;
    this.createdRunDir = false;
    try {
      if (removeFailedRunDir(this.runDir)) this.io.log(`removed ${this.runDir}: the run ended before its first checkpoint, nothing in it to keep`);
    } catch (err) {
      this.io.log(`could not remove ${this.runDir} (${(err as Error).message})`);
    }
  }

  private async closeInOrder(failure: unknown): Promise<void> {
    this.removeRunDirWithoutCheckpoint();
    const reason = failure !== undefined
      ? `run failed (${isTrainerError(failure) ? failure.code : 'ERR_INTERNAL'})`
      : this.stopRequested ? 'run stopped (checkpointed; resume with --resume)' : 'run finished';
    if (this.cluster && !this.hurry) await this.cluster.broadcast({ type: 'shutdown', reason }).catch(() => undefined);
    // Only workers that were sent `shutdown` (members of the ring) get the grace; one still starting gets SIGTERM.
    const told = new Set(this.hurry ? [] : this.cluster?.ranks().map((m) => m.hello.pid) ?? []);
    await this.workers?.close((pid) => (told.has(pid) ? WORKER_SHUTDOWN_GRACE_MS : 0));
    this.recorder?.finish();
    this.control?.close();
    await this.star?.close();
    const linger = this.cmd.runtime.metricsLingerS;
    if (this.metrics && linger > 0 && !this.hurry) {
      this.io.log(`metrics: keeping ${this.metrics.url} up ${linger} s for a last scrape (--metrics-linger-s)`);
      await new Promise((r) => setTimeout(r, linger * 1000));
    }
    await this.metrics?.close();
    await this.pool?.close();
    this.runLock?.release();
  }
}

/**
 * How long local workers get to close and exit after `shutdown` before they are sent SIGTERM, milliseconds. Their
 * own close is bounded (an all-reduce is aborted, the image pool drains for at most 5 s): this only matters for a
 * worker that is stuck, and is long so that a loaded machine never turns a clean exit (0) into a SIGTERM (143).
 */
export const WORKER_SHUTDOWN_GRACE_MS = 30_000;

/**
 * Time between SIGTERM and SIGKILL of a local worker, milliseconds: a SIGTERMed worker closes everything (the step
 * in progress is cut short) and exits 143; SIGKILL is for one that does not.
 */
export const WORKER_KILL_TIMEOUT_MS = 15_000;
