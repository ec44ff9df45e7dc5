/**
 * Losing and gaining workers. Default policy (as Horovod elastic and torchrun, but without a disk round trip):
 * respawn a replacement for every lost local worker and wait for a remote one to join in place of every lost remote
 * worker (a remote loss is never made up on the coordinator's host), re-form the ring with a new
 * generation, give the newcomers the current weights and optimizer state from a survivor, and redo the step that
 * failed. `--elastic`: continue with the survivors, keeping the global batch constant by raising accumulation
 * (when it divides evenly), and admit workers that join later at the next step boundary.
 */
import { TrainerError, isRetryable, isTrainerError, type TrainerErrorCode } from '../contract/errors.js';
import { hostname } from 'node:os';
import type { Cluster } from './cluster.js';
import type { ControlServer, Member } from './control.js';
import { describeExit, watchEarlyExits, type LocalWorkers, type WorkerExit } from './local-workers.js';
import type { MetricsServer } from './metrics/server.js';

/** Wall time for log lines (failures and membership changes are logged with it). */
function now(): string {
  return new Date().toISOString();
}

/**
 * How long the count of lost workers must stay unchanged before recovery acts, milliseconds: exits of workers killed
 * together arrive one by one. Only the grouping of losses depends on it, never the result (a loss seen later is
 * recovered by the next attempt).
 */
const LOSS_SETTLE_MS = 300;

/**
 * Thrown by {@link Recovery.recover} when a stop (SIGINT/SIGTERM) was asked for while it waited for workers (a group
 * restart, replacements of lost ones): the run ends as a clean stop, exit 0, its message saying what is on disk and
 * the resume command. It ended with `ERR_WORKER_LOST: stop requested (SIGINT/SIGTERM)`, exit 1, naming neither.
 * Not a {@link TrainerError}: never retried.
 */
export class RunStopped extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunStopped';
  }
}

/**
 * Thrown by {@link Recovery.recover} when every worker holding the training state was lost and a new worker group was
 * admitted in their place (torchrun's restart of the whole group): the driver rewinds the run to the newest
 * checkpoint (or its start) and goes on from there. Not a {@link TrainerError}: it is never retried as a failed step.
 */
export class GroupRestart extends Error {
  /**
   * @param restart - the restart this was (1-based, counted against `--max-restarts`)
   * @param reason - the failure that lost the group
   */
  constructor(readonly restart: number, readonly reason: string) {
    super(`worker group restarted (restart ${restart}) after: ${reason}`);
    this.name = 'GroupRestart';
  }
}

/** Options of {@link Recovery}. */
export interface RecoveryOptions {
  readonly cluster: Cluster;
  readonly control: ControlServer;
  /** Local worker processes (null when all workers are remote). */
  readonly workers: LocalWorkers | null;
  /** Local slots (`--workers`): only these are respawned on this host. */
  readonly localSlots: number;
  /** World size of the full run. */
  readonly expect: number;
  /** How a remote worker joins, for the log (e.g. `npx worker --connect tcp://10.0.0.5:5555`). */
  readonly joinCommand: string;
  /** The batch arithmetic of the current ring for the log, e.g. `2 worker(s) × bs 8 × accum 2 = global batch 32`. */
  readonly describeBatch: () => string;
  readonly elastic: boolean;
  readonly maxRestarts: number;
  /** How long to wait for a worker's `ready` after its setup (`--join-timeout-s`), milliseconds. */
  readonly joinTimeoutMs: number;
  /** How long to wait for replacements to join (`--rejoin-timeout-s`, default `--join-timeout-s`), milliseconds. */
  readonly rejoinTimeoutMs: number;
  /** Fires when the user asked the run to stop (SIGINT/SIGTERM): waiting for workers ends at once. */
  readonly stopSignal?: AbortSignal;
  /** How long to wait for a loss to be detected after a failed step, milliseconds. */
  readonly detectTimeoutMs: number;
  /**
   * Heartbeat silence (`--heartbeat-timeout-ms`) after which a local worker found alive when a step or collective has
   * failed with no loss is hung (stopped with SIGSTOP, frozen): it is ended and replaced. Silence alone never ends a
   * local worker (a loaded machine delays heartbeats); silence and a failed collective together do.
   */
  readonly hungSilenceMs: number;
  /** Whether the global batch divides over `worldSize` workers (elastic needs an integer accumulation). */
  readonly fitsWorldSize: (worldSize: number) => boolean;
  readonly setupFrame: () => Uint8Array;
  readonly metrics: MetricsServer | null;
  readonly log: (line: string) => void;
  /**
   * Called before giving up (restarts exhausted, replacements that never joined): the driver checkpoints the
   * survivors' state. @returns what was saved, for the error, e.g. `checkpointed at global step 12 (runs/x/checkpoints/step-000000012)`
   */
  readonly checkpoint: () => Promise<string>;
  /** The command that resumes this run, for the error that ends it (e.g. `npx coordinator --resume runs/x`). */
  readonly resumeCommand: string;
  /**
   * The newest complete checkpoint on disk (its folder), or null when the run has written none yet: an error that
   * ends the run without checkpointing names it, or says there is nothing to resume. Omitted: not named.
   */
  readonly newestCheckpoint?: () => string | null;
  /**
   * What a whole-group restart goes back to, for the line announcing it (`previewRestartPoint`, `restart-point.ts`):
   * e.g. the newest checkpoint's folder, or `the start of the run (…: the pretrained ImageNet weights …)`. Omitted:
   * the newest checkpoint, or the start of the run when {@link newestCheckpoint} says none was written.
   */
  readonly restartFrom?: () => string;
}

