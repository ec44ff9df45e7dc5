/**
 * The bytes of the wire protocol. A message on the wire is a ZeroMQ multipart message `[header, ...frames]`:
 * - `header`: a msgpack map (msgpackr, records off, so any msgpack reader can parse it) holding
 *   `{ v: PROTOCOL_VERSION, type, ...fields }`;
 * - `frames`: raw little-endian binary payloads (tensors), never inside msgpack. Each message type fixes how many
 *   frames it carries and their byte length is announced in the header.
 *
 * {@link encode} and {@link decode} are the only places that touch bytes. Anything unexpected (unknown type, other
 * version, malformed or truncated msgpack, wrong frame count/length, oversized parts) is a `TrainerError` with
 * code `ERR_PROTOCOL`; decoding never throws anything else.
 */
import { Packr } from 'msgpackr';
import { fail, record, type Header } from './fields.js';
import type { Decoded, Message, MessageType } from './messages.js';
import { checkFrames, validateHeader } from './validators.js';
import { MAX_FRAMES, MAX_FRAME_BYTES, MAX_HEADER_BYTES, MAX_STRING_LENGTH, PROTOCOL_VERSION } from './version.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

/**
 * Encodes a message and its binary frames as ZeroMQ multipart parts `[header, ...frames]`.
 *
 * The message is validated exactly as the receiver will validate it, so a bad outgoing message fails here.
 * Frames are passed through as given (no copy): ZeroMQ may send them zero-copy, so callers must not mutate them
 * until the send completes.
 *
 * @param message - the message (its header fields)
 * @param frames - the binary frames the message type requires (e.g. one little-endian tensor frame for `chunk`)
 * @returns `[header, ...frames]`, ready for `socket.send`
 * @throws TrainerError `ERR_PROTOCOL` when a field, the frame count or a frame length is invalid
 */
export function encode(message: Message, frames: readonly Uint8Array[] = []): Uint8Array[] {
  const checked = validateHeader({ ...message, v: PROTOCOL_VERSION });
  checkFrames(checked, frames);
  for (const f of frames) {
    if (f.byteLength > MAX_FRAME_BYTES) fail(`frame must be ≤ MAX_FRAME_BYTES=${MAX_FRAME_BYTES}, got ${f.byteLength}`);
  }
  const header = packr.pack({ v: PROTOCOL_VERSION, ...checked });
  if (header.byteLength > MAX_HEADER_BYTES) {
    fail(`${message.type} header must be ≤ MAX_HEADER_BYTES=${MAX_HEADER_BYTES} bytes, got ${header.byteLength}`);
  }
  return [header, ...frames];
}

/**
 * Decodes ZeroMQ multipart parts `[header, ...frames]` into a typed message.
 *
 * @param parts - the received parts; frames in the result are the same buffers (no copy)
 * @returns the validated message and its frames
 * @throws TrainerError `ERR_PROTOCOL` for: no parts, too many parts, an oversized header or frame, malformed or
 *   truncated msgpack, a header that is not a map, another protocol version, an unknown type, a missing or
 *   out-of-range field, or frames that do not match the header. Never any other error.
 */
export function decode(parts: readonly Uint8Array[]): Decoded {
  if (parts.length === 0) fail('empty multipart message: expected [header, ...frames]');
  if (parts.length > MAX_FRAMES + 1) fail(`message must have ≤ ${MAX_FRAMES + 1} parts, got ${parts.length}`);
  const [head, ...rest] = parts;
  if (head.byteLength > MAX_HEADER_BYTES) {
    fail(`header must be ≤ MAX_HEADER_BYTES=${MAX_HEADER_BYTES} bytes, got ${head.byteLength}`);
  }
  for (const f of rest) {
    if (f.byteLength > MAX_FRAME_BYTES) fail(`frame must be ≤ MAX_FRAME_BYTES=${MAX_FRAME_BYTES}, got ${f.byteLength}`);
  }
  let raw: unknown;
  try {
    raw = packr.unpack(head);
  } catch (err) {
    fail(`malformed msgpack header (${head.byteLength} bytes): ${(err as Error).message.slice(0, 120)}`, err);
  }
  const message = validateHeader(record(raw, 'header'));
  const frames = rest.map((f) => (Buffer.isBuffer(f) ? f : Buffer.from(f.buffer, f.byteOffset, f.byteLength)));
  checkFrames(message, frames);
  return { message, frames };
}

/**
 * Decodes and additionally requires a given message type.
 *
 * @throws TrainerError `ERR_PROTOCOL` as {@link decode}, or when the type differs from `type`
 */
export function decodeAs<K extends MessageType>(parts: readonly Uint8Array[], type: K): Decoded<Extract<Message, { type: K }>> {
  const d = decode(parts);
  if (d.message.type !== type) fail(`expected a ${type} message, got ${d.message.type}`);
  return d as Decoded<Extract<Message, { type: K }>>;
}

/** The version-independent part of a header: what any protocol version can read from any other. */
export interface HeaderPeek {
  /** The sender's protocol version, as sent (a number for any real peer). */
  readonly v: unknown;
  /** The message type, as sent. */
  readonly type: unknown;
  /** For `error` headers: the sender's code and human message (≤ {@link MAX_STRING_LENGTH} chars), else null. */
  readonly code: string | null;
  readonly message: string | null;
}

/**
 * Reads `{v, type}` (and `code`/`message` of an `error`) from a header of ANY protocol version, without
 * validating the rest: used to answer a peer of another version with a readable error, and by a worker to print
 * such an answer, instead of both sides timing out in silence. msgpack maps are self-describing, so these fields
 * stay readable whatever else a future version adds.
 *
 * @param parts - received multipart parts `[header, ...frames]`
 * @returns the peeked fields, or null when the first part is not a msgpack map of ≤ {@link MAX_HEADER_BYTES}
 */
export function peekHeader(parts: readonly Uint8Array[]): HeaderPeek | null {
  const head = parts[0];
  if (head === undefined || head.byteLength > MAX_HEADER_BYTES) return null;
  let raw: unknown;
  try {
    raw = packr.unpack(head);
  } catch {
    return null;
  }
  const proto: unknown = typeof raw === 'object' && raw !== null ? Object.getPrototypeOf(raw) : undefined;
  if (proto !== Object.prototype && proto !== null) return null;
  const h = raw as Header;
  const text = (x: unknown): string | null => (typeof x === 'string' ? x.slice(0, MAX_STRING_LENGTH) : null);
  return { v: h.v, type: h.type, code: h.type === 'error' ? text(h.code) : null, message: h.type === 'error' ? text(h.message) : null };
}
