#!/usr/bin/env node
/**
 * Rewrites relative paths after files were moved with `git mv`, so a list of moves can be replayed on any branch.
 *
 * Usage: `node scripts/dev/fix-imports.mjs OLD NEW [OLD NEW …]` (paths relative to the repository root, run there,
 * AFTER the `git mv`s). In every .ts/.mjs/.js file under src/, test/, scripts/ and bin/ it rewrites each relative
 * module specifier (`from '…'`, `import('…')`, `export … from '…'`) and each `new URL('…', import.meta.url)` so that
 * it points where it pointed before: the file's own old location (if it moved) and the target's new location (if it
 * moved) are both taken into account. A specifier that still resolves is left alone, so running it twice, or on files
 * merged after the moves, is safe. Specifiers keep their extension (`.js` for a `.ts` source, as NodeNext wants).
 * In README.md, docs/*.md, package.json, .ci/run, deploy/, scripts/gpu-check/ and the sources' comments and strings it
 * replaces each moved path (`src/shared/x.ts`, and its built `dist/shared/x.js`) by its new one.
 * Prints the files it changed. Needs only Node ≥ 20.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

const args = process.argv.slice(2);
if (args.length === 0 || args.length % 2 !== 0) {
  console.error('usage: node scripts/dev/fix-imports.mjs OLD NEW [OLD NEW …]');
  process.exit(2);
}
/** old path → new path (files, or folders: a folder move maps every path under it). */
const moves = new Map();
for (let i = 0; i < args.length; i += 2) moves.set(normalize(args[i]), normalize(args[i + 1]));

function mapPath(p) {
  if (moves.has(p)) return moves.get(p);
  for (const [from, to] of moves) if (p.startsWith(`${from}/`)) return to + p.slice(from.length);
  return p;
}
const reverse = new Map([...moves].map(([a, b]) => [b, a]));
function oldPathOf(p) {
  if (reverse.has(p)) return reverse.get(p);
  for (const [to, from] of reverse) if (p.startsWith(`${to}/`)) return from + p.slice(to.length);
  return p;
}

function walk(dir, out = []) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (/\.(ts|mts|mjs|js)$/.test(name) && !/\.d\.ts$/.test(name)) out.push(p);
  }
  return out;
}

/** True when a specifier's target exists (a `.js` specifier names its `.ts` source). */
function resolves(p) {
  return existsSync(p) || (p.endsWith('.js') && existsSync(p.replace(/\.js$/, '.ts')));
}

/** `p` after the moves, keeping a `.js` specifier for a moved `.ts` source. */
function moved(p) {
  const ts = p.replace(/\.js$/, '.ts');
  if (ts !== p && mapPath(ts) !== ts) return mapPath(ts).replace(/\.ts$/, '.js');
  return mapPath(p);
}

/**
 * The specifier that names, from `newDir`, what `spec` named before the moves. A specifier that still resolves is
 * kept (so the script is idempotent and leaves alone files merged after the moves); a dangling one is read from the
 * file's old folder, then its new one, through the moves.
 */
function rewrite(spec, oldDir, newDir) {
  if (resolves(normalize(join(newDir, spec)))) return spec;
  for (const base of [oldDir, newDir]) {
    const target = moved(normalize(join(base, spec)));
    if (!resolves(target)) continue;
    let rel = relative(newDir, target);
    if (!rel.startsWith('.')) rel = `./${rel}`;
    return rel;
  }
  return spec;
}

const SPEC = /((?:\bfrom|\bimport)\s*\(?\s*)(['"])(\.{1,2}\/[^'"]*)\2|(new URL\(\s*)(['"])(\.{1,2}\/[^'"]*)\5(\s*,\s*import\.meta\.url)/g;
const changed = [];
for (const file of ['src', 'test', 'scripts', 'bin'].flatMap((d) => walk(d))) {
  const src = readFileSync(file, 'utf8');
  const newDir = dirname(file), oldDir = dirname(oldPathOf(file));
  const out = src.replace(SPEC, (whole, pre, q, spec, urlPre, uq, uspec, urlPost) => {
    if (spec !== undefined) return `${pre}${q}${rewrite(spec, oldDir, newDir)}${q}`;
    let rel = rewrite(uspec, oldDir, newDir);
    if (uspec.endsWith('/') && !rel.endsWith('/')) rel += '/';
    return `${urlPre}${uq}${rel}${uq}${urlPost}`;
  });
  if (out !== src) {
    writeFileSync(file, out);
    changed.push(file);
  }
}
/**
 * Path mentions outside import specifiers: `src/shared/x.ts` in docs, comments, strings and shell/CI files, and the
 * built twin `dist/shared/x.js` of each moved `src/` file. Longest paths first, so a folder move does not pre-empt a
 * file move inside it.
 */
const textMoves = [...moves].flatMap(([from, to]) => {
  const pairs = [[from, to]];
  if (from.startsWith('src/') && to.startsWith('src/')) {
    pairs.push([`dist/${from.slice(4).replace(/\.ts$/, '.js')}`, `dist/${to.slice(4).replace(/\.ts$/, '.js')}`]);
  }
  return pairs;
}).sort((a, b) => b[0].length - a[0].length);
function rewriteText(text) {
  // One pass over each position (a placeholder per move), so a path rewritten once is not rewritten again by a shorter move.
  let out = text;
  const marks = [];
  for (const [from, to] of textMoves) {
    const re = new RegExp(`(?<![\\w.-])${from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\w-])`, 'g');
    out = out.replace(re, () => `\uE000${marks.push(to) - 1}\uE000`);
  }
  return out.replace(/\uE000(\d+)\uE000/g, (_, i) => marks[Number(i)]);
}
const textFiles = [
  'README.md', 'package.json', '.ci/run', 'Dockerfile',
  ...['docs', 'deploy', 'scripts/gpu-check'].flatMap((d) => (existsSync(d) ? readdirSync(d).map((n) => `${d}/${n}`) : []))
    .filter((p) => /\.(md|sh|json|ya?ml|mjs)$|Dockerfile/.test(p)),
  ...['src', 'test', 'scripts', 'bin'].flatMap((d) => walk(d)),
];
for (const file of [...new Set(textFiles)]) {
  if (!existsSync(file) || !statSync(file).isFile()) continue;
  const before = readFileSync(file, 'utf8');
  const text = rewriteText(before);
  if (text !== before) {
    writeFileSync(file, text);
    if (!changed.includes(file)) changed.push(file);
  }
}
console.log(changed.length === 0 ? 'no file needed a change' : `rewrote paths in ${changed.length} file(s):\n  ${changed.join('\n  ')}`);
