/**
 * File names and labels inside log lines. Linux allows every byte but `/` and NUL in a file name, so a name (or a
 * label taken from a folder name or a CSV cell) may hold a newline, a carriage return, a tab or an escape sequence;
 * printed as is, it splits its log line in two or rewrites the terminal. GNU coreutils (`ls -b`, `sha256sum`) print
 * such names escaped; so does every log line here that quotes a name or a label.
 */

/**
 * `text` with each control character escaped: tab, newline and carriage return as `\t`, `\n`, `\r`; every other C0
 * control (U+0000–U+001F), DEL (U+007F) and C1 control (U+0080–U+009F) as `\xNN`; the Unicode line and paragraph
 * separators (U+2028, U+2029, which some terminals and editors break lines at) as `\u2028`, `\u2029`. Anything else,
 * backslashes included, is unchanged, so a name without control characters prints exactly as it is, and a name the
 * listing could not decode keeps its `\xNN` bytes (`displayName`, training/data/items.ts). Where a reader must tell a
 * literal backslash from an escape (predict's tab-separated lines), escape backslashes first (`tsvField`).
 * @example logText('Abys\nsinian_901.jpg') === 'Abys\\nsinian_901.jpg'
 */
export function logText(text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is escaped
  return text.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, (c) => {
    switch (c) {
      case '\t': return '\\t';
      case '\n': return '\\n';
      case '\r': return '\\r';
      default: {
        const code = c.charCodeAt(0);
        return code > 0xff ? `\\u${code.toString(16)}` : `\\x${code.toString(16).padStart(2, '0')}`;
      }
    }
  });
}

/**
 * Error codes whose messages are several lines by design: `ERR_OFFLINE` (training/download.ts `offlineMessage`: a
 * short first line, `hint: …`, `tried:` and one line per address, each part escaped with {@link logText}).
 */
const MULTILINE_CODES: ReadonlySet<string> = new Set(['ERR_OFFLINE']);

/**
 * An error's message as a command prints it after `<program>: <code>: `: one line ({@link logText}), whatever file
 * name or label it quotes, except a message written as several lines by design ({@link MULTILINE_CODES}), whose
 * lines are kept and each escaped. Escaping every message whole printed the offline error's hint and the addresses
 * tried as one line joined by literal `\n`s.
 * @param code - the error's code (`ERR_OFFLINE` …), or null
 * @param message - the error's message
 */
export function errorText(code: string | null, message: string): string {
  return code !== null && MULTILINE_CODES.has(code) ? message.split('\n').map(logText).join('\n') : logText(message);
}

/**
 * `n` and its noun, singular for one: `1 step`, `2 steps`, `0 steps` (English plural by adding `s`; a noun whose plural
 * is not that passes it: `counted(n, 'batch', 'batches')`). Stage headings said `1 steps`.
 */
export function counted(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}