/** A group restart's source when the owner gives none: the newest checkpoint's folder, or the run's start (null). */
function describeNewest(newest: string | null | undefined): string {
  return newest === null ? 'the start of the run (no checkpoint was written yet)' : newest ?? 'the newest checkpoint';
}

/**
 * Setup failures that are one remote worker's own, not the run's: its copy of the data is not the run's (a wrong
 * `--data`: ERR_DATA), its machine cannot get the pretrained weights (ERR_OFFLINE, ERR_DOWNLOAD, ERR_CHECKSUM,
 * ERR_WEIGHTS), or one of its own `PETS_*` environment settings is unusable (ERR_BAD_CONFIG whose message starts with
 * the variable: a `PETS_TRAINER_WEIGHTS_DIR` or `PETS_TRAINER_CACHE_DIR` it cannot create, `PETS_NATIVE_THREADS=abc`).
 * Other ERR_BAD_CONFIG failures (the run's all-reduce or model settings) are the run's: every worker would fail alike,
 * so refusing each in turn would only end the run later at a join timeout that hides the cause.
 * {@link Recovery.setupAll} refuses such a worker and the run waits for another.
 */
const OWN_SETUP_FAILURES: readonly TrainerErrorCode[] = Object.freeze(['ERR_DATA', 'ERR_OFFLINE', 'ERR_DOWNLOAD', 'ERR_CHECKSUM', 'ERR_WEIGHTS']);

/** Whether a worker's setup error is its own ({@link OWN_SETUP_FAILURES}); `message` may carry `rank N: setup: `. */
export function isOwnSetupFailure(code: TrainerErrorCode, message: string): boolean {
  if (OWN_SETUP_FAILURES.includes(code)) return true;
  return code === 'ERR_BAD_CONFIG' && /^PETS_[A-Z0-9_]+\b/.test(message.replace(/^rank \d+: /, '').replace(/^setup: /, ''));
}

/** Membership changes of a run. */
export class Recovery {
  /** Respawns so far. */
  restarts = 0;
  /** {@link restarts} when the current {@link recover} call began (one recovery = one event for a group restart). */
  private restartsBeforeEvent = 0;
  /** Members admitted whose replica has not received the training state yet (by member id). */
  private readonly unsynced = new Set<string>();
  /** Members admitted that were sent the run setup (by member id). */
  private readonly setUp = new Set<string>();
  /**
   * Every member whose loss was counted against `--max-restarts` (by member id: a worker process's own random routing
   * id, never reused): a lost worker counts once, whatever phase it died in and however many ways its death is seen
   * (its closed pipe, its exit reaped later, its peers' failed collectives, a recovery attempt started over, the redo
   * of the step or validation it broke).
   */
  private readonly counted = new Set<string>();
  /** Set when recovery cannot succeed (restarts exhausted, state lost, replacements never joined): no retry. */
  private fatal = false;
  /** The error that ended the run, rethrown by any later {@link recover}. */
  private ended: TrainerError | null = null;

  constructor(private readonly o: RecoveryOptions) {
    // A local slot and its member change state together, in one turn, whichever is seen first (review finding P9):
    // - the process's loss (exit, closed pipe: LocalWorkers frees the slot) marks its member lost;
    // - a member marked lost while its process runs (a hung worker ended by endHung, any loss not seen from the
    //   process) has its process retired: the slot is free at once and its later exit is expected.
    // Before, the second kind kept the slot "running" until the exit was reaped: a group restart or respawn then
    // skipped the slot, waited for a remote worker in its place, and took the exit for a replacement that crashed
    // before joining (one more restart counted, or the wait ended as "a replacement worker could not start").
    const workers = o.workers;
    if (!workers) return;
    workers.on('lost', (e) => {
      const m = o.control.all().find((x) => this.isLocal(x) && x.hello.pid === e.pid && x.state !== 'lost');
      if (m) o.control.markLost(m, e.reason);
    });
    o.control.on('lost', (m) => {
      if (this.isLocal(m)) workers.retire(m.hello.pid);
    });
  }

  /** Whether a member is one of this host's local worker processes (it then has a slot). */
  isLocal(m: Member): boolean {
    return this.o.workers !== null && m.hello.host === hostname() && this.o.workers.slotOf(m.hello.pid) !== null;
  }

  /**
   * Counts the loss of each process not counted before (the {@link counted} ledger).
   * @returns the members whose loss is counted now
   */
  private countLosses(lost: readonly Member[]): Member[] {
    const fresh = lost.filter((m) => !this.counted.has(m.id));
    for (const m of fresh) this.counted.add(m.id);
    return fresh;
  }

