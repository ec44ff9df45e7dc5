/**
 * The verify pass: decode every candidate once before training, skip the bad ones (each reported once with its
 * reason), and cache the verdicts in a JSON file keyed by path + size + mtime so later runs skip the work.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { makeDirs, optionOrigin, type FolderOrigin } from '../../contract/make-dir.js';
import { writeFileAtomic } from '../../contract/atomic-write.js';
import { dirname } from 'node:path';
import { resizedTooLarge, type SkipLog, type SkipReason } from './decode.js';
import type { ImagePool } from './pool.js';

/** One cached verdict: whether the file decodes, and (when it does) its size, which the run's --size is checked against. */
interface Verdict {
  readonly ok: boolean;
  readonly reason?: SkipReason;
  /** Decoded width and height in pixels (after EXIF rotation), when ok. */
  readonly width?: number;
  readonly height?: number;
}

/** Version of the cache file's layout; another version is ignored (decoded again). 2: ok verdicts hold the size. */
const CACHE_VERSION = 2;

/** What {@link verifyItems} found. */
export interface VerifyResult {
  /** `[paths]` uint8: 1 = decodes fine, 0 = skipped. */
  readonly ok: Uint8Array;
  /** Verdicts served from the cache file. */
  readonly cached: number;
  /** Files actually decoded this time. */
  readonly decoded: number;
  /**
   * Why the cache file could not be written, naming its folder as `cacheOrigin` names it and what to do (the verdicts
   * stand; a later run decodes again); absent when it was.
   */
  readonly cacheError?: string;
}

/** Cache key: path, size in bytes and mtime in ms (any change re-verifies the file). */
export function verifyKey(path: string): string {
  try {
    const st = statSync(path);
    return `${path}|${st.size}|${Math.trunc(st.mtimeMs)}`;
  } catch {
    return `${path}|missing`;
  }
}

function readCache(file: string | undefined): Record<string, Verdict> {
  if (!file || !existsSync(file)) return {};
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { version?: number; entries?: Record<string, Verdict> };
    return parsed.version === CACHE_VERSION && parsed.entries ? parsed.entries : {};
  } catch {
    return {}; // a corrupt cache is only a cache: verify again
  }
}

/**
 * Decodes every path once through `pool` (or takes the cached verdict), reporting failures to `skipLog`.
 *
 * @param paths - image candidates.
 * @param cacheFile - JSON cache path (written crash-safely by `writeFileAtomic`; when it cannot be, the result says why in
 *   `cacheError`); omitted → no cache.
 * @param onDecode - told once, before any decoding, how many files are not in the cache and will be decoded now
 *   (not called when every verdict is cached), so a long first pass can be announced.
 * @param shorterSide - the size images are resized to for training (shorter side, px: the run's --size); a file
 *   that decodes but would exceed the pool's pixel ceiling once resized (a thin strip) is skipped as 'too large'
 *   here rather than mid-training. Omitted → not checked.
 * @param cacheOrigin - what named the cache file's folder (`PETS_TRAINER_CACHE_DIR`, `cacheDirOrigin` in pets.ts), for
 *   `cacheError`: the same words and advice as the dataset download's error for that folder
 */
export async function verifyItems(pool: ImagePool, paths: readonly string[], skipLog: SkipLog, cacheFile?: string,
  onDecode?: (count: number) => void, shorterSide?: number, cacheOrigin: FolderOrigin = optionOrigin('cacheFile')): Promise<VerifyResult> {
  const cache = readCache(cacheFile);
  const next: Record<string, Verdict> = {};
  const ok = new Uint8Array(paths.length);
  let cached = 0;
  let decoded = 0;
  const keys = paths.map(verifyKey);
  const toDecode = keys.filter((key) => cache[key] === undefined).length;
  if (toDecode > 0) onDecode?.(toDecode);
  await Promise.all(paths.map(async (path, i) => {
    const key = keys[i]!;
    let verdict = cache[key];
    if (verdict) {
      cached++;
    } else {
      decoded++;
      const r = await pool.run({ kind: 'verify', path });
      verdict = r.ok ? { ok: true, width: r.width, height: r.height } : { ok: false, reason: r.reason };
    }
    next[key] = verdict;
    // The verdict is the file's; whether it is too large depends on this run's --size, so that is judged here.
    const tooLarge = verdict.ok && shorterSide !== undefined && verdict.width !== undefined && verdict.height !== undefined
      && resizedTooLarge(verdict.width, verdict.height, shorterSide, pool.options.maxInputPixels) !== null;
    ok[i] = verdict.ok && !tooLarge ? 1 : 0;
    if (tooLarge) skipLog.report(path, 'too large');
    else if (!verdict.ok) skipLog.report(path, verdict.reason ?? 'unreadable');
  }));
  if (cacheFile && decoded > 0) {
    // Only a cache: a home folder that cannot be written (a container's user without one) costs the next run the
    // decoding again, never this run. The folder is created without Node's recursive mkdir (it hangs under /proc:
    // contract/make-dir.ts); its error names the folder as the user set it, and what to set.
    const folder = dirname(cacheFile);
    try {
      makeDirs(folder, cacheOrigin);
    } catch (err) {
      return { ok, cached, decoded, cacheError: (err as Error).message };
    }
    try {
      await writeFileAtomic(cacheFile, new TextEncoder().encode(JSON.stringify({ version: CACHE_VERSION, entries: { ...cache, ...next } })), 'ERR_DATA');
    } catch (err) {
      return { ok, cached, decoded, cacheError: `${cacheOrigin.describe(folder)}: ${(err as Error).message}; ${cacheOrigin.fix}` };
    }
  }
  return { ok, cached, decoded };
}
