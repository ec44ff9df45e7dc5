/**
 * Atomic, verified checkpoints.
 *
 * A checkpoint is a directory `checkpoints/step-<global step, 9 digits>/` holding payload files and a
 * `manifest.json` with the sha256 and size of every payload file plus the caller's JSON metadata. It is written
 * by one process as: a temporary directory, each file written and fsynced, the manifest written and fsynced, the
 * temporary directory fsynced, renamed into place, then the parent directory fsynced. A kill at any point leaves
 * either no new checkpoint or a complete one; the previous checkpoints are never touched before the new one is in
 * place (pruning runs after). Readers verify every checksum and fall back to the newest intact checkpoint.
 * (The same recipe PyTorch Lightning and Orbax use: write-to-temp + fsync + atomic rename.)
 *
 * Identical payloads are not written twice: a file whose bytes equal those of a file of the newest checkpoint (e.g.
 * the final checkpoint, taken when nothing was trained since the last one; found by the manifest's sha256 and size,
 * then read back and compared, so a damaged file is never shared) is hard-linked to it.
 * Files are never modified in place (only written to a temporary name and renamed), so sharing an inode is safe.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir, tryHardLink, writeFileSynced } from './atomic-write.js';
import { TrainerError } from './errors.js';
import { processAlive } from './process.js';

/** Manifest format version. */
export const CHECKPOINT_FORMAT = 1;

/** What `manifest.json` holds. */
export interface CheckpointManifest<M = unknown> {
  readonly format: number;
  /** Global optimizer step the checkpoint was taken after. */
  readonly step: number;
  /** ISO time of writing. */
  readonly writtenAt: string;
  /** Payload files: name → sha256 (hex) and size in bytes. */
  readonly files: Readonly<Record<string, { readonly sha256: string; readonly bytes: number }>>;
  /** Caller's metadata (schedule position, sampler state, config, class names, metrics history…). */
  readonly meta: M;
}

/** A checkpoint read back and verified. */
export interface LoadedCheckpoint<M = unknown> {
  readonly dir: string;
  readonly manifest: CheckpointManifest<M>;
  /** Payload files by name. */
  readonly files: ReadonlyMap<string, Buffer>;
  /** Messages about newer checkpoints that were skipped because they failed verification. */
  readonly skipped: readonly string[];
}

/** Directory holding the checkpoints of a run. */
export function checkpointsDir(runDir: string): string {
  return join(runDir, 'checkpoints');
}

function stepDirName(step: number): string {
  return `step-${String(step).padStart(9, '0')}`;
}

/** sha256 of bytes, lowercase hex (as checkpoint manifests record it). */
export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** What {@link writeCheckpointDetailed} did. */
export interface WrittenCheckpoint {
  readonly dir: string;
  /** Payload files hard-linked to an identical file of the previous newest checkpoint (not written again). */
  readonly linked: readonly string[];
  /** Bytes actually written (payloads not linked, plus the manifest). */
  readonly bytesWritten: number;
  /** The manifest's entries: payload name → sha256 and size. */
  readonly files: CheckpointManifest['files'];
}

/**
 * Files of the newest checkpoint by sha256 + size (from its manifest, which says what they held when written: a link
 * is only made to one whose bytes are read back equal, {@link holdsExactly}).
 */
function newestFilesByHash(runDir: string): Map<string, string> {
  const out = new Map<string, string>();
  const newest = listCheckpoints(runDir).at(-1);
  if (newest === undefined) return out;
  try {
    const m = JSON.parse(readFileSync(join(newest, 'manifest.json'), 'utf8')) as CheckpointManifest;
    for (const [name, f] of Object.entries(m.files)) out.set(`${f.sha256}:${f.bytes}`, join(newest, name));
  } catch {
    // An unreadable manifest just means nothing is shared.
  }
  return out;
}

/**
 * Whether the file at `path` holds exactly `data`. The manifest's sha256 and size say what a file held when it was
 * written, not what it holds now: a newest checkpoint truncated or bit-flipped on disk still names the hash of the
 * state a resumed run, skipping it, computes again bit for bit when it redoes that step, and a link to it made the new
 * checkpoint (and the stage model linked to that) the same damaged file. Reading it back costs one read of a file
 * whose write it saves.
 */
function holdsExactly(path: string, data: Uint8Array): boolean {
  try {
    if (statSync(path).size !== data.length) return false;
    return readFileSync(path).equals(data);
  } catch {
    return false;
  }
}