  /**
   * Whether the local process `pid` joined the ring (a member with a rank): its exit is then a loss that recovery
   * counts (once), never a crash before joining (`watchEarlyExits`). A process that said hello but died before it was
   * given a rank is not one: it is respawned in its slot as one that crashed before joining, since nothing else
   * replaces it (the admission waits for a live newcomer; before, it waited out `--rejoin-timeout-s` and ended the run).
   */
  joinedRing(pid: number): boolean {
    return this.o.control.all().some((m) => m.hello.pid === pid && m.rank >= 0 && m.hello.host === hostname());
  }

  /**
   * A local worker that crashed before joining without naming an error (killed, a native abort: `watchEarlyExits`)
   * is respawned in its slot while `--max-restarts` allows, as torchrun restarts a failed local worker; each such
   * respawn counts against `--max-restarts` like the replacement of a lost member. One that failed with an error it
   * named (`ERR_BACKEND`, `ERR_STALE_BUILD`, …) is never passed here: a replacement would fail the same way.
   * @returns the replacement's pid, or null when no restart is left (or the run is stopping): the wait then ends
   */
  respawnBeforeJoin(e: WorkerExit): number | null {
    const workers = this.o.workers;
    if (workers === null) return null;
    // Never a second count or a second process for one death: an exit whose slot holds another process by now (its
    // replacement was started already) is no new failure; the watch goes on with the slot's process.
    const holder = workers.pids().get(e.slot);
    if (holder !== undefined && holder !== e.pid) return holder;
    if (this.restarts >= this.o.maxRestarts || this.o.stopSignal?.aborted === true) return null;
    this.restarts++;
    this.o.metrics?.recordRestart('worker_lost');
    workers.respawn(e.slot);
    const pid = workers.pids().get(e.slot) ?? null;
    this.o.log(`${now()} local worker slot ${e.slot}: process ${e.pid} ${describeExit(e, ' before joining')}; respawned: pid ${pid ?? '?'} (restart ${this.restarts} of at most ${this.o.maxRestarts})`);
    return pid;
  }

  /**
   * Sends the run setup to the members of `ranks` that have not had it and waits until each is ready. A remote worker
   * whose setup fails on its own machine ({@link OWN_SETUP_FAILURES}: a wrong `--data`, weights it cannot get) is
   * refused, as torchrun and Ray Train go on without a bad node: it is told why (it prints it and exits 1), it leaves
   * the ring without counting as lost, and the other ranks' setups go on; the caller waits for workers in its place.
   * It used to end the whole run at its start. A local worker's failure (its data is the coordinator's own) and any
   * other failure still end the wait at once.
   * @returns how many workers were refused (0: every rank is set up); the ring must then be announced again
   * @throws TrainerError the first failure not refused; ERR_WORKER_LOST when a rank is lost; ERR_TIMEOUT
   */
  async setupAll(ranks: readonly number[]): Promise<number> {
    const { cluster } = this.o;
    const members = new Map(cluster.ranks().filter((m) => ranks.includes(m.rank) && !this.setUp.has(m.id)).map((m) => [m.rank, m]));
    if (members.size === 0) return 0;
    const frame = this.o.setupFrame();
    const outcomes = await cluster.requestSettled('setup', { byteLength: frame.byteLength }, {
      ranks: [...members.keys()], frames: [frame], what: 'ready', timeoutMs: this.o.joinTimeoutMs,
      tolerate: (err, rank) => isOwnSetupFailure(err.code, err.message) && !this.isLocal(members.get(rank)!),
    });
    for (const m of members.values()) this.setUp.add(m.id);
    let refused = 0;
    // Highest rank first: refusing one renumbers those above it.
    for (const o of [...outcomes].sort((a, b) => b.rank - a.rank)) {
      if (!('error' in o)) continue;
      const m = members.get(o.rank)!;
      const why = `the worker pid ${m.hello.pid} on ${m.hello.host} cannot serve this run: its setup failed there (${o.error.message.replace(/^rank \d+: /, '')})`;
      this.o.log(`${now()} refused ${why}; waiting for another worker in its place: start one with ${this.o.joinCommand}`);
      this.setUp.delete(m.id);
      this.unsynced.delete(m.id);
      await cluster.refuse(o.rank, o.error.code, why);
      refused++;
    }
    return refused;
  }

