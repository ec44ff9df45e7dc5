/**
 * Readers of untrusted header fields: each returns the field typed, or throws `ERR_PROTOCOL` naming the message
 * type, the field and the rule ("step.accum must be an integer in [1, 65536], got 0"). Internal to the protocol.
 */
import { TrainerError } from '../errors.js';
import { MAX_STRING_LENGTH } from './version.js';

/** A decoded msgpack header, not yet validated. */
export type Header = Record<string, unknown>;

/** Throws the protocol's one error. @throws TrainerError ERR_PROTOCOL always */
export function fail(message: string, cause?: unknown): never {
  throw new TrainerError('ERR_PROTOCOL', message, cause === undefined ? undefined : { cause });
}

/** `h[field]` as an integer in `[min, max]`. @throws TrainerError ERR_PROTOCOL otherwise */
export function int(h: Header, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = h[field];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    fail(`${String(h.type)}.${field} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

/** `h[field]` as a string of ≤ MAX_STRING_LENGTH chars (matching `pattern` if given). @throws TrainerError ERR_PROTOCOL otherwise */
export function str(h: Header, field: string, pattern?: RegExp): string {
  const v = h[field];
  if (typeof v !== 'string' || v.length > MAX_STRING_LENGTH || (pattern !== undefined && !pattern.test(v))) {
    const rule = pattern === undefined ? `a string of ≤ ${MAX_STRING_LENGTH} chars` : `a string matching ${pattern}`;
    fail(`${String(h.type)}.${field} must be ${rule}, got ${JSON.stringify(v)?.slice(0, 80)}`);
  }
  return v;
}

/** `h[field]` as one of `allowed`. @throws TrainerError ERR_PROTOCOL otherwise */
export function oneOf<T extends string>(h: Header, field: string, allowed: readonly T[]): T {
  const v = h[field];
  if (!allowed.includes(v as T)) {
    fail(`${String(h.type)}.${field} must be one of ${allowed.join('|')}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}

/** `h[field]` as a boolean. @throws TrainerError ERR_PROTOCOL otherwise */
export function bool(h: Header, field: string): boolean {
  const v = h[field];
  if (typeof v !== 'boolean') fail(`${String(h.type)}.${field} must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

/** `v` as a plain map (not an array, null, or class instance); `what` names it in the error. @throws TrainerError ERR_PROTOCOL otherwise */
export function record(v: unknown, what: string): Header {
  const proto: unknown = typeof v === 'object' && v !== null ? Object.getPrototypeOf(v) : undefined;
  if (proto !== Object.prototype && proto !== null) {
    const got = v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'object' ? v.constructor.name : typeof v;
    fail(`${what} must be a map, got ${got}`);
  }
  return v as Header;
}

/** `h[field]` as a finite number. @throws TrainerError ERR_PROTOCOL otherwise */
export function num(h: Header, field: string): number {
  const v = h[field];
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${String(h.type)}.${field} must be a finite number, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * `h[field]` as a loss sum: any number, NaN and ±Infinity included (msgpack carries them as float64). A diverged
 * training computes them, and they are a result to report (`training/learner/loop.ts` stops the fit on one, as fastai's
 * `TerminateOnNaNCallback`), not a malformed frame: refused as such, a diverged run ended with `ERR_PROTOCOL:
 * valid-done.lossSum must be a finite number, got null`. @throws TrainerError ERR_PROTOCOL when not a number
 */
export function lossNum(h: Header, field: string): number {
  const v = h[field];
  if (typeof v !== 'number') fail(`${String(h.type)}.${field} must be a number (NaN and ±Infinity allowed: a diverged loss), got ${JSON.stringify(v)}`);
  return v;
}

/** `h[field]` as a duration: a finite number ≥ 0 (seconds). @throws TrainerError ERR_PROTOCOL otherwise */
export function seconds(h: Header, field: string): number {
  const v = h[field];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail(`${String(h.type)}.${field} must be a finite number ≥ 0 (seconds), got ${JSON.stringify(v)}`);
  return v;
}

/** `h[field]` as an array of `minLength..maxLength` finite numbers. @throws TrainerError ERR_PROTOCOL otherwise */
export function numbers(h: Header, field: string, minLength: number, maxLength: number): number[] {
  const v = h[field];
  if (!Array.isArray(v) || v.length < minLength || v.length > maxLength || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    fail(`${String(h.type)}.${field} must be an array of ${minLength}..${maxLength} finite numbers, got ${JSON.stringify(v)?.slice(0, 80)}`);
  }
  return v as number[];
}

/** `h[field]` as a map of ≤ 16 names (≤ 64 chars) to integers ≥ 0. @throws TrainerError ERR_PROTOCOL otherwise */
export function counts(h: Header, field: string): Record<string, number> {
  const r = record(h[field], `${String(h.type)}.${field}`);
  const entries = Object.entries(r);
  if (entries.length > 16 || !entries.every(([k, x]) => k.length <= 64 && typeof x === 'number' && Number.isInteger(x) && x >= 0)) {
    fail(`${String(h.type)}.${field} must map ≤ 16 short names to non-negative integers, got ${JSON.stringify(r).slice(0, 80)}`);
  }
  return r as Record<string, number>;
}
