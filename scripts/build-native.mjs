#!/usr/bin/env node
/**
 * Builds the optional oneDNN addon `native/build/pets_dnnl.node` from `native/pets_dnnl.cc` (run by `npm install`
 * / `npm ci` as the package's install script, or by hand: `npm run build:native`).
 *
 * Needs a C++17 compiler (`$CXX`, default g++), Node's headers (`<node prefix>/include/node`, shipped with Node
 * and with Debian's nodejs package) and oneDNN 2.x headers and library (Debian: `apt-get install libdnnl-dev`).
 * When any is missing or the compile fails it prints one line saying why and exits 0: the install goes on and the
 * trainer uses the WASM backend instead. `--strict` exits 1 instead (for CI checks of the build itself).
 * Flags: `-O3 -march=native -fno-math-errno -ffp-contract=off` (the addon is built on the machine that runs it); `PETS_NATIVE_CXXFLAGS` replaces them.
 * The addon exports `sourceHash`, a stamp of the sources it was built from (see `sourceHash` below), so that the
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

function skip(why) {
  console.log(`native backend: not built (${why}); the trainer will use WASM. See README, "Native CPU backend".`);
  process.exit(strict ? 1 : 0);
}

const nodeInclude = [process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
  join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node']
  .find((d) => d && existsSync(join(d, 'node_api.h')));
if (nodeInclude === undefined) skip('Node headers (node_api.h) not found');
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

const cxx = process.env.CXX ?? 'g++';
const flags = (process.env.PETS_NATIVE_CXXFLAGS ?? '-O3 -march=native -fno-math-errno -ffp-contract=off').split(/\s+/).filter(Boolean);
const libDir = process.env.DNNL_ROOT ? ['-L', join(process.env.DNNL_ROOT, 'lib'), `-Wl,-rpath,${join(process.env.DNNL_ROOT, 'lib')}`] : [];
mkdirSync(outDir, { recursive: true });
const tmp = `${out}.tmp`;
const args = ['-std=c++17', ...flags, '-fPIC', '-shared', '-fopenmp', '-DNODE_GYP_MODULE_NAME=pets_dnnl',
  `-DPETS_SOURCE_HASH="${sourceHash(dirname(source))}"`,
  `-I${nodeInclude}`, `-I${dnnlHeader}`, source, '-o', tmp, ...libDir, '-ldnnl'];
const res = spawnSync(cxx, args, { encoding: 'utf8' });
if (res.error !== undefined || res.status !== 0) {
  rmSync(tmp, { force: true });
  const detail = res.error !== undefined ? res.error.message : (res.stderr || '').trim().split('\n').find((l) => /error/.test(l)) ?? `exit ${res.status}`;
  skip(`${cxx} failed: ${detail.slice(0, 200)}`);
}
renameSync(tmp, out);
console.log(`native backend: built ${out}`);