  /**
   * Sets up every rank of the announced ring until none is refused: the one "set up until nobody is refused" loop
   * (the run's start and a restarted group). Each round sends the setup to the ranks that lack it ({@link setupAll});
   * when workers were refused, `replace` waits for others to join in their place, the ring is announced again, and
   * the next round sets up the newcomers. With `newcomersNeedState`, the newcomers are marked as needing the training
   * state before the announcement, which throws ERR_WORKER_LOST when a member was lost meanwhile: the attempt that
   * recovers that loss must still give them the state (as {@link admitNewcomers} does).
   * @param replace - waits for `refused` workers to join; resolves false when a stop was requested meanwhile
   * @param newcomersNeedState - whether members that join hold no training state (false at the run's start, where
   *   every replica starts from the same weights)
   * @returns false when `replace` said stop, else true (every rank set up)
   * @throws TrainerError as {@link setupAll}, `replace` and `Cluster.announce` (ERR_WORKER_LOST)
   */
  async setUpUntilNoneRefused(replace: (refused: number) => Promise<boolean>, newcomersNeedState: boolean): Promise<boolean> {
    const { cluster } = this.o;
    for (let refused = await this.setupAll(cluster.ranks().map((m) => m.rank)); refused > 0; refused = await this.setupAll(cluster.ranks().map((m) => m.rank))) {
      const before = new Set(cluster.ranks().map((m) => m.id));
      if (!(await replace(refused))) return false;
      if (newcomersNeedState) for (const m of cluster.ranks().filter((x) => !before.has(x.id))) this.unsynced.add(m.id);
      await cluster.announce();
    }
    return true;
  }

  private async waitForLoss(): Promise<boolean> {
    const deadline = performance.now() + this.o.detectTimeoutMs;
    // Ranked members only: a newcomer lost before it was given a rank is replaced by the wait for it (`admit`).
    const lostCount = (): number => this.o.control.all().filter((m) => m.state === 'lost' && m.rank >= 0).length;
    while (performance.now() < deadline) {
      if (lostCount() > 0) {
        // Workers lost together (all SIGKILLed, the OOM killer) are reported one exit at a time: let the count settle
        // (LOSS_SETTLE_MS without a new loss) so they are recovered as one event, e.g. one whole-group restart rather
        // than a partial respawn whose state source dies too.
        for (let seen = lostCount(); ;) {
          await new Promise((r) => setTimeout(r, LOSS_SETTLE_MS));
          if (lostCount() === seen) return true;
          seen = lostCount();
        }
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  }

  /**
   * Every worker holding the training state was lost (all local workers SIGKILLed or OOM-killed at once, or the
   * only ones that held it): as torchrun restarts the whole worker group within `--max-restarts`, starts a new
   * group, counting ONE restart: every local slot not running is respawned, remote places are waited for (within
   * `--rejoin-timeout-s`), and the ring is announced. The driver then rewinds the run to the newest checkpoint (or
   * its start when none was written), sets the new members up ({@link setUpRestartedGroup}) and loads that state.
   * @throws GroupRestart when the new group is admitted (the driver rewinds); TrainerError ERR_WORKER_LOST (final)
   *   when no restart is left, a stop was requested, or the replacements did not join
   */
  private async restartGroup(reason: string, lost: readonly Member[]): Promise<never> {
    const { cluster } = this.o;
    const max = this.o.maxRestarts;
    // One event, one restart: losses of one group that arrived further apart than LOSS_SETTLE_MS (a loaded host, remote
    // workers seen a heartbeat tick apart) made an earlier attempt of this recovery respawn part of the group and count
    // it; the whole-group restart replaces that partial one, so it counts once from where this recovery began.
    this.restarts = Math.min(this.restarts, this.restartsBeforeEvent);
    if (this.restarts >= max || this.o.stopSignal?.aborted === true) {
      this.fatal = true;
      const why = this.o.stopSignal?.aborted === true ? 'a stop was requested' : `no restart is left (--max-restarts ${max}, ${this.restarts} used)`;
      this.ended = new TrainerError('ERR_WORKER_LOST', `every worker holding the training state was lost (${reason}) and ${why}; ${this.resumeAdvice()}`);
      throw this.ended;
    }
    this.restarts++;
    this.o.metrics?.recordRestart('worker_lost');
    // The checkpoint folder is listed only where the owner does not say what the restart loads.
    const from = this.o.restartFrom?.() ?? describeNewest(this.o.newestCheckpoint?.());
    this.o.log(`${now()} every worker holding the training state was lost (${lost.length > 0 ? `rank(s) ${lost.map((m) => m.rank).join(', ')}: ` : ''}${reason}): restarting the whole worker group (restart ${this.restarts} of at most ${max}) from ${from}`);
    // Members left in the ring hold no state worth keeping (newcomers never synced): they get the rewound state too.
    for (const m of cluster.ranks()) this.unsynced.add(m.id);
    const running = new Set(this.o.workers?.pids().keys() ?? []);
    for (let slot = 0; this.o.workers && slot < this.o.localSlots; slot++) {
      if (running.has(slot)) continue;
      this.o.workers.respawn(slot);
      this.o.log(`${now()} respawned local worker slot ${slot}: pid ${this.o.workers.pids().get(slot) ?? '?'} (group restart ${this.restarts} of at most ${max})`);
    }
    const missing = this.o.expect - cluster.worldSize;
    const remote = missing - (this.o.workers ? this.o.localSlots - running.size : 0);
    if (remote > 0) this.o.log(`${now()} waiting for ${remote} remote worker(s) to join the restarted group: start one with ${this.o.joinCommand}`);
    if (missing > 0) await this.admit(missing, reason);
    // Before the announcement, which throws when a member was lost meanwhile: the next attempt must still know that
    // no member of the new group holds the state.
    for (const m of cluster.ranks()) this.unsynced.add(m.id);
    await cluster.announce();
    this.checkNoneLostMeanwhile();
    throw new GroupRestart(this.restarts, reason);
  }

  /**
   * After a {@link GroupRestart}, once the driver has rewound the run: sends the run setup to every member of the new
   * group that has not had it. A fresh replica then holds what the run started from (its pretrained or seeded
   * initial weights), the state to restart from when the run has no other; otherwise the driver loads that state
   * into every rank. Then the driver calls {@link markGroupSynced}.
   * @returns the ranks set up now (`fresh`) and those set up before the restart (`kept`: their state is unknown)
   */
  async setUpRestartedGroup(): Promise<{ readonly fresh: number[]; readonly kept: number[] }> {
    const { cluster } = this.o;
    const kept = new Set(cluster.ranks().filter((m) => this.setUp.has(m.id)).map((m) => m.id));
    // Workers refused at their setup (a wrong --data) are replaced by workers that join, within --rejoin-timeout-s.
    await this.setUpUntilNoneRefused(async (refused) => (await this.admit(refused, 'a worker of the restarted group was refused'), true), true);
    const ranks = cluster.ranks();
    return { fresh: ranks.filter((m) => !kept.has(m.id)).map((m) => m.rank), kept: ranks.filter((m) => kept.has(m.id)).map((m) => m.rank) };
  }

  /** Every member of the ring now holds the training state (the driver loaded it into all of them). */
  markGroupSynced(): void {
    for (const m of this.o.cluster.ranks()) this.unsynced.delete(m.id);
  }

  /**
   * Re-forms the ring after a failed step.
   * @param getState - fetches the state blob of the given rank (a member that holds the training state)
   * @throws TrainerError ERR_WORKER_LOST when restarts are exhausted or no survivor is left
   */
  async recover(reason: string, getState: (rank: number) => Promise<Uint8Array>): Promise<void> {
    // Another worker may die while the ring is being re-formed (e.g. the survivor sending its state): start over
    // from the new membership until it holds, or until a fatal condition (restarts exhausted, no worker holding the
    // state, stop requested) ends the run.
    if (this.ended) throw this.ended;
    this.restartsBeforeEvent = this.restarts;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.recoverOnce(reason, getState);
        this.checkNoneLostMeanwhile();
        return;
      } catch (err) {
        const retry = isRetryable(err) && !this.fatal && !this.o.stopSignal?.aborted;
        if (!retry) throw err;
        reason = (err as Error).message;
        // Each attempt lost a worker (counted against --max-restarts) or timed out: bounded either way.
        if (attempt > this.o.maxRestarts) await this.giveUp(`recovery failed ${attempt} time(s) in a row, more than --max-restarts ${this.o.maxRestarts}`, reason);
        this.o.log(`${now()} recovery attempt ${attempt} failed (${reason}); starting over`);
      }
    }
  }

