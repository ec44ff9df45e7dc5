/**
 * The coordinator's driver: runs the stages from where the setup ({@link CoordinatorSetUp}, `setup.ts`) left the
 * run, checkpoints, recovers from lost workers, and ends the run (models, interpretation and the report through
 * `finish.ts`, then the close of workers and servers in a fixed order).
 */
import { basename } from 'node:path';
import { logText } from '../contract/log-text.js';
import type { DataBunch } from '../training/data/databunch.js';
import { TrainerError, isRetryable, isTrainerError } from '../contract/errors.js';
import { writeSavedBlob } from '../training/learner/save.js';
import { listCheckpoints } from '../contract/checkpoint-format.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../training/data/transforms.js';
import { resolveResNetConfig } from '../contract/resnet-spec.js';
import { archModel } from '../contract/config.js';
import { stageDataEpochBase, type StagePlan } from '../contract/plan/plan.js';
import { GroupRestart, RunStopped, type Recovery } from './recovery.js';
import { newHistory } from './history.js';
import { runFitStage, runLrFind, type StageContext } from './stage-runner.js';
import { checkpointMeta } from './checkpoint-store.js';
import { chooseRestartPoint, describeRestartPoint } from './restart-point.js';
import { finishRun, type RunResult } from './finish.js';
import { writeStageReport } from './stage-report.js';
import { diskLine, formatBytes, removeFailedRunDir } from './disk.js';
import { removeEmptyCreated } from './make-dir.js';
import { CoordinatorSetUp } from './setup.js';
import { interpretCommandLine, resumeCommandLine } from './shell-arg.js';

/**
 * Where the stages start other than from the fresh replicas' own weights: a `--resume`d checkpoint, a `--load`ed
 * model (a new run's start: `checksum` is the weights checksum every replica must report once it is loaded), or the
 * rewind after a whole worker group was restarted (`from` names the state for the log; `state` null: the fresh
 * replicas' own, the run's start; `checksum` set when that start is a loaded model).
 */
type StartPoint =
  | { readonly kind: 'resume'; readonly dir: string; readonly state: Uint8Array }
  | { readonly kind: 'load'; readonly state: Uint8Array; readonly checksum: string }
  | { readonly kind: 'restart'; readonly from: string; readonly state: Uint8Array | null; readonly restart: number; readonly checksum?: string };

