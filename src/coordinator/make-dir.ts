/**
 * The run folder's own writes: {@link writeRunFile}. Creating a folder the user named lives in `contract/make-dir.ts`
 * (training code creates its cache folders with it too); re-exported here for the coordinator's modules.
 */
import { TrainerError } from '../contract/errors.js';

export { makeDir, makeDirs, removeEmptyCreated } from '../contract/make-dir.js';

/**
 * Runs `write`, one of the files a run writes into its folder before it starts (its lock, `data.json`,
 * `config.json`), and reports a failure of the file system as a bad run folder, naming the flag, the file and the
 * system's reason: a full disk (ENOSPC), a quota (EDQUOT), a file-size limit (EFBIG), a read-only or failing mount.
 * Before, the run stopped with the bare `coordinator: ENOSPC: no space left on device, write` (exit 1), saying neither
 * which file nor what to do.
 * @param flag - the flag that named the folder (`--run-dir` or `--resume`)
 * @param file - the file `write` writes
 * @returns what `write` returns
 * @throws TrainerError ERR_BAD_FLAG (nothing has started) for a file-system error; anything else as thrown
 */
export function writeRunFile<T>(flag: string, runDir: string, file: string, write: () => T): T {
  try {
    return write();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e?.code !== 'string' || typeof e.syscall !== 'string') throw err;
    const reason = e.message.replace(/^\w+: /, '').split(',')[0];
    const room = ['ENOSPC', 'EDQUOT', 'EFBIG'].includes(e.code) ? 'free some space or lift the limit, or ' : '';
    throw new TrainerError('ERR_BAD_FLAG', `${flag} ${runDir}: cannot write ${file} (${e.code}: ${reason}); ${room}choose another folder with ${flag}`, { cause: err });
  }
}