  /**
   * A member of the ring lost after recovery dropped the lost ones and before it announced the new ring (while it
   * waited for a replacement to join) is in no ring and aborted nothing: announcing resets the signal its loss had
   * fired. Recovery would then return with a ring smaller than the run's world size and train on with it. It starts
   * over instead: the next attempt counts that loss (once) and replaces it.
   * @throws TrainerError ERR_WORKER_LOST (retryable) naming the ranks lost meanwhile
   */
  private checkNoneLostMeanwhile(): void {
    const lost = this.o.control.all().filter((m) => m.state === 'lost' && m.rank >= 0);
    if (lost.length === 0) return;
    throw new TrainerError('ERR_WORKER_LOST', `rank(s) ${lost.map((m) => `${m.rank} (pid ${m.hello.pid} on ${m.hello.host})`).join(', ')} lost while the ring was being re-formed`);
  }

  /**
   * Ends the local workers that are alive but hung: silent (no heartbeat, from their own thread) for more than
   * `hungSilenceMs` when a collective has failed and no worker was lost. Without this, a SIGSTOPped worker was
   * never lost (its process lives): each redo of the step waited for it and failed again, forever.
   * @returns whether any was ended (it is then lost, and replaced as any lost worker)
   */
  private endHung(reason: string): boolean {
    const { control, workers } = this.o;
    if (workers === null) return false;
    const hung = control.live().filter((m) => m.rank >= 0 && this.isLocal(m) && workers.isRunning(m.hello.pid) && control.silentMs(m) > this.o.hungSilenceMs);
    for (const m of hung) {
      const why = `hung: its process ${m.hello.pid} is alive but silent for ${control.silentMs(m)} ms (--heartbeat-timeout-ms ${this.o.hungSilenceMs}) after ${reason}; ended with SIGKILL`;
      this.o.log(`${now()} local worker rank ${m.rank} ${why}`);
      // Marking it lost retires its process (the constructor's handler): SIGKILL (which ends a stopped process too),
      // its slot free for the replacement now, its exit expected whenever it is reaped.
      control.markLost(m, why);
    }
    return hung.length > 0;
  }

