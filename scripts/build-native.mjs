#!/usr/bin/env node
/**
 * Builds the optional native addons (run by `npm install` / `npm ci` as the package's install script, or by hand:
 * `npm run build:native`):
 * - `native/build/pets_shm.node` from `native/pets_shm.cc`: the same-host shared-memory all-reduce (`--allreduce
 *   auto|shm`); needs only a C++17 compiler and Node's headers (no oneDNN);
 * - `native/build/pets_dnnl.node` from `native/pets_dnnl.cc`: the oneDNN CPU backend.
 *
 * Needs a C++17 compiler (`$CXX`, default g++), Node's headers (`<node prefix>/include/node`, shipped with Node
 * and with Debian's nodejs package) and, for the oneDNN addon, oneDNN 2.x headers and library (Debian: `apt-get
 * install libdnnl-dev`). It prints one line: what was built, and when something is missing or a compile fails, why
 * not; it then exits 0 all the same: the install goes on and the trainer uses the WASM backend / the ZeroMQ ring
 * instead. `--strict` exits 1 when either addon is not built (for CI checks of the build itself).
 * Flags: `-O3 -march=native -fno-math-errno -ffp-contract=off` (the addon is built on the machine that runs it); `PETS_NATIVE_CXXFLAGS` replaces them.
 * Each addon exports `sourceHash`, a stamp of the sources it was built from (see `sourceHash` below), so that the
 * loader can refuse an addon left over from older sources (after a `git pull`) instead of calling it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hashFiles } from '../bin/build-stamp.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const strict = process.argv.includes('--strict');
const source = join(root, 'native', 'pets_dnnl.cc');
const outDir = join(root, 'native', 'build');
const out = join(outDir, 'pets_dnnl.node');

/** The shared-memory module's outcome: null before it is tried, '' when built, else why not. */
let shmProblem = null;
const shmOut = join(outDir, 'pets_shm.node');

/** What the shared-memory line adds to the one line the script prints. */
function shmNote(dnnlWhy) {
  if (shmProblem === null || shmProblem === dnnlWhy) return ' Nor the shared-memory all-reduce: same-host workers use the ZeroMQ ring.';
  if (shmProblem === '') return ` Shared-memory all-reduce: built ${shmOut}.`;
  return ` Shared-memory all-reduce: not built (${shmProblem}); same-host workers use the ZeroMQ ring.`;
}

/** Prints the one line of a failed oneDNN build (and the shared-memory module's outcome) and exits. */
function skip(why) {
  console.log(`native backend: not built (${why}); the trainer will use WASM. See README, "Native CPU backend".${shmNote(why)}`);
  process.exit(strict ? 1 : 0);
}

const nodeInclude = [process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
  join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node']
  .find((d) => d && existsSync(join(d, 'node_api.h')));
if (nodeInclude === undefined) skip('Node headers (node_api.h) not found');
const cxx = process.env.CXX ?? 'g++';
const flags = (process.env.PETS_NATIVE_CXXFLAGS ?? '-O3 -march=native -fno-math-errno -ffp-contract=off').split(/\s+/).filter(Boolean);
mkdirSync(outDir, { recursive: true });

/**
 * Compiles one addon into `outPath` (through a temporary file, so a failed build leaves no half-written addon; the
 * file is this process's own, so two builds at once — `npm ci` beside `npm run build:native` — cannot remove or rename
 * each other's: that race once ended an install with ENOENT on the shared `.tmp` name).
 * @returns null on success, else the first error line
 */
function compile(name, src, outPath, extra, libs) {
  const tmpOut = `${outPath}.${process.pid}.tmp`;
  const res = spawnSync(cxx, ['-std=c++17', ...flags, '-fPIC', '-shared', ...extra, `-DNODE_GYP_MODULE_NAME=${name}`,
    `-DPETS_SOURCE_HASH="${sourceHash(dirname(src))}"`, `-I${nodeInclude}`, src, '-o', tmpOut, ...libs], { encoding: 'utf8' });
  if (res.error !== undefined || res.status !== 0) {
    rmSync(tmpOut, { force: true });
    const detail = res.error !== undefined ? res.error.message : (res.stderr || '').trim().split('\n').find((l) => /error/.test(l)) ?? `exit ${res.status}`;
    return `${cxx} failed: ${detail.slice(0, 200)}`;
  }
  renameSync(tmpOut, outPath);
  return null;
}

// The shared-memory all-reduce first: it needs no oneDNN, so it is built wherever a compiler is.
shmProblem = compile('pets_shm', join(root, 'native', 'pets_shm.cc'), shmOut, [], []) ?? '';

const dnnlHeader = ['/usr/include', '/usr/local/include', process.env.DNNL_ROOT && join(process.env.DNNL_ROOT, 'include')]
  .find((d) => d && existsSync(join(d, 'oneapi', 'dnnl', 'dnnl.hpp')));
if (dnnlHeader === undefined) skip('oneDNN headers not found: apt-get install libdnnl-dev');

/**
 * The same stamp as `nativeSourceHash` of `src/training/compute/native/addon.ts` (this script runs before TypeScript
 * is built, so it cannot import it): `hashFiles` (the rule of `dist/`'s stamp) over every `*.cc` and `*.h` of
 * `native/`, in name order.
 */
function sourceHash(dir) {
  return hashFiles(dir, readdirSync(dir).filter((n) => /\.(cc|h)$/.test(n)).sort());
}

const libDir = process.env.DNNL_ROOT ? ['-L', join(process.env.DNNL_ROOT, 'lib'), `-Wl,-rpath,${join(process.env.DNNL_ROOT, 'lib')}`] : [];
const problem = compile('pets_dnnl', source, out, ['-fopenmp', `-I${dnnlHeader}`], [...libDir, '-ldnnl']);
if (problem !== null) skip(problem);
if (shmProblem === '') console.log(`native backend: built ${out}; shared-memory all-reduce: built ${shmOut}`);
else {
  console.log(`native backend: built ${out}.${shmNote(null)}`);
  if (strict) process.exit(1);
}