/** A training run driven by the coordinator; `run()` then `close()`. */
export class Coordinator extends CoordinatorSetUp {
  private closing: Promise<void> | null = null;
  /** Set by {@link closeNow}: no shutdown message, no grace, no metrics linger. */
  private hurry = false;

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
        `Look at it again with: ${interpretCommandLine(this.runDir)}`);
      return this.untrainedResult(false);
    }
    const setup = await this.setUp();
    if (setup === null) return this.untrainedResult(true);
    let from: StartPoint | null = resumed ? { kind: 'resume', dir: resumed.dir, state: resumed.state }
      : this.startState ? { kind: 'load', state: this.startState.blob, checksum: this.startState.checksum } : null;
    let restarted: GroupRestart | null = null;
    for (;;) {
      try {
        if (restarted) from = await this.rewindAfterGroupRestart(setup.recovery, restarted);
        restarted = null;
        return (await this.runStages(setup.recovery, from)) ?? await this.finish(setup.data);
      } catch (err) {
        if (err instanceof RunStopped) return this.stoppedInRecovery(err);
        if (!(err instanceof GroupRestart)) throw err;
        restarted = err;
      }
    }
  }

  /**
   * After the whole worker group was restarted ({@link GroupRestart}): the run goes back to the newest intact state it
   * has ({@link chooseRestartPoint}: the newest intact checkpoint, else the state a resumed run resumed from, else its
   * start), as torchrun's restarted script resumes from its last checkpoint: its position, history and state. The new
   * group is set up; from the start, a fresh replica holds what the run started from (the pretrained or seeded
   * initial weights), and a member kept from before the restart is given a fresh one's state. Data order,
   * augmentation and dropout are functions of the global step, so the redone steps compute what the lost group computed.
   * @returns where the stages continue, with the state to load (null: the fresh replicas' own)
   */
  private async rewindAfterGroupRestart(recovery: Recovery, restart: GroupRestart): Promise<StartPoint> {
    const point = chooseRestartPoint(this.runDir, this.resumedAt, this.io.log);
    if (point.kind === 'start') {
      this.history = newHistory();
    } else {
      this.history = structuredClone(point.meta.history);
      this.store.resumedFrom({ dir: point.dir, state: point.state, meta: point.meta });
    }
    const from = describeRestartPoint(point, this.runStartText());
    this.io.log(`${new Date().toISOString()} worker group restart ${restart.restart}: loading ${from}`);
    // A member lost during its setup restarts the group again (recover throws GroupRestart through guarded).
    const { fresh, kept } = await this.guarded('setup of the restarted group', () => recovery.setUpRestartedGroup());
    if (point.kind !== 'start') return { kind: 'restart', from, state: point.state, restart: restart.restart };
    // A --load run's start is the loaded model, which every member of the new group loads (kept or fresh).
    if (this.startState) return { kind: 'restart', from, state: this.startState.blob, restart: restart.restart, checksum: this.startState.checksum };
    // From the start: fresh replicas hold the run's initial weights; a member kept from before the restart (set up
    // earlier, its state never confirmed) may not, so it gets a fresh one's state, as a newcomer gets a survivor's.
    if (kept.length > 0 && fresh.length > 0) {
      this.io.log(`rank(s) ${kept.join(', ')} of the restarted group were set up before the restart: they get the state of rank ${fresh[0]!}, set up now`);
      const state = await this.guarded('state of a fresh replica', () => this.getState(fresh[0]!));
      await this.guarded('load-state', () => this.loadStateEverywhere(state));
    }
    recovery.markGroupSynced();
    return { kind: 'restart', from, state: null, restart: restart.restart };
  }

  /** The result of a run that trained nothing (already finished, or stopped before the workers joined). */
  private untrainedResult(stopped: boolean): RunResult {
    return { runDir: this.runDir, stopped, finalErrorRate: null, modelPath: null, reportPath: null, metricsUrl: this.metrics?.url ?? null };
  }

  /**
   * Runs the stages from the current position (a resumed run loads its state at the start of its stage).
   * @returns the stopped result when a stop was requested, else null (every stage ran)
   */
  private async runStages(recovery: Recovery, from: StartPoint | null): Promise<RunResult | null> {
    // (this.history IS the checkpoint's history object and moves on with the run: remember where it started.)
    const resumeStage = from ? this.history.position.stageIndex : -1;
    const ctx = this.stageContext(recovery);
    const load = async (stageName: string): Promise<void> => {
      if (!from) return;
      if (from.state) {
        const state = from.state;
        const checksum = await this.guarded('load-state', () => this.loadStateEverywhere(state));
        // A loaded model: every replica must hold exactly its weights (the checksum of the file's tensors).
        if (from.kind !== 'resume' && from.checksum !== undefined && checksum !== from.checksum) {
          throw new TrainerError('ERR_REPLICA_MISMATCH', `the replicas hold weights of checksum ${checksum} after loading ${this.runStartText()}, whose weights' checksum is ${from.checksum}`);
        }
        if (from.kind === 'load') this.io.log(`--load: every replica holds the loaded weights (checksum ${checksum}); stage ${stageName} starts with a fresh optimizer`);
        recovery.markGroupSynced();
      }
      if (from.kind === 'load') return;
      const where = `stage ${stageName}, step ${this.history.position.stepInStage} (global step ${this.history.position.globalStep})`;
      if (from.kind === 'resume') {
        this.metrics?.recordRestart('resume');
        this.io.log(`resumed from ${from.dir}: ${where}`);
      } else {
        this.io.log(`${new Date().toISOString()} worker group restart ${from.restart}: continuing from ${from.from}: ${where}`);
      }
    };
    // A restart from the checkpoint taken after the last stage (lost during the ending): only its state is needed.
    if (resumeStage >= this.stages.length) await load('(all done)');
    for (let i = this.history.position.stageIndex; i < this.stages.length; i++) {
      const stage = this.stages[i]!;
      if (this.history.position.stageIndex !== i) this.history.position = { stageIndex: i, stepInStage: 0, globalStep: this.history.position.globalStep };
      // `stage` (freeze/unfreeze) resets the optimizer as fastai does, so a resumed run loads its state after it.
      await this.guarded(`stage ${stage.config.name}`, () => this.cluster!.request('stage', { stageIndex: i, frozen: stage.config.frozen }, { what: `stage ${stage.config.name}`, timeoutMs: 60_000 }));
      if (i === resumeStage) await load(stage.config.name);
      if (stage.config.kind === 'lr_find') {
        if (!(await runLrFind(ctx, stage))) return this.stopped(stage.config.name);
      } else {
        if (!(await runFitStage(ctx, stage))) return this.stopped(stage.config.name);
        await this.saveStage(stage.config.name);
      }
      this.history.position = { stageIndex: i + 1, stepInStage: 0, globalStep: this.history.position.globalStep };
      // The report is written again at the end: one that cannot be written now (a full disk) does not end training,
      // which is checkpointed and says for itself when the disk cannot hold its next checkpoint.
      await writeStageReport(this.runDir, this.cmd.config, this.history, this.startedFrom).catch((err: unknown) => {
        if (!isTrainerError(err, 'ERR_REPORT')) throw err;
        this.io.log(`warning: the report after stage ${stage.config.name} was not written (${logText(err.message)}); training goes on`);
      });
    }
    return null;
  }

  /** The ending of a run that trained every stage: the last checkpoint, then the final validation, models and report. */
  private async finish(data: DataBunch): Promise<RunResult> {
    const { config, runtime } = this.cmd;
    await this.checkpoint();
    this.ended = true;
    return finishRun({ cluster: this.cluster!, data, config, runDir: this.runDir, history: this.history, stages: this.stages, metricsUrl: this.metrics?.url ?? null, out: this.io.out, timeoutMs: runtime.allreduceTimeoutMs, guard: (what, fn) => this.guarded(what, fn), startedFrom: this.startedFrom });
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
      progressOut: this.io.progress,
      log: this.io.log,
      afterStep: async (stage, replies, loss, lrs, momentum, seconds) => {
        this.recorder?.record(stage, this.history.position.stepInStage, this.history.position.globalStep, replies, loss, lrs, momentum, seconds);
        await recovery.maybeGrow((rank) => this.getState(rank));
        // Anchored on the global step (not on a counter) so a resumed run checkpoints at the same steps.
        const every = this.cmd.runtime.checkpointEvery, step = this.history.position.globalStep;
        if (every > 0 && step % every === 0 && step !== lastCheckpointStep) {
          await this.checkpoint();
          lastCheckpointStep = step;
        }
        return this.stopRequested;
      },
      afterLrFindStep: (stage, lrStep, replies, loss, lrs, momentum, seconds) => {
        this.recorder?.record(stage, lrStep, this.history.position.globalStep, replies, loss, lrs, momentum, seconds);
      },
      afterEpoch: async (_stage, v) => {
        this.metrics?.recordValidation({ validLoss: v.validLoss, errorRate: v.errorRate });
        await this.checkpoint();
        lastCheckpointStep = this.history.position.globalStep;
      },
      stopRequested: () => this.stopRequested,
      guard: (what, fn) => this.guarded(what, fn),
      recover: (reason) => recovery.recover(reason, (rank) => this.getState(rank)),
      resumeAdvice: (after) => recovery.resumeAdvice(after),
      newestCheckpoint: () => listCheckpoints(this.runDir).at(-1) ?? null,
      stepFailed: (step, failures, reason) => recovery.failedStep(step, failures, reason),
      snapshot: () => this.guarded('lr_find snapshot', () => this.getState(0)),
      restore: async (blob) => { await this.guarded('lr_find restore', () => this.loadStateEverywhere(blob)); },
    };
  }

  /** After a stop request: checkpoints where the run is and says how to resume. */
  private async stopped(stageName: string): Promise<RunResult> {
    await this.checkpoint();
    return this.endStopped(`stopped at stage ${stageName}, step ${this.history.position.stepInStage} (global step ${this.history.position.globalStep}); resume with: ${resumeCommandLine(this.runDir)}`);
  }

  /** A stop asked for while recovery waited for workers ({@link RunStopped}): a clean stop, saying how to resume. */
  private stoppedInRecovery(err: RunStopped): RunResult {
    return this.endStopped(err.message);
  }

  /** Ends a stopped run: the disk line, then `line` (where it stopped and how to resume). */
  private endStopped(line: string): RunResult {
    this.ended = true;
    this.io.out(diskLine(this.runDir));
    this.io.out(line);
    return { runDir: this.runDir, stopped: true, finalErrorRate: null, modelPath: null, reportPath: null, metricsUrl: this.metrics?.url ?? null };
  }

  /** Fetches rank `rank`'s replica state blob. */
  async getState(rank: number): Promise<Uint8Array> {
    const [reply] = await this.cluster!.request('get-state', {}, { ranks: [rank], timeoutMs: 120_000 });
    return new Uint8Array(reply!.frames[0]!);
  }

  /**
   * Loads a state blob into every rank and checks they all report the same weights checksum.
   * @returns that checksum (`Replica.weightsChecksum`)
   * @throws TrainerError ERR_REPLICA_MISMATCH when the ranks report different ones
   */
  async loadStateEverywhere(blob: Uint8Array): Promise<string> {
    const replies = await this.cluster!.request('load-state', { byteLength: blob.byteLength }, { frames: [blob], timeoutMs: 120_000 });
    const sums = replies.map((r) => r.message.checksum);
    if (new Set(sums).size !== 1) throw new TrainerError('ERR_REPLICA_MISMATCH', `replicas disagree after loading state: ${sums.join(', ')}`);
    return sums[0]!;
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
        this.io.log(`${new Date().toISOString()} ${what} failed at global step ${this.history.position.globalStep} (${logText(err.message)}); recovering and redoing it`);
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
  protected async writeCheckpoint(): Promise<string | null> {
    if (!this.cluster || this.cluster.worldSize === 0) return null;
    const t0 = performance.now();
    const trainedSince = this.store.newest?.globalStep !== this.history.position.globalStep;
    if (trainedSince) await this.cluster.syncBatchNorm(120_000);
    const sums = (await this.cluster.request('checksum', {}, { timeoutMs: 60_000 })).map((r) => r.message.checksum);
    const agreement = this.metrics?.recordReplicaChecksums(sums) ?? (new Set(sums).size === 1 ? 1 : 0);
    if (agreement !== 1) throw new TrainerError('ERR_REPLICA_MISMATCH', `replica checksums differ at step ${this.history.position.globalStep}: ${sums.join(', ')}; stopping (replicas must be bit-identical)`);
    const state = await this.getState(0);
    this.guardRunDir();
    const meta = checkpointMeta({ runId: basename(this.runDir), config: this.cmd.config, classes: this.classes, history: this.history, stages: this.stages, scale: this.scale, worldSize: this.cluster.worldSize, generation: this.cluster.generation, dataFingerprint: this.dataFingerprint, startedFrom: this.startedFrom, stagesFrom: this.stagesFrom, samplerSeed: this.samplerSeed() });
    const written = this.store.write(meta, state);
    this.metrics?.recordCheckpoint((performance.now() - t0) / 1000);
    const how = written.linked.length > 0 ? `state unchanged since the previous checkpoint: hard-linked, ${formatBytes(written.bytesWritten)} written` : `${formatBytes(written.bytesWritten)} written`;
    this.io.log(`${new Date().toISOString()} checkpoint: ${written.dir} (global step ${this.history.position.globalStep}, ${how}, ${(performance.now() - t0).toFixed(0)} ms)`);
    return written.dir;
  }

  /** Saves the current model as `models/<name>.safetensors` (+ `.json`), loadable by `predict`, `interpret` and `Learner.load`. */
  async saveStage(name: string): Promise<void> {
    const blob = await this.guarded(`save ${name}`, () => this.getState(0));
    this.guardRunDir();
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
    const created = this.createdRunDirs;
    if (created.length === 0 || this.ended || this.keepDataAccount || this.store.newest !== null) return;
    this.createdRunDirs = [];
    try {
      if (removeFailedRunDir(this.runDir)) {
        // The parents it created too (the default `runs/` of a first run), when nothing else is in them.
        const parents = removeEmptyCreated(created).filter((d) => d !== this.runDir);
        const also = parents.length > 0 ? ` (and ${parents.reverse().join(', ')}, which it created, now empty)` : '';
        this.io.log(`removed ${this.runDir}${also}: the run ended before its first checkpoint, nothing in it to keep`);
      }
    } catch (err) {
      this.io.log(`could not remove ${this.runDir} (${(err as Error).message})`);
    }
  }

  private async closeInOrder(failure: unknown): Promise<void> {
    this.removeRunDirWithoutCheckpoint();
    const reason = failure !== undefined
      ? `run failed (${isTrainerError(failure) ? failure.code : 'ERR_INTERNAL'})`
      : this.stopRequested ? 'run stopped (checkpointed; resume with --resume)' : 'run finished';
    // The ring and the spares (workers that joined a full ring, or replacements not admitted yet): a spare left out
    // heard the coordinator go silent and exited 3 after its heartbeat timeout, saying the coordinator 'never
    // answered (is it running and reachable …?)'.
    const spares = this.control?.live().filter((m) => m.rank < 0) ?? [];
    if (this.cluster && !this.hurry) {
      await this.cluster.broadcast({ type: 'shutdown', reason }).catch(() => undefined);
      for (const m of spares) await this.control!.send(m, { type: 'shutdown', reason }).catch(() => undefined);
    }
    // Only workers that were sent `shutdown` (ring and spares) get the grace; one still starting gets SIGTERM.
    const told = new Set(this.hurry ? [] : [...this.cluster?.ranks() ?? [], ...spares].map((m) => m.hello.pid));
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