  private async recoverOnce(reason: string, getState: (rank: number) => Promise<Uint8Array>): Promise<void> {
    const { cluster, control } = this.o;
    const lostSome = await this.waitForLoss() || this.endHung(reason);
    const lost = control.all().filter((m) => m.state === 'lost' && m.rank >= 0);
    cluster.dropLost();
    if (cluster.worldSize === 0 || cluster.ranks().every((m) => this.unsynced.has(m.id))) await this.restartGroup(reason, lost);
    const where = (m: Member): string => `${m.rank} (pid ${m.hello.pid} on ${m.hello.host}, ${this.isLocal(m) ? 'local' : 'remote'})`;
    if (lostSome) {
      // Each lost process counts once (the ledger): a loss seen again by a later attempt or call is not counted again.
      const fresh = this.countLosses(lost);
      fresh.forEach(() => this.o.metrics?.recordRestart('worker_lost'));
      this.o.log(`${now()} lost rank(s) ${lost.map(where).join(', ')}: ${reason}`);
      if (this.o.elastic && this.o.fitsWorldSize(cluster.worldSize)) {
        await cluster.announce();
        await this.syncNewcomers(getState);
        this.o.log(`${now()} elastic: continuing with ${cluster.worldSize} worker(s) (lost ranks ${lost.map((m) => m.rank).join(', ')}); now ${this.o.describeBatch()}`);
        return;
      }
      this.restarts += fresh.length;
      if (this.restarts > this.o.maxRestarts) {
        await this.giveUp(`lost ${this.restarts} worker(s), more than --max-restarts ${this.o.maxRestarts}`, reason);
      }
      // Only local slots are respawned here; a lost remote worker is replaced by a remote one that joins.
      const running = new Set(this.o.workers?.pids().keys() ?? []);
      for (let slot = 0; this.o.workers && slot < this.o.localSlots; slot++) {
        if (running.has(slot)) continue;
        this.o.workers.respawn(slot);
        this.o.log(`${now()} respawned local worker slot ${slot}: pid ${this.o.workers.pids().get(slot) ?? '?'} (restart ${this.restarts} of at most ${this.o.maxRestarts})`);
      }
      const remote = lost.filter((m) => !this.isLocal(m));
      if (remote.length > 0) {
        this.o.log(`${now()} waiting for ${remote.length} remote worker(s) to join in place of rank(s) ${remote.map(where).join(', ')}: start one with ${this.o.joinCommand} (not respawned on this host; --elastic would continue without)`);
      }
    }
    // A ring smaller than the run's world size is only allowed where elastic arithmetic holds; otherwise the missing
    // workers (lost now, or in an earlier attempt whose wait was interrupted) must join before training goes on.
    const missing = this.o.expect - cluster.worldSize;
    if (missing > 0 && !(this.o.elastic && this.o.fitsWorldSize(cluster.worldSize))) {
      this.o.log(`${now()} waiting for ${missing} replacement worker(s) (at most ${this.o.rejoinTimeoutMs / 1000} s: --rejoin-timeout-s)`);
      await this.admitNewcomers(missing, getState, reason);
      return;
    }
    if (!lostSome) this.o.log(`no worker was lost (${reason}); re-forming the same ring`);
    await cluster.announce();
    await this.syncNewcomers(getState);
  }

  /**
   * Ends the run: no retry, a checkpoint of the survivors' state when every member in the ring holds it (else the
   * newest checkpoint on disk stands), and an error saying why and how to resume.
   * @throws TrainerError ERR_WORKER_LOST always
   */
  /**
   * Bounds the redoes of one step. Recovery bounds its own attempts and the workers lost, but a step can fail again
   * and again with no worker lost and none silent: a worker whose main thread hangs while its heartbeat thread still
   * answers makes its peers' all-reduce time out at every attempt, and the step was redone forever. More than
   * `--max-restarts` + 1 failures of one step in a row end the run as exhausted recovery does: a checkpoint if the
   * workers give one, then `ERR_WORKER_LOST` with the resume command.
   * @param step - the global step that failed; @param failures - its failures in a row (≥ 1)
   * @param reason - the last failure
   * @throws TrainerError ERR_WORKER_LOST past the bound
   */
  async failedStep(step: number, failures: number, reason: string): Promise<void> {
    if (failures <= this.o.maxRestarts + 1) return;
    await this.giveUp(`step ${step} failed ${failures} times in a row, more than --max-restarts ${this.o.maxRestarts} + 1 (with no worker lost, a worker whose main thread hangs while its heartbeat still answers looks like this)`, reason);
  }

  private async giveUp(why: string, reason: string): Promise<never> {
    this.fatal = true;
    const { cluster } = this.o;
    let saved: string;
    if (cluster.ranks().some((m) => this.unsynced.has(m.id))) {
      saved = `not checkpointed (a newcomer never received the training state); ${this.resumeAdvice(`after fixing the cause (${reason})`)}`;
    } else {
      try {
        await cluster.announce();
        saved = `${await this.o.checkpoint()}; resume with: ${this.o.resumeCommand} after fixing the cause (${reason})`;
      } catch (err) {
        saved = `the checkpoint failed (${err instanceof Error ? err.message : String(err)}); ${this.resumeAdvice(`after fixing the cause (${reason})`)}`;
      }
    }
    this.ended = new TrainerError('ERR_WORKER_LOST', `${why}; ${saved}`);
    throw this.ended;
  }

