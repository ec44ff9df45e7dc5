/**
 * Crash-safe file writing, in one place: write to a temporary name, fsync it, rename it over the target, fsync the
 * directory — the recipe PyTorch Lightning and Orbax use. A reader (or a run resumed after a kill) never sees a
 * half-written file. Used for saved models and safetensors files ({@link writeFileAtomic}), the checkpoint
 * directories (`checkpoint-format.ts` writes every file with {@link writeFileSynced} into a temporary directory and renames
 * that) and the image-verification cache.
 */
import { closeSync, fsyncSync, linkSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { TrainerError, type TrainerErrorCode } from './errors.js';

/**
 * Writes `data` to `path` and fsyncs it (synchronous; not atomic by itself: the caller renames the file or its
 * directory into place).
 * @throws the filesystem's error
 */
export function writeFileSynced(path: string, data: Uint8Array): void {
  const fd = openSync(path, 'w');
  try {
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes `data` to `path` crash-safely and synchronously (temporary file, fsync, rename, directory fsync): for the
 * small files a run writes at its start (`config.json`, `data.json`), which `interpret` and `--resume` read back.
 * @throws the filesystem's error (the temporary file removed)
 */
export function writeFileAtomicSync(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSynced(tmp, typeof data === 'string' ? Buffer.from(data) : data);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(dirname(path));
}

/**
 * Fsyncs a directory, so that a rename or a new entry in it survives a crash.
 * @throws the filesystem's error
 */
export function fsyncDir(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Makes `to` a hard link of `from`. @returns false when the filesystem refuses (another device, no hard links):
 *   the caller then writes the bytes
 */
export function tryHardLink(from: string, to: string): boolean {
  try {
    linkSync(from, to);
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes bytes to `path` crash-safely: write `path.tmp-<pid>`, fsync it, rename over `path`, fsync the directory.
 * A reader never sees a half-written file.
 *
 * @param code - the error code a failure is reported with (default `ERR_CHECKPOINT`: saved state)
 * @throws TrainerError `code` when any step fails (the temp file is removed; cause attached)
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array, code: TrainerErrorCode = 'ERR_CHECKPOINT'): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    fsyncDir(dirname(path));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new TrainerError(code, `cannot write ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
}
