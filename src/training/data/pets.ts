/**
 * `untar_data(URLs.PETS)`: download the Oxford-IIIT Pet tarballs (mirror fallback, resume, optional checksum)
 * into a cache folder, extract them with `tar`, and reuse the extracted copy later without network.
 * Dataset: Parkhi et al., "Cats and Dogs", CVPR 2012 — https://www.robots.ox.ac.uk/~vgg/data/pets/
 */
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as tar from 'tar';
import { downloadFile, offlineMessage, offlineTried, userCacheDir } from '../download.js';
import { TrainerError, isTrainerError } from '../../contract/errors.js';
import { envOrigin, makeDirs, optionOrigin, type FolderOrigin } from '../../contract/make-dir.js';

/** Mirrors of the two Pets tarballs, tried in order. */
export const PETS_URLS = Object.freeze({
  images: Object.freeze([
    'https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz',
    'https://thor.robots.ox.ac.uk/~vgg/data/pets/images.tar.gz',
  ]),
  annotations: Object.freeze([
    'https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz',
    'https://thor.robots.ox.ac.uk/~vgg/data/pets/annotations.tar.gz',
  ]),
});

/** Options of {@link fetchPets}. */
export interface FetchPetsOptions {
  /** Cache root; the dataset lands in `<cacheDir>/oxford-iiit-pet/{images,annotations}`. Default {@link defaultCacheDir}. */
  readonly cacheDir?: string;
  /**
   * What named `cacheDir`, for the error when it cannot be created (default: `PETS_TRAINER_CACHE_DIR` when `cacheDir`
   * is omitted, else the option itself).
   */
  readonly cacheOrigin?: FolderOrigin;
  /** Also fetch annotations (needed by `--split official`). Default false. */
  readonly annotations?: boolean;
  /** Mirrors of images.tar.gz (tests point these at a local server). */
  readonly imagesUrls?: readonly string[];
  /** Mirrors of annotations.tar.gz. */
  readonly annotationsUrls?: readonly string[];
  /** Expected SHA-256 of images.tar.gz / annotations.tar.gz, if known. */
  readonly imagesSha256?: string;
  readonly annotationsSha256?: string;
  /** No progress output. */
  readonly quiet?: boolean;
  /** Download retries per mirror. */
  readonly retries?: number;
  /** First backoff in ms. */
  readonly backoffMs?: number;
}

/** Environment variable overriding the data cache directory. */
export const CACHE_DIR_ENV = 'PETS_TRAINER_CACHE_DIR';

/**
 * The data cache directory (the downloaded dataset, the verify pass's verdicts): `$PETS_TRAINER_CACHE_DIR`, else
 * `~/.cache/pets-trainer`, beside the ImageNet weights (`~/.cache/pets-trainer/weights`), as fastai keeps
 * `untar_data`'s datasets in `~/.fastai/data` and PyTorch its hub in `~/.cache/torch`: never the current directory,
 * so running a command from any folder leaves nothing there but what it was asked to write.
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return userCacheDir(env, CACHE_DIR_ENV);
}

/** Defaults of {@link FetchPetsOptions} (the cache root: {@link defaultCacheDir}, read when called). */
export const DEFAULT_FETCH_PETS = Object.freeze({ annotations: false, quiet: false });

/** Downloads (resumably) and extracts one tarball whose top folder is `folder`, unless the marker says it is done. */
async function fetchPart(dir: string, folder: string, urls: readonly string[], sha256: string | undefined, o: FetchPetsOptions): Promise<void> {
  const marker = join(dir, `.${folder}.done`);
  if (existsSync(marker) && existsSync(join(dir, folder))) return;
  const tarball = join(dir, 'downloads', `${folder}.tar.gz`);
  try {
    await downloadFile({ urls, dest: tarball, sha256, quiet: o.quiet, retries: o.retries, backoffMs: o.backoffMs, folderOrigin: petsCacheOrigin(o) });
  } catch (err) {
    if (isTrainerError(err, 'ERR_OFFLINE')) {
      throw new TrainerError('ERR_OFFLINE', offlineMessage(`the Oxford-IIIT Pet ${folder} are not in ${dir} and cannot be downloaded: the network looks offline`,
        'to train offline, pass --data <dir> with a folder of images (or one holding images/), e.g. --data ../shared/datasets/oxford-iiit-pet-sample',
        offlineTried(err.message)), { cause: err });
    }
    throw err;
  }
  const tmp = join(dir, `.extract-${folder}-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp); // in `dir`, made by fetchPets (never recursive: see contract/make-dir.ts)
  try {
    await tar.x({ file: tarball, cwd: tmp, strict: true });
  } catch (cause) {
    await rm(tarball, { force: true });
    throw new TrainerError('ERR_DOWNLOAD', `${tarball} is not a valid tar.gz (deleted; run again to re-download): ${(cause as Error).message}`, { cause });
  }
  if (!existsSync(join(tmp, folder))) {
    throw new TrainerError('ERR_DATA', `${tarball} should hold a top folder ${folder}/, found none`);
  }
  await rm(join(dir, folder), { recursive: true, force: true });
  await rename(join(tmp, folder), join(dir, folder));
  await rm(tmp, { recursive: true, force: true });
  await rm(tarball, { force: true });
  await writeFile(marker, new Date().toISOString());
}

/**
 * What named the data cache folder, for the errors about it (the dataset download's, the data check's cache): the
 * `cacheDir` option when a program gave one, else {@link CACHE_DIR_ENV} (set, or unset and its default).
 * @param cacheDir - the `cacheDir` option as given (undefined: not given)
 */
export function cacheDirOrigin(cacheDir: string | undefined): FolderOrigin {
  return cacheDir === undefined ? envOrigin(CACHE_DIR_ENV) : optionOrigin('cacheDir');
}

/** What named the cache folder of `o` ({@link FetchPetsOptions.cacheOrigin}, else {@link cacheDirOrigin}). */
function petsCacheOrigin(o: FetchPetsOptions): FolderOrigin {
  return o.cacheOrigin ?? cacheDirOrigin(o.cacheDir);
}

/**
 * Makes the Pets dataset available locally and returns its folder (holding `images/`, and `annotations/` when
 * asked). A completed earlier fetch is reused without network.
 *
 * @throws TrainerError ERR_BAD_CONFIG naming PETS_TRAINER_CACHE_DIR (or `cacheOrigin`) when the cache folder cannot be
 *   created or written; ERR_OFFLINE (message tells the user to pass --data <dir>), ERR_DOWNLOAD, ERR_CHECKSUM, ERR_DATA.
 */
export async function fetchPets(options: FetchPetsOptions = {}): Promise<string> {
  const dir = resolve(options.cacheDir ?? defaultCacheDir(), 'oxford-iiit-pet');
  makeDirs(dir, petsCacheOrigin(options));
  await fetchPart(dir, 'images', options.imagesUrls ?? PETS_URLS.images, options.imagesSha256, options);
  if (options.annotations ?? DEFAULT_FETCH_PETS.annotations) {
    await fetchPart(dir, 'annotations', options.annotationsUrls ?? PETS_URLS.annotations, options.annotationsSha256, options);
  }
  return dir;
}