  /**
   * What is left on disk when the run ends without a checkpoint of its own (every worker lost, a failed checkpoint,
   * the data gone mid-run): the newest checkpoint and the resume command, or, before the first checkpoint, that
   * there is nothing to resume (the run folder is then removed, and "resume from the last checkpoint with --resume"
   * sent the user to a run that did not exist).
   * @param after - when to do it, appended to either advice, e.g. `after restoring the data`
   * @returns e.g. `the newest checkpoint on disk stands (runs/x/checkpoints/step-000000004; later steps are redone);
   *   resume with: npx coordinator --resume runs/x after restoring the data`
   */
  resumeAdvice(after = ''): string {
    const newest = this.o.newestCheckpoint?.();
    const when = after ? ` ${after}` : '';
    if (newest === null) return `no checkpoint was written yet, so there is nothing to resume: start the run again${when}`;
    const which = newest === undefined ? 'the newest checkpoint on disk stands' : `the newest checkpoint on disk stands (${newest}; later steps are redone)`;
    return `${which}; resume with: ${this.o.resumeCommand}${when}`;
  }

  /**
   * Admits `count` joining workers (ranks, new generation, setup), then gives every member that has not received
   * the training state yet (newcomers, including those of an interrupted earlier attempt) the state of the
   * lowest-ranked member that holds it. When fewer than `count` join within `--rejoin-timeout-s`, the run ends
   * (torchrun's rendezvous join timeout, Horovod's elastic timeout): one bounded wait, not one per retry.
   * @param growth - elastic growth ({@link maybeGrow}): a newcomer refused at its setup is not waited for
   * @throws TrainerError ERR_WORKER_LOST (no retry) when the replacements did not join in time
   */
  private async admitNewcomers(count: number, getState: (rank: number) => Promise<Uint8Array>, reason: string, growth = false): Promise<void> {
    const { cluster } = this.o;
    const before = new Set(cluster.ranks().map((m) => m.id));
    await this.admit(count, reason);
    // Marked before the announcement, which throws when a member was lost meanwhile: the attempt that recovers that
    // loss must still give the newcomers the state.
    for (const m of cluster.ranks().filter((x) => !before.has(x.id))) this.unsynced.add(m.id);
    await cluster.announce();
    await this.syncNewcomers(getState, growth);
  }

  /**
   * Waits for `count` workers to join (within `--rejoin-timeout-s`), respawning local ones that crash before joining.
   * @throws TrainerError ERR_WORKER_LOST (no retry) when they did not join in time or one could not start
   */
  private async admit(count: number, reason: string): Promise<void> {
    const { cluster } = this.o;
    // A respawned worker that cannot start (its backend, another build than this coordinator's) ends the wait at
    // once: a replacement that failed its setup would fail it again. One that crashed without an error is respawned
    // within --max-restarts (respawnBeforeJoin).
    const earlyExit = watchEarlyExits(this.o.workers, (pid) => this.joinedRing(pid), (e) => this.respawnBeforeJoin(e));
    try {
      await cluster.admit(count, this.o.rejoinTimeoutMs, this.o.stopSignal ? AbortSignal.any([earlyExit.signal, this.o.stopSignal]) : earlyExit.signal);
    } catch (err) {
      if (this.o.stopSignal?.aborted === true) await this.stopWhileWaiting(reason);
      if (earlyExit.signal.aborted && !this.o.stopSignal?.aborted) {
        await this.giveUp(`a replacement worker could not start (${String(earlyExit.signal.reason)}); ${cluster.worldSize} of ${this.o.expect} worker(s) left`, reason);
      }
      if (!isTrainerError(err, 'ERR_TIMEOUT')) throw err;
      await this.giveUp(`no replacement worker joined within ${this.o.rejoinTimeoutMs / 1000} s (--rejoin-timeout-s; ${err.message}); ${cluster.worldSize} of ${this.o.expect} worker(s) left`, reason);
    } finally {
      earlyExit.stop();
    }
  }

  /**
   * A stop asked for while replacements were awaited: the survivors' state is checkpointed when every member in the
   * ring holds it (a partial respawn), else the newest checkpoint on disk stands (a group restart).
   * @throws RunStopped always
   */
  private async stopWhileWaiting(reason: string): Promise<never> {
    this.fatal = true;
    const { cluster } = this.o;
    let saved: string;
    if (cluster.worldSize === 0 || cluster.ranks().some((m) => this.unsynced.has(m.id))) {
      saved = this.resumeAdvice();
    } else {
      try {
        await cluster.announce();
        saved = `${await this.o.checkpoint()}; resume with: ${this.o.resumeCommand}`;
      } catch (err) {
        saved = `the checkpoint failed (${err instanceof Error ? err.message : String(err)}); ${this.resumeAdvice()}`;
      }
    }
    throw new RunStopped(`stopped while waiting for workers to replace the lost ones (${reason}); ${saved}`);
  }

