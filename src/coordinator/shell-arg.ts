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

/**
 * The command that resumes the run in `runDir`, ready to paste: `npx coordinator --resume <runDir as one shell
 * word>`. Every message that tells the user how to resume prints this one.
 * @param runDir - the run directory, as the user gave it (relative or absolute)
 */
export function resumeCommandLine(runDir: string): string {
  return `npx coordinator --resume ${shellArg(runDir)}`;
}

/** The command that writes (again) the report of the run in `runDir`: `npx coordinator interpret <runDir>`. */
export function interpretCommandLine(runDir: string): string {
  return `npx coordinator interpret ${shellArg(runDir)}`;
}
