/**
 * How every setting check shows the value it refuses (`<name> must be <rule>, got <value>`), in one place: the
 * config/flag checks (`contract/config.ts`) and the `PETS_*` environment checks (`contract/env-settings.ts`) showed
 * `abc` one way (`got "abc"`) and the other (`got abc`).
 */

/**
 * A setting's value as messages show it: a number, or text that reads as one (flags and environment variables
 * arrive as text, and the checks take `"8"` as 8), unquoted (`got 8`, `got -1`, `got 1e9`), as `--connect`'s port
 * is; any other text JSON-quoted (`got "abc"`, `got "4 threads"`, so spaces and an empty value show). `--size 8`
 * was told `got "8"`.
 * @param value - the value as given (number, text, or any JSON value from a config file)
 * @returns the text that follows `got ` in the message
 */
export function shownValue(value: unknown): string {
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'string' && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(value)) return value;
  return JSON.stringify(value) ?? String(value);
}

/**
 * A value read from a JSON file (a checkpoint manifest, a saved model's `.json`) as a message shows it: JSON as
 * written, so a number and a number written as text differ (there the type is the fault), `nothing` for a missing
 * field, cut at 80 characters.
 * @param value - the parsed JSON value, or undefined for a missing field
 */
export function shownJson(value: unknown): string {
  return value === undefined ? 'nothing' : (JSON.stringify(value) ?? String(value)).slice(0, 80);
}
