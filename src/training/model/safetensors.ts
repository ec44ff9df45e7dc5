/**
 * Reading and writing the safetensors format (https://github.com/huggingface/safetensors, "Format" section):
 * an 8-byte little-endian unsigned header length `N`, `N` bytes of UTF-8 JSON mapping each tensor name to
 * `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the byte buffer that follows the header),
 * an optional `"__metadata__"` string→string map, then the raw little-endian tensor bytes. The byte buffer must
 * be fully indexed without holes or overlaps (the spec's rule against polyglot files).
 */
import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { writeFileAtomic } from '../../contract/atomic-write.js';
import { TrainerError } from '../../contract/errors.js';

/** Element types this module decodes. `F16`/`BF16` are widened to float32 on read. */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8';

/** Decoded element storage by dtype: floats → `Float32Array` (`F64` → `Float64Array`), ints as stored. */
export type SafetensorsData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

/** One decoded tensor. `data` is row-major (C order) over `shape`; a scalar has `shape` `[]` and one element. */
export interface SafetensorsTensor {
  /** The dtype stored in the file (after reading `F16`/`BF16`, `data` holds float32 values). */
  readonly dtype: SafetensorsDtype;
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Element values, `product(shape)` of them. */
  readonly data: SafetensorsData;
}

/** A parsed safetensors file: tensors in header order, plus the `__metadata__` map (empty when absent). */
export interface SafetensorsFile {
  readonly tensors: ReadonlyMap<string, SafetensorsTensor>;
  readonly metadata: Readonly<Record<string, string>>;
}

/** A tensor to write. `F16`/`BF16` are not written (store float32 as `F32`). */
export interface SafetensorsTensorInput {
  readonly dtype: 'F64' | 'F32' | 'I64' | 'I32' | 'U8';
  readonly shape: readonly number[];
  readonly data: SafetensorsData;
}

const BYTES: Readonly<Record<SafetensorsDtype, number>> = Object.freeze({ F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1 });

/** Largest header accepted, in bytes (the reference implementation's limit is 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

function fail(source: string, message: string, cause?: unknown): never {
  throw new TrainerError('ERR_WEIGHTS', `${source}: ${message}`, cause === undefined ? undefined : { cause });
}

function assertLittleEndianHost(): void {
  if (endianness() !== 'LE') throw new TrainerError('ERR_INTERNAL', 'safetensors: big-endian hosts are not supported');
}

/** Product of a shape's dimensions (1 for a scalar). */
export function shapeSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** IEEE 754 half → float (exact). Source: IEEE 754-2008 binary16 layout (1 sign, 5 exponent, 10 fraction bits). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

function decode(dtype: SafetensorsDtype, bytes: Uint8Array): SafetensorsData {
  const copy = new Uint8Array(bytes); // a copy with its own aligned ArrayBuffer (Buffer#slice would share memory)
  const buf = copy.buffer;
  switch (dtype) {
    case 'F64': return new Float64Array(buf);
    case 'F32': return new Float32Array(buf);
    case 'I64': return new BigInt64Array(buf);
    case 'I32': return new Int32Array(buf);
    case 'U8': return copy;
    case 'F16': {
      const h = new Uint16Array(buf);
      const out = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) out[i] = halfToFloat(h[i]);
      return out;
    }
    case 'BF16': {
      // bfloat16 is the upper half of a float32.
      const h = new Uint16Array(buf);
      const wide = new Uint32Array(h.length);
      for (let i = 0; i < h.length; i++) wide[i] = h[i] << 16;
      return new Float32Array(wide.buffer);
    }
  }
}

interface HeaderEntry {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: number[];
  readonly begin: number;
  readonly end: number;
}

function parseEntry(source: string, name: string, raw: unknown): HeaderEntry {
  const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
  if (typeof e !== 'object' || e === null) fail(source, `header entry ${JSON.stringify(name)} is not an object`);
  if (typeof e.dtype !== 'string' || !(e.dtype in BYTES)) {
    fail(source, `tensor ${JSON.stringify(name)}: dtype must be one of ${Object.keys(BYTES).join('|')}, got ${JSON.stringify(e.dtype)}`);
  }
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(source, `tensor ${JSON.stringify(name)}: shape must be an array of integers ≥ 0, got ${JSON.stringify(shape)}`);
  }
  const off = e.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[0] > off[1]) {
    fail(source, `tensor ${JSON.stringify(name)}: data_offsets must be [begin, end] with 0 ≤ begin ≤ end, got ${JSON.stringify(off)}`);
  }
  const dtype = e.dtype as SafetensorsDtype;
  const expected = shapeSize(shape) * BYTES[dtype];
  if (off[1] - off[0] !== expected) {
    fail(source, `tensor ${JSON.stringify(name)}: ${dtype} ${JSON.stringify(shape)} needs ${expected} bytes, data_offsets span ${off[1] - off[0]}`);
  }
  return { name, dtype, shape: shape as number[], begin: off[0] as number, end: off[1] as number };
}

function parseMetadata(source: string, raw: unknown): Record<string, string> {
  if (raw === undefined) return {};
  if (typeof raw !== 'object' || raw === null || !Object.values(raw).every((v) => typeof v === 'string')) {
    fail(source, '__metadata__ must be an object of string values');
  }
  return { ...(raw as Record<string, string>) };
}