/**
 * Writes a checkpoint atomically and prunes older ones beyond `keep`.
 * @param runDir - the run directory (created if missing)
 * @param step - global step (≥ 0); an existing checkpoint of the same step is replaced atomically
 * @param files - payload files (names without path separators)
 * @param meta - JSON-serialisable metadata stored in the manifest
 * @param keep - newest checkpoints to keep (≥ 1)
 * @returns the checkpoint directory
 * @throws TrainerError ERR_CHECKPOINT on a bad file name or an I/O failure (the previous checkpoints stay intact)
 */
export function writeCheckpoint<M>(runDir: string, step: number, files: ReadonlyMap<string, Uint8Array>, meta: M, keep = 3): string {
  return writeCheckpointDetailed(runDir, step, files, meta, keep).dir;
}

/**
 * {@link writeCheckpoint}, also saying which files were hard-linked to identical ones of the previous newest
 * checkpoint and how many bytes were written.
 * @throws TrainerError ERR_CHECKPOINT as {@link writeCheckpoint}
 */
export function writeCheckpointDetailed<M>(runDir: string, step: number, files: ReadonlyMap<string, Uint8Array>, meta: M, keep = 3): WrittenCheckpoint {
  const root = checkpointsDir(runDir);
  mkdirSync(root, { recursive: true });
  const finalDir = join(root, stepDirName(step));
  const tmpDir = join(root, `.tmp-${stepDirName(step)}-${process.pid}`);
  const linked: string[] = [];
  const entries: Record<string, { sha256: string; bytes: number }> = {};
  let bytesWritten = 0;
  try {
    rmSync(tmpDir, { recursive: true, force: true });
    mkdirSync(tmpDir);
    const previous = newestFilesByHash(runDir);
    for (const [name, data] of files) {
      if (!/^[A-Za-z0-9._-]+$/.test(name) || name === 'manifest.json') {
        throw new TrainerError('ERR_CHECKPOINT', `checkpoint file name must be [A-Za-z0-9._-]+ and not manifest.json, got ${JSON.stringify(name)}`);
      }
      const entry = { sha256: sha256(data), bytes: data.length };
      const same = previous.get(`${entry.sha256}:${entry.bytes}`);
      if (same !== undefined && holdsExactly(same, data) && tryHardLink(same, join(tmpDir, name))) {
        linked.push(name);
      } else {
        writeFileSynced(join(tmpDir, name), data);
        bytesWritten += data.length;
      }
      entries[name] = entry;
    }
    const manifest: CheckpointManifest<M> = { format: CHECKPOINT_FORMAT, step, writtenAt: new Date().toISOString(), files: entries, meta };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    writeFileSynced(join(tmpDir, 'manifest.json'), manifestBytes);
    bytesWritten += manifestBytes.length;
    fsyncDir(tmpDir);
    if (existsSync(finalDir)) {
      const old = join(root, `.old-${stepDirName(step)}-${process.pid}`);
      renameSync(finalDir, old);
      renameSync(tmpDir, finalDir);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmpDir, finalDir);
    }
    fsyncDir(root);
  } catch (err) {
    rmSync(tmpDir, { recursive: true, force: true });
    if (err instanceof TrainerError) throw err;
    throw new TrainerError('ERR_CHECKPOINT', `writing checkpoint for step ${step} in ${root} failed: ${(err as Error).message}`, { cause: err });
  }
  pruneCheckpoints(runDir, keep);
  return { dir: finalDir, linked, bytesWritten, files: entries };
}

/** Complete checkpoint directories of a run, oldest first (temporary directories are ignored). */
export function listCheckpoints(runDir: string): string[] {
  const root = checkpointsDir(runDir);
  if (!existsSync(root)) return [];
  return readdirSync(root).filter((n) => /^step-\d{9}$/.test(n)).sort().map((n) => join(root, n));
}

/** Deletes all but the newest `keep` checkpoints, and leftover temporary directories of dead writers. */
export function pruneCheckpoints(runDir: string, keep: number): void {
  const all = listCheckpoints(runDir);
  for (const dir of all.slice(0, Math.max(0, all.length - Math.max(1, keep)))) rmSync(dir, { recursive: true, force: true });
  const root = checkpointsDir(runDir);
  restoreInterruptedReplacements(root);
  for (const n of readdirSync(root)) {
    if (n.startsWith('.tmp-') || n.startsWith('.old-')) {
      const pid = Number(n.split('-').pop());
      if (pid !== process.pid && !writerAlive(pid)) rmSync(join(root, n), { recursive: true, force: true });
    }
  }
}

