/**
 * Tensor ⇄ frame conversions for the data plane: copies on the way out (ZeroMQ sends buffers over 128 bytes
 * zero-copy, so a frame must never alias a buffer the caller will mutate) and aligned views on the way in.
 * Frames are little-endian; {@link assertLittleEndian} guards the host.
 */
import { endianness } from 'node:os';
import { TrainerError } from '../../contract/errors.js';
import { float16ToFloat32, float32ToFloat16 } from '../../training/allreduce/float16.js';
import type { WireDtype } from '../../contract/protocol/index.js';

/**
 * Fails on big-endian hosts, whose typed arrays would not match the little-endian wire format.
 *
 * @throws TrainerError `ERR_BACKEND` on a big-endian host
 */
export function assertLittleEndian(): void {
  if (endianness() !== 'LE') {
    throw new TrainerError('ERR_BACKEND', `the data plane needs a little-endian host, got ${endianness()}`);
  }
}

/**
 * Encodes float32 values as a fresh frame in the wire dtype (float16: round-to-nearest-even).
 *
 * @param values - `[n] float32` (not retained)
 * @returns a new buffer of n × 4 (float32) or n × 2 (float16) bytes
 */
export function toFrame(values: Float32Array, dtype: WireDtype): Buffer {
  if (dtype === 'float16') {
    const half = float32ToFloat16(values);
    return Buffer.from(half.buffer, half.byteOffset, half.byteLength);
  }
  // Not Buffer.from(view): that zero-fills a fresh buffer before copying (3× the CPU time of a 1 MiB slice's copy).
  const frame = Buffer.allocUnsafeSlow(values.byteLength);
  frame.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  return frame;
}

/**
 * Decodes a received frame into float32 values: a view when the frame is float32 and 4-byte aligned, else a copy.
 *
 * @param frame - n × 4 (float32) or n × 2 (float16) bytes, little-endian
 * @returns `[n] float32`
 */
export function fromFrame(frame: Uint8Array, dtype: WireDtype): Float32Array {
  if (dtype === 'float16') {
    const aligned = frame.byteOffset % 2 === 0 ? frame : new Uint8Array(frame);
    return float16ToFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2));
  }
  const aligned = frame.byteOffset % 4 === 0 ? frame : new Uint8Array(frame);
  return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
}

/**
 * Rounds float32 values through the wire dtype in place, so a sender's own copy equals what its peers decode.
 *
 * @param values - `[n] float32`, overwritten (no-op for float32)
 */
export function roundThroughWire(values: Float32Array, dtype: WireDtype): void {
  if (dtype === 'float16') float16ToFloat32(float32ToFloat16(values), values);
}
