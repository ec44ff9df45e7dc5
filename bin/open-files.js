/**
 * The open-files limit (`ulimit -n`) the launchers check before loading anything of `dist/`. Below about 150-190
 * descriptors (measured on Linux, Node 20: `ulimit -n 128` fails, 192 runs a 2-worker run) Node's module loader
 * itself fails while importing the coordinator, with a misleading `ERR_MODULE_NOT_FOUND: Cannot find package
 * '…/node_modules/d3-array/index.js'` (an EMFILE it reports as a missing file), and at 24 with a bare `EMFILE`
 * stack. The launchers say instead what the limit is and how to raise it.
 *
 * Plain JavaScript with no dependency, like build-stamp.js: it runs before anything is compiled or loaded.
 */
import { readFileSync } from 'node:fs';

/** The least soft limit of open files the launchers accept: startup needs ≈ 190, a run more for its workers and sockets. */
export const MIN_OPEN_FILES = 256;

/**
 * The soft limit of open files from the text of `/proc/<pid>/limits`.
 * @param {string} limits - the file's content
 * @returns {number | null} the soft limit, or null when unlimited or not found
 */
export function softOpenFiles(limits) {
  const m = /^Max open files\s+(\S+)/m.exec(limits);
  if (!m || m[1] === 'unlimited') return null;
  const n = Number(m[1]);
  return Number.isInteger(n) ? n : null;
}

/**
 * Why this process cannot run with its open-files limit, or null when it can (or the limit cannot be read: not Linux).
 * @param {string} name - the command, for the message (`coordinator`, `worker`)
 * @param {string | null} [limits] - the content of /proc/self/limits (read when omitted; null: unreadable)
 * @returns {string | null}
 */
export function openFilesProblem(name, limits) {
  let text = limits;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      text = null;
    }
  }
  const soft = text === null ? null : softOpenFiles(text);
  if (soft === null || soft >= MIN_OPEN_FILES) return null;
  return `the open-files limit of this shell is ${soft} (ulimit -n), below the ${MIN_OPEN_FILES} ${name} needs ` +
    '(loading its modules alone takes about 190); raise it, e.g. `ulimit -n 4096` (in a container: --ulimit nofile=4096, or LimitNOFILE= in a systemd unit), and start again';
}
