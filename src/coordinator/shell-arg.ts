/**
 * Command lines the coordinator prints for the user to paste (`npx coordinator --resume <run>`, `interpret <run>`)
 * must survive a shell whatever the path holds: spaces, quotes, `$`, non-ASCII names.
 */

/**
 * `s` as one POSIX shell word: unchanged when it holds only characters no shell treats specially, else in single
 * quotes (a `'` inside written as `'\''`), as Python's `shlex.quote` does.
 * @param s - a path or other argument
 * @returns the word to print in a command line
 */
export function shellArg(s: string): string {
  if (s !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