/**
 * Whether the writer whose pid a temporary entry's name ends with still runs ({@link processAlive}: signal 0 reaches
 * it, EPERM included — another user's live process —, and it is not a zombie). A live writer's `.tmp-`/`.old-`
 * entries are never touched; a dead one's are cleaned up. A name without a valid pid counts as dead.
 */
function writerAlive(pid: number): boolean {
  return Number.isInteger(pid) && pid > 0 && processAlive(pid);
}

/**
 * Replacing a checkpoint of the same step (a stop during lr_find checkpoints the step its stage-1 checkpoint has) is
 * two renames: `step-N` → `.old-step-N-<pid>`, then the new one → `step-N`. A writer killed between them leaves the
 * intact old checkpoint under its `.old-` name and no `step-N`; it used to be invisible to {@link loadLatestCheckpoint}
 * and deleted by {@link pruneCheckpoints} as a dead writer's leftover. It is put back under its name.
 */
function restoreInterruptedReplacements(root: string): void {
  if (!existsSync(root)) return;
  for (const n of readdirSync(root)) {
    const m = /^\.old-(step-\d{9})-(\d+)$/.exec(n);
    if (!m || Number(m[2]) === process.pid || writerAlive(Number(m[2]))) continue;
    if (!existsSync(join(root, m[1]!))) renameSync(join(root, n), join(root, m[1]!));
  }
}

/**
 * Reads one checkpoint directory and verifies every file against the manifest.
 * @param checkMeta - the caller's shape check of the metadata (the sha256 sums cover the payload files, not the
 *   manifest): it returns the metadata typed, or throws an Error naming the field and the rule
 * @throws TrainerError ERR_CHECKPOINT naming the file and the failed check (missing, size, sha256, manifest, metadata)
 */
export function readCheckpoint<M>(dir: string, checkMeta?: (meta: unknown) => M): LoadedCheckpoint<M> {
  let manifest: CheckpointManifest<M>;
  try {
    manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as CheckpointManifest<M>;
  } catch (err) {
    throw new TrainerError('ERR_CHECKPOINT', `${dir}/manifest.json is missing or not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (manifest.format !== CHECKPOINT_FORMAT) {
    throw new TrainerError('ERR_CHECKPOINT', `${dir}: checkpoint format ${manifest.format} is not the supported ${CHECKPOINT_FORMAT}`);
  }
  if (checkMeta) {
    try {
      checkMeta(manifest.meta);
    } catch (err) {
      throw new TrainerError('ERR_CHECKPOINT', `${dir}/manifest.json is not a manifest this trainer wrote: ${(err as Error).message}`, { cause: err });
    }
  }
  const files = new Map<string, Buffer>();
  for (const [name, want] of Object.entries(manifest.files)) {
    let data: Buffer;
    try {
      data = readFileSync(join(dir, name));
    } catch (err) {
      throw new TrainerError('ERR_CHECKPOINT', `${dir}/${name} is missing (${(err as Error).message})`, { cause: err });
    }
    if (data.length !== want.bytes) throw new TrainerError('ERR_CHECKPOINT', `${dir}/${name} has ${data.length} bytes, manifest says ${want.bytes} (truncated?)`);
    const got = sha256(data);
    if (got !== want.sha256) throw new TrainerError('ERR_CHECKPOINT', `${dir}/${name} sha256 ${got} does not match the manifest's ${want.sha256} (corrupted)`);
    files.set(name, data);
  }
  return { dir, manifest, files, skipped: [] };
}

/**
 * Loads the newest intact checkpoint of a run, skipping (and reporting) newer ones that fail verification.
 * @param checkMeta - as {@link readCheckpoint}: a checkpoint whose metadata fails it is skipped as damaged
 * @returns null when the run has no checkpoint at all
 * @throws TrainerError ERR_CHECKPOINT when checkpoints exist but none is intact
 */
export function loadLatestCheckpoint<M>(runDir: string, checkMeta?: (meta: unknown) => M): LoadedCheckpoint<M> | null {
  restoreInterruptedReplacements(checkpointsDir(runDir));
  const all = listCheckpoints(runDir).reverse();
  if (all.length === 0) return null;
  const skipped: string[] = [];
  for (const dir of all) {
    try {
      return { ...readCheckpoint<M>(dir, checkMeta), skipped };
    } catch (err) {
      skipped.push(`skipping checkpoint ${dir}: ${(err as Error).message}`);
    }
  }
  throw new TrainerError('ERR_CHECKPOINT', `no intact checkpoint in ${checkpointsDir(runDir)}: ${skipped.join('; ')}`);
}
