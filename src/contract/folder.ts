/**
 * One answer to "is this path a folder this process can use?", in the same words wherever a user names a folder
 * (`worker --data`, `coordinator --data`, `show-batch --out`'s folder, …): each caller puts the flag and its rule in
 * front (`--out x/y.png: no such folder: x`), this module says what is wrong with the path.
 */
import { accessSync, constants, statSync } from 'node:fs';

/** What the process must be able to do in the folder: list and enter it (`read`), or create files in it (`write`). */
export type FolderUse = 'read' | 'write';

/**
 * What is wrong with `dir` as a folder to {@link FolderUse | use}, or null when it is one this process can use.
 * A link to a folder is a folder (the link is followed).
 * @param dir - the path as the user gave it (relative to the working directory)
 * @param use - `read` (default: R_OK and X_OK, as `readdir` and opening a file in it need) or `write` (W_OK and X_OK)
 * @returns one of `no such folder`, `it is a file, not a folder`, `it is not a folder` (a device, a socket…),
 *   `a part of the path is a file, not a folder` (ENOTDIR), `it cannot be read (EACCES)`,
 *   `it cannot be written to (EROFS)` (the system's code), or null
 */
export function folderProblem(dir: string, use: FolderUse = 'read'): string | null {
  try {
    const st = statSync(dir);
    if (!st.isDirectory()) return st.isFile() ? 'it is a file, not a folder' : 'it is not a folder';
  } catch (err) {
    return statProblem(err);
  }
  try {
    accessSync(dir, use === 'read' ? constants.R_OK | constants.X_OK : constants.W_OK | constants.X_OK);
    return null;
  } catch (err) {
    return `it cannot be ${use === 'read' ? 'read' : 'written to'} (${errorCode(err)})`;
  }
}

function statProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such folder';
  if (code === 'ENOTDIR') return 'a part of the path is a file, not a folder';
  return `it cannot be read (${errorCode(err)})`;
}

function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}