  /**
   * Sends the run setup (once) and then the training state to every member that lacks it.
   * @param growth - the newcomers are elastic growth ({@link maybeGrow}), not replacements: a refused one is never
   *   waited for (the run was training at its size); the ring keeps the largest size that fits ({@link shrinkToFit})
   */
  private async syncNewcomers(getState: (rank: number) => Promise<Uint8Array>, growth = false): Promise<void> {
    const { cluster } = this.o;
    const targets = cluster.ranks().filter((m) => this.unsynced.has(m.id));
    if (targets.length === 0) return;
    const refused = await this.setupAll(targets.map((m) => m.rank));
    if (refused > 0) {
      // A newcomer refused at its setup (a wrong --data): another takes its place (elastic: the ring goes on without
      // it where the global batch divides; growth: at the largest size that divides it), then the remaining
      // newcomers get the state.
      const fits = this.o.elastic && this.o.fitsWorldSize(cluster.worldSize);
      if (!fits && !(growth && this.shrinkToFit())) return this.admitNewcomers(refused, getState, 'a replacement was refused');
      await cluster.announce();
      return this.syncNewcomers(getState, growth);
    }
    const source = cluster.ranks().find((m) => !this.unsynced.has(m.id));
    if (!source) throw new TrainerError('ERR_WORKER_LOST', 'no member holding the training state is left');
    const blob = await getState(source.rank);
    const sums = await Promise.all(targets.map(async (m) => {
      const [reply] = await cluster.request('load-state', { byteLength: blob.byteLength }, { ranks: [m.rank], frames: [blob], timeoutMs: 120_000 });
      this.unsynced.delete(m.id);
      return reply!.message.checksum;
    }));
    this.o.log(`${now()} ring re-formed (generation ${cluster.generation}, ${cluster.worldSize} workers: ${this.o.describeBatch()}); ranks ${targets.map((m) => m.rank).join(', ')} got the current state from rank ${source.rank} (checksum ${sums[0]?.slice(0, 12) ?? '-'})`);
  }

  /**
   * Elastic growth whose newcomer was refused, leaving a world size the global batch does not divide: keeps the
   * largest size that divides it, no smaller than the members holding the training state (the size the run was
   * training at), by returning the other newcomers to the waiting workers (highest ranks first; they keep their
   * setup and join at a later growth). The caller announces the ring.
   * @returns false when no such size is left (then the caller waits for replacements, as recovery does)
   */
  private shrinkToFit(): boolean {
    const { cluster } = this.o;
    const holders = cluster.ranks().filter((m) => !this.unsynced.has(m.id)).length;
    let size = cluster.worldSize;
    while (size >= Math.max(holders, 1) && !this.o.fitsWorldSize(size)) size--;
    if (size < Math.max(holders, 1)) return false;
    const newcomers = cluster.ranks().filter((m) => this.unsynced.has(m.id));
    const back = newcomers.slice(newcomers.length - (cluster.worldSize - size)).reverse();
    for (const m of back) cluster.unrank(m.rank);
    this.o.log(`${now()} elastic: a newcomer was refused and ${size + back.length} worker(s) do not divide the global batch: continuing with ${size} (the largest that does); worker(s) pid ${back.map((m) => `${m.hello.pid} on ${m.hello.host}`).join(', ')} wait for the next growth`);
    return true;
  }

  /** Elastic: admits workers that joined since the last step (at a step boundary). */
  async maybeGrow(getState: (rank: number) => Promise<Uint8Array>): Promise<void> {
    if (!this.o.elastic) return;
    const waiting = this.o.control.live().filter((m) => m.rank < 0).length;
    const room = this.o.expect - this.o.cluster.worldSize;
    const n = Math.min(waiting, room);
    if (n <= 0 || !this.o.fitsWorldSize(this.o.cluster.worldSize + n)) return;
    this.o.log(`${now()} elastic: admitting ${n} worker(s) at the step boundary`);
    const before = this.o.cluster.worldSize;
    try {
      await this.admitNewcomers(n, getState, 'elastic growth', true);
      this.checkNoneLostMeanwhile();
      const size = this.o.cluster.worldSize;
      this.o.log(`${now()} elastic: ${size > before ? 'grew to' : 'stayed at'} ${size} worker(s); now ${this.o.describeBatch()}`);
    } catch (err) {
      // A worker lost while the group grew (a member, or a newcomer during its setup or state transfer) is recovered
      // as any loss: dropped, counted once, replaced or shrunk past, the ring re-formed. It used to end the run
      // (the state transfer aborted outside recovery), or go unseen: announcing the grown ring reset the signal
      // the loss had fired, and training went on with a lost member still in the table and a gap in the ranks.
      if (!isRetryable(err) || this.fatal) throw err;
      this.o.log(`${now()} elastic growth failed (${err.message}); recovering`);
      await this.recover(`elastic growth: ${err.message}`, getState);
    }
  }
}