function readHeader(bytes: Uint8Array, source: string): { json: Record<string, unknown>; dataStart: number } {
  if (bytes.length < 8) fail(source, `truncated file: ${bytes.length} bytes, need at least 8 for the header length`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) fail(source, `bad header: length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const dataStart = 8 + Number(n);
  if (dataStart > bytes.length) fail(source, `truncated file: header says ${n} bytes, only ${bytes.length - 8} follow`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, dataStart)));
  } catch (err) {
    fail(source, 'bad header: not valid UTF-8 JSON', err);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail(source, 'bad header: JSON must be an object');
  return { json: json as Record<string, unknown>, dataStart };
}

function checkCoverage(source: string, entries: HeaderEntry[], dataLength: number): void {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const e of sorted) {
    if (e.end > dataLength) {
      fail(source, `truncated file: tensor ${JSON.stringify(e.name)} needs data bytes up to ${e.end}, file has ${dataLength}`);
    }
    if (e.begin < cursor) fail(source, `bad header: tensor ${JSON.stringify(e.name)} overlaps the previous tensor (begin ${e.begin} < ${cursor})`);
    if (e.begin > cursor) fail(source, `bad header: hole in the data buffer at bytes ${cursor}..${e.begin}`);
    cursor = e.end;
  }
  if (cursor !== dataLength) fail(source, `bad header: ${dataLength - cursor} trailing data bytes not indexed by any tensor`);
}

/**
 * Parses a safetensors byte buffer.
 *
 * @param bytes - the whole file
 * @param source - name used in error messages (a path, "case file", …)
 * @returns the tensors (header order) and metadata; data arrays are copies, independent of `bytes`
 * @throws TrainerError ERR_WEIGHTS on a truncated file, bad header JSON, unknown dtype, bad shape, offsets out of
 *   range, size mismatch, holes/overlaps in the data buffer, or non-string metadata
 */
export function parseSafetensors(bytes: Uint8Array, source = 'safetensors'): SafetensorsFile {
  assertLittleEndianHost();
  const { json, dataStart } = readHeader(bytes, source);
  const metadata = parseMetadata(source, json.__metadata__);
  const entries = Object.entries(json).filter(([k]) => k !== '__metadata__').map(([k, v]) => parseEntry(source, k, v));
  const dataLength = bytes.length - dataStart;
  checkCoverage(source, entries, dataLength);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const e of entries) {
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: decode(e.dtype, bytes.subarray(dataStart + e.begin, dataStart + e.end)) });
  }
  return { tensors, metadata };
}

/**
 * Reads and parses a safetensors file.
 *
 * @throws TrainerError ERR_WEIGHTS when the file cannot be read (cause attached) or is malformed (see {@link parseSafetensors})
 */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    fail(path, `cannot read weights file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, err);
  }
  return parseSafetensors(bytes, path);
}

const ARRAY_TYPES = Object.freeze({ F64: Float64Array, F32: Float32Array, I64: BigInt64Array, I32: Int32Array, U8: Uint8Array });

function checkInput(name: string, t: SafetensorsTensorInput): void {
  const ctor = Object.hasOwn(ARRAY_TYPES, t.dtype) ? ARRAY_TYPES[t.dtype] : undefined;
  if (ctor === undefined) {
    throw new TrainerError('ERR_WEIGHTS', `safetensors writer: tensor ${JSON.stringify(name)}: dtype must be F64|F32|I64|I32|U8, got ${JSON.stringify(t.dtype)}`);
  }
  if (!(t.data instanceof ctor)) {
    throw new TrainerError('ERR_WEIGHTS', `safetensors writer: tensor ${JSON.stringify(name)}: ${t.dtype} needs a ${ctor.name}, got ${t.data.constructor.name}`);
  }
  if (t.data.length !== shapeSize(t.shape)) {
    throw new TrainerError('ERR_WEIGHTS', `safetensors writer: tensor ${JSON.stringify(name)}: shape ${JSON.stringify(t.shape)} has ${shapeSize(t.shape)} elements, data has ${t.data.length}`);
  }
}

/**
 * Encodes tensors as a safetensors file. The header is space-padded to a multiple of 8 bytes (as the reference
 * implementation does) so every tensor starts 8-byte aligned when tensors are laid out in the given order.
 *
 * @param tensors - name → tensor, written in iteration order; names must not be `__metadata__`
 * @param metadata - optional string→string map stored as `__metadata__`
 * @throws TrainerError ERR_WEIGHTS when a dtype is not writable, the typed array does not match the dtype, or the
 *   element count does not match the shape
 */
export function encodeSafetensors(
  tensors: ReadonlyMap<string, SafetensorsTensorInput> | Readonly<Record<string, SafetensorsTensorInput>>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  assertLittleEndianHost();
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors as Record<string, SafetensorsTensorInput>);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  let offset = 0;
  for (const [name, t] of list) {
    if (name === '__metadata__') throw new TrainerError('ERR_WEIGHTS', 'safetensors writer: "__metadata__" is reserved, not a tensor name');
    checkInput(name, t);
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let cursor = 8 + json.length;
  for (const [, t] of list) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), cursor);
    cursor += t.data.byteLength;
  }
  return out;
}

/**
 * Encodes tensors ({@link encodeSafetensors}) and writes them with {@link writeFileAtomic}.
 *
 * @throws TrainerError ERR_WEIGHTS for bad tensors, ERR_CHECKPOINT for I/O failures
 */
export async function writeSafetensors(
  path: string,
  tensors: ReadonlyMap<string, SafetensorsTensorInput> | Readonly<Record<string, SafetensorsTensorInput>>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}
