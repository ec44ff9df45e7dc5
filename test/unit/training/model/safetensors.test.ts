import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { isTrainerError } from '../../../../src/contract/errors.js';
import {
  encodeSafetensors, halfToFloat, parseSafetensors, readSafetensors, writeSafetensors,
} from '../../../../src/training/model/safetensors.js';

const SHARED = resolve(process.cwd(), '../shared');
const WEIGHTS = join(SHARED, 'fixtures/resnet-tiny/weights.safetensors');

/** Builds a file by hand (independently of the writer): header JSON + raw bytes. */
function handMade(header: object, data: Uint8Array, headerLenOverride?: number): Uint8Array {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLenOverride ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function rejectsWith(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => isTrainerError(err, 'ERR_WEIGHTS') && pattern.test(err.message));
}

test('round trip of every writable dtype, scalars and metadata; header is 8-byte aligned', () => {
  const tensors = new Map([
    ['w', { dtype: 'F32' as const, shape: [2, 3], data: Float32Array.of(1, -2.5, 3e-8, 4, 5, 6) }],
    ['n', { dtype: 'I64' as const, shape: [], data: BigInt64Array.of(123456789012n) }],
    ['i', { dtype: 'I32' as const, shape: [2], data: Int32Array.of(-7, 7) }],
    ['b', { dtype: 'U8' as const, shape: [3], data: Uint8Array.of(0, 128, 255) }],
    ['d', { dtype: 'F64' as const, shape: [1], data: Float64Array.of(Math.PI) }],
  ]);
  const bytes = encodeSafetensors(tensors, { format: 'pt' });
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(headerLen % 8, 0);
  const back = parseSafetensors(bytes);
  assert.deepEqual(back.metadata, { format: 'pt' });
  assert.deepEqual([...back.tensors.keys()], ['w', 'n', 'i', 'b', 'd']);
  for (const [name, t] of tensors) {
    const got = back.tensors.get(name)!;
    assert.equal(got.dtype, t.dtype, name);
    assert.deepEqual(got.shape, t.shape, name);
    assert.deepEqual(Array.from(got.data as ArrayLike<unknown>), Array.from(t.data as ArrayLike<unknown>), name);
  }
});

test('F16 and BF16 decode to float32 (values from the IEEE 754 binary16 and bfloat16 bit layouts)', () => {
  // binary16: 0x3c00 = 1, 0xc000 = -2, 0x7bff = 65504 (max normal), 0x0001 = 2^-24 (min subnormal), 0x7c00 = +inf.
  const f16 = Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00);
  // bfloat16: 0x3f80 = 1, 0x4049 = 3.140625, 0xbf00 = -0.5.
  const bf16 = Uint16Array.of(0x3f80, 0x4049, 0xbf00);
  const data = new Uint8Array(16);
  data.set(new Uint8Array(f16.buffer), 0);
  data.set(new Uint8Array(bf16.buffer), 10);
  const file = parseSafetensors(handMade({
    h: { dtype: 'F16', shape: [5], data_offsets: [0, 10] },
    b: { dtype: 'BF16', shape: [3], data_offsets: [10, 16] },
  }, data));
  assert.deepEqual(Array.from(file.tensors.get('h')!.data as Float32Array), [1, -2, 65504, 2 ** -24, Infinity]);
  assert.deepEqual(Array.from(file.tensors.get('b')!.data as Float32Array), [1, 3.140625, -0.5]);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
});

test('malformed files are ERR_WEIGHTS errors that say what is wrong', () => {
  const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const data8 = new Uint8Array(8);
  rejectsWith(() => parseSafetensors(new Uint8Array(5), 'x.st'), /^x\.st: truncated file: 5 bytes/);
  rejectsWith(() => parseSafetensors(handMade(ok, data8, 10_000)), /truncated file: header says 10000 bytes/);
  rejectsWith(() => parseSafetensors(handMade(ok, data8.subarray(0, 6))), /truncated file: tensor "a" needs data bytes up to 8, file has 6/);
  const badJson = handMade(ok, data8);
  badJson[9] = 0x7b; // '{{' …
  badJson[8] = 0x7b;
  rejectsWith(() => parseSafetensors(badJson), /bad header: not valid UTF-8 JSON/);
  rejectsWith(() => parseSafetensors(handMade({ a: { dtype: 'Q8', shape: [2], data_offsets: [0, 8] } }, data8)), /dtype must be one of .*got "Q8"/);
  rejectsWith(() => parseSafetensors(handMade({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data8)), /F32 \[3\] needs 12 bytes, data_offsets span 8/);
  rejectsWith(() => parseSafetensors(handMade({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, data8)), /data_offsets must be \[begin, end\]/);
  rejectsWith(() => parseSafetensors(handMade({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, data8)), /hole in the data buffer at bytes 0\.\.4/);
  rejectsWith(() => parseSafetensors(handMade({
    a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
  }, data8)), /overlaps/);
  rejectsWith(() => parseSafetensors(handMade(ok, new Uint8Array(12))), /4 trailing data bytes/);
  rejectsWith(() => parseSafetensors(handMade({ ...ok, __metadata__: { n: 1 } }, data8)), /__metadata__ must be an object of string values/);
});

test('writer rejects data that does not match dtype or shape', () => {
  assert.throws(() => encodeSafetensors({ a: { dtype: 'F32', shape: [3], data: Float32Array.of(1, 2) } }),
    (err: unknown) => isTrainerError(err, 'ERR_WEIGHTS') && /shape \[3\] has 3 elements, data has 2/.test(err.message));
  assert.throws(() => encodeSafetensors({ a: { dtype: 'I64', shape: [1], data: Int32Array.of(1) } }),
    (err: unknown) => isTrainerError(err, 'ERR_WEIGHTS') && /I64 needs a BigInt64Array, got Int32Array/.test(err.message));
});

test('reads the PyTorch fixture: 74 keys, torch layouts, int64 num_batches_tracked', async () => {
  // ResNet(BasicBlock, [1,1,1,1], 37): 12 convs (stem, 2 per block × 4, 3 downsamples), each with one weight and a
  // BN of 5 entries → 12 × 6, plus fc.weight and fc.bias = 74.
  const file = await readSafetensors(WEIGHTS);
  assert.equal(file.tensors.size, 74);
  assert.deepEqual(file.tensors.get('conv1.weight')!.shape, [64, 3, 7, 7]);
  assert.equal(file.tensors.get('conv1.weight')!.data.length, 64 * 3 * 49);
  assert.equal(file.tensors.get('bn1.num_batches_tracked')!.dtype, 'I64');
  assert.equal(file.metadata.format, 'pt');
  // Re-encoding the parsed tensors reproduces the same tensor bytes.
  const again = parseSafetensors(encodeSafetensors(file.tensors as never));
  assert.deepEqual(again.tensors.get('fc.bias')!.data, file.tensors.get('fc.bias')!.data);
});

test('writeSafetensors writes atomically (no temp file left) and a missing file is ERR_WEIGHTS', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'st-test-'));
  try {
    const path = join(dir, 'x.safetensors');
    await writeSafetensors(path, { v: { dtype: 'F32', shape: [1], data: Float32Array.of(42) } });
    assert.deepEqual(await readdir(dir), ['x.safetensors']);
    assert.deepEqual(Array.from((await readSafetensors(path)).tensors.get('v')!.data as Float32Array), [42]);
    await assert.rejects(readSafetensors(join(dir, 'nope.safetensors')),
      (err: unknown) => isTrainerError(err, 'ERR_WEIGHTS') && /cannot read weights file \(ENOENT\)/.test(err.message));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
