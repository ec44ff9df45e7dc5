/**
 * The per-epoch table fastai v1 prints during `fit` (`epoch  train_loss  valid_loss  error_rate  time`), as pure
 * formatting functions any runner can reuse (single process, coordinator), and the in-epoch progress display
 * (a cli-progress bar when stderr is a TTY, plain lines otherwise; on stderr, as tqdm's and Lightning's).
 *
 * Source of the columns and the time format: fastai 1.0.61 `basic_train.Recorder` (`names = ['epoch',
 * 'train_loss', 'valid_loss'] + metrics_names + ['time']`, values printed with 6 decimals, time as `mm:ss` from
 * `fastprogress.format_time`).
 */
import cliProgress from 'cli-progress';
import { TrainerError } from '../../contract/errors.js';

/** One row of the table. */
export interface EpochRow {
  /** 0-based epoch within the fit (fastai numbers each fit's epochs from 0). */
  readonly epoch: number;
  /** Smoothed (β = 0.98, debiased) training loss at the end of the epoch, nats. */
  readonly trainLoss: number;
  /** Mean validation cross-entropy, nats. */
  readonly validLoss: number;
  /** 1 − accuracy over the validation set. */
  readonly errorRate: number;
  /** Wall time of the epoch including validation, seconds. */
  readonly seconds: number;
}

const COLUMNS = ['epoch', 'train_loss', 'valid_loss', 'error_rate', 'time'] as const;
const WIDTH = 12;

/** `mm:ss` (or `h:mm:ss` from one hour), as fastprogress's `format_time`. */
export function formatDuration(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mmss = `${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
  return h > 0 ? `${h}:${mmss}` : mmss;
}

/** The header line: the five column names, left-aligned in 12-character columns. */
export function formatEpochHeader(): string {
  return COLUMNS.map((c) => c.padEnd(WIDTH)).join('').trimEnd();
}

/**
 * `v` with 6 decimals as Python's `f"{v:.6f}"` (fastai's table): every digit, also from 1e21 on, where JavaScript's
 * `toFixed` switches to exponent notation (a loss of 2.18e28 printed `2.1766010311841714e+28` beside `1436…240.000000`).
 * A double that large is an integer, so its exact decimal expansion is `BigInt(v)`'s, which is what Python prints.
 */
export function fixed6(v: number): string {
  return Math.abs(v) < 1e21 ? v.toFixed(6) : `${BigInt(v).toString()}.000000`;
}

/**
 * One row: epoch, three values with 6 decimals (`nan`, `inf`, `-inf` as Python prints them), time as `mm:ss`;
 * aligned with the header. A value as wide as its column or wider (a diverged loss: `43982.122080`,
 * `9.221071317545774e+36`) keeps a space before the next: padded to the width alone, the cells ran together
 * (`43982.1220809.221071317545774e+360.666667`).
 */
export function formatEpochRow(row: EpochRow): string {
  const num = (v: number): string => (Number.isNaN(v) ? 'nan' : v === Infinity ? 'inf' : v === -Infinity ? '-inf' : fixed6(v));
  return [String(row.epoch), num(row.trainLoss), num(row.validLoss), num(row.errorRate), formatDuration(row.seconds)]
    .map((c) => c.padEnd(Math.max(WIDTH, c.length + 1))).join('').trimEnd();
}

/** How the in-epoch progress is shown: `auto` = bar when stderr is a TTY else plain lines, `lines`, or `none`. */
export type ProgressMode = 'auto' | 'lines' | 'none';

/**
 * Where progress goes by default: stderr, as tqdm (`file=sys.stderr`) and PyTorch Lightning's progress bars write
 * it, so stdout holds only results (the epoch table, saved paths, the final error rate) and stays parseable
 * (`npx coordinator … > results.txt` keeps no progress lines).
 */
export function writeProgressLine(line: string): void {
  process.stderr.write(`${line}\n`);
}

/**
 * The cli-progress options of the terminal bar: after the count, fastprogress's `elapsed<remaining` (`00:10<00:37`,
 * `mm:ss` as the table's time column; `--:--` while no rate is known), which fastai users read to see how long the
 * epoch has left; the bar showed neither, and a CPU epoch of the tutorial takes many minutes.
 * @param label - shown before the bar, e.g. `epoch 0`
 */
export function progressBarOptions(label: string): cliProgress.Options {
  return {
    format: `${label} [{bar}] {value}/{total} batches {duration_formatted}<{eta_formatted}, loss {loss}`,
    // cli-progress passes its eta as a number of seconds, or 'NULL' / 'INF' before a rate is known.
    formatTime: (t: number | string) => (typeof t === 'number' && Number.isFinite(t) && t >= 0 ? formatDuration(t) : '--:--'),
    clearOnComplete: true,
    stream: process.stderr,
  };
}

/** Progress of one epoch's batches. Call {@link tick} per batch and {@link stop} at the end (idempotent). */
export class EpochProgress {
  private bar: cliProgress.SingleBar | null = null;
  private done = 0;
  private readonly every: number;

  /**
   * @param total - batches in the epoch
   * @param label - shown before the bar/lines, e.g. `epoch 0`
   * @param mode - see {@link ProgressMode}
   * @param log - where plain lines go (default {@link writeProgressLine}: stderr)
   */
  constructor(private readonly total: number, private readonly label: string, private readonly mode: ProgressMode = 'auto',
    private readonly log: (line: string) => void = writeProgressLine) {
    this.every = Math.max(1, Math.ceil(total / 10));
    // The bar, like the lines, is on stderr (tqdm's and Lightning's stream): stdout stays results only.
    if (mode === 'auto' && process.stderr.isTTY) {
      this.bar = new cliProgress.SingleBar(progressBarOptions(label), cliProgress.Presets.shades_classic);
      this.bar.start(total, 0, { loss: '-' });
    }
  }

  /**
   * Starts the count at batch `done` of the epoch (a resumed or restarted epoch): the counter shows the position in
   * the whole epoch (`8/14 batches`), as fastai's and Lightning's bars do, and its lines fall on the same batches as
   * an uninterrupted run's.
   * @param done - batches of the epoch already done, 0 ≤ done ≤ total
   * @throws TrainerError ERR_INTERNAL when `done` is outside [0, total] or batches were already counted
   */
  startAt(done: number): this {
    if (!Number.isInteger(done) || done < 0 || done > this.total || this.done !== 0) {
      throw new TrainerError('ERR_INTERNAL', `EpochProgress.startAt needs an integer in [0, ${this.total}] before the first tick, got ${done} (counted ${this.done})`);
    }
    this.done = done;
    // Started again at `done`, so that the remaining time is reckoned from the batches run now, not from a jump.
    if (done > 0) this.bar?.start(this.total, done, { loss: '-' });
    return this;
  }

  /** One more batch done; `smoothLoss` is the current smoothed training loss. */
  tick(smoothLoss: number): void {
    this.done += 1;
    if (this.bar) {
      this.bar.update(this.done, { loss: smoothLoss.toFixed(4) });
    } else if (this.mode !== 'none' && (this.done % this.every === 0 || this.done === this.total)) {
      this.log(`${this.label}: ${this.done}/${this.total} batches, smoothed loss ${smoothLoss.toFixed(4)}`);
    }
  }

  /** Removes the bar (plain-line mode: nothing to do). */
  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
